"""Runner of ``configs/comp_sum_label_noise.py`` (seed 003, X7; comp-sum τ).

Draws the data once, corrupts the training labels per seed and trains the
MLP with ``comp_sum_loss`` for every τ: arms × seeds are vmapped in one
jitted ``lax.scan`` (τ is a traced argument of ``comp_sum_loss``), so the
whole experiment is one compilation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import _init_mlp
from experiments.kd_digits import _mlp
from experiments.ldr_label_noise import noisy_labels

METRICS = ("clean test accuracy", "best test accuracy during training",
           "flipped train examples memorised")


def load_task(data_fn, *, data_kw, train_size):
  """Standardised ``(x_train, y_train, x_test, y_test)`` numpy arrays."""
  x, y = data_fn(**data_kw)
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.int32)
  xtr, xte = x[:train_size], x[train_size:]
  mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
  return (xtr - mu) / sd, y[:train_size], (xte - mu) / sd, y[train_size:]


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every τ over all seeds; returns the result dict."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("τ=1 (CE)", "τ=1.5 (GCE)"))
  loss_fn, mean = fns[config.loss_fn], fns[config.mean_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  task = dict(config.task)
  xtr, ytr, xte, yte = load_task(fns[task.pop("data_fn")], **task)
  num_classes = int(ytr.max()) + 1
  sizes = (xtr.shape[1], config.hidden, num_classes)
  ys = np.stack([noisy_labels(ytr, num_classes, config.noise, s)
                 for s in seeds])
  flipped = ys != ytr[None]
  taus = np.asarray([float(a["tau"]) for a in config.arms], np.float32)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))

  def train(tau, key, y, flip, xtr, xte, yte):
    params = _init_mlp(key, sizes)

    def loss(p):
      return mean(loss_fn(_mlp(p, xtr)[0], y, tau=tau))

    def step(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = opt.update(g, s, p)
      p = jax.tree.map(jnp.add, p, u)
      acc = jnp.mean(jnp.argmax(_mlp(p, xte)[0], -1) == yte)
      return (p, s), acc

    (params, _), curve = jax.lax.scan(step, (params, opt.init(params)), None,
                                      length=config.steps)
    pred = jnp.argmax(_mlp(params, xtr)[0], -1)
    memorised = (jnp.sum((pred == y) & flip)
                 / jnp.maximum(jnp.sum(flip), 1))
    return curve[-1], jnp.max(curve), memorised, curve

  compiler_options = dict(config.get("compiler_options", {})) or None
  over_seeds = jax.vmap(train, in_axes=(None, 0, 0, 0, None, None, None))
  over_arms = jax.vmap(over_seeds, in_axes=(0, None, None, None, None, None,
                                            None))
  data = jax.device_put((taus, keys, ys, flipped, xtr, xte, yte))
  with harness.transfer_guard(config):
    out = jax.jit(over_arms, compiler_options=compiler_options)(*data)
  final, best, memorised, curves = (np.asarray(v) for v in
                                    jax.device_get(out))

  per_seed = {m: {} for m in METRICS}
  for i, a in enumerate(arm_names):
    for m, v in zip(METRICS, (final, best, memorised)):
      per_seed[m][a] = v[i].tolist()
    print(f"  {a:14s} test acc {final[i].mean():.4f} ± "
          f"{harness.sample_std(final[i]):.4f}  best {best[i].mean():.4f}  "
          f"memorised {memorised[i].mean():.3f}", flush=True)
  m = {k: {a: float(np.mean(per_seed[k][a])) for a in arm_names}
       for k in METRICS}
  acc = m["clean test accuracy"]
  gce, ce = "τ=1.5 (GCE)", "τ=1 (CE)"
  held = bool(all(acc[gce] > acc[a] for a in arm_names if a != gce))
  wins = int(np.sum(np.asarray(per_seed["clean test accuracy"][gce])
                    > np.asarray(per_seed["clean test accuracy"][ce])))
  checks = [
      ("τ=1.5 (GCE) has the highest mean clean test accuracy (decides "
       "`held`)", held),
      (f"τ=1.5 > CE on every seed ({wins}/{len(seeds)})", wins == len(seeds)),
      ("τ=0 (sum-exp) has the lowest mean accuracy",
       bool(all(acc["τ=0 (sum-exp)"] <= acc[a] for a in arm_names))
       if "τ=0 (sum-exp)" in acc else False),
      ("CE overfits: best-during-training − final > 0.01",
       bool(m["best test accuracy during training"][ce] - acc[ce] > 0.01)),
      ("τ=2 (MAE) below τ=1.5 (underfits)",
       bool(acc.get("τ=2 (MAE)", np.inf) < acc[gce])),
  ]
  verdict = (
      f"Mean clean test accuracy over {len(seeds)} seeds at "
      f"{config.noise:.0%} noise after {config.steps} steps: "
      + ", ".join(f"{a} {acc[a]:.4f}" for a in arm_names)
      + f" — τ=1.5 highest {'held' if held else 'did NOT hold'} "
      f"(τ=1.5 > CE on {wins}/{len(seeds)} seeds).")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  fig, ax = plt.subplots(figsize=(6, 3.8))
  for i, a in enumerate(arm_names):
    ax.plot(curves[i].mean(0), color=f"C{i}", label=a)
  ax.set_xlabel("full-batch Adam step")
  ax.set_ylabel("clean test accuracy (mean over seeds)")
  ax.set_title(f"comp-sum Φ^τ, {config.noise:.0%} symmetric label noise",
               fontsize=9)
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "test_accuracy_curves.png")

  notes = harness.checks_markdown(checks)
  notes += ["", "Only the first check decides `held`. `flipped train examples "
            "memorised` = fraction of the noisy-labelled training examples "
            "predicted with their noisy label at the end."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="clean test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
