"""Runner of ``configs/nupes_heavy_tail.py`` (issue 6: NUPES vs uniform)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Quantizes t(ν) and Gaussian layers with each arm, per seed and bit width."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  quantize, nupes = fns[config.quantize_fn], fns[config.nupes_fn]
  nf, deq = fns[config.nf_fn], fns[config.dequantize_fn]
  arm_names = harness.arm_names(config, ("uniform", "NUPES"))
  lay = config.layer
  seeds = list(range(config.seeds))
  exps = jnp.asarray(config.exponents)
  per = {}  # metric name -> arm -> list
  chosen = {b: [] for b in config.bits}

  def rel_err(x, w, w_hat):
    ref = x @ w
    return jnp.sum((x @ w_hat - ref) ** 2) / jnp.sum(ref**2)

  def evaluate(w, xc, xt):
    """All arms and bit widths for one layer (one jitted program)."""
    errs, exps_chosen = {}, {}
    for b in config.bits:
      for arm in arm_names:
        if arm == "uniform":
          w_hat = deq(quantize(w, bits=b, axis=0))
        elif arm == "NUPES":
          q, a = nupes(w, bits=b, axis=0, exponents=exps, activations=xc)
          w_hat = deq(q)
          exps_chosen[b] = a
        elif arm == "NF":
          w_hat = deq(nf(w, bits=b, group_size=None, axis=0))
        else:
          raise ValueError(f"unknown arm {arm!r}")
        errs[(b, arm)] = rel_err(xt, w, w_hat)
    return errs, exps_chosen

  evaluate = jax.jit(evaluate)
  for seed in seeds:
    kw, kc, kt, kg = jax.random.split(jax.random.key(seed), 4)
    layers = {
        "t": jax.random.t(kw, lay["df"], (lay["n_in"], lay["n_out"])) * 0.02,
        "gauss": jax.random.normal(kg, (lay["n_in"], lay["n_out"])) * 0.02,
    }
    xc = jax.random.normal(kc, (lay["n_calib"], lay["n_in"]))
    xt = jax.random.normal(kt, (lay["n_test"], lay["n_in"]))
    for dist, w in layers.items():
      errs, a = jax.device_get(evaluate(w, xc, xt))
      for (b, arm), e in errs.items():
        name = f"rel. output error W{b} ({dist})"
        per.setdefault(name, {n: [] for n in arm_names})[arm].append(float(e))
      if dist == "t":
        for b in config.bits:
          chosen[b].append(float(a[b]))

  metrics = [harness.metric(k, v, description="‖X(W−Ŵ)‖²/‖XW‖², held-out X")
             for k, v in per.items()]
  key3 = f"rel. output error W{config.bits[0]} (t)"
  m3 = {a: float(np.mean(per[key3][a])) for a in arm_names}
  held = bool(m3["NUPES"] < m3["uniform"])
  checks = [(f"NUPES < uniform at W{config.bits[0]} on t(ν) weights "
             "(decides `held`)", held)]
  for b in config.bits:
    for dist in ("t", "gauss"):
      k = f"rel. output error W{b} ({dist})"
      if k != key3:
        checks.append((f"NUPES < uniform at W{b} ({dist})",
                       bool(np.mean(per[k]["NUPES"]) <
                            np.mean(per[k]["uniform"]))))
  gain = 1 - m3["NUPES"] / m3["uniform"]
  verdict = (
      f"At W{config.bits[0]} on t(ν={lay['df']}) weights, mean relative "
      f"output error over {len(seeds)} seeds: uniform {m3['uniform']:.4f}, "
      f"NUPES {m3['NUPES']:.4f} ({100 * gain:.1f}% lower), "
      + (f"NF {m3['NF']:.4f}; " if "NF" in m3 else "")
      + f"chosen exponents {sorted(set(chosen[config.bits[0]]))} — "
      f"NUPES < uniform {'held' if held else 'did NOT hold'}.")

  fig, axes = plt.subplots(1, len(per), figsize=(3.2 * len(per), 3.2))
  for ax, (k, v) in zip(np.atleast_1d(axes), per.items()):
    for i, a in enumerate(arm_names):
      ax.scatter([i] * len(v[a]), v[a], color=f"C{i}", alpha=0.7)
    ax.set_xticks(range(len(arm_names)))
    ax.set_xticklabels(arm_names, fontsize=7)
    ax.set_title(k, fontsize=8)
    ax.set_yscale("log")
  fig.tight_layout()
  harness.save_figure(fig, workdir, "errors.png")

  notes = harness.checks_markdown(checks)
  notes += ["", "Chosen NUPES exponents (t layer): " + ", ".join(
      f"W{b}: {chosen[b]}" for b in config.bits)]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline=key3, held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              chosen_exponents={f"W{b}": chosen[b] for b in config.bits},
              seeds=seeds, notes_md="\n".join(notes))
