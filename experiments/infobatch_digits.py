"""Runner of ``configs/infobatch_digits.py`` (issue 10: InfoBatch vs random).

Per seed (vmapped): the full arm, then InfoBatch (recording its per-epoch
subset sizes), then random pruning with the same sizes. Variable-size
epochs are run as a fixed scan over ``N / batch`` minibatch slots in which
the slots past the epoch's subset are skipped (no update, not counted).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split
from experiments.maskllm_digits import init_mlp
from experiments.maskllm_digits import mlp
from experiments.maskllm_digits import seed_plot

METRICS = ("test accuracy", "relative cost")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the three arms per seed."""
  seeds = list(range(config.seeds))
  names = harness.arm_names(config, ("full", "InfoBatch", "random pruning"))
  ce, adam, select = (fns[config.ce_fn], fns[config.optimizer_fn],
                      fns[config.select_fn])
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  n = xtr.shape[0]
  bs = config.batch_size
  if n % bs:
    raise ValueError(f"batch_size={bs} must divide the training size {n}")
  slots = n // bs
  sizes = (xtr.shape[1], *config.hidden, 10)
  anneal_from = int(config.anneal * config.epochs)
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  opt = adam(learning_rate=config.learning_rate)

  def epoch_train(p, s, xtr, ytr, keep, weights, key):
    """One epoch over the kept examples (packed first, shuffled)."""
    u = jax.random.uniform(key, (n,))
    order = jnp.argsort(jnp.where(keep, u, 2.0 + u))
    count = jnp.sum(keep)
    idx = order.reshape(slots, bs)

    def step(carry, j):
      p, s = carry
      b = idx[j]
      valid = (j * bs + jnp.arange(bs)) < count

      def loss(p):
        l = ce(mlp(p, xtr[b]), ytr[b])
        return jnp.sum(jnp.where(valid, weights[b] * l, 0.0)) / jnp.maximum(
            jnp.sum(valid), 1)

      g = jax.grad(loss)(p)
      u_, s2 = opt.update(g, s, p)
      take = jnp.any(valid)
      p2 = jax.tree.map(lambda a, d: jnp.where(take, a + d, a), p, u_)
      s2 = jax.tree.map(lambda a, c: jnp.where(take, a, c), s2, s)
      return (p2, s2), None

    (p, s), _ = jax.lax.scan(step, (p, s), jnp.arange(slots))
    return p, s, count

  def per_seed(key, data):
    xtr, ytr, xte, yte = data
    k_init, k_run = jax.random.split(key)
    init = init_mlp(k_init, sizes)

    def train(kind, sizes_in=None):
      def epoch(carry, e):
        p, s, scores = carry
        ke = jax.random.fold_in(k_run, e)
        k_sel, k_ord = jax.random.split(ke)
        ones = jnp.ones((n,), bool)
        if kind == "full":
          keep, w = ones, jnp.ones((n,))
        elif kind == "infobatch":
          keep, w = select(k_sel, scores, keep_ratio=config.keep_ratio)
          keep = jnp.where(e >= anneal_from, ones, keep)
          w = jnp.where(e >= anneal_from, jnp.ones((n,)), w)
        else:
          rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_sel, (n,))))
          keep, w = rank < sizes_in[e], jnp.ones((n,))
        p, s, count = epoch_train(p, s, xtr, ytr, keep, w, k_ord)
        losses = ce(mlp(p, xtr), ytr)
        scores = jnp.where(keep, losses, scores)
        return (p, s, scores), count

      (p, _, _), counts = jax.lax.scan(
          epoch, (init, opt.init(init), jnp.ones((n,))),
          jnp.arange(config.epochs))
      acc = jnp.mean((jnp.argmax(mlp(p, xte), -1) == yte)
                     .astype(jnp.float32))
      return acc, counts

    out = {}
    out["full"] = train("full")
    out["InfoBatch"] = train("infobatch")
    out["random pruning"] = train("random", out["InfoBatch"][1])
    return out

  with harness.transfer_guard(config):
    out = jax.jit(jax.vmap(per_seed, in_axes=(0, None)),
                  compiler_options=copts)(keys, data)
  out = jax.device_get(out)
  per = {k: {} for k in METRICS}
  for a in names:
    acc, counts = out[a]
    per["test accuracy"][a] = np.asarray(acc).tolist()
    per["relative cost"][a] = (np.asarray(counts).sum(-1)
                               / (n * config.epochs)).tolist()
  mean = {k: {a: float(np.mean(v)) for a, v in per[k].items()} for k in per}
  for a in names:
    print(f"  {a:16s} test acc {mean['test accuracy'][a]:.4f} cost "
          f"{mean['relative cost'][a]:.3f}", flush=True)
  acc = mean["test accuracy"]
  c_rand = acc["InfoBatch"] > acc["random pruning"]
  c_full = acc["InfoBatch"] >= acc["full"] - config.tolerance
  held = bool(c_rand and c_full)
  checks = [("InfoBatch accuracy > random pruning at equal cost (decides "
             "`held`)", bool(c_rand)),
            (f"InfoBatch accuracy ≥ full − {config.tolerance} (decides "
             "`held`)", bool(c_full))]
  wins = int(np.sum(np.asarray(per["test accuracy"]["InfoBatch"])
                    > np.asarray(per["test accuracy"]["random pruning"])))
  verdict = (f"Mean test accuracy over {len(seeds)} seeds: full "
             f"{acc['full']:.4f}, InfoBatch {acc['InfoBatch']:.4f}, random "
             f"pruning {acc['random pruning']:.4f} at cost "
             f"{mean['relative cost']['InfoBatch']:.3f} of full (InfoBatch > "
             f"random on {wins}/{len(seeds)} seeds) — "
             f"{'held' if held else 'did NOT hold'}.")
  seed_plot(per["test accuracy"], names, "test accuracy", workdir,
            "accuracy.png", "digits MLP, dynamic data pruning")
  notes = harness.checks_markdown(checks)
  notes += ["", f"MLP {' → '.join(map(str, sizes))}; {config.epochs} epochs "
            f"of minibatches of {bs}; InfoBatch keep_ratio "
            f"{config.keep_ratio}, full data from epoch {anneal_from} on. "
            "SeTa (the catalog's third arm) is not in jaxkit.selection."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per[k]) for k in METRICS],
              headline="test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
