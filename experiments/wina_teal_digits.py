"""Runner of ``configs/wina_teal_digits.py`` (issue 10: WINA vs TEAL)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split
from experiments.maskllm_digits import mlp
from experiments.maskllm_digits import train_dense

METRICS = ("layer-output error", "relative logit error", "test accuracy")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the dense MLP per seed, then sparsifies its activations."""
  seeds = list(range(config.seeds))
  names = harness.arm_names(config)
  methods = tuple(config.methods)
  if set(methods) != {"TEAL", "WINA"}:
    raise ValueError(f"config.methods must be ('TEAL', 'WINA'), got {methods}")
  ce, adam = fns[config.ce_fn], fns[config.optimizer_fn]
  select = {"TEAL": lambda x, w, s: fns[config.teal_fn](x, sparsity=s),
            "WINA": lambda x, w, s: fns[config.wina_fn](x, w, sparsity=s)}
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  sizes = (xtr.shape[1], *config.hidden, 10)
  sparsities = [float(s) for s in config.sparsities]
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))

  def sparse_forward(params, x, method, s):
    h, errs = x, []
    for i, p in enumerate(params):
      keep = select[method](h, p["w"], s)
      full = h @ p["w"]
      z = jnp.where(keep, h, 0.0) @ p["w"]
      errs.append(jnp.sum(jnp.square(z - full)) / jnp.sum(jnp.square(full)))
      h = z + p["b"]
      if i < len(params) - 1:
        h = jax.nn.relu(h)
    return h, jnp.mean(jnp.stack(errs))

  def per_seed(key, data):
    xtr, ytr, xte, yte = data
    params = train_dense(key, xtr, ytr, sizes=sizes,
                         steps=config.dense_steps,
                         learning_rate=config.learning_rate, ce=ce, adam=adam)
    dense = mlp(params, xte)
    out = {"dense": jnp.mean((jnp.argmax(dense, -1) == yte)
                             .astype(jnp.float32))}
    for arm in config.arms:
      logits, err = sparse_forward(params, xte, arm["method"],
                                   float(arm["sparsity"]))
      out[arm["name"]] = {
          "layer-output error": err,
          "relative logit error": (jnp.sum(jnp.square(logits - dense))
                                   / jnp.sum(jnp.square(dense))),
          "test accuracy": jnp.mean((jnp.argmax(logits, -1) == yte)
                                    .astype(jnp.float32))}
    return out

  with harness.transfer_guard(config):
    out = jax.jit(jax.vmap(per_seed, in_axes=(0, None)),
                  compiler_options=copts)(keys, data)
  out = jax.device_get(out)
  per = {k: {a: np.asarray(out[a][k]).tolist() for a in names}
         for k in METRICS}
  per["test accuracy"]["dense"] = np.asarray(out["dense"]).tolist()
  mean = {k: {a: float(np.mean(v)) for a, v in per[k].items()} for k in per}
  for a in names:
    print(f"  {a:10s} layer err {mean[METRICS[0]][a]:.4g} logit err "
          f"{mean[METRICS[1]][a]:.4g} acc {mean['test accuracy'][a]:.4f}",
          flush=True)

  def arm(m, s):
    return f"{m} {int(round(100 * s))}%"

  checks, held, parts = [], True, []
  for s in sparsities:
    t, w = arm("TEAL", s), arm("WINA", s)
    ok = mean[METRICS[0]][w] < mean[METRICS[0]][t]
    held = held and ok
    checks.append((f"{w} layer-output error < {t} (decides `held`)", bool(ok)))
    parts.append(f"{int(round(100 * s))}%: TEAL {mean[METRICS[0]][t]:.4g} vs "
                 f"WINA {mean[METRICS[0]][w]:.4g} (accuracy "
                 f"{mean['test accuracy'][t]:.4f} vs "
                 f"{mean['test accuracy'][w]:.4f})")
  for s in sparsities:
    t, w = arm("TEAL", s), arm("WINA", s)
    checks.append((f"{w} test accuracy ≥ {t}",
                   bool(mean["test accuracy"][w] >= mean["test accuracy"][t])))
  held = bool(held)
  verdict = ("Mean layer-output error, " + "; ".join(parts)
             + f" over {len(seeds)} seeds — WINA < TEAL at every sparsity "
             f"{'held' if held else 'did NOT hold'}.")

  harness.plot_sweep(per, methods, sparsities, arm,
                     (METRICS[0], "test accuracy"), "activation sparsity",
                     workdir, baseline="dense", name="sparsity_sweep.png")
  notes = harness.checks_markdown(checks)
  notes += ["", f"MLP {' → '.join(map(str, sizes))}; every layer's input "
            f"sparsified per test example. Dense test accuracy "
            f"{mean['test accuracy']['dense']:.4f}."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per[k]) for k in METRICS],
              headline="layer-output error", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
