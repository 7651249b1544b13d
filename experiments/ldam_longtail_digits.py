"""Runner of ``configs/ldam_longtail_digits.py`` (issue 3: LDAM-DRW vs CE).

Builds one exponentially long-tailed training subsample of digits per seed,
then trains every arm from the same per-seed initialisation with full-batch
Adam (one jitted ``lax.scan`` per arm, seeds vmapped) and measures balanced
and tail-class test accuracy.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import _init_mlp
from experiments.kd_digits import load_split

METRICS = ("balanced test accuracy", "tail-class test accuracy")


def long_tail_indices(y, num_classes, *, imbalance, n_max, seed):
  """Indices of an exponential long-tail subsample and its class counts."""
  rng = np.random.RandomState(seed)
  order = rng.permutation(num_classes)  # which class is the head
  counts = np.zeros(num_classes, np.int64)
  idx = []
  for rank, c in enumerate(order):
    n = int(round(n_max * imbalance ** (-rank / (num_classes - 1))))
    pool = np.flatnonzero(y == c)
    n = max(1, min(n, len(pool)))
    idx.append(rng.choice(pool, n, replace=False))
    counts[c] = n
  return np.concatenate(idx), counts


def _forward(params, x, normed):
  h = jax.nn.relu(x @ params[0]["w"] + params[0]["b"])
  w = params[1]["w"]
  if normed:  # cosine classifier (LDAM's NormedLinear)
    h = h / jnp.maximum(jnp.linalg.norm(h, axis=-1, keepdims=True), 1e-6)
    w = w / jnp.maximum(jnp.linalg.norm(w, axis=0, keepdims=True), 1e-6)
    return h @ w
  return h @ w + params[1]["b"]


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; returns the result dict."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("CE", "LDAM-DRW"))
  ce_fn, ldam_fn, drw_fn = (fns[config.ce_fn], fns[config.ldam_fn],
                            fns[config.drw_fn])
  mean, adam = fns[config.mean_fn], fns[config.optimizer_fn]
  compiler_options = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")],
                                  train_size=task["train_size"],
                                  split_seed=task["split_seed"])
  num_classes = 10
  subs = [long_tail_indices(ytr, num_classes, imbalance=task["imbalance"],
                            n_max=task["n_max"], seed=s) for s in seeds]
  # Equal sizes across seeds (same count per rank), so seeds can be vmapped.
  xs = np.stack([xtr[i] for i, _ in subs])
  ys = np.stack([ytr[i] for i, _ in subs])
  counts = np.stack([c for _, c in subs]).astype(np.float32)
  tail = np.stack([np.argsort(c)[:config.tail_classes] for _, c in subs])
  steps = config.steps
  drw_start = int(round(steps * (1 - config.drw_fraction)))
  opt = adam(learning_rate=config.learning_rate)
  sizes = (xtr.shape[1], config.hidden, num_classes)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  data = jax.device_put((xs, ys, counts, tail, xte, yte))

  def per_class_recall(logits, y):
    pred = jnp.argmax(logits, -1)
    onehot = jax.nn.one_hot(y, num_classes)
    hit = jnp.sum(onehot * (pred == y)[:, None], 0)
    return hit / jnp.maximum(jnp.sum(onehot, 0), 1.0)

  def make_train(arm):
    normed = arm["loss"] == "ldam"

    def loss(params, x, y, cnt, step):
      logits = _forward(params, x, normed)
      if normed:
        per_ex = ldam_fn(logits, y, class_counts=cnt, **config.ldam_kw)
      else:
        per_ex = ce_fn(logits, y)
      if arm["drw"]:
        w = drw_fn(cnt, beta=config.drw_beta, step=step, start_step=drw_start)
        return mean(per_ex, weights=w[y])
      return mean(per_ex)

    def train(key, x, y, cnt, tail_c, xte, yte):
      params = _init_mlp(key, sizes)

      def step_fn(carry, step):
        p, s = carry
        g = jax.grad(loss)(p, x, y, cnt, step)
        u, s = opt.update(g, s, p)
        p = jax.tree.map(jnp.add, p, u)
        rec = per_class_recall(_forward(p, xte, normed), yte)
        return (p, s), jnp.mean(rec)

      (params, _), curve = jax.lax.scan(step_fn, (params, opt.init(params)),
                                        jnp.arange(steps))
      rec = per_class_recall(_forward(params, xte, normed), yte)
      return {METRICS[0]: jnp.mean(rec), METRICS[1]: jnp.mean(rec[tail_c])}, curve

    return jax.jit(jax.vmap(train, in_axes=(0, 0, 0, 0, 0, None, None)),
                   compiler_options=compiler_options)

  per_seed = {m: {} for m in METRICS}
  curves = {}
  for arm in config.arms:
    with harness.transfer_guard(config):
      m, curve = make_train(arm)(keys, *data)
    m, curve = jax.device_get((m, curve))
    curves[arm["name"]] = np.asarray(curve)
    for k in METRICS:
      per_seed[k][arm["name"]] = np.asarray(m[k]).tolist()
    print(f"  {arm['name']:9s} balanced acc {np.mean(m[METRICS[0]]):.4f} ± "
          f"{harness.sample_std(m[METRICS[0]]):.4f}  tail acc "
          f"{np.mean(m[METRICS[1]]):.4f}", flush=True)

  bal = {a: float(np.mean(per_seed[METRICS[0]][a])) for a in arm_names}
  tl = {a: float(np.mean(per_seed[METRICS[1]][a])) for a in arm_names}
  held = bool(bal["LDAM-DRW"] > bal["CE"])
  checks = [("LDAM-DRW balanced acc > CE (decides `held`)", held),
            ("LDAM-DRW tail-class acc > CE", bool(tl["LDAM-DRW"] > tl["CE"]))]
  if "LDAM" in bal:
    checks.append(("LDAM balanced acc > CE", bool(bal["LDAM"] > bal["CE"])))
  if "CE-DRW" in bal:
    checks.append(("LDAM-DRW balanced acc > CE-DRW",
                   bool(bal["LDAM-DRW"] > bal["CE-DRW"])))
  verdict = (
      f"Balanced test accuracy over {len(seeds)} seeds: "
      + ", ".join(f"{a} {bal[a]:.4f}" for a in arm_names)
      + "; tail-class accuracy: " + ", ".join(f"{a} {tl[a]:.4f}"
                                              for a in arm_names)
      + f" — LDAM-DRW > CE {'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  fig, ax = plt.subplots(figsize=(6, 3.8))
  for i, a in enumerate(arm_names):
    ax.plot(curves[a].mean(0), color=f"C{i}", label=a)
  ax.axvline(drw_start, color="gray", ls="--", lw=0.8, label="DRW starts")
  ax.set_xlabel("Adam step (full batch)")
  ax.set_ylabel("balanced test accuracy (mean over seeds)")
  ax.set_title(f"long-tailed digits, imbalance {task['imbalance']:g}",
               fontsize=9)
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "balanced_accuracy.png")

  notes = harness.checks_markdown(checks)
  notes += ["", f"Training-set class counts (seed 0, by class): "
            f"{counts[0].astype(int).tolist()} ({int(counts[0].sum())} "
            f"examples); test set: {len(yte)} examples, nearly balanced."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline=METRICS[0], held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
