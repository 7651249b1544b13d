"""Runner of ``configs/wta_multihead_bimodal.py`` (seed 000, E21; WTA heads).

Every arm uses the same H-head network; the arm only changes the loss (a
code: single head / mean over heads / minimum over heads with a traced
relaxation), so arms × seeds are vmapped in one jitted ``lax.scan``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("best-of-heads test MSE", "mode coverage",
           "head-0 distance to the midpoint")
_KIND = {"single": 0, "mean": 1, "wta": 2}


def draw_data(key, *, num, gap, noise):
  """x ~ U(−1, 1), y = sin(3x) ± gap + noise; returns (x [N,1], y [N], s)."""
  kx, ks, kn = jax.random.split(key, 3)
  x = jax.random.uniform(kx, (num, 1), minval=-1.0, maxval=1.0)
  s = jnp.where(jax.random.bernoulli(ks, 0.5, (num,)), 1.0, -1.0)
  y = jnp.sin(3.0 * x[:, 0]) + gap * s + noise * jax.random.normal(kn, (num,))
  return x, y


def init_net(key, hidden, heads):
  k1, k2, k3 = jax.random.split(key, 3)
  return dict(
      w1=jax.random.normal(k1, (1, hidden)), b1=jnp.zeros(hidden),
      w2=jax.random.normal(k2, (hidden, hidden)) / jnp.sqrt(hidden),
      b2=jnp.zeros(hidden),
      w3=jax.random.normal(k3, (hidden, heads)) / jnp.sqrt(hidden),
      b3=jnp.zeros(heads))


def net(p, x):
  """[N, 1] → [H, N] head predictions."""
  h = jnp.tanh(x @ p["w1"] + p["b1"])
  h = jnp.tanh(h @ p["w2"] + p["b2"])
  return (h @ p["w3"] + p["b3"]).T


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; returns the result dict."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("single head", "H heads, WTA"))
  wta = fns[config.wta_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  task = dict(config.task)
  heads = int(config.heads)
  if heads < 2:
    raise ValueError(f"config.heads must be >= 2, got {heads}")
  for a in config.arms:
    if a["loss"] not in _KIND:
      raise ValueError(f"arm {a['name']!r}: loss must be one of "
                       f"{sorted(_KIND)}, got {a['loss']!r}")
  kinds = jnp.asarray([_KIND[a["loss"]] for a in config.arms])
  relax = jnp.asarray([float(a["relaxation"]) for a in config.arms])
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  gap, r = task["gap"], task["coverage_radius"]

  def train(kind, eps, key):
    kd, kt, kp = jax.random.split(key, 3)
    x, y = draw_data(kd, num=task["num_train"], gap=gap, noise=task["noise"])
    xt, yt = draw_data(kt, num=task["num_test"], gap=gap,
                       noise=task["noise"])
    params = init_net(kp, config.hidden, heads)

    def loss(p):
      sq = (net(p, x) - y[None]) ** 2             # [H, N]
      per = jnp.where(kind == 0, sq[0],
                      jnp.where(kind == 1, jnp.mean(sq, 0),
                                wta(sq, relaxation=eps)))
      return jnp.mean(per)

    def step(carry, _):
      p, s = carry
      value, g = jax.value_and_grad(loss)(p)
      u, s = opt.update(g, s, p)
      return (jax.tree.map(jnp.add, p, u), s), value

    (params, _), curve = jax.lax.scan(step, (params, opt.init(params)), None,
                                      length=config.steps)
    pred = net(params, xt)                         # [H, M]
    used = jnp.where(kind == 0, jnp.arange(heads) == 0, True)[:, None]
    big = jnp.asarray(jnp.inf, pred.dtype)
    best = jnp.min(jnp.where(used, (pred - yt[None]) ** 2, big), 0)
    mid = jnp.sin(3.0 * xt[:, 0])
    near = lambda m: jnp.any(used & (jnp.abs(pred - m[None]) < r), 0)
    coverage = jnp.mean(near(mid + gap) & near(mid - gap))
    return (jnp.mean(best), coverage, jnp.mean(jnp.abs(pred[0] - mid)),
            curve, (xt[:256, 0], pred[:, :256], yt[:256]))

  compiler_options = dict(config.get("compiler_options", {})) or None
  fn = jax.vmap(jax.vmap(train, in_axes=(None, None, 0)), in_axes=(0, 0, None))
  with harness.transfer_guard(config):
    out = jax.jit(fn, compiler_options=compiler_options)(kinds, relax, keys)
  best, cov, dist, curves, sample = jax.device_get(out)

  per_seed = {k: {} for k in METRICS}
  for i, a in enumerate(arm_names):
    for k, v in zip(METRICS, (best, cov, dist)):
      per_seed[k][a] = np.asarray(v[i]).tolist()
    print(f"  {a:30s} best-of-heads MSE {best[i].mean():.4f} ± "
          f"{harness.sample_std(best[i]):.4f}  coverage {cov[i].mean():.3f}",
          flush=True)
  m = {k: {a: float(np.mean(per_seed[k][a])) for a in arm_names}
       for k in METRICS}
  mse = m["best-of-heads test MSE"]
  factor = float(config.held_factor)
  held = bool(mse["H heads, WTA"] < factor * mse["single head"])
  checks = [
      (f"WTA best-of-heads MSE < {factor} × single head's (decides `held`)",
       held),
      ("WTA best-of-heads MSE < mean-loss heads' (competition, not the "
       "number of outputs, does it)",
       bool(mse["H heads, WTA"] < mse.get("H heads, mean loss", -np.inf))),
      ("single head sits between the modes (mean |pred − sin 3x| < 0.25 · "
       "gap)",
       bool(m["head-0 distance to the midpoint"]["single head"]
            < 0.25 * gap)),
      ("WTA covers both modes on ≥ 90 % of test points",
       bool(m["mode coverage"]["H heads, WTA"] >= 0.9)),
  ]
  verdict = (
      f"Mean best-of-heads test MSE over {len(seeds)} seeds ({heads} heads): "
      + ", ".join(f"{a} {mse[a]:.4f}" for a in arm_names)
      + f" — WTA < {factor} × single head "
      f"{'held' if held else 'did NOT hold'} (ratio "
      f"{mse['H heads, WTA'] / mse['single head']:.3f}).")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  xs, preds, ys = sample
  fig, axes = plt.subplots(1, len(arm_names),
                           figsize=(3.6 * len(arm_names), 3.2), sharey=True)
  for ax, i, a in zip(np.atleast_1d(axes), range(len(arm_names)), arm_names):
    order = np.argsort(xs[i, 0])
    ax.scatter(xs[i, 0], ys[i, 0], s=3, color="0.7")
    nh = 1 if config.arms[i]["loss"] == "single" else heads
    for h in range(nh):
      ax.plot(xs[i, 0][order], preds[i, 0][h][order], lw=1.5, color=f"C{h}")
    ax.set_title(a, fontsize=8)
    ax.set_xlabel("x (seed 0)")
  harness.save_figure(fig, workdir, "heads.png")
  harness.plot_curves({a: [np.log10(curves[i])] for i, a in
                       enumerate(arm_names)}, arm_names,
                      ("log10 training loss",), workdir)

  notes = harness.checks_markdown(checks)
  notes += ["", "Only the first check decides `held`. Mode coverage: both "
            f"modes sin(3x) ± {gap} have some head within {r}. `heads.png` "
            "shows every arm's heads on seed 0's test inputs."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="best-of-heads test MSE", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
