"""Runner of ``configs/el2n_pruning_digits.py`` (issue 5: data-diet pruning)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import _init_mlp, _mlp, load_split  # pylint: disable=g-bad-import-order


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Scores, prunes, retrains and evaluates every arm over all seeds."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  arm_names = harness.arm_names(config, ("random", "EL2N"))
  el2n, grand, prune = (fns[config.el2n_fn], fns[config.grand_fn],
                        fns[config.prune_fn])
  ce = fns[config.ce_fn]
  opt = fns[config.optimizer_fn](config.learning_rate)
  compiler_options = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  n, dim = xtr.shape
  sizes = (dim, config.hidden, 10)
  xtr, ytr, xte, yte = map(jnp.asarray, (xtr, ytr, xte, yte))

  def fit(key, w, steps):
    params = _init_mlp(key, sizes)

    def loss(p):
      return jnp.sum(w * ce(_mlp(p, xtr)[0], ytr)) / jnp.sum(w)

    def step(carry, _):
      p, s = carry
      u, s = opt.update(jax.grad(loss)(p), s, p)
      return (jax.tree.map(jnp.add, p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None,
                                  length=steps)
    return params

  def scores(key):
    keys = jax.random.split(key, config.score_runs)
    params = jax.vmap(lambda k: fit(k, jnp.ones(n), config.score_steps))(keys)
    logits = jax.vmap(lambda p: _mlp(p, xtr)[0])(params)

    def example_loss(p, x, y):
      return ce(_mlp(p, x[None])[0], y[None])[0]

    grads = jax.vmap(lambda p: jax.vmap(jax.grad(example_loss),
                                        in_axes=(None, 0, 0))(p, xtr, ytr)
                     )(params)
    return el2n(logits, ytr), grand(grads, seed_axis=True)

  scores = jax.jit(scores, compiler_options=compiler_options)

  def train_eval(key, w):
    params = fit(key, w, config.steps)
    return jnp.mean((jnp.argmax(_mlp(params, xte)[0], -1) == yte)
                    .astype(jnp.float32))

  train_eval = jax.jit(jax.vmap(train_eval), compiler_options=compiler_options)

  seeds = list(range(config.seeds))
  fracs = list(config.keep_fractions)
  keys = [jax.random.key(s) for s in seeds]
  score_by = {"EL2N": [], "GraNd": []}
  for k in keys:
    e, g = scores(jax.random.fold_in(k, 7))
    score_by["EL2N"].append(e)
    score_by["GraNd"].append(g)
  init_keys = jnp.stack([jax.random.fold_in(k, 1) for k in keys])

  acc = {a: {f: None for f in fracs} for a in arm_names}
  for f in fracs:
    for a in arm_names:
      ws = []
      for i, k in enumerate(keys):
        if a == "random":
          idx = jax.random.permutation(jax.random.fold_in(k, 2), n)[
              :prune(jnp.zeros(n), keep_fraction=f).shape[0]]
        else:
          idx = prune(score_by[a][i], keep_fraction=f, keep="hard")
        ws.append(jnp.zeros(n).at[idx].set(1.0))
      acc[a][f] = np.asarray(train_eval(init_keys, jnp.stack(ws))).tolist()
    print(f"  keep {f:.0%}: " + ", ".join(
        f"{a} {np.mean(acc[a][f]):.4f}" for a in arm_names), flush=True)

  full = np.asarray(train_eval(init_keys, jnp.ones((len(seeds), n)))).tolist()
  hf = config.headline_fraction
  mean = {a: {f: float(np.mean(acc[a][f])) for f in fracs} for a in arm_names}
  held = bool(mean["EL2N"][hf] >= mean["random"][hf])
  checks = [(f"EL2N ≥ random at keep {hf:.0%} (decides `held`)", held)]
  checks += [(f"{a} ≥ random at keep {f:.0%}",
              bool(mean[a][f] >= mean["random"][f]))
             for a in arm_names if a != "random" for f in fracs
             if not (a == "EL2N" and f == hf)]
  verdict = (
      f"Mean test accuracy over {len(seeds)} seeds (full data "
      f"{np.mean(full):.4f}): " + "; ".join(
          f"keep {f:.0%}: " + ", ".join(f"{a} {mean[a][f]:.4f}"
                                        for a in arm_names) for f in fracs)
      + f" — EL2N ≥ random at {hf:.0%} {'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(f"test accuracy @ keep {f:.0%}",
                            {a: acc[a][f] for a in arm_names}) for f in fracs]
  metrics.append(harness.metric("test accuracy, full data", {"full": full}))

  fig, ax = plt.subplots(figsize=(6, 4))
  for i, a in enumerate(arm_names):
    m = [mean[a][f] for f in fracs]
    s = [harness.sample_std(acc[a][f]) for f in fracs]
    ax.errorbar(fracs, m, yerr=s, marker="o", capsize=3, label=a, color=f"C{i}")
  ax.axhline(np.mean(full), color="gray", ls="--", label="full data")
  ax.set_xlabel("fraction of training data kept")
  ax.set_ylabel("test accuracy")
  ax.set_title("digits MLP: score-based pruning (keep hard)", fontsize=9)
  ax.legend(fontsize=8)
  harness.save_figure(fig, workdir, "pruning_curve.png")
  notes = harness.checks_markdown(checks)
  notes += ["", f"Scores from {config.score_runs} runs × {config.score_steps} "
            f"Adam steps; final training {config.steps} steps."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline=f"test accuracy @ keep {hf:.0%}", held=held,
              verdict=verdict,
              checks=[dict(check=c, held=ok) for c, ok in checks],
              summary={a: {str(f): v for f, v in d.items()}
                       for a, d in mean.items()},
              full_data_accuracy=float(np.mean(full)), seeds=seeds,
              notes_md="\n".join(notes))
