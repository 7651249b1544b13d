"""Runner of ``configs/aioli_mixing.py`` (issue 5: Aioli / DoReMi data mixing).

Every arm is a ``jaxkit.reweighting`` rule over three domains applied to
stratified batches; arms × seeds run vmapped in one jitted ``lax.scan``.
The program runs twice with the same compiled code: the first pass yields the
stratified models that serve as DoReMi's reference; the second pass is the
reported one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("average test MSE", "excess over noise floor", "final mixture")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the three arms over all seeds and compares average test MSE."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("stratified", "Aioli", "DoReMi"))
  task = dict(config.task)
  k, dim = len(task["noise"]), task["dim"]
  scales = jnp.asarray(task["offset_scales"])
  noise = jnp.asarray(task["noise"])
  steps, bs, lr = config.steps, config.batch_size, config.learning_rate
  per = bs // k
  rules = {
      "stratified": fns[config.stratified_fn](num_groups=k, step_size=0.0),
      "Aioli": fns[config.aioli_fn](num_groups=k, **config.aioli),
      "DoReMi": fns[config.doremi_fn](num_groups=k, **config.doremi),
  }
  rules = [rules[a] for a in arm_names]
  compiler_options = dict(config.get("compiler_options", {})) or None
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  g_ids = jnp.repeat(jnp.arange(k), per)

  def truth(key):
    kw, kv = jax.random.split(key)
    return (jax.random.normal(kw, (dim,)),
            scales[:, None] * jax.random.normal(kv, (k, dim)))

  def draw(key, w0, v, n):
    kx, ke = jax.random.split(key)
    d = jnp.repeat(jnp.arange(k), n)
    x = jax.random.normal(kx, (d.shape[0], dim))
    y = jnp.sum(x * (w0 + v[d]), -1) + noise[d] * jax.random.normal(ke, d.shape)
    return x, y, d

  def predict(params, x, d):
    return jnp.sum(x * (params[0] + params[1][d]), -1)

  def train(arm_idx, key, ref):
    w0, v = truth(jax.random.fold_in(key, 0))
    xt, yt, dt = draw(jax.random.fold_in(key, 1), w0, v, task["num_test"])
    xv, yv, dv = draw(jax.random.fold_in(key, 3), w0, v, task["num_val"])
    params = (jnp.zeros((dim,)), jnp.zeros((k, dim)))
    states = tuple(r.init() for r in rules)

    def test_mse(p):
      err = (predict(p, xt, dt) - yt) ** 2
      return jnp.mean(jax.ops.segment_sum(err, dt, k) / task["num_test"])

    def step(carry, t):
      p, states = carry
      x, y, d = draw(jax.random.fold_in(jax.random.fold_in(key, 2), t), w0, v,
                     per)
      losses = (predict(p, x, d) - y) ** 2
      excess = losses - (predict(ref, x, d) - y) ** 2
      # DoReMi sees excess losses; the other rules the plain losses.
      # Aioli measures its loss drops on the validation rows (as the
      # reference does).
      val = jax.ops.segment_sum((predict(p, xv, dv) - yv) ** 2, dv,
                                k) / task["num_val"]
      outs = []
      for name, r, s in zip(arm_names, rules, states):
        if name == "DoReMi":
          outs.append(r.update(excess, s, group_ids=g_ids))
        elif name == "Aioli":
          outs.append(r.update(losses, s, group_ids=g_ids,
                               eval_group_losses=val))
        else:
          outs.append(r.update(losses, s, group_ids=g_ids))
      w = jnp.stack([o[0] for o in outs])[arm_idx]
      states = tuple(o[1] for o in outs)
      g = jax.grad(lambda q: jnp.sum(w * (predict(q, x, d) - y) ** 2))(p)
      p = jax.tree.map(lambda a, b: a - lr * b, p, g)
      mix = jax.ops.segment_sum(w, d, k)
      return (p, states), (test_mse(p), mix)

    (p, _), (curve, mixes) = jax.lax.scan(step, (params, states),
                                          jnp.arange(steps))
    return p, curve, mixes

  f = jax.jit(jax.vmap(jax.vmap(train, in_axes=(None, 0, 0)),
                       in_axes=(0, None, None)))
  arm_ids = jax.device_put(jnp.arange(len(arm_names)))
  ref0 = jax.device_put((jnp.zeros((len(seeds), dim)),
                         jnp.zeros((len(seeds), k, dim))))
  if compiler_options:
    f = f.lower(arm_ids, keys, ref0).compile(compiler_options)
  with harness.transfer_guard(config):
    p1, _, _ = f(arm_ids, keys, ref0)
  si = arm_names.index("stratified")
  ref = jax.device_put(jax.tree.map(lambda a: np.asarray(a)[si],
                                    jax.device_get(p1)))
  with harness.transfer_guard(config):
    _, curves, mixes = f(arm_ids, keys, ref)
  curves, mixes = jax.device_get((curves, mixes))   # [A, S, T], [A, S, T, K]
  floor = float(np.mean(np.asarray(task["noise"]) ** 2))

  per_seed = {m: {} for m in METRICS[:2]}
  final_mix = {}
  for i, a in enumerate(arm_names):
    per_seed["average test MSE"][a] = curves[i, :, -1].tolist()
    per_seed["excess over noise floor"][a] = (curves[i, :, -1] - floor).tolist()
    final_mix[a] = [round(float(m), 3) for m in mixes[i, :, -1].mean(0)]
    print(f"  {a:10s} avg test MSE {curves[i, :, -1].mean():.4f} ± "
          f"{harness.sample_std(curves[i, :, -1]):.4f}  final mixture "
          f"{final_mix[a]}", flush=True)
  mean = {a: float(np.mean(per_seed["average test MSE"][a])) for a in arm_names}
  held = bool(mean["Aioli"] <= mean["stratified"])
  wins = int(np.sum(curves[arm_names.index("Aioli"), :, -1]
                    <= curves[arm_names.index("stratified"), :, -1]))
  checks = [("Aioli ≤ stratified average test MSE (decides `held`)", held),
            ("DoReMi ≤ stratified average test MSE",
             bool(mean["DoReMi"] <= mean["stratified"]))]
  verdict = (f"Average test MSE over {len(seeds)} seeds (noise floor "
             f"{floor:.3f}): " + ", ".join(f"{a} {mean[a]:.4f}"
                                          for a in arm_names)
             + f"; Aioli ≤ stratified on {wins}/{len(seeds)} seeds — "
             + f"{'held' if held else 'did NOT hold'}. Final mixtures: "
             + "; ".join(f"{a} {final_mix[a]}" for a in arm_names) + ".")
  metrics = [harness.metric(m, per_seed[m]) for m in METRICS[:2]]

  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for i, a in enumerate(arm_names):
    axes[0].plot(curves[i].mean(0), color=f"C{i}", label=a)
  axes[0].set_yscale("log")
  axes[0].set_xlabel("SGD step")
  axes[0].set_ylabel("average test MSE (mean over seeds)")
  axes[0].legend(fontsize=7)
  ai = arm_names.index("Aioli")
  for j, name in enumerate(("easy", "informative", "noisy")):
    axes[1].plot(mixes[ai, :, :, j].mean(0), label=f"Aioli: {name}")
  axes[1].set_xlabel("SGD step")
  axes[1].set_ylabel("mixture weight")
  axes[1].legend(fontsize=7)
  harness.save_figure(fig, workdir, "aioli_mixing.png")

  notes = harness.checks_markdown(checks)
  notes += ["", f"Final mixtures (mean over seeds): {final_mix}."]
  return dict(
      name=config.name, claim=config.claim, arms=[dict(a) for a in config.arms],
      metrics=metrics, headline="average test MSE", held=held, verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks], seeds=seeds,
      final_mixtures=final_mix, notes_md="\n".join(notes))
