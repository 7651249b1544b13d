"""Benchmarks of jaxkit.kernels.quantized_matmul on CPU + TPU/GPU rooflines.

Run from the repository root:

  PYTHONPATH=. .venv/bin/python benchmarks/kernels_quantized_matmul.py
  PYTHONPATH=. .venv/bin/python benchmarks/kernels_quantized_matmul.py --quick

Cases (same process, same inputs, best of N after a warm-up; CPU, so the
``implementation=None`` path is the XLA reference):

* W8A8 at 2048^3: jaxkit ``quantized_matmul(x, w, activation_bits=8)``
  (per-token dynamic int8 activations, per-channel int8 weights, int32
  accumulation; the activation quantization is inside the timed call) vs
  f32 ``jnp.dot``, bf16 ``jnp.dot`` (f32 accumulation) and qwix 0.1.8's
  ``qwix.dot_general`` on two int8 ``QArray`` s (activation quantized inside
  the timed call, weight quantized once). Targets: >= qwix, >= 1.5x f32.
* W4 weight-only at M = 1, K = N = 8192 (packed int4, groups of 128, bf16
  activations) vs a bf16 GEMV (``jnp.dot`` of bf16 ``[1, K] x [K, N]``).
  Target: no slower (the CPU gain is memory: 4.25 vs 16 bits per weight).
* Roofline for TPU v5e and H100 of the Pallas kernels at the AOT shapes of
  ``arg_specs`` (analytic bytes / FLOPs per call; the Pallas custom call is
  opaque to XLA's cost analysis, ``tools/aot_check.py`` prints the compiled
  one beside it).

Ratios are ``peer time / jaxkit time`` (> 1: jaxkit faster). The machine is
shared; the load average is printed beside the timings.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp

from benchmarks.timing import best_time
from jaxkit import quantization as Q
from jaxkit.kernels.quantized_matmul import arg_specs
from jaxkit.kernels.quantized_matmul import as_qmatmul_weight
from jaxkit.kernels.quantized_matmul import quantized_matmul

try:
  import qwix
except ImportError:  # optional extra
  qwix = None

# Published peaks (dense bf16 FLOP/s, int8 OP/s, HBM bytes/s):
#   TPU v5e: 197 TFLOP/s bf16, 394 TOP/s int8, 819 GB/s HBM2e
#     (cloud.google.com/tpu/docs/v5e).
#   H100 SXM5: 989 TFLOP/s dense bf16, 1979 TOP/s dense int8, 3.35 TB/s HBM3
#     (NVIDIA H100 Tensor Core GPU datasheet).
PEAKS = {"TPU v5e": (197e12, 394e12, 819e9),
         "H100 SXM": (989e12, 1979e12, 3.35e12)}


def _time(fn, *args, repeats):
  f = jax.jit(fn)
  jax.block_until_ready(f(*args))
  return best_time(lambda: jax.block_until_ready(f(*args)), repeats)


def bench_w8a8(n, repeats):
  """Rows: (name, seconds, max relative error vs the f32 product)."""
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (n, n), jnp.float32)
  w = jax.random.normal(kw, (n, n), jnp.float32) / n**0.5
  q = Q.quantize(w, bits=8, group_size=None, axis=0)  # per output channel
  exact = x @ w
  rows = []

  def rel(y):
    return float(jnp.max(jnp.abs(y.astype(jnp.float32) - exact))
                 / jnp.max(jnp.abs(exact)))

  fns = {
      "f32 jnp.dot": (lambda a, b: jnp.dot(a, b), (x, w)),
      "bf16 jnp.dot (f32 acc)": (
          lambda a, b: jnp.dot(a.astype(jnp.bfloat16), b,
                               preferred_element_type=jnp.float32),
          (x, w.astype(jnp.bfloat16))),
      "jaxkit W8A8": (
          lambda a, qq: quantized_matmul(a, qq, activation_bits=8), (x, q)),
  }
  if qwix is not None:
    wq = qwix.quantize(w, jnp.int8, channelwise_axes=(1,))

    def qwix_w8a8(a, wq_):
      aq = qwix.quantize(a, jnp.int8, channelwise_axes=(0,))
      return qwix.dot_general(aq, wq_, (((1,), (0,)), ((), ())))
    fns["qwix w8a8 dot_general"] = (qwix_w8a8, (x, wq))
  for name, (fn, args) in fns.items():
    t = _time(fn, *args, repeats=repeats)
    rows.append((name, t, rel(jax.jit(fn)(*args))))
  return rows


def bench_w4_gemv(k, repeats):
  kx, kw = jax.random.split(jax.random.key(1))
  x = jax.random.normal(kx, (1, k), jnp.float32).astype(jnp.bfloat16)
  w = jax.random.normal(kw, (k, k), jnp.float32) / k**0.5
  wb = w.astype(jnp.bfloat16)
  q4 = as_qmatmul_weight(Q.quantize(w, bits=4, group_size=128, axis=0,
                                    dtype=jnp.bfloat16), pack=True)
  q8 = Q.quantize(w, bits=8, group_size=128, axis=0, dtype=jnp.bfloat16)
  exact = x.astype(jnp.float32) @ w
  rows = []
  for name, fn, args in (
      ("bf16 GEMV jnp.dot", lambda a, b: jnp.dot(
          a, b, preferred_element_type=jnp.float32), (x, wb)),
      ("f32 GEMV jnp.dot (context)", lambda a, b: jnp.dot(
          a.astype(jnp.float32), b), (x, w)),
      ("jaxkit W4 g128 packed", lambda a, qq: quantized_matmul(a, qq),
       (x, q4)),
      ("jaxkit W8 g128", lambda a, qq: quantized_matmul(a, qq), (x, q8))):
    t = _time(fn, *args, repeats=repeats)
    y = jax.jit(fn)(*args).astype(jnp.float32)
    err = float(jnp.max(jnp.abs(y - exact)) / jnp.max(jnp.abs(exact)))
    rows.append((name, t, err))
  return rows


def roofline_rows():
  rows = []
  for platform in ("tpu", "cuda"):
    chip = "TPU v5e" if platform == "tpu" else "H100 SXM"
    flops_peak, int8_peak, bw = PEAKS[chip]
    for name, _, _, est in arg_specs.aot_cases(platform):
      spec = arg_specs.ARG_SPECS.get(name)
      peak = int8_peak if spec and spec["activation_bits"] == 8 else flops_peak
      t_c, t_m = est["flops"] / peak, est["bytes"] / bw
      rows.append((chip, name, est["flops"], est["bytes"],
                   est["flops"] / est["bytes"], max(t_c, t_m) * 1e6,
                   "memory" if t_m > t_c else "compute"))
  return rows


def _expm1_check():
  """jaxkit's YNNPACK regression probe (must print -0.4999)."""
  x = jnp.full((4096,), 0.6931, jnp.float32)
  return float(jax.jit(lambda v: jnp.sum(jnp.expm1(v) * jnp.expm1(-v)))(x)
               / 4096)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="small shapes, a few seconds")
  args, _ = parser.parse_known_args(argv)  # tolerates a caller's flags
  n, k, reps = (512, 2048, 3) if args.quick else (2048, 8192, 10)
  load = os.getloadavg()
  print(f"## quantized_matmul (CPU, jax {jax.__version__}, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; indicative)\n")
  ynn = [f for f in os.environ.get("XLA_FLAGS", "").split()
         if "ynn_fusion_type" in f]
  print(f"XLA flags: {ynn or 'default'}; YNNPACK regression probe "
        f"{_expm1_check():.4f} (correct: -0.4999)\n")

  rows = bench_w8a8(n, reps)
  base = {r[0]: r[1] for r in rows}
  jk = base["jaxkit W8A8"]
  print(f"### W8A8 at {n}x{n}x{n}\n")
  print("| case | time (ms) | GOP/s | max rel. err | peer / jaxkit |")
  print("|---|---|---|---|---|")
  for name, t, err in rows:
    print(f"| {name} | {t * 1e3:.2f} | {2 * n**3 / t / 1e9:.0f} | "
          f"{err:.1e} | {t / jk:.2f} |")
  if "qwix w8a8 dot_general" in base:
    print(f"\ntarget: jaxkit >= qwix w8a8 ({base['qwix w8a8 dot_general'] / jk:.2f}x)"
          f" and >= 1.5x f32 ({base['f32 jnp.dot'] / jk:.2f}x)")

  rows = bench_w4_gemv(k, reps * 3)
  gemv = rows[0][1]
  print(f"\n### weight-only GEMV at M=1, K=N={k} (bf16 activations)\n")
  print("| case | time (ms) | GB/s of weight | max rel. err | bf16 GEMV / case |")
  print("|---|---|---|---|---|")
  wbytes = {"bf16 GEMV jnp.dot": 2.0, "f32 GEMV jnp.dot (context)": 4.0,
            "jaxkit W4 g128 packed": 0.5 + 2 / 128,
            "jaxkit W8 g128": 1.0 + 2 / 128}
  for name, t, err in rows:
    print(f"| {name} | {t * 1e3:.3f} | {wbytes[name] * k * k / t / 1e9:.1f} |"
          f" {err:.1e} | {gemv / t:.2f} |")

  print("\n### roofline of the Pallas kernels at the AOT shapes (analytic)\n")
  print("| chip | case | GFLOP | MB moved | FLOP/byte | roofline (us) | bound |")
  print("|---|---|---|---|---|---|---|")
  for chip, name, f, b, ai, t, bound in roofline_rows():
    print(f"| {chip} | {name} | {f / 1e9:.2f} | {b / 1e6:.1f} | {ai:.1f} | "
          f"{t:.1f} | {bound} |")
  print("\npeaks: " + "; ".join(
      f"{c}: {p[0] / 1e12:.0f} TFLOP/s bf16, {p[1] / 1e12:.0f} TOP/s int8, "
      f"{p[2] / 1e9:.0f} GB/s" for c, p in PEAKS.items()))


if __name__ == "__main__":
  main()
