"""Runner of ``configs/gwq_outliers_digits.py`` (issue 10: GWQ outliers)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split
from experiments.maskllm_digits import evaluate
from experiments.maskllm_digits import mlp
from experiments.maskllm_digits import seed_plot
from experiments.maskllm_digits import train_dense

METRICS = ("test loss", "test accuracy", "relative weight error")
_SALIENCY = {"magnitude": "magnitude", "GWQ (grad)": "grad",
             "taylor": "taylor"}


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the dense MLP per seed, then quantizes it with every arm."""
  seeds = list(range(config.seeds))
  names = harness.arm_names(config, ("W3 none", "W3 magnitude",
                                     "W3 GWQ (grad)"))
  ce, adam = fns[config.ce_fn], fns[config.optimizer_fn]
  gwq, deq = fns[config.gwq_fn], fns[config.dequantize_fn]
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  sizes = (xtr.shape[1], *config.hidden, 10)
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  ncal = config.calibration_size

  def per_seed(key, data):
    xtr, ytr, xte, yte = data
    params = train_dense(key, xtr, ytr, sizes=sizes,
                         steps=config.dense_steps,
                         learning_rate=config.learning_rate, ce=ce, adam=adam)
    ws = [p["w"] for p in params]
    grads = jax.grad(lambda k: jnp.mean(ce(mlp(params, xtr[:ncal], k),
                                           ytr[:ncal])))(ws)
    out = {"dense": evaluate(params, xte, yte, ce)}
    for arm in config.arms:
      sal = arm["saliency"]
      qs = []
      for w, g in zip(ws, grads):
        if sal == "none":
          q = gwq(w, None, bits=arm["bits"], outlier_frac=0.0,
                  saliency="magnitude", **config.quant_kw)
        else:
          q = gwq(w, g, bits=arm["bits"], outlier_frac=config.outlier_frac,
                  saliency=_SALIENCY[sal], **config.quant_kw)
        qs.append(deq(q, jnp.float32))
      m = evaluate(params, xte, yte, ce, qs)
      m["relative weight error"] = (
          sum(jnp.sum(jnp.square(w - q)) for w, q in zip(ws, qs))
          / sum(jnp.sum(jnp.square(w)) for w in ws))
      out[arm["name"]] = m
    return out

  with harness.transfer_guard(config):
    out = jax.jit(jax.vmap(per_seed, in_axes=(0, None)),
                  compiler_options=copts)(keys, data)
  out = jax.device_get(out)
  per = {k: {a: np.asarray(out[a][k]).tolist() for a in names}
         for k in METRICS}
  for k in METRICS[:2]:
    per[k]["dense"] = np.asarray(out["dense"][k]).tolist()
  mean = {k: {a: float(np.mean(v)) for a, v in per[k].items()} for k in per}
  for a in names:
    print(f"  {a:18s} test loss {mean['test loss'][a]:.4f} acc "
          f"{mean['test accuracy'][a]:.4f} w-err "
          f"{mean['relative weight error'][a]:.4g}", flush=True)
  loss = mean["test loss"]
  c1 = loss["W3 GWQ (grad)"] <= loss["W3 magnitude"]
  c2 = loss["W3 magnitude"] < loss["W3 none"]
  held = bool(c1 and c2)
  checks = [("W3: GWQ (grad) test loss ≤ magnitude (decides `held`)",
             bool(c1)),
            ("W3: magnitude test loss < none (decides `held`)", bool(c2))]
  if "W2 GWQ (grad)" in loss and "W2 magnitude" in loss and "W2 none" in loss:
    checks += [("W2: GWQ (grad) ≤ magnitude",
                bool(loss["W2 GWQ (grad)"] <= loss["W2 magnitude"])),
               ("W2: magnitude < none",
                bool(loss["W2 magnitude"] < loss["W2 none"]))]
  wins = int(np.sum(np.asarray(per["test loss"]["W3 GWQ (grad)"])
                    <= np.asarray(per["test loss"]["W3 magnitude"])))
  verdict = (f"Mean W3 g32 test loss over {len(seeds)} seeds: none "
             f"{loss['W3 none']:.4f}, magnitude {loss['W3 magnitude']:.4f}, "
             f"GWQ (grad) {loss['W3 GWQ (grad)']:.4f} (dense "
             f"{loss['dense']:.4f}; GWQ ≤ magnitude on {wins}/{len(seeds)} "
             f"seeds) — GWQ ≤ magnitude < none "
             f"{'held' if held else 'did NOT hold'}.")
  seed_plot(per["test loss"], names + ["dense"], "test loss", workdir,
            "test_loss.png", "digits MLP, group-wise RTN + 1 % fp16 outliers")
  notes = harness.checks_markdown(checks)
  notes += ["", f"MLP {' → '.join(map(str, sizes))}; all kernels quantized "
            f"({dict(config.quant_kw)}); outliers {config.outlier_frac:.0%} "
            f"per kernel; calibration gradient on {ncal} training examples."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per[k]) for k in METRICS],
              headline="test loss", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
