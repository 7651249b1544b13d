"""Runner of ``configs/loss_reweighting_linreg.py`` (issue 5: loss-based reweighting).

Generates one regression data set per seed (duplicated easy rows + heavy-tailed
noisy rows), then trains w from 0 with minibatch SGD for each arm (seeds in
parallel with ``jax.vmap``, one jitted ``lax.scan`` per arm) and records the
clean test MSE after every step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("steps to target", "final test MSE")


def make_task(key, *, dim, num_rows, dup_fraction, num_dup_sources,
              noise_fraction, noise_scale, label_noise, num_test):
  """Returns (x, y, x_test, y_test, w_star, is_dup, is_noisy) for one seed."""
  ks = jax.random.split(key, 8)
  w_star = jax.random.normal(ks[0], (dim,))
  x = jax.random.normal(ks[1], (num_rows, dim))
  n_dup = int(dup_fraction * num_rows)
  n_noisy = int(noise_fraction * num_rows)
  src = jax.random.normal(ks[2], (num_dup_sources, dim))
  pick = jax.random.randint(ks[3], (n_dup,), 0, num_dup_sources)
  x = x.at[:n_dup].set(src[pick] + 0.01 * jax.random.normal(ks[4],
                                                             (n_dup, dim)))
  y = x @ w_star + label_noise * jax.random.normal(ks[5], (num_rows,))
  t_noise = noise_scale * jax.random.t(ks[6], 2.0, (n_noisy,))
  y = y.at[n_dup:n_dup + n_noisy].add(t_noise)
  x_test = jax.random.normal(ks[7], (num_test, dim))
  idx = jnp.arange(num_rows)
  return (x, y, x_test, x_test @ w_star, w_star, idx < n_dup,
          (idx >= n_dup) & (idx < n_dup + n_noisy))


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; compares steps to the target MSE."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("uniform", "LinUpper"))
  rule_fn, sgd = fns[config.rule_fn], fns[config.optimizer_fn]
  task = dict(config.task)
  steps, bs = config.steps, config.batch_size
  compiler_options = dict(config.get("compiler_options", {})) or None
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))

  # One rule per arm; `lax.switch` picks it, so a single compiled program
  # runs every arm and seed (vmapped) — compiling dominates at this size.
  rules = [rule_fn(strategy=a["strategy"], temperature=a["temperature"],
                   warmup_steps=a["warmup_steps"]) for a in config.arms]
  opt = sgd(config.learning_rate)

  def train(arm_idx, key):
    x, y, xt, yt, w_star, _, _ = make_task(key, **task)
    w = jnp.zeros_like(w_star)
    batch_key = jax.random.fold_in(key, 1)

    def step(carry, t):
      w, s_opt, s_rule = carry
      idx = jax.random.randint(jax.random.fold_in(batch_key, t), (bs,), 0,
                               x.shape[0])
      xb, yb = x[idx], y[idx]
      losses = (xb @ w - yb) ** 2
      weights, s_rule = jax.lax.switch(
          arm_idx, [r.update for r in rules], losses, s_rule)
      g = jax.grad(lambda v: jnp.sum(weights * (xb @ v - yb) ** 2))(w)
      u, s_opt = opt.update(g, s_opt, w)
      w = w + u
      return (w, s_opt, s_rule), jnp.mean((xt @ w - yt) ** 2)

    _, curve = jax.lax.scan(step, (w, opt.init(w), rules[0].init()),
                            jnp.arange(steps))
    target = config.target_fraction * jnp.sum(w_star**2)
    hit = curve <= target
    first = jnp.where(jnp.any(hit), jnp.argmax(hit) + 1, steps + 1)
    return dict(first=first, final=curve[-1]), curve

  arm_ids = jax.device_put(jnp.arange(len(config.arms)))
  f = jax.jit(jax.vmap(jax.vmap(train, in_axes=(None, 0)), in_axes=(0, None)))
  if compiler_options:
    f = f.lower(arm_ids, keys).compile(compiler_options)
  with harness.transfer_guard(config):
    m_all, curve_all = f(arm_ids, keys)
  m_all, curve_all = jax.device_get((m_all, curve_all))

  per_seed = {k: {} for k in METRICS}
  curves = {}
  for i, arm in enumerate(config.arms):
    m = {k: np.asarray(v[i]) for k, v in m_all.items()}
    curves[arm["name"]] = np.asarray(curve_all[i])
    per_seed["steps to target"][arm["name"]] = np.asarray(
        m["first"], np.float64).tolist()
    per_seed["final test MSE"][arm["name"]] = np.asarray(m["final"]).tolist()
    print(f"  {arm['name']:10s} steps-to-target "
          f"{np.mean(m['first']):.1f} ± {harness.sample_std(m['first']):.1f}"
          f"  final MSE {np.mean(m['final']):.4f}", flush=True)

  st = {a: float(np.mean(per_seed["steps to target"][a])) for a in arm_names}
  fin = {a: float(np.mean(per_seed["final test MSE"][a])) for a in arm_names}
  held = bool(st["LinUpper"] < st["uniform"])
  wins = sum(l < u for l, u in zip(per_seed["steps to target"]["LinUpper"],
                                   per_seed["steps to target"]["uniform"]))
  checks = [("LinUpper reaches the target sooner than uniform (decides "
             "`held`)", held)]
  checks += [(f"{a} sooner than uniform", bool(st[a] < st["uniform"]))
             for a in arm_names if a not in ("uniform", "LinUpper")]
  checks += [("LinUpper final test MSE ≤ uniform",
              bool(fin["LinUpper"] <= fin["uniform"]))]
  verdict = (
      f"Mean steps to the target test MSE over {len(seeds)} seeds: "
      + ", ".join(f"{a} {st[a]:.1f}" for a in arm_names)
      + f" (LinUpper sooner on {wins}/{len(seeds)} seeds); final test MSE "
      + ", ".join(f"{a} {fin[a]:.4f}" for a in arm_names)
      + " — LinUpper faster than uniform "
      + f"{'held' if held else 'did NOT hold'}.")

  metrics = [
      harness.metric("steps to target", per_seed["steps to target"],
                     description=f"first step with clean test MSE ≤ "
                     f"{config.target_fraction} ‖w*‖² (steps + 1 if never)"),
      harness.metric("final test MSE", per_seed["final test MSE"]),
  ]

  fig, ax = plt.subplots(figsize=(6, 3.8))
  for i, a in enumerate(arm_names):
    c = curves[a]
    ax.plot(np.median(c, 0), color=f"C{i}", label=a)
  ax.set_yscale("log")
  ax.set_xlabel("SGD step")
  ax.set_ylabel("clean test MSE (median over seeds)")
  ax.set_title("linear regression, 40 % duplicated + 5 % heavy-tailed rows",
               fontsize=9)
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "test_mse.png")

  notes = harness.checks_markdown(checks)
  notes += ["", "Only the first check decides `held`."]
  return dict(
      name=config.name, claim=config.claim, arms=[dict(a) for a in config.arms],
      metrics=metrics, headline="steps to target", held=held, verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks], seeds=seeds,
      notes_md="\n".join(notes))
