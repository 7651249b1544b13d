"""Runner of ``configs/divergence_tour.py``: every divergence on example inputs.

Evaluates each entry of ``config.table`` on its kind of input (categorical
pair, Gaussian pair, sample sets), prints the table, checks textbook
identities numerically and plots the f-generators. All evaluations of one
input kind run in one jitted program.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

INPUT_KINDS = ("categorical", "gaussian", "samples")
LOG2 = math.log(2.0)


def _value(out):
  """Functions returning ``(value, aux)`` (e.g. Sinkhorn) reduce to the value."""
  return out[0] if isinstance(out, tuple) else out


# ----------------------------------------------------------------------------
# Identities. Each: (name, required values, fn(values) -> (lhs, rhs, relation)).
# `values` maps an entry name (or an extra key computed below) to an array of
# shape [cases]; relation '=' (within rtol/atol) or '<=' (up to rtol/atol).
# ----------------------------------------------------------------------------

_CATEGORICAL_IDENTITIES = [
    ("JS ≤ log 2", ["js"], lambda v: (v["js"], LOG2, "<=")),
    ("Pinsker: TV ≤ sqrt(KL/2)", ["tv", "kl"],
     lambda v: (v["tv"], np.sqrt(v["kl"] / 2), "<=")),
    ("squared Hellinger ≤ KL", ["squared_hellinger", "kl"],
     lambda v: (v["squared_hellinger"], v["kl"], "<=")),
    ("D_gan = 2·JS (f_divergence with the 'gan' generator)",
     ["f_divergence(gan)", "js"],
     lambda v: (v["f_divergence(gan)"], 2 * v["js"], "=")),
    ("Jeffreys = KL + reverse KL", ["jeffreys", "kl", "reverse_kl"],
     lambda v: (v["jeffreys"], v["kl"] + v["reverse_kl"], "=")),
    ("reverse_kl(P‖Q) = kl(Q‖P)", ["reverse_kl", "kl(Q‖P)"],
     lambda v: (v["reverse_kl"], v["kl(Q‖P)"], "=")),
    ("Amari α=½ = 2·squared Hellinger",
     ["amari_alpha(0.5)", "squared_hellinger"],
     lambda v: (v["amari_alpha(0.5)"], 2 * v["squared_hellinger"], "=")),
    ("Amari α=2 = ½·Pearson χ²", ["amari_alpha(2)", "pearson_chi2"],
     lambda v: (v["amari_alpha(2)"], v["pearson_chi2"] / 2, "=")),
    ("Rényi α=½ = log(1 + α(α−1)·Amari_α)/(α−1)",
     ["renyi(0.5)", "amari_alpha(0.5)"],
     lambda v: (v["renyi(0.5)"],
                np.log1p(-0.25 * v["amari_alpha(0.5)"]) / -0.5, "=")),
    ("Rényi α=2 = log(1 + α(α−1)·Amari_α)/(α−1)",
     ["renyi(2)", "amari_alpha(2)"],
     lambda v: (v["renyi(2)"], np.log1p(2.0 * v["amari_alpha(2)"]), "=")),
    ("Rényi non-decreasing in α: R_½ ≤ KL", ["renyi(0.5)", "kl"],
     lambda v: (v["renyi(0.5)"], v["kl"], "<=")),
    ("Rényi non-decreasing in α: KL ≤ R_2", ["kl", "renyi(2)"],
     lambda v: (v["kl"], v["renyi(2)"], "<=")),
]

_GAUSSIAN_IDENTITIES = [
    ("Gaussian Rényi non-decreasing in α: R_½ ≤ KL",
     ["gaussian_renyi(0.5)", "gaussian_kl"],
     lambda v: (v["gaussian_renyi(0.5)"], v["gaussian_kl"], "<=")),
    ("Gaussian Rényi non-decreasing in α: KL ≤ R_2",
     ["gaussian_kl", "gaussian_renyi(2)"],
     lambda v: (v["gaussian_kl"], v["gaussian_renyi(2)"], "<=")),
]


def _check(name, lhs, rhs, relation, rtol, atol):
  lhs = np.asarray(lhs, np.float64)
  rhs = np.broadcast_to(np.asarray(rhs, np.float64), lhs.shape)
  tol = atol + rtol * np.abs(rhs)
  if relation == "=":
    gap = np.abs(lhs - rhs) - tol
  else:
    gap = lhs - rhs - tol
  finite = np.all(np.isfinite(lhs)) and np.all(np.isfinite(rhs))
  worst = float(np.max(gap)) if gap.size else 0.0
  return dict(identity=name, held=bool(finite and worst <= 0.0),
              cases=int(lhs.size),
              worst_violation=worst if finite else "non-finite")


def _require(names, values, identity):
  missing = [n for n in names if n not in values]
  if missing:
    raise ValueError(
        f"identity {identity!r} needs table entries {missing}; they are not "
        "in config.table (entries are named in configs/divergence_tour.py)")


# ----------------------------------------------------------------------------
# Inputs.
# ----------------------------------------------------------------------------


def _categorical_inputs(config, seed):
  cat = config.categorical
  p = np.asarray(cat["p"], np.float64)
  q = np.asarray(cat["q"], np.float64)
  for name, v in (("p", p), ("q", q)):
    if v.ndim != 1 or np.any(v < 0) or abs(v.sum() - 1) > 1e-6:
      raise ValueError(f"config.categorical.{name} must be a probability "
                       f"vector, got {v.tolist()}")
  rng = np.random.default_rng(seed)
  k, n = p.size, cat["num_random_pairs"]
  alpha = np.full(k, cat["dirichlet_concentration"])
  rp, rq = rng.dirichlet(alpha, n), rng.dirichlet(alpha, n)
  # Keep every probability representable in float32 (no exact zeros).
  rp, rq = [np.maximum(v, 1e-12) / np.maximum(v, 1e-12).sum(-1, keepdims=True)
            for v in (rp, rq)]
  lp = np.log(np.concatenate([p[None], rp])).astype(np.float32)
  lq = np.log(np.concatenate([q[None], rq])).astype(np.float32)
  return lp, lq   # row 0 is the example pair


def _gaussian_inputs(config):
  g = config.gaussians
  return tuple(np.asarray(g[k], np.float32)
               for k in ("mean_p", "cov_p", "mean_q", "cov_q"))


def _sample_inputs(config, seed):
  mp, cp, mq, cq = _gaussian_inputs(config)
  n = config.samples["num_samples"]
  rng = np.random.default_rng(10_000 + seed)
  x = rng.multivariate_normal(mp, cp, n).astype(np.float32)
  x2 = rng.multivariate_normal(mp, cp, n).astype(np.float32)
  y = rng.multivariate_normal(mq, cq, n).astype(np.float32)
  return x, x2, y


# ----------------------------------------------------------------------------
# Evaluation programs (one jit per input kind).
# ----------------------------------------------------------------------------


def _categorical_program(config, fns, entries, generator_names):
  f_div = fns[config.f_divergence_fn]
  get_gen = fns[config.get_generator_fn]
  dual = fns[config.csiszar_dual_fn]
  gens = []   # (label, generator) for every generator name (+ its params)
  for gname in generator_names:
    for params in config.generator_params.get(gname, [{}]):
      label = gname + ("(" + ",".join(f"{v:g}" for v in params.values()) + ")"
                       if params else "")
      gens.append((label, get_gen(gname, **params)))
  named = []  # entries whose function is named after a generator
  for e in entries:
    base = e["fn"].rsplit(".", 1)[-1]
    if base in generator_names:
      named.append((e["name"], get_gen(base, **e["kw"])))
  kl_fn = next((fns[e["fn"]] for e in entries if e["name"] == "kl"), None)

  def program(lp, lq):
    out = {e["name"]: _value(fns[e["fn"]](lp, lq, **e["kw"])) for e in entries}
    for label, g in gens:
      out[f"D_{label}(P‖Q)"] = f_div(lp, lq, g)
      out[f"D_{label}◇(Q‖P)"] = f_div(lq, lp, dual(g))
    for name, g in named:
      out[f"f_divergence[{name}]"] = f_div(lp, lq, g)
    if kl_fn is not None:
      out["kl(Q‖P)"] = kl_fn(lq, lp)
    return out

  return program, [label for label, _ in gens], [n for n, _ in named]


def _gaussian_program(fns, entries):
  def program(mp, cp, mq, cq):
    out = {e["name"]: _value(fns[e["fn"]](mp, cp, mq, cq, **e["kw"]))
           for e in entries}
    out.update({f"{e['name']}[P‖P]": _value(fns[e["fn"]](mp, cp, mp, cp,
                                                          **e["kw"]))
                for e in entries})
    return out
  return program


def _samples_program(fns, entries):
  def program(x, x2, y):
    out = {e["name"]: _value(fns[e["fn"]](x, y, **e["kw"])) for e in entries}
    out.update({f"{e['name']}[P,P']": _value(fns[e["fn"]](x, x2, **e["kw"]))
                for e in entries})
    return out
  return program


# ----------------------------------------------------------------------------
# Plot.
# ----------------------------------------------------------------------------


def _plot_generators(config, fns, generator_names, workdir):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  get_gen = fns[config.get_generator_fn]
  t = np.linspace(0.0, 4.0, 401)[1:].astype(np.float32)   # (0, 4]
  curves = []
  for gname in generator_names:
    for params in config.generator_params.get(gname, [{}]):
      label = gname + (f" ({', '.join(f'{k}={v:g}' for k, v in params.items())})"
                       if params else "")
      curves.append((label, get_gen(gname, **params)))

  @jax.jit
  def evaluate(t):
    log_t = jnp.log(t)
    return [(g.f(log_t), g.pseudo_reward(log_t)) for _, g in curves]

  values = jax.device_get(evaluate(jax.device_put(t)))
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for i, ((label, _), (f, r)) in enumerate(zip(curves, values)):
    style = dict(color=f"C{i % 10}", ls="-" if i < 10 else "--", label=label)
    axes[0].plot(t, f, **style)
    axes[1].plot(t, r, **style)
  axes[0].set_ylim(-1.5, 4.0)
  axes[0].set_title("f-generators f(t), f(1) = 0", fontsize=10)
  axes[1].set_ylim(-4.0, 4.0)
  axes[1].set_title("f-DPG pseudo-reward f*(f'(t)) = t f'(t) − f(t)",
                    fontsize=10)
  for ax in axes:
    ax.axvline(1.0, color="k", lw=0.5)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("t = p/q")
  axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
  fig.tight_layout()
  return harness.save_figure(fig, workdir, "f_generators.png")


# ----------------------------------------------------------------------------
# Run.
# ----------------------------------------------------------------------------


def _print_table(rows):
  w = max(len(r[0]) for r in rows) + 2
  print(f"\n{'divergence':{w}s}{'input':13s}{'value (example inputs)':26s}"
        "function")
  print("-" * (w + 13 + 26 + 34))
  for name, kind, value, fn in rows:
    print(f"{name:{w}s}{kind:13s}{value:26s}{fn}")
  print(flush=True)


def run(config, workdir: str, fns: Mapping[str, Any]) -> dict[str, Any]:
  """Evaluates the table, checks the identities, plots; returns the result."""
  entries = {k: [] for k in INPUT_KINDS}
  seen = set()
  for e in config.table:
    if e["inputs"] not in INPUT_KINDS:
      raise ValueError(f"table entry {e['name']!r}: inputs must be one of "
                       f"{INPUT_KINDS}, got {e['inputs']!r}")
    if e["name"] in seen:
      raise ValueError(f"duplicate table entry name {e['name']!r}")
    seen.add(e["name"])
    entries[e["inputs"]].append(e)
  generator_names = tuple(fns[config.generator_names_ref])
  seeds = list(range(config.seeds))
  copts = dict(config.get("compiler_options", {})) or None
  jit = functools.partial(jax.jit, compiler_options=copts)

  cat_prog, gen_labels, named = _categorical_program(
      config, fns, entries["categorical"], generator_names)
  cat_prog = jit(cat_prog)
  gauss_prog = jit(_gaussian_program(fns, entries["gaussian"]))
  samp_prog = jit(_samples_program(fns, entries["samples"]))

  per_seed: dict[str, list[float]] = {e["name"]: [] for e in config.table}
  cat_all: dict[str, list[np.ndarray]] = {}
  samp_all: dict[str, list[float]] = {}
  gauss = jax.device_get(gauss_prog(*map(jax.device_put,
                                         _gaussian_inputs(config))))
  for seed in seeds:
    lp, lq = _categorical_inputs(config, seed)
    cat = jax.device_get(cat_prog(jax.device_put(lp), jax.device_put(lq)))
    for k, v in cat.items():
      cat_all.setdefault(k, []).append(np.asarray(v))
    samp = jax.device_get(samp_prog(*map(jax.device_put,
                                         _sample_inputs(config, seed))))
    for k, v in samp.items():
      samp_all.setdefault(k, []).append(float(v))
    for e in entries["categorical"]:
      per_seed[e["name"]].append(float(cat[e["name"]][0]))  # the example pair
    for e in entries["gaussian"]:
      per_seed[e["name"]].append(float(gauss[e["name"]]))
    for e in entries["samples"]:
      per_seed[e["name"]].append(float(samp[e["name"]]))

  # Identity checks.
  rtol, atol = config.rtol, config.atol
  cat_v = {k: np.concatenate(v) for k, v in cat_all.items()}
  checks = []
  for name, needs, fn in _CATEGORICAL_IDENTITIES:
    _require(needs, cat_v, name)
    checks.append(_check(name, *fn(cat_v), rtol, atol))
  for name in named:
    checks.append(_check(f"{name} = f_divergence with generator {name!r}",
                         cat_v[name], cat_v[f"f_divergence[{name}]"], "=",
                         rtol, atol))
  for label in gen_labels:
    checks.append(_check(f"Csiszár dual: D_f(P‖Q) = D_f◇(Q‖P), f = {label}",
                         cat_v[f"D_{label}(P‖Q)"], cat_v[f"D_{label}◇(Q‖P)"],
                         "=", rtol, atol))
  g_v = {k: np.asarray(v, np.float64).reshape(1) for k, v in gauss.items()}
  for name, needs, fn in _GAUSSIAN_IDENTITIES:
    _require(needs, g_v, name)
    checks.append(_check(name, *fn(g_v), rtol, atol))
  for e in entries["gaussian"]:
    checks.append(_check(f"{e['name']}(P‖P) = 0", g_v[f"{e['name']}[P‖P]"],
                         0.0, "=", rtol, 1e-4))
    checks.append(_check(f"{e['name']}(P‖Q) ≥ 0", -g_v[e["name"]], 0.0, "<=",
                         rtol, atol))
  for e in entries["samples"]:
    same = np.asarray(samp_all[f"{e['name']}[P,P']"])
    diff = np.asarray(samp_all[e["name"]])
    checks.append(_check(
        f"{e['name']}: two samples of P closer than samples of P and Q",
        same, diff, "<=", 0.0, 0.0))
  held = all(c["held"] for c in checks)
  failed = [c["identity"] for c in checks if not c["held"]]
  n_cases = 1 + config.categorical["num_random_pairs"]
  verdict = (
      f"{len(checks) - len(failed)}/{len(checks)} identities held (equalities "
      f"within rtol={rtol:g}, atol={atol:g}; categorical ones on the example "
      f"pair + {n_cases - 1} random Dirichlet pairs × {len(seeds)} seeds; "
      f"sample ones on every seed)"
      + ("." if held else f"; FAILED: {'; '.join(failed)}."))

  # The table on stdout.
  rows = []
  for e in config.table:
    v = np.asarray(per_seed[e["name"]])
    value = (f"{v.mean():.5f}" if e["inputs"] != "samples" else
             f"{v.mean():.5f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.5f}")
    kw = ", ".join(f"{k}={val!r}" for k, val in e["kw"].items())
    rows.append((e["name"], e["inputs"], value, f"{e['fn']}({kw})"))
  print(f"p = {list(config.categorical['p'])}\nq = "
        f"{list(config.categorical['q'])}\nGaussians: {dict(config.gaussians)}"
        f"\nsamples: {config.samples['num_samples']} per set, mean ± std over "
        f"seeds {seeds}")
  _print_table(rows)
  for c in checks:
    print(f"  [{'ok' if c['held'] else 'FAIL'}] {c['identity']}")
  print(flush=True)

  _plot_generators(config, fns, generator_names, workdir)

  notes = ["## Identity checks", "",
           "| identity | held | cases | worst violation |", "|---|---|---|---|"]
  for c in checks:
    worst = c["worst_violation"]
    worst = f"{worst:.2e}" if isinstance(worst, float) else worst
    notes.append(f"| {c['identity']} | {'yes' if c['held'] else 'NO'} | "
                 f"{c['cases']} | {worst} |")
  notes += ["", "(worst violation = max over cases of |lhs − rhs| − tol for "
            "'=', lhs − rhs − tol for '≤'; ≤ 0 means held.)", "",
            "![f-generators](f_generators.png)"]

  return dict(
      name=config.name,
      claim=config.claim,
      arms=[dict(name=e["name"], fn=e["fn"], kw=dict(e["kw"]),
                 inputs=e["inputs"]) for e in config.table],
      metrics=[harness.metric(
          "value on the example inputs", per_seed,
          description="categorical: the example pair p, q; gaussian: the "
          "example Gaussians; samples: fresh samples of those Gaussians per "
          "seed")],
      held=held,
      verdict=verdict,
      identities=checks,
      seeds=seeds,
      notes_md="\n".join(notes),
  )
