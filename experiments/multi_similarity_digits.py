"""Runner of ``configs/multi_similarity_digits.py`` (issue 3: MS loss vs contrastive).

Open-world retrieval on scikit-learn's digits: an MLP embedder is trained on
the seen classes (0–4 by default) with each arm's metric-learning loss (random mini-batches, Adam;
seeds in parallel with ``jax.vmap``, one jitted ``lax.scan`` per arm) and
evaluated on the unseen classes (5–9) by Recall@1 (cosine nearest neighbour).
The training and evaluation helpers here are shared with
``experiments/tcm_opis.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import _init_mlp

LOSS_KEYS = ("ms", "ms_mined", "ntxent", "triplet", "tcm")


def load_open_world_split(data_fn, *, train_classes, test_classes):
  """Digits scaled to [0, 1]; (x_train, y_train, x_test, y_test) by class."""
  data = data_fn()
  x = np.asarray(data.data, np.float32) / 16.0
  y = np.asarray(data.target, np.int32)
  tr = np.isin(y, train_classes)
  te = np.isin(y, test_classes)
  return x[tr], y[tr], x[te], y[te]


def embed(layers, x):
  h = x
  for p in layers[:-1]:
    h = jax.nn.relu(h @ p["w"] + p["b"])
  return h @ layers[-1]["w"] + layers[-1]["b"]


def cosine(e):
  z = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
  return z @ z.T


def recall_at_1(e, y):
  """Fraction of queries whose cosine nearest neighbour has the same label."""
  s = cosine(e) - 3.0 * jnp.eye(e.shape[0])
  return jnp.mean((y[jnp.argmax(s, axis=1)] == y).astype(jnp.float32))


def make_trainer(config, fns, arm):
  """Returns jit(vmap(train))(keys, data) -> (final test embeddings, losses)."""
  w = {k: float(arm.get(k, 0.0)) for k in LOSS_KEYS}
  ms_fn = fns[config.ms_fn]
  miner_fn = fns[config.miner_fn]
  ntxent_fn = fns[config.ntxent_fn]
  triplet_fn = fns[config.triplet_fn]
  tcm_fn = fns[config.tcm_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  sizes = (64, *config.hidden, config.embed_dim)
  batch = config.batch_size

  def loss(params, xb, yb):
    e = embed(params, xb)
    total = 0.0
    if w["ms"]:
      total += w["ms"] * jnp.mean(ms_fn(e, yb, **config.ms_kw))
    if w["ms_mined"]:
      pos, neg = miner_fn(e, yb, **config.miner_kw)
      total += w["ms_mined"] * jnp.mean(ms_fn(e, yb, pos_mask=pos,
                                              neg_mask=neg, **config.ms_kw))
    if w["ntxent"]:
      total += w["ntxent"] * jnp.mean(ntxent_fn(e, yb, **config.ntxent_kw))
    if w["triplet"]:
      total += w["triplet"] * triplet_fn(e, yb, **config.triplet_kw)
    if w["tcm"]:
      total += w["tcm"] * tcm_fn(e, yb, **config.tcm_kw)
    return total

  def train(key, data):
    xtr, ytr, xte, _ = data
    params = _init_mlp(jax.random.fold_in(key, 0), sizes)

    def step(carry, k):
      p, s = carry
      idx = jax.random.choice(k, xtr.shape[0], (batch,), replace=False)
      value, g = jax.value_and_grad(loss)(p, xtr[idx], ytr[idx])
      u, s = opt.update(g, s, p)
      return (jax.tree.map(jnp.add, p, u), s), value

    step_keys = jax.random.split(jax.random.fold_in(key, 1), config.steps)
    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)),
                                       step_keys)
    return embed(params, xte), losses

  opts = dict(config.get("compiler_options", {})) or None
  return jax.jit(jax.vmap(train, in_axes=(0, None)), compiler_options=opts)


def train_all_arms(config, fns):
  """Trains every arm for every seed; returns (data, {arm: test embeddings})."""
  task = dict(config.task)
  data = load_open_world_split(fns[task.pop("data_fn")], **task)
  data = jax.device_put(data)
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.arange(config.seeds)))
  out = {}
  for arm in config.arms:
    with harness.transfer_guard(config):
      emb, _ = make_trainer(config, fns, arm)(keys, data)
    out[arm["name"]] = emb
  return data, out


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds and compares Recall@1 on unseen classes."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = harness.arm_names(config, ("contrastive", "multi-similarity"))
  data, embs = train_all_arms(config, fns)
  yte = data[3]
  r1 = {}
  for name in names:
    vals = jax.vmap(recall_at_1, in_axes=(0, None))(embs[name], yte)
    r1[name] = np.asarray(jax.device_get(vals)).tolist()
    print(f"  {name:24s} R@1 {np.mean(r1[name]):.4f} ± "
          f"{harness.sample_std(r1[name]):.4f}", flush=True)
  mean = {a: float(np.mean(v)) for a, v in r1.items()}
  held = bool(mean["multi-similarity"] >= mean["contrastive"])
  checks = [("multi-similarity ≥ contrastive (decides `held`)", held)]
  checks += [(f"{a} ≥ contrastive", bool(mean[a] >= mean["contrastive"]))
             for a in names if a not in ("contrastive", "multi-similarity")]
  verdict = (
      f"Recall@1 on unseen digit classes over {config.seeds} seeds: "
      + ", ".join(f"{a} {mean[a]:.4f}" for a in names)
      + f" — multi-similarity ≥ contrastive {'held' if held else 'did NOT hold'}.")

  fig, ax = plt.subplots(figsize=(6.5, 3.8))
  for i, a in enumerate(names):
    ax.scatter([i] * len(r1[a]), r1[a], color=f"C{i}", alpha=0.7)
    ax.errorbar(i + 0.15, mean[a], yerr=harness.sample_std(r1[a]), fmt="o",
                color="k", capsize=3)
  ax.set_xticks(range(len(names)))
  ax.set_xticklabels(names, fontsize=7)
  ax.set_ylabel("Recall@1 (unseen classes)")
  ax.set_title("digits open-world retrieval: per seed and mean ± std",
               fontsize=9)
  harness.save_figure(fig, workdir, "recall_at_1.png")

  notes = harness.checks_markdown(checks)
  notes += ["", f"Train classes {list(config.task['train_classes'])} "
            f"({int(data[0].shape[0])} images), test classes "
            f"{list(config.task['test_classes'])} ({int(yte.shape[0])} images); "
            f"batch {config.batch_size}, {config.steps} Adam steps."]
  return dict(
      name=config.name, claim=config.claim,
      arms=[dict(a) for a in config.arms],
      metrics=[harness.metric("recall@1", r1)], headline="recall@1",
      held=held, verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks],
      summary=mean, seeds=list(range(config.seeds)),
      notes_md="\n".join(notes))
