"""Runner of ``configs/conr_longtail_regression.py`` (issue 3: ConR vs MSE).

Generates a regression task whose training-target histogram is long-tailed
(bins of width 1 on [0, 10) with geometrically decaying counts) and a
balanced test set, then trains the same MLP regressor with MSE and with
MSE + ConR (seeds vmapped, one jitted ``lax.scan`` per arm) and reports the
test MAE in the many-, medium- and few-shot target regions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from experiments import harness

REGIONS = ("few-shot MAE", "medium-shot MAE", "many-shot MAE", "overall MAE")


def make_long_tailed(*, dim, head_count, decay, min_count, test_per_bin,
                     num_bins, split_seed):
  """Returns (x_train, y_train, x_test, y_test, train count per bin)."""
  rng = np.random.RandomState(split_seed)
  a, b, c = rng.randn(3, dim) / np.sqrt(dim)
  pool = 40000
  x = rng.randn(pool, dim).astype(np.float32)
  s = x @ a + 0.5 * np.sin(3.0 * x @ b) + 0.3 * (x @ c) ** 2
  s = (s - s.mean()) / s.std()
  y = (num_bins * scipy.stats.norm.cdf(s)).astype(np.float32)
  y = np.clip(y + 0.05 * rng.randn(pool).astype(np.float32), 0, num_bins - 1e-3)
  bins = np.floor(y).astype(int)
  counts = np.maximum(np.round(head_count * decay ** np.arange(num_bins)),
                      min_count).astype(int)
  tr, te = [], []
  for k in range(num_bins):
    idx = rng.permutation(np.flatnonzero(bins == k))
    tr.append(idx[:counts[k]])
    te.append(idx[counts[k]:counts[k] + test_per_bin])
  tr, te = np.concatenate(tr), np.concatenate(te)
  return x[tr], y[tr], x[te], y[te], counts


def _init(key, sizes):
  layers = []
  for k, (m, n) in zip(jax.random.split(key, len(sizes) - 1),
                       zip(sizes[:-1], sizes[1:])):
    layers.append(dict(w=jax.random.normal(k, (m, n)) * jnp.sqrt(2.0 / m),
                       b=jnp.zeros((n,))))
  return layers


def _forward(layers, x):
  h = x
  for p in layers[:-1]:
    h = jax.nn.relu(h @ p["w"] + p["b"])
  return (h @ layers[-1]["w"] + layers[-1]["b"])[:, 0], h


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains MSE and MSE + ConR over all seeds; MAE per shot region."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = harness.arm_names(config, ("MSE", "MSE+ConR"))
  conr_fn, mean_fn = fns[config.conr_fn], fns[config.mean_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  xtr, ytr, xte, yte, counts = make_long_tailed(**config.task)
  bins_te = np.floor(yte).astype(int)
  region = np.where(counts[bins_te] < config.few_shot_below, 0,
                    np.where(counts[bins_te] < config.many_shot_from, 1, 2))
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.arange(config.seeds)))
  sizes = (xtr.shape[1], *config.hidden, 1)
  opts = dict(config.get("compiler_options", {})) or None

  def make(arm):
    w = float(arm["conr"])

    def loss(p, xb, yb):
      pred, feats = _forward(p, xb)
      total = mean_fn(jnp.square(pred - yb))
      if w:
        total += w * mean_fn(conr_fn(feats, yb, jax.lax.stop_gradient(pred),
                                     **config.conr_kw))
      return total

    def train(key, data):
      xtr, ytr, xte, _ = data
      params = _init(jax.random.fold_in(key, 0), sizes)

      def step(carry, k):
        p, s = carry
        idx = jax.random.choice(k, xtr.shape[0], (config.batch_size,),
                                replace=False)
        g = jax.grad(loss)(p, xtr[idx], ytr[idx])
        u, s = opt.update(g, s, p)
        return (jax.tree.map(jnp.add, p, u), s), None

      ks = jax.random.split(jax.random.fold_in(key, 1), config.steps)
      (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), ks)
      return _forward(params, xte)[0]

    return jax.jit(jax.vmap(train, in_axes=(0, None)), compiler_options=opts)

  per_seed = {r: {} for r in REGIONS}
  bin_mae = {}
  for arm in config.arms:
    with harness.transfer_guard(config):
      pred = make(arm)(keys, data)
    err = np.abs(np.asarray(jax.device_get(pred)) - yte[None])   # [S, N]
    for r, name in enumerate(REGIONS[:3]):
      per_seed[name][arm["name"]] = err[:, region == r].mean(1).tolist()
    per_seed["overall MAE"][arm["name"]] = err.mean(1).tolist()
    bin_mae[arm["name"]] = [err[:, bins_te == k].mean()
                            for k in range(len(counts))]
    print(f"  {arm['name']:9s} " + "  ".join(
        f"{r.split()[0]} {np.mean(per_seed[r][arm['name']]):.3f}"
        for r in REGIONS), flush=True)
  mean = {r: {a: float(np.mean(v)) for a, v in per_seed[r].items()}
          for r in REGIONS}
  few = mean["few-shot MAE"]
  held = bool(few["MSE+ConR"] < few["MSE"])
  many = mean["many-shot MAE"]
  many_ok = bool(many["MSE+ConR"] <= many["MSE"] * 1.1)
  checks = [("few-shot MAE(MSE+ConR) < few-shot MAE(MSE) (decides `held`)",
             held),
            ("many-shot MAE(MSE+ConR) within 10 % of MSE", many_ok)]
  verdict = (
      f"Test MAE over {config.seeds} seeds, few-shot: MSE {few['MSE']:.3f}, "
      f"MSE+ConR {few['MSE+ConR']:.3f}; many-shot: MSE {many['MSE']:.3f}, "
      f"MSE+ConR {many['MSE+ConR']:.3f} — lower few-shot MAE with ConR "
      f"{'held' if held else 'did NOT hold'}.")

  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  axes[0].bar(np.arange(len(counts)) + 0.5, counts, width=0.9, color="gray")
  axes[0].set_yscale("log")
  axes[0].set_xlabel("target")
  axes[0].set_ylabel("training examples per bin")
  axes[0].set_title("long-tailed training targets", fontsize=9)
  for i, a in enumerate(names):
    axes[1].plot(np.arange(len(counts)) + 0.5, bin_mae[a], "o-", color=f"C{i}",
                 label=a)
  axes[1].set_xlabel("target bin")
  axes[1].set_ylabel("test MAE (mean over seeds)")
  axes[1].legend(fontsize=7)
  axes[1].set_title("per-bin test MAE", fontsize=9)
  harness.save_figure(fig, workdir, "mae_per_bin.png")

  notes = harness.checks_markdown(checks)
  notes += ["", f"Training counts per bin: {counts.tolist()} "
            f"({int(counts.sum())} examples); test: "
            f"{config.task['test_per_bin']} per bin. Few-shot bins have < "
            f"{config.few_shot_below} training examples, many-shot ≥ "
            f"{config.many_shot_from}."]
  return dict(
      name=config.name, claim=config.claim,
      arms=[dict(a) for a in config.arms],
      metrics=[harness.metric(r, per_seed[r]) for r in REGIONS],
      headline="few-shot MAE", held=held, verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks],
      summary=mean, seeds=list(range(config.seeds)),
      notes_md="\n".join(notes))
