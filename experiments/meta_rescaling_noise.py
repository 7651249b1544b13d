"""Runner of ``configs/meta_rescaling_noise.py`` (issue 5: meta loss rescaling).

Splits digits once, corrupts the training labels per seed, and trains the MLP
for every arm (arms × seeds vmapped in one jitted ``lax.scan``; the arm picks
its weight rule with ``lax.switch``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import _init_mlp
from experiments.kd_digits import _mlp as _mlp_with_features
from experiments.kd_digits import load_split

METRICS = ("test accuracy", "weight AUROC (clean vs flipped)")


def _mlp(params, x):
  return _mlp_with_features(params, x)[0]


def _auroc(w, clean):
  """P(w_clean > w_flipped) + ½ P(tie) over the pairs of one batch."""
  pos, neg = clean[:, None], ~clean[None, :]
  gt = (w[:, None] > w[None, :]) & pos & neg
  eq = (w[:, None] == w[None, :]) & pos & neg
  n = jnp.sum(pos & neg)
  return jnp.where(n > 0, (jnp.sum(gt) + 0.5 * jnp.sum(eq)) / jnp.maximum(n, 1),
                   0.5)


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; compares clean test accuracy."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("uniform", "L2RW (clean meta set)"))
  meta_fn, lb_fn, ce_fn = (fns[config.meta_fn], fns[config.loss_based_fn],
                           fns[config.ce_fn])
  sgd = fns[config.optimizer_fn]
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task["data_fn"]],
                                  train_size=task["train_size"],
                                  split_seed=task["split_seed"])
  num_classes = 10
  # Clean meta set: the first `meta_per_class` training images of each class.
  meta_idx = np.concatenate([np.flatnonzero(ytr == c)[:task["meta_per_class"]]
                             for c in range(num_classes)])
  rest = np.setdiff1d(np.arange(len(ytr)), meta_idx)
  xm, ym = xtr[meta_idx], ytr[meta_idx]
  xn, yn = xtr[rest], ytr[rest]
  steps, bs, mbs = config.steps, config.batch_size, config.meta_batch_size
  warm = config.warmup_steps
  sizes = (xtr.shape[1], config.hidden, num_classes)
  opt = sgd(config.learning_rate, momentum=config.momentum)
  compiler_options = dict(config.get("compiler_options", {})) or None
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  data = jax.device_put((xn, yn, xm, ym, xte, yte))
  names = [a["name"] for a in config.arms]
  branch_of = {"uniform": 0, "L2RW (clean meta set)": 1,
               "self-taught (pseudo-clean meta)": 2, "LinUpper": 3}
  arm_branch = jax.device_put(jnp.asarray([branch_of[n] for n in names]))

  def per_example(params, batch):
    x, y = batch
    return ce_fn(_mlp(params, x), y)

  def train(branch, key, data):
    xn, yn, xm, ym, xte, yte = data
    kn, kf, kp, kb = jax.random.split(key, 4)
    flip = jax.random.uniform(kn, yn.shape) < task["noise"]
    shift = jax.random.randint(kf, yn.shape, 1, num_classes)
    y_noisy = jnp.where(flip, (yn + shift) % num_classes, yn)
    params = _init_mlp(kp, sizes)

    def step(carry, t):
      p, s = carry
      kt = jax.random.fold_in(kb, t)
      k1, k2 = jax.random.split(kt)
      idx = jax.random.choice(k1, yn.shape[0], (bs,), replace=False)
      midx = jax.random.choice(k2, ym.shape[0], (mbs,), replace=False)
      batch = (xn[idx], y_noisy[idx])
      losses = per_example(p, batch)
      uniform = jnp.full((bs,), 1.0 / bs)

      def l2rw():
        return meta_fn(per_example, p, batch, (xm[midx], ym[midx]),
                       inner_lr=config.inner_lr)

      def self_taught():
        med = jnp.median(losses)
        w = meta_fn(per_example, p, batch, batch, inner_lr=config.inner_lr,
                    meta_where=losses <= med)
        return jnp.where(t < warm, uniform, w)

      def linupper():
        return lb_fn(losses, strategy="linupper")

      w = jax.lax.switch(branch, [lambda: uniform, l2rw, self_taught,
                                  linupper])
      g = jax.grad(lambda q: jnp.sum(w * per_example(q, batch)))(p)
      u, s = opt.update(g, s, p)
      p = jax.tree.map(jnp.add, p, u)
      return (p, s), _auroc(w, ~flip[idx])

    (p, _), aurocs = jax.lax.scan(step, (params, opt.init(params)),
                                  jnp.arange(steps))
    acc = jnp.mean(jnp.argmax(_mlp(p, xte), -1) == yte)
    return acc, jnp.mean(aurocs[-(steps // 4):])

  f = jax.jit(jax.vmap(jax.vmap(train, in_axes=(None, 0, None)),
                       in_axes=(0, None, None)))
  if compiler_options:
    f = f.lower(arm_branch, keys, data).compile(compiler_options)
  with harness.transfer_guard(config):
    acc, auc = f(arm_branch, keys, data)
  acc, auc = jax.device_get((acc, auc))

  per_seed = {m: {} for m in METRICS}
  for i, a in enumerate(names):
    per_seed["test accuracy"][a] = np.asarray(acc[i]).tolist()
    per_seed["weight AUROC (clean vs flipped)"][a] = np.asarray(auc[i]).tolist()
    print(f"  {a:32s} test acc {np.mean(acc[i]):.4f} ± "
          f"{harness.sample_std(acc[i]):.4f}  AUROC {np.mean(auc[i]):.3f}",
          flush=True)
  m = {a: float(np.mean(per_seed["test accuracy"][a])) for a in names}
  au = {a: float(np.mean(per_seed["weight AUROC (clean vs flipped)"][a]))
        for a in names}
  held = bool(m["L2RW (clean meta set)"] > m["uniform"])
  checks = [("L2RW test accuracy > uniform (decides `held`)", held)]
  checks += [(f"{a} test accuracy > uniform", bool(m[a] > m["uniform"]))
             for a in names if a not in ("uniform", "L2RW (clean meta set)")]
  checks += [(f"{a}: weights rank clean above flipped (AUROC > 0.5)",
              bool(au[a] > 0.5)) for a in names if a != "uniform"]
  verdict = (f"Clean test accuracy over {len(seeds)} seeds at "
             f"{task['noise']:.0%} label noise: "
             + ", ".join(f"{a} {m[a]:.4f}" for a in names)
             + "; weight AUROC " + ", ".join(f"{a} {au[a]:.3f}" for a in names)
             + f" — L2RW > uniform {'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  fig, ax = plt.subplots(figsize=(7, 3.8))
  for i, a in enumerate(names):
    v = per_seed["test accuracy"][a]
    ax.scatter([i] * len(v), v, color=f"C{i}", alpha=0.7)
    ax.errorbar(i + 0.15, np.mean(v), yerr=harness.sample_std(v), fmt="o",
                color="k", capsize=3)
  ax.set_xticks(range(len(names)))
  ax.set_xticklabels(names, fontsize=7)
  ax.set_ylabel("clean test accuracy")
  ax.set_title(f"digits, {task['noise']:.0%} symmetric label noise", fontsize=9)
  harness.save_figure(fig, workdir, "test_accuracy.png")

  notes = harness.checks_markdown(checks)
  notes += ["", "Only the first check decides `held`. The uniform arm does not "
            "use the 100 clean meta images (as in L2RW's baseline)."]
  return dict(
      name=config.name, claim=config.claim, arms=[dict(a) for a in config.arms],
      metrics=metrics, headline="test accuracy", held=held, verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks], seeds=seeds,
      notes_md="\n".join(notes))
