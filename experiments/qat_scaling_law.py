"""Runner of ``configs/qat_scaling_law.py`` (issue 6: QAT scaling-law fit)."""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains float and W4A4-QAT students over the (N, D, G) grid; fits the law."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fq, fit, adam = (fns[config.fake_quant_fn], fns[config.fit_fn],
                   fns[config.optimizer_fn])
  copts = dict(config.get("compiler_options", {})) or None
  seeds = list(range(config.seeds))
  d_max = max(config.data_sizes)
  kt, kx, ke, kxt = jax.random.split(jax.random.key(1234), 4)
  t1 = jax.random.normal(kt, (config.d_in, config.teacher_hidden)) / 8.0
  t2 = jax.random.normal(jax.random.fold_in(kt, 1),
                         (config.teacher_hidden, config.d_out)) / 11.3

  def teacher(x):
    return jnp.tanh(x @ t1 * 2.0) @ t2 * 3.0

  x = jax.random.normal(kx, (d_max, config.d_in))
  y = teacher(x) + config.noise * jax.random.normal(ke, (d_max, config.d_out))
  xt = jax.random.normal(kxt, (config.n_test, config.d_in))
  yt = teacher(xt)
  masks = jnp.stack([(jnp.arange(d_max) < d).astype(jnp.float32)
                     for d in config.data_sizes])
  data = jax.device_put((x, y, xt, yt, masks))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  opt = adam(learning_rate=config.learning_rate)

  w_max = max(config.widths)
  widths = jnp.asarray(config.widths, jnp.float32)

  def make(group):
    """One program for every (seed, width, D); widths by masking hidden units."""
    def q(v, axis):
      if group is None:
        return v
      return fq(v, bits=config.bits, group_size=group, axis=axis)

    def forward(p, hmask, x):
      h = jax.nn.relu(q(x, -1) @ q(p["w1"], 0) + p["b1"]) * hmask
      return q(h, -1) @ q(p["w2"] * hmask[:, None], 0) + p["b2"]

    def train(key, width, mask, data):
      x, y, xt, yt, _ = data
      hmask = (jnp.arange(w_max) < width).astype(jnp.float32)
      k1, k2 = jax.random.split(key)
      p = dict(w1=jax.random.normal(k1, (config.d_in, w_max))
               * jnp.sqrt(2.0 / config.d_in), b1=jnp.zeros(w_max),
               w2=jax.random.normal(k2, (w_max, config.d_out))
               * jax.lax.rsqrt(width), b2=jnp.zeros(config.d_out))

      def loss(p):
        err = jnp.sum((forward(p, hmask, x) - y) ** 2, -1)
        return jnp.sum(err * mask) / jnp.sum(mask)

      def step(c, _):
        p, s = c
        u, s = opt.update(jax.grad(loss)(p), s, p)
        return (jax.tree.map(jnp.add, p, u), s), None

      (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None,
                               length=config.steps)
      return jnp.mean(jnp.sum((forward(p, hmask, xt) - yt) ** 2, -1))

    f = jax.vmap(train, in_axes=(None, None, 0, None))      # over D
    f = jax.vmap(f, in_axes=(None, 0, None, None))          # over widths
    f = jax.vmap(f, in_axes=(0, None, None, None))          # over seeds
    return jax.jit(f, compiler_options=copts)

  fp_loss, qat_loss = {}, {}
  with harness.transfer_guard(config):
    fp_all = make(None)(keys, widths, data[4], data)  # [seeds, W, D]
    q_all = {g: make(g)(keys, widths, data[4], data)
             for g in config.group_sizes}
  fp_all, q_all = jax.device_get((fp_all, q_all))
  for wi, n in enumerate(config.widths):
    fp_loss[n] = np.asarray(fp_all)[:, wi]
    for g in config.group_sizes:
      qat_loss[(n, g)] = np.asarray(q_all[g])[:, wi]

  rows = []
  per_fp, per_q = {}, {}
  n_floor = 0
  for n, (di, d), g in itertools.product(config.widths,
                                         enumerate(config.data_sizes),
                                         config.group_sizes):
    f = np.asarray(fp_loss[n])[:, di]
    qq = np.asarray(qat_loss[(n, g)])[:, di]
    delta = float(np.mean(qq - f))
    if delta <= 0:
      n_floor += 1
    rows.append((n, d, g, max(delta, 1e-6), delta))
    name = f"N={n},D={d},G={g}"
    per_fp[name], per_q[name] = f.tolist(), qq.tolist()
  arr = np.asarray(rows)
  law = fit(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
  pred = law(arr[:, 0], arr[:, 1], arr[:, 2])
  r2 = 1 - (np.sum((np.log(arr[:, 3]) - np.log(pred)) ** 2)
            / np.sum((np.log(arr[:, 3]) - np.log(arr[:, 3]).mean()) ** 2))
  signs = {"γ_N > 0": law.gamma_n > 0, "γ_D > 0": law.gamma_d > 0,
           "γ_G > 0": law.gamma_g > 0}
  held = bool(all(signs.values()))
  checks = [(f"{k} (decides `held`)", bool(v)) for k, v in signs.items()]
  verdict = (f"Fit over {len(rows)} (N, D, G) runs × {len(seeds)} seeds: "
             f"k = {law.k:.3g}, γ_D = {law.gamma_d:.3f}, γ_G = "
             f"{law.gamma_g:.3f}, γ_N = {law.gamma_n:.3f} (R² in log space "
             f"{r2:.3f}); signs " + ", ".join(
                 f"{k.split(' ')[0]} {'✓' if v else '✗'}"
                 for k, v in signs.items())
             + f" — {'held' if held else 'did NOT hold'}.")

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  ax = axes[0]
  ax.loglog(arr[:, 3], pred, "o")
  lim = [arr[:, 3].min() * 0.8, arr[:, 3].max() * 1.2]
  ax.plot(lim, lim, "k--", lw=0.8)
  ax.set_xlabel("measured δ")
  ax.set_ylabel("fitted δ")
  ax.set_title("QAT error law fit", fontsize=9)
  ax = axes[1]
  for i, g in enumerate(config.group_sizes):
    sel = arr[:, 2] == g
    ax.scatter(arr[sel, 1] * (1 + 0.05 * i), arr[sel, 3], label=f"G={g}",
               color=f"C{i}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("D (training examples)")
  ax.set_ylabel("δ")
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "scaling_law.png")

  notes = harness.checks_markdown(checks, "## Checks")
  notes += ["", f"{n_floor} of {len(rows)} runs had δ ≤ 0 (floored at 1e-6).",
            "", "| N | D | G | δ |", "|---|---|---|---|"]
  notes += [f"| {int(r[0])} | {int(r[1])} | {int(r[2])} | {r[4]:.4g} |"
            for r in rows]
  # Per seed: the mean test MSE over the (N, D, G) grid.
  metrics = [harness.metric("test MSE", {
      "float": np.mean(np.asarray(list(per_fp.values())), axis=0).tolist(),
      "W4A4 QAT": np.mean(np.asarray(list(per_q.values())), axis=0).tolist()},
      description="per seed: mean over the grid; per-config δ in the notes")]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="test MSE", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              law=dict(k=law.k, gamma_d=law.gamma_d, gamma_g=law.gamma_g,
                       gamma_n=law.gamma_n, r2_log=float(r2)),
              seeds=seeds, notes_md="\n".join(notes))
