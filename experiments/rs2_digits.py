"""Runner of ``configs/rs2_digits.py`` (issue 10: RS2 vs static subsets).

One jitted program: seeds are vmapped, and so are the arms (each arm is a
per-epoch index rule: RS2's ``rs2_indices`` or a fixed index set).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split
from experiments.maskllm_digits import init_mlp
from experiments.maskllm_digits import mlp

METRICS = ("steps to target accuracy", "final test accuracy",
           "reached target (fraction of seeds)")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm per seed; returns time-to-accuracy and final accuracy."""
  seeds = list(range(config.seeds))
  names = harness.arm_names(config, ("RS2", "static random"))
  kinds = [a["kind"] for a in config.arms]
  ce, adam = fns[config.ce_fn], fns[config.optimizer_fn]
  rs2, el2n, prune = (fns[config.rs2_fn], fns[config.el2n_fn],
                      fns[config.prune_fn])
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  n = xtr.shape[0]
  sizes = (xtr.shape[1], *config.hidden, 10)
  subset = math.ceil(config.fraction * n)
  bs = config.batch_size
  if subset % bs:
    raise ValueError(f"batch_size={bs} must divide the per-epoch subset "
                     f"size {subset}")
  steps_per_epoch = subset // bs
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  is_rs2 = jax.device_put(jnp.asarray([k == "rs2" for k in kinds]))

  def per_seed(key, data):
    xtr, ytr, xte, yte = data
    k_init, k_sub, k_rs2, k_order = jax.random.split(key, 4)
    init = init_mlp(k_init, sizes)
    # Proxy model for EL2N: a few full-batch steps on all the data.
    popt = adam(learning_rate=config.proxy_learning_rate)

    def pstep(carry, _):
      p, s = carry
      g = jax.grad(lambda p: jnp.mean(ce(mlp(p, xtr), ytr)))(p)
      u, s = popt.update(g, s, p)
      return (jax.tree.map(jnp.add, p, u), s), None

    (proxy, _), _ = jax.lax.scan(pstep, (init, popt.init(init)), None,
                                 length=config.proxy_steps)
    scores = el2n(mlp(proxy, xtr), ytr)
    static = {"rs2": jnp.zeros((subset,), jnp.int32),
              "random": jax.random.permutation(k_sub, n)[:subset]
              .astype(jnp.int32),
              "hard": prune(scores, keep_fraction=config.fraction,
                            keep="hard"),
              "easy": prune(scores, keep_fraction=config.fraction,
                            keep="easy")}
    static_idx = jnp.stack([static[k] for k in kinds])
    opt = adam(learning_rate=config.learning_rate)

    def train(idx_static, use_rs2):
      def epoch(carry, e):
        p, s = carry
        idx = jnp.where(use_rs2, rs2(k_rs2, n, fraction=config.fraction,
                                     epoch=e), idx_static)
        idx = idx[jax.random.permutation(jax.random.fold_in(k_order, e),
                                         subset)]

        def step(carry, b):
          p, s = carry
          g = jax.grad(lambda p: jnp.mean(ce(mlp(p, xtr[b]), ytr[b])))(p)
          u, s = opt.update(g, s, p)
          return (jax.tree.map(jnp.add, p, u), s), None

        (p, s), _ = jax.lax.scan(step, (p, s),
                                 idx.reshape(steps_per_epoch, bs))
        acc = jnp.mean((jnp.argmax(mlp(p, xte), -1) == yte)
                       .astype(jnp.float32))
        return (p, s), acc

      _, accs = jax.lax.scan(epoch, (init, opt.init(init)),
                             jnp.arange(config.epochs))
      return accs

    return jax.vmap(train)(static_idx, is_rs2)   # [arms, epochs]

  with harness.transfer_guard(config):
    curves = jax.jit(jax.vmap(per_seed, in_axes=(0, None)),
                     compiler_options=copts)(keys, data)
  curves = np.asarray(jax.device_get(curves))   # [seeds, arms, epochs]
  budget = config.epochs * steps_per_epoch
  reached = curves >= config.target_accuracy
  first = np.where(reached.any(-1), reached.argmax(-1) + 1,
                   config.epochs + 1) * steps_per_epoch
  per = {METRICS[0]: {}, METRICS[1]: {}, METRICS[2]: {}}
  for j, a in enumerate(names):
    per[METRICS[0]][a] = first[:, j].tolist()
    per[METRICS[1]][a] = curves[:, j, -1].tolist()
    per[METRICS[2]][a] = reached[:, j].any(-1).astype(float).tolist()
  mean = {k: {a: float(np.mean(v)) for a, v in per[k].items()} for k in per}
  for a in names:
    print(f"  {a:20s} steps to {config.target_accuracy:.0%} "
          f"{mean[METRICS[0]][a]:.0f} final acc {mean[METRICS[1]][a]:.4f}",
          flush=True)
  others = [a for a in names if a != "RS2"]
  c_time = all(mean[METRICS[0]]["RS2"] < mean[METRICS[0]][a] for a in others)
  c_acc = all(mean[METRICS[1]]["RS2"] > mean[METRICS[1]][a] for a in others)
  held = bool(c_time and c_acc)
  checks = [(f"RS2 steps to {config.target_accuracy:.0%} < every static arm "
             "(decides `held`)", bool(c_time)),
            ("RS2 final accuracy > every static arm (decides `held`)",
             bool(c_acc))]
  verdict = (f"Mean steps to {config.target_accuracy:.0%} test accuracy "
             f"(budget {budget}; not reached = {budget + steps_per_epoch}) "
             "and final accuracy over "
             f"{len(seeds)} seeds: "
             + "; ".join(f"{a} {mean[METRICS[0]][a]:.0f} / "
                         f"{mean[METRICS[1]][a]:.4f}" for a in names)
             + f" — RS2 fastest and most accurate "
             f"{'held' if held else 'did NOT hold'}.")
  harness.plot_curves({a: [curves[:, j]] for j, a in enumerate(names)},
                      names, ["test accuracy (x: epoch)"], workdir,
                      "test_accuracy.png")
  notes = harness.checks_markdown(checks)
  notes += ["", f"MLP {' → '.join(map(str, sizes))}; {subset} examples per "
            f"epoch in minibatches of {bs} ({steps_per_epoch} steps per "
            f"epoch), {config.epochs} epochs; EL2N proxy "
            f"{config.proxy_steps} full-batch steps. The x axis of "
            "`test_accuracy.png` counts epochs."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per[k]) for k in METRICS],
              headline="steps to target accuracy", held=held,
              verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
