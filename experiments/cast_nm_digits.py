"""Runner of ``configs/cast_nm_digits.py`` (issue 7: CAST-lite vs one-shot 2:4).

A dense ReLU MLP is trained on digits (full-batch Adam, seeds vmapped); it is
also the teacher. From its weights, every arm produces a 2:4-sparse MLP (all
three kernels, groups of 4 along the input axis) in the same number of steps:

* ``one-shot 2:4``: ``jaxkit.sparsity.nm_prune`` of the dense weights, no
  training (for scale);
* ``one-shot 2:4 + FT``: prune, then fine-tune with
  ``jaxkit.sparsity.masked(optax.adam)`` on cross-entropy;
* ``one-shot 2:4 + FT + KD``: the same with the dense teacher's KD term;
* ``CAST-lite``: dense training continues with
  ``optax.chain(optax.scale_by_adam(), jaxkit.sparsity.cast_l1_decay(λ_t),
  optax.scale(-lr))`` (the masked L1 decay on the weights outside the current
  2:4 mask, re-masked every 10 steps, λ_t ramped linearly from 0) on CE + KD,
  then the hard 2:4 mask is applied once at the end.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import harness
from experiments.kd_digits import load_split

METRICS = ("test accuracy", "test loss")


def _he(key, a, b):
  return jax.random.normal(key, (a, b)) * jnp.sqrt(2.0 / a)


def _init(key, sizes):
  keys = jax.random.split(key, len(sizes) - 1)
  return [dict(w=_he(k, a, b), b=jnp.zeros(b))
          for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def _mlp(params, x):
  h = x
  for p in params[:-1]:
    h = jax.nn.relu(h @ p["w"] + p["b"])
  return h @ params[-1]["w"] + params[-1]["b"]


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the dense model, then every sparse arm, over all seeds."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  ce, kd = fns[config.ce_fn], fns[config.kd_fn]
  nm_prune, masked = fns[config.nm_prune_fn], fns[config.masked_fn]
  cast_decay = fns[config.cast_decay_fn]
  compiler_options = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  seeds = list(range(config.seeds))
  sizes = (xtr.shape[1], *config.hidden, 10)
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  lr, steps = config.learning_rate, config.steps
  prune_kw = dict(n=config.n, m=config.m)

  def evaluate(params, xte, yte):
    logits = _mlp(params, xte)
    return {"test accuracy": jnp.mean((jnp.argmax(logits, -1) == yte)
                                      .astype(jnp.float32)),
            "test loss": jnp.mean(ce(logits, yte))}

  def scan_train(params, tx, loss, n_steps, after=lambda p: p):
    def step(carry, _):
      p, s = carry
      u, s = tx.update(jax.grad(loss)(p), s, p)
      return (optax.apply_updates(p, u), s), None
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None,
                                  length=n_steps)
    return after(params)

  def dense(key, data):
    xtr, ytr, xte, yte = data
    params = _init(key, sizes)
    params = scan_train(params, optax.adam(lr),
                        lambda p: jnp.mean(ce(_mlp(p, xtr), ytr)),
                        config.dense_steps)
    return params, evaluate(params, xte, yte)

  with harness.transfer_guard(config):
    teacher, t_metrics = jax.jit(jax.vmap(dense, in_axes=(0, None)),
                                 compiler_options=compiler_options)(keys, data)

  def make(arm):
    def train(teacher, data):
      xtr, ytr, xte, yte = data
      t_logits = _mlp(teacher, xtr)

      def loss(p):
        logits = _mlp(p, xtr)
        total = jnp.mean(ce(logits, ytr))
        if arm["kd"]:
          total += arm["kd"] * jnp.mean(kd(logits, t_logits, **config.kd_kw))
        return total

      if arm["kind"] == "oneshot":
        params, _ = nm_prune(teacher, **prune_kw)
        if arm["finetune"]:
          params, masks = nm_prune(teacher, **prune_kw)
          params = scan_train(params, masked(optax.adam(lr), masks), loss,
                              steps)
      else:   # CAST-lite
        sched = optax.linear_schedule(0.0, config.cast_strength, steps)
        tx = optax.chain(optax.scale_by_adam(),
                         cast_decay(sched, every=config.cast_every, **prune_kw),
                         optax.scale(-lr))
        params = scan_train(teacher, tx, loss, steps,
                            after=lambda p: nm_prune(p, **prune_kw)[0])
      return evaluate(params, xte, yte)
    return jax.jit(jax.vmap(train, in_axes=(0, None)),
                   compiler_options=compiler_options)

  per_seed = {k: {} for k in METRICS}
  for arm in config.arms:
    with harness.transfer_guard(config):
      m = jax.device_get(make(arm)(teacher, data))
    for k in METRICS:
      per_seed[k][arm["name"]] = np.asarray(m[k]).tolist()
    print(f"  {arm['name']:24s} test acc {np.mean(m['test accuracy']):.4f} "
          f"loss {np.mean(m['test loss']):.4f}", flush=True)
  t_metrics = jax.device_get(t_metrics)
  for k in METRICS:
    per_seed[k]["dense (teacher)"] = np.asarray(t_metrics[k]).tolist()
  names = harness.arm_names(config, ("one-shot 2:4 + FT", "CAST-lite"))
  acc = {a: float(np.mean(v)) for a, v in per_seed["test accuracy"].items()}
  held = bool(acc["CAST-lite"] >= acc["one-shot 2:4 + FT"])
  checks = [("CAST-lite ≥ one-shot 2:4 + FT (decides `held`)", held)]
  if "one-shot 2:4 + FT + KD" in acc:
    checks.append(("CAST-lite ≥ one-shot 2:4 + FT + KD",
                   bool(acc["CAST-lite"] >= acc["one-shot 2:4 + FT + KD"])))
  fmt = ", ".join(f"{a} {acc[a]:.4f}" for a in names + ["dense (teacher)"])
  verdict = (f"Mean 2:4 test accuracy over {len(seeds)} seeds: {fmt} — "
             f"CAST-lite ≥ one-shot 2:4 + FT {'held' if held else 'did NOT hold'}.")

  fig, ax = plt.subplots(figsize=(7, 3.6))
  allnames = names + ["dense (teacher)"]
  for i, a in enumerate(allnames):
    v = per_seed["test accuracy"][a]
    ax.scatter([i] * len(v), v, color=f"C{i}", alpha=0.7)
    ax.errorbar(i + 0.15, np.mean(v), yerr=harness.sample_std(v), fmt="o",
                color="k", capsize=3)
  ax.set_xticks(range(len(allnames)))
  ax.set_xticklabels(allnames, fontsize=7)
  ax.set_ylabel("test accuracy")
  harness.save_figure(fig, workdir, "accuracy.png")
  notes = harness.checks_markdown(checks)
  notes += ["", f"MLP {' → '.join(map(str, sizes))}; every kernel {config.n}:"
            f"{config.m} along its input axis; {steps} steps per arm after "
            f"{config.dense_steps} dense steps."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per_seed[k]) for k in METRICS],
              headline="test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
