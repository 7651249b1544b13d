"""Benchmarks for jaxkit.divergences: categorical KL/JS and entropic OT.

Run from the repository root (numbers in benchmarks/README.md were taken with
OpenBLAS's machine-wide overrides removed, see PLATFORM.md section 8):

  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.divergences
  ... -m benchmarks.divergences --quick     # smaller sizes, ~1 minute

Part 1 times jitted jaxkit ``kl``/``js`` on [B, V] log-probabilities against
``optax.losses.kl_divergence_with_log_targets`` and a plain-jnp JS.

Part 2 times jaxkit's Sinkhorn (``sinkhorn_from_cost``, float32, method
'auto') against POT ``ot.sinkhorn`` (kernel domain, float64 BLAS), POT
``ot.sinkhorn`` with ``method='sinkhorn_log'`` (float64) and ott-jax
``linear.solve`` (float32, ``Geometry(cost_matrix=...)``). Problem: n points
uniform in [0, 1]^2 on both sides, uniform weights, squared-Euclidean cost
divided by its maximum (so max C = 1), epsilon absolute in {0.05, 0.01}. Every
solver gets the same precomputed cost matrix and the same accuracy target:
L1 marginal error <= TOL (jaxkit ``tol``; ott-jax ``threshold`` with
``norm_error=1``; POT's test is the L2 norm of the column-marginal error, so
it gets ``stopThr = TOL / sqrt(n)``, which implies L1 <= TOL). The table
reports each solver's final L1 marginal error (recomputed in float64 from its
plan) and its relative cost error vs a tight float64 reference (POT kernel
Sinkhorn, stopThr 1e-13). Times are best of N after a warm-up (compilation
excluded), with ``block_until_ready``.
"""

from __future__ import annotations

import argparse
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import ot

from benchmarks.timing import best_time
from jaxkit.divergences import js as jk_js
from jaxkit.divergences import kl as jk_kl
from jaxkit.divergences import sinkhorn_from_cost

TOL = 1e-5


def _block(fn):
  return lambda: jax.block_until_ready(fn())


def bench_categorical(batch, vocab, repeats):
  print(f"\n## Categorical divergences on [{batch}, {vocab}] float32 "
        "log-probs (best of %d, ms)\n" % repeats)
  k1, k2 = jax.random.split(jax.random.key(0))
  lp = jax.nn.log_softmax(jax.random.normal(k1, (batch, vocab)) * 2, -1)
  lq = jax.nn.log_softmax(jax.random.normal(k2, (batch, vocab)) * 2, -1)

  def js_ref(lp, lq):
    lm = jnp.logaddexp(lp, lq) - jnp.log(2.0)
    return 0.5 * (jnp.sum(jnp.exp(lp) * (lp - lm), -1)
                  + jnp.sum(jnp.exp(lq) * (lq - lm), -1))

  cases = [
      ("kl", jax.jit(lambda p, q: jk_kl(p, q)),
       "optax kl_divergence_with_log_targets",
       jax.jit(lambda p, q: optax.losses.kl_divergence_with_log_targets(q, p))),
      ("js", jax.jit(lambda p, q: jk_js(p, q)), "plain jnp JS",
       jax.jit(js_ref)),
  ]
  rows = []
  print("| loss | jaxkit ms | peer | peer ms | peer / jaxkit | max abs diff |")
  print("|---|---|---|---|---|---|")
  for name, ours, peer_name, peer in cases:
    t_ours = best_time(_block(lambda: ours(lp, lq)), repeats)
    t_peer = best_time(_block(lambda: peer(lp, lq)), repeats)
    diff = float(jnp.max(jnp.abs(ours(lp, lq) - peer(lp, lq))))
    print(f"| {name} | {t_ours*1e3:.1f} | {peer_name} | {t_peer*1e3:.1f} | "
          f"{t_peer / t_ours:.2f} | {diff:.1e} |")
    rows.append((name, t_ours, t_peer))
  return rows


def _l1_err(P, a, b):
  P = np.asarray(P, np.float64)
  return max(np.abs(P.sum(1) - a).sum(), np.abs(P.sum(0) - b).sum())


def bench_sinkhorn(sizes, epsilons, repeats, slow_log_max_n):
  from ott.geometry import geometry
  from ott.solvers import linear

  print("\n## Sinkhorn, uniform points in [0,1]^2, C = |x-y|^2 / max, "
        f"L1 marginal tol {TOL:g} (best of {repeats}, ms)\n")
  print("| n | eps | solver | ms | iters | L1 marg. err | rel. cost err |"
        " peer / jaxkit |")
  print("|---|---|---|---|---|---|---|---|")
  rng = np.random.default_rng(0)
  results = []
  for n in sizes:
    x = rng.uniform(size=(n, 2))
    y = rng.uniform(size=(n, 2))
    M = ot.dist(x, y)
    M /= M.max()
    a = np.full(n, 1.0 / n)
    Mj = jnp.asarray(M, jnp.float32)
    aj = jnp.asarray(a, jnp.float32)
    for eps in epsilons:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = float(ot.sinkhorn2(a, a, M, eps, numItermax=100000,
                                 stopThr=1e-13))
      row = {}

      ours = jax.jit(lambda C, eps=eps: sinkhorn_from_cost(
          C, epsilon=eps, num_iters=100000, tol=TOL))
      t = best_time(_block(lambda: ours(Mj)), repeats)
      c, aux = ours(Mj)
      row["jaxkit (f32, auto)"] = (t, int(aux.num_iters),
                                   _l1_err(aux.plan, a, a), float(c))

      def pot(method):
        with warnings.catch_warnings():
          warnings.simplefilter("ignore")
          return ot.sinkhorn(a, a, M, eps, method=method, numItermax=100000,
                             stopThr=TOL / np.sqrt(n), log=True)

      t = best_time(lambda: pot("sinkhorn"), repeats)
      P, log = pot("sinkhorn")
      row["POT sinkhorn (f64 kernel)"] = (t, log["niter"] + 1,
                                          _l1_err(P, a, a),
                                          float(np.sum(P * M)))
      if n <= slow_log_max_n:
        t = best_time(lambda: pot("sinkhorn_log"), 1)
        P, log = pot("sinkhorn_log")
        row["POT sinkhorn_log (f64)"] = (t, log["niter"] + 1,
                                         _l1_err(P, a, a),
                                         float(np.sum(P * M)))

      ott_fn = jax.jit(lambda C, eps=eps: linear.solve(
          geometry.Geometry(cost_matrix=C, epsilon=eps), a=aj, b=aj,
          threshold=TOL, norm_error=1, max_iterations=100000))
      t = best_time(_block(lambda: ott_fn(Mj).matrix), repeats)
      out = ott_fn(Mj)
      row["ott-jax linear.solve (f32)"] = (t, int(out.n_iters),
                                           _l1_err(out.matrix, a, a),
                                           float(out.primal_cost))
      t_ours = row["jaxkit (f32, auto)"][0]
      for name, (t, it, err, cost) in row.items():
        ratio = "—" if name.startswith("jaxkit") else f"{t / t_ours:.2f}"
        print(f"| {n} | {eps} | {name} | {t*1e3:.1f} | {it} | {err:.1e} | "
              f"{abs(cost - ref) / ref:.1e} | {ratio} |")
      results.append((n, eps, row))
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="small sizes for a fast smoke run")
  args = parser.parse_args()
  print(f"jax {jax.__version__}, devices {jax.devices()}, POT {ot.__version__}")
  if args.quick:
    bench_categorical(1024, 32000, 3)
    bench_sinkhorn([500, 1000], [0.05, 0.01], 3, slow_log_max_n=500)
  else:
    bench_categorical(4096, 32000, 5)
    bench_sinkhorn([500, 1000, 2000], [0.05, 0.01], 5, slow_log_max_n=2000)


if __name__ == "__main__":
  main()
