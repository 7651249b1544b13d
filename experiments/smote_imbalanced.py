"""Runner of ``configs/smote_imbalanced.py`` (issue 5: SMOTE vs none)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import harness
from experiments.kd_digits import _init_mlp, _mlp  # pylint: disable=g-bad-import-order

METRICS = ("balanced accuracy", "ROC AUC", "minority recall")


def _auc(scores, y):
  """ROC AUC by the rank (Mann–Whitney) formula, ties averaged."""
  from scipy.stats import rankdata  # pylint: disable=g-import-not-at-top
  r = rankdata(scores)
  pos = y == 1
  n1, n0 = pos.sum(), (~pos).sum()
  return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Resamples, trains and evaluates every arm over all seeds."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top

  arm_names = harness.arm_names(config, ("none", "SMOTE"))
  smote, over, under = (fns[config.smote_fn], fns[config.oversample_fn],
                        fns[config.undersample_fn])
  n_train = config.data_kw["n_samples"] // 2
  pad_to = 2 * n_train
  opt = optax.adam(config.learning_rate)
  compiler_options = dict(config.get("compiler_options", {})) or None

  def train(key, x, y, w, xte):
    params = _init_mlp(key, (x.shape[1], config.hidden, 2))

    def loss(p):
      ce = optax.softmax_cross_entropy_with_integer_labels(_mlp(p, x)[0], y)
      return jnp.sum(w * ce) / jnp.sum(w)

    def step(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None,
                                  length=config.steps)
    return jax.nn.softmax(_mlp(params, xte)[0])[:, 1]

  train = jax.jit(train, compiler_options=compiler_options)
  per_seed = {m: {a: [] for a in arm_names} for m in METRICS}
  sizes = {a: [] for a in arm_names}
  for seed in range(config.seeds):
    x, y = fns[config.data_fn](random_state=seed, **config.data_kw)
    x = x.astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, train_size=n_train,
                                          stratify=y, random_state=seed)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    key = jax.random.key(seed)
    k_init, k_res = jax.random.split(key)
    for arm in arm_names:
      if arm == "none":
        xa, ya = xtr, ytr
      elif arm == "SMOTE":
        xa, ya = smote(k_res, xtr, ytr, k_neighbors=config.k_neighbors)
      elif arm == "random oversample":
        xa, ya = over(k_res, xtr, ytr)
      elif arm == "random undersample":
        xa, ya = under(k_res, xtr, ytr)
      elif arm == "SMOTE + undersample":
        xa, ya = smote(k_res, xtr, ytr, k_neighbors=config.k_neighbors,
                       sampling_strategy=0.5)
        xa, ya = under(jax.random.fold_in(k_res, 1), xa, ya)
      else:
        raise ValueError(f"unknown arm {arm!r}")
      xa, ya = np.asarray(xa), np.asarray(ya)
      m = len(ya)
      sizes[arm].append(m)
      xp = np.zeros((pad_to, xa.shape[1]), np.float32)
      yp = np.zeros((pad_to,), np.int32)
      wp = np.zeros((pad_to,), np.float32)
      xp[:m], yp[:m], wp[:m] = xa, ya, 1.0
      prob = np.asarray(train(k_init, xp, yp, wp, xte))
      pred = prob > 0.5
      rec1 = float(np.mean(pred[yte == 1]))
      rec0 = float(np.mean(~pred[yte == 0]))
      per_seed["balanced accuracy"][arm].append(0.5 * (rec0 + rec1))
      per_seed["ROC AUC"][arm].append(_auc(prob, yte))
      per_seed["minority recall"][arm].append(rec1)
    print(f"  seed {seed}: " + ", ".join(
        f"{a} {per_seed['balanced accuracy'][a][-1]:.3f}" for a in arm_names),
          flush=True)

  mean = {m: {a: float(np.mean(v)) for a, v in d.items()}
          for m, d in per_seed.items()}
  bal = mean["balanced accuracy"]
  held = bool(bal["SMOTE"] > bal["none"])
  checks = [("balanced accuracy: SMOTE > none (decides `held`)", held),
            ("ROC AUC: SMOTE ≥ none",
             mean["ROC AUC"]["SMOTE"] >= mean["ROC AUC"]["none"]),
            ("balanced accuracy: SMOTE ≥ random oversample",
             bal["SMOTE"] >= bal.get("random oversample", -1)),
            ("balanced accuracy: SMOTE + undersample ≥ random undersample",
             bal.get("SMOTE + undersample", -1)
             >= bal.get("random undersample", 2))]
  verdict = (
      f"Mean over {config.seeds} seeds, balanced accuracy: "
      + ", ".join(f"{a} {bal[a]:.4f}" for a in arm_names)
      + "; ROC AUC: " + ", ".join(f"{a} {mean['ROC AUC'][a]:.4f}"
                                  for a in arm_names)
      + f" — SMOTE > none {'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for ax, name in zip(axes, ("balanced accuracy", "ROC AUC")):
    for i, a in enumerate(arm_names):
      v = per_seed[name][a]
      ax.scatter([i] * len(v), v, color=f"C{i}", alpha=0.7)
      ax.errorbar(i + 0.15, np.mean(v), yerr=harness.sample_std(v), fmt="o",
                  color="k", capsize=3)
    ax.set_xticks(range(len(arm_names)))
    ax.set_xticklabels(arm_names, fontsize=7, rotation=15)
    ax.set_ylabel(name)
  axes[0].set_title("imbalanced make_classification (95/5): per seed + mean",
                    fontsize=9)
  harness.save_figure(fig, workdir, "smote_imbalanced.png")
  notes = harness.checks_markdown(checks)
  notes += ["", "Training-set sizes per arm (mean): " + ", ".join(
      f"{a} {np.mean(s):.0f}" for a, s in sizes.items()) + "."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="balanced accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=bool(ok)) for n, ok in checks],
              summary=mean, seeds=list(range(config.seeds)),
              notes_md="\n".join(notes))
