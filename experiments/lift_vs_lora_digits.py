"""Runner of ``configs/lift_vs_lora_digits.py`` (issue 7: LIFT vs LoRA vs full FT).

Digits are split into a *source* task (classes 0–4) and a *target* task
(classes 5–9). Per seed (vmapped), a ReLU MLP is pre-trained on the source
task; every arm then fine-tunes it on the target task for the same number of
full-batch Adam steps:

* ``full FT``: every weight;
* ``LoRA``: frozen weights + ``U V`` (rank r) on every kernel;
* ``LIFT``: only the top 5 % of ``|W_r|`` entries of every kernel
  (``jaxkit.sparsity.lift_mask``; ``jaxkit.sparsity.masked(...,
  zero_pruned=False)`` freezes the rest);
* ``magnitude 5%`` / ``random 5%``: the same sparse fine-tuning with the top
  5 % ``|W|`` entries or a random 5 %.

Biases are trained in every arm. Accuracy on each task is measured with the
logits restricted to that task's five classes (task-aware evaluation), so the
source accuracy after fine-tuning measures retained source knowledge.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import harness
from experiments.cast_nm_digits import _init, _mlp
from experiments.kd_digits import load_split

METRICS = ("target accuracy", "source accuracy", "mean of both")


def task_data(fns, task):
  """Returns (source, target) dicts of device arrays: xtr, ytr, xte, yte."""
  task = dict(task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  out = []
  for lo in (0, 5):
    tr, te = (ytr >= lo) & (ytr < lo + 5), (yte >= lo) & (yte < lo + 5)
    out.append(jax.device_put(dict(xtr=xtr[tr], ytr=ytr[tr], xte=xte[te],
                                   yte=yte[te])))
  return out


def task_accuracy(logits, y, lo):
  """Accuracy with logits restricted to classes ``lo … lo+4``."""
  pred = jnp.argmax(logits[:, lo:lo + 5], -1) + lo
  return jnp.mean((pred == y).astype(jnp.float32))


def train_steps(params, tx, loss, n_steps):
  """``n_steps`` full-batch steps of ``tx`` on ``loss``; returns the params."""
  def step(carry, _):
    p, s = carry
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, u), s), None
  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None,
                                length=n_steps)
  return params


def pretrain(config, fns, keys, src, sizes, compiler_options):
  """Per-seed source-task pre-training (vmapped); returns the params."""
  ce = fns[config.ce_fn]

  def one(key, src):
    params = _init(key, sizes)
    return train_steps(
        params, optax.adam(config.pretrain_lr),
        lambda p: jnp.mean(ce(_mlp(p, src["xtr"]), src["ytr"])),
        config.pretrain_steps)

  return jax.jit(jax.vmap(one, in_axes=(0, None)),
                 compiler_options=compiler_options)(keys, src)


def evaluate(params, src, tgt):
  t = task_accuracy(_mlp(params, tgt["xte"]), tgt["yte"], 5)
  s = task_accuracy(_mlp(params, src["xte"]), src["yte"], 0)
  return {"target accuracy": t, "source accuracy": s, "mean of both":
          0.5 * (t + s)}


def summarize(config, per_seed, names, primary, rivals, plot_name, workdir,
              extra_checks=()):
  """Checks, verdict and plot shared by the LIFT and DSEE runners."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  mean = {k: {a: float(np.mean(v)) for a, v in d.items()}
          for k, d in per_seed.items()}
  key = config.held_metric
  held = all(mean[key][primary] >= mean[key][r] for r in rivals)
  checks = [(f"{primary} {key} ≥ {' and '.join(rivals)} (decides `held`)",
             bool(held))]
  checks += [(n, bool(ok(mean))) for n, ok in extra_checks]
  fmt = "; ".join(
      f"{a}: target {mean['target accuracy'][a]:.4f}, source "
      f"{mean['source accuracy'][a]:.4f}" for a in names)
  verdict = (f"Mean over {config.seeds} seeds — {fmt}. {primary} ≥ "
             f"{', '.join(rivals)} on {key}: "
             f"{'held' if held else 'did NOT hold'}.")
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, a in enumerate(names):
    ax.scatter(per_seed["target accuracy"][a], per_seed["source accuracy"][a],
               color=f"C{i}", alpha=0.5)
    ax.scatter([mean["target accuracy"][a]], [mean["source accuracy"][a]],
               color=f"C{i}", marker="*", s=150, label=a, edgecolor="k")
  ax.set_xlabel("target-task accuracy (classes 5–9)")
  ax.set_ylabel("source-task accuracy (classes 0–4)")
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, plot_name)
  notes = harness.checks_markdown(checks)
  return bool(held), verdict, checks, notes


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Pre-trains on the source task, fine-tunes every arm on the target task."""
  ce, masked, lift_mask = (fns[config.ce_fn], fns[config.masked_fn],
                           fns[config.lift_mask_fn])
  compiler_options = dict(config.get("compiler_options", {})) or None
  src, tgt = task_data(fns, config.task)
  seeds = list(range(config.seeds))
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  sizes = (64, *config.hidden, 10)
  with harness.transfer_guard(config):
    base = pretrain(config, fns, keys, src, sizes, compiler_options)

  def make_masks(arm):
    """jit(vmap) of the sparse arms' masks (a separate program from training:
    SVD + sort + a long scan in one CPU program deadlocked XLA:CPU once under
    heavy load in this session)."""
    kind, r = arm["kind"], config.rank

    def masks(key, base):
      out = []
      for i, p in enumerate(base):
        w = p["w"]
        if kind == "lift":
          mk = lift_mask(w, rank=r, density=config.density)
        else:
          score = (jnp.abs(w) if kind == "magnitude" else
                   jax.random.uniform(jax.random.fold_in(key, i), w.shape))
          k = max(1, int(round(config.density * w.size)))
          mk = score >= jax.lax.top_k(score.reshape(-1), k)[0][-1]
        out.append(dict(w=mk, b=None))
      return out
    return jax.jit(jax.vmap(masks), compiler_options=compiler_options)

  def make(arm):
    def train(key, base, masks, src, tgt):
      loss_of = lambda p: jnp.mean(ce(_mlp(p, tgt["xtr"]), tgt["ytr"]))
      kind, r = arm["kind"], config.rank
      if kind == "full":
        params = train_steps(base, optax.adam(arm["lr"]), loss_of,
                             config.steps)
      elif kind == "lora":
        keys = jax.random.split(jax.random.fold_in(key, 7), len(base))
        lora = [dict(u=0.01 * jax.random.normal(k, (p["w"].shape[0], r)),
                     v=jnp.zeros((r, p["w"].shape[1])), b=p["b"])
                for k, p in zip(keys, base)]
        merge = lambda lo: [dict(w=p["w"] + l["u"] @ l["v"], b=l["b"])
                            for p, l in zip(base, lo)]
        lora = train_steps(lora, optax.adam(arm["lr"]),
                           lambda lo: loss_of(merge(lo)), config.steps)
        params = merge(lora)
      else:
        tx = masked(optax.adam(arm["lr"]), masks, zero_pruned=False)
        params = train_steps(base, tx, loss_of, config.steps)
      return evaluate(params, src, tgt)
    return jax.jit(jax.vmap(train, in_axes=(0, 0, 0, None, None)),
                   compiler_options=compiler_options)

  per_seed = {k: {} for k in METRICS}
  with harness.transfer_guard(config):
    m0 = jax.device_get(jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)))(
        base, src, tgt))
  for k in METRICS:
    per_seed[k]["pre-trained"] = np.asarray(m0[k]).tolist()
  for arm in config.arms:
    with harness.transfer_guard(config):
      masks = (make_masks(arm)(keys, base) if arm["kind"] not in
               ("full", "lora") else None)
      m = jax.device_get(make(arm)(keys, base, masks, src, tgt))
    for k in METRICS:
      per_seed[k][arm["name"]] = np.asarray(m[k]).tolist()
    print(f"  {arm['name']:14s} target {np.mean(m['target accuracy']):.4f} "
          f"source {np.mean(m['source accuracy']):.4f}", flush=True)
  names = harness.arm_names(config, ("full FT", "LoRA", "LIFT"))
  extra = []
  if "magnitude 5%" in names:
    extra.append(("LIFT target accuracy ≥ magnitude 5%", lambda mn: (
        mn["target accuracy"]["LIFT"] >= mn["target accuracy"]["magnitude 5%"])))
  extra.append(("LIFT source accuracy ≥ full FT", lambda mn: (
      mn["source accuracy"]["LIFT"] >= mn["source accuracy"]["full FT"])))
  held, verdict, checks, notes = summarize(
      config, per_seed, names + ["pre-trained"], "LIFT", ["full FT", "LoRA"],
      "target_vs_source.png", workdir, extra)
  notes += ["", f"MLP {' → '.join(map(str, sizes))}; rank {config.rank}; "
            f"density {config.density}; {config.steps} fine-tuning steps."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per_seed[k]) for k in METRICS],
              headline=config.held_metric, held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
