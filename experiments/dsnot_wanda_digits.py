"""Runner of ``configs/dsnot_wanda_digits.py`` (issue 10: DSnoT vs Wanda).

One jitted program per run: seeds and sparsities are both vmapped (the
sparsity is a traced scalar of ``unstructured_mask``), and every method's
sequential layer-by-layer pruning chain is computed inside it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split
from experiments.maskllm_digits import evaluate
from experiments.maskllm_digits import train_dense

METRICS = ("relative reconstruction error", "test loss", "test accuracy")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the dense MLP per seed, prunes it with every method / sparsity."""
  seeds = list(range(config.seeds))
  names = harness.arm_names(config)
  methods = [m["name"] for m in config.methods]
  for needed in ("Wanda", "DSnoT"):
    if needed not in methods:
      raise ValueError(f"config.methods must include {needed!r}, got "
                       f"{methods}")
  ce, adam = fns[config.ce_fn], fns[config.optimizer_fn]
  wanda, umask = fns[config.wanda_fn], fns[config.mask_fn]
  dsnot, rec_err = fns[config.dsnot_fn], fns[config.error_fn]
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  sizes = (xtr.shape[1], *config.hidden, 10)
  sparsities = [float(s) for s in config.sparsities]
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  sp = jax.device_put(jnp.asarray(sparsities, jnp.float32))
  ncal = config.calibration_size

  def chain(params, xcal, s, method):
    """Sequential pruning of every layer; returns kernels and rel. error."""
    h, kernels, num, den = xcal, [], 0.0, 0.0
    for i, p in enumerate(params):
      w = p["w"]
      mask = umask(wanda(w, h), sparsity=s, per="column")
      if method["dsnot"]:
        mask = dsnot(w, mask, h, exact_guard=method["exact_guard"],
                     **config.dsnot_kw)
      num += jnp.sum(rec_err(w, mask, h))
      den += jnp.sum(jnp.square(h @ w))
      wk = jnp.where(mask, w, 0.0)
      kernels.append(wk)
      h = h @ wk + p["b"]
      if i < len(params) - 1:
        h = jax.nn.relu(h)
    return kernels, num / den

  def per_seed(key, sp, data):
    xtr, ytr, xte, yte = data
    params = train_dense(key, xtr, ytr, sizes=sizes,
                         steps=config.dense_steps,
                         learning_rate=config.learning_rate, ce=ce, adam=adam)
    dense = evaluate(params, xte, yte, ce)

    def per_sparsity(s):
      out = {}
      for method in config.methods:
        kernels, err = chain(params, xtr[:ncal], s, method)
        m = evaluate(params, xte, yte, ce, kernels)
        m["relative reconstruction error"] = err
        out[method["name"]] = m
      return out

    return jax.vmap(per_sparsity)(sp), dense

  with harness.transfer_guard(config):
    out, dense = jax.jit(jax.vmap(per_seed, in_axes=(0, None, None)),
                         compiler_options=copts)(keys, sp, data)
  out, dense = jax.device_get((out, dense))
  per = {k: {} for k in METRICS}
  for arm in config.arms:
    j = sparsities.index(float(arm["sparsity"]))
    for k in METRICS:
      per[k][arm["name"]] = np.asarray(out[arm["method"]][k])[:, j].tolist()
  for k in METRICS[1:]:
    per[k]["dense"] = np.asarray(dense[k]).tolist()
  mean = {k: {a: float(np.mean(v)) for a, v in per[k].items()} for k in per}
  for a in names:
    print(f"  {a:24s} rel. err {mean[METRICS[0]][a]:.4f} test loss "
          f"{mean['test loss'][a]:.4f} acc {mean['test accuracy'][a]:.4f}",
          flush=True)

  def arm(method, s):
    return f"{method} {int(round(100 * s))}%"

  checks, gaps = [], []
  held = True
  for s in sparsities:
    w, d = arm("Wanda", s), arm("DSnoT", s)
    c_err = mean[METRICS[0]][d] < mean[METRICS[0]][w]
    c_loss = mean["test loss"][d] < mean["test loss"][w]
    held = held and c_err and c_loss
    checks.append((f"{d} reconstruction error < {w} (decides `held`)",
                   bool(c_err)))
    checks.append((f"{d} test loss < {w} (decides `held`)", bool(c_loss)))
    gaps.append(mean["test loss"][w] - mean["test loss"][d])
  checks.append(("test-loss gain of DSnoT over Wanda grows with sparsity",
                 bool(all(b > a for a, b in zip(gaps, gaps[1:])))))
  if "DSnoT (guarded)" in methods:
    for s in sparsities:
      checks.append((f"{arm('DSnoT (guarded)', s)} reconstruction error ≤ "
                     f"{arm('Wanda', s)}",
                     bool(mean[METRICS[0]][arm("DSnoT (guarded)", s)]
                          <= mean[METRICS[0]][arm("Wanda", s)])))
  held = bool(held)
  parts = []
  for s in sparsities:
    w, d = arm("Wanda", s), arm("DSnoT", s)
    parts.append(f"{int(round(100 * s))}%: rel. error Wanda "
                 f"{mean[METRICS[0]][w]:.4f} vs DSnoT {mean[METRICS[0]][d]:.4f},"
                 f" test loss {mean['test loss'][w]:.4f} vs "
                 f"{mean['test loss'][d]:.4f}")
  verdict = ("; ".join(parts) + f" (means over {len(seeds)} seeds) — DSnoT "
             "below Wanda on both at every sparsity "
             f"{'held' if held else 'did NOT hold'}.")

  harness.plot_sweep(per, methods, sparsities, arm, (METRICS[0], "test loss"),
                     "unstructured sparsity", workdir, baseline="dense",
                     name="sparsity_sweep.png")
  notes = harness.checks_markdown(checks)
  notes += ["", f"MLP {' → '.join(map(str, sizes))}, all kernels pruned "
            f"sequentially on {ncal} calibration examples; DSnoT "
            f"{dict(config.dsnot_kw)}. Dense test loss "
            f"{mean['test loss']['dense']:.4f}, accuracy "
            f"{mean['test accuracy']['dense']:.4f}."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per[k]) for k in METRICS],
              headline="relative reconstruction error", held=held,
              verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
