"""Runner of ``configs/tmc_shapley_flipped.py`` (issue 5: TMC-Shapley vs LOO)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("flip recall", "test accuracy after removing lowest 10%")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Values the training points with every arm, over all seeds."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  arm_names = harness.arm_names(config, ("TMC-Shapley", "leave-one-out"))
  shapley, loo = fns[config.shapley_fn], fns[config.loo_fn]
  data = fns[config.data_fn]()
  x_all = np.asarray(data.data, np.float32) / 16.0
  y_all = np.asarray(data.target, np.int32)
  n = config.num_train
  n_flip = int(round(config.flip_fraction * n))
  n_remove = max(1, n // 10)

  def make_fit(x, y):
    def fit(mask):
      w = mask.astype(jnp.float32)

      def loss(p):
        logits = x @ p["w"] + p["b"]
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None],
                                  1)[:, 0]
        return (jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1.0)
                + config.l2 * jnp.sum(p["w"] ** 2))

      def step(p, _):
        g = jax.grad(loss)(p)
        return jax.tree.map(lambda a, b: a - config.learning_rate * b, p,
                            g), None

      p0 = dict(w=jnp.zeros((x.shape[1], 10)), b=jnp.zeros(10))
      return jax.lax.scan(step, p0, None, length=config.gd_steps)[0]
    return fit

  def accuracy(p, x, y):
    return jnp.mean((jnp.argmax(x @ p["w"] + p["b"], -1) == y)
                    .astype(jnp.float32))

  per_seed = {m: {a: [] for a in arm_names} for m in METRICS}
  for seed in range(config.seeds):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y_all))
    tr, va, te = (perm[:n], perm[n:n + config.num_val],
                  perm[n + config.num_val:])
    xtr, ytr = x_all[tr], y_all[tr].copy()
    flipped = rng.choice(n, size=n_flip, replace=False)
    ytr[flipped] = (ytr[flipped] + rng.integers(1, 10, n_flip)) % 10
    is_flip = np.zeros(n, bool)
    is_flip[flipped] = True
    fit = make_fit(jnp.asarray(xtr), jnp.asarray(ytr))
    xva, yva = jnp.asarray(x_all[va]), jnp.asarray(y_all[va])
    xte, yte = jnp.asarray(x_all[te]), jnp.asarray(y_all[te])
    value_fn = lambda m: accuracy(fit(m), xva, yva)
    key = jax.random.key(seed)
    values = {}
    for a in arm_names:
      if a == "TMC-Shapley":
        values[a] = shapley(key, value_fn, n,
                            num_permutations=config.permutations,
                            truncation_tol=config.truncation_tol,
                            batch_size=config.batch_size)
      elif a == "leave-one-out":
        values[a] = loo(value_fn, n, batch_size=config.batch_size)
      elif a == "random":
        values[a] = jax.random.uniform(jax.random.fold_in(key, 1), (n,))
      else:
        raise ValueError(f"unknown arm {a!r}")
      v = np.asarray(values[a])
      # Lowest values first; ties broken at random (LOO has many zeros).
      order = np.lexsort((rng.random(n), v))
      per_seed["flip recall"][a].append(
          float(is_flip[order[:n_flip]].mean()))
      keep = np.ones(n, bool)
      keep[order[:n_remove]] = False
      per_seed[METRICS[1]][a].append(
          float(accuracy(jax.jit(fit)(jnp.asarray(keep)), xte, yte)))
    print(f"  seed {seed}: " + ", ".join(
        f"{a} recall {per_seed['flip recall'][a][-1]:.2f}"
        for a in arm_names), flush=True)

  mean = {m: {a: float(np.mean(v)) for a, v in d.items()}
          for m, d in per_seed.items()}
  rec = mean["flip recall"]
  held = bool(rec["TMC-Shapley"] > rec["leave-one-out"])
  checks = [("flip recall: TMC-Shapley > leave-one-out (decides `held`)",
             held),
            ("flip recall: TMC-Shapley > chance",
             rec["TMC-Shapley"] > config.flip_fraction),
            ("test accuracy after removal: TMC-Shapley ≥ leave-one-out",
             mean[METRICS[1]]["TMC-Shapley"]
             >= mean[METRICS[1]]["leave-one-out"])]
  verdict = (
      f"Mean over {config.seeds} seeds ({n} training points, {n_flip} "
      f"flipped): flip recall among the {n_flip} lowest-valued "
      + ", ".join(f"{a} {rec[a]:.3f}" for a in arm_names)
      + "; test accuracy after removing the lowest 10 % "
      + ", ".join(f"{a} {mean[METRICS[1]][a]:.4f}" for a in arm_names)
      + f" — TMC-Shapley > LOO {'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(m, per_seed[m]) for m in METRICS]

  fig, ax = plt.subplots(figsize=(6, 3.6))
  for i, a in enumerate(arm_names):
    v = per_seed["flip recall"][a]
    ax.scatter([i] * len(v), v, color=f"C{i}", alpha=0.7)
    ax.errorbar(i + 0.15, np.mean(v), yerr=harness.sample_std(v), fmt="o",
                color="k", capsize=3)
  ax.axhline(config.flip_fraction, color="gray", ls="--", label="chance")
  ax.set_xticks(range(len(arm_names)))
  ax.set_xticklabels(arm_names)
  ax.set_ylabel("flipped labels among lowest-valued")
  ax.legend(fontsize=8)
  harness.save_figure(fig, workdir, "flip_recall.png")
  notes = harness.checks_markdown(checks)
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="flip recall", held=held, verdict=verdict,
              checks=[dict(check=c, held=bool(ok)) for c, ok in checks],
              summary=mean, seeds=list(range(config.seeds)),
              notes_md="\n".join(notes))
