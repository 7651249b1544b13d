"""Named realistic workloads of the quantized matmul (shapes only) + AOT cases.

Shapes follow Llama-2-7B projections (hidden 4096, MLP 11008) in the decode
regime (M = 8 tokens) and the batched / prefill regime (M = 512).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxkit.kernels.quantized_matmul import pallas_gpu
from jaxkit.kernels.quantized_matmul import pallas_tpu
from jaxkit.kernels.quantized_matmul import reference as ref
from jaxkit.quantization import nonuniform

S = jax.ShapeDtypeStruct

# name -> dict(x, codes, scales, zeros, bits, format, packed, signed,
#              activation_bits, tags)
ARG_SPECS = {
    "llama7b_decode_w4_g128": dict(
        x=S((8, 4096), jnp.bfloat16), codes=S((2048, 4096), jnp.uint8),
        scales=S((32, 4096), jnp.bfloat16), zeros=None, bits=4,
        format="int", packed=True, signed=True, activation_bits=None,
        tags=("primary", "decode")),
    "llama7b_mlp_batched_int8_g128": dict(
        x=S((512, 4096), jnp.bfloat16), codes=S((4096, 11008), jnp.int8),
        scales=S((32, 11008), jnp.float32), zeros=None, bits=8,
        format="int", packed=False, signed=True, activation_bits=None,
        tags=("primary", "batched")),
    "llama7b_batched_w8a8": dict(
        x=S((512, 4096), jnp.bfloat16), codes=S((4096, 4096), jnp.int8),
        scales=S((1, 4096), jnp.float32), zeros=None, bits=8, format="int",
        packed=False, signed=True, activation_bits=8,
        tags=("primary", "batched", "w8a8")),
    "llama7b_decode_fp8_e4m3_g128": dict(
        x=S((8, 4096), jnp.bfloat16),
        codes=S((4096, 4096), jnp.float8_e4m3fn),
        scales=S((32, 4096), jnp.float32), zeros=None, bits=8, format="fp",
        packed=False, signed=True, activation_bits=None, tags=("decode",)),
    "llama7b_decode_nf4_g64": dict(
        x=S((8, 4096), jnp.bfloat16), codes=S((2048, 4096), jnp.uint8),
        scales=S((64, 4096), jnp.float32), zeros=None, bits=4, format="lut",
        packed=True, signed=False, activation_bits=None, tags=("decode",)),
    "llama7b_decode_w4_asym_g128": dict(
        x=S((16, 4096), jnp.float32), codes=S((2048, 4096), jnp.uint8),
        scales=S((32, 4096), jnp.float32), zeros=S((32, 4096), jnp.float32),
        bits=4, format="int", packed=True, signed=False,
        activation_bits=None, tags=("decode",)),
}


def _weight(spec, codes, scales, zeros):
  levels = (nonuniform.nf4_levels() if spec["format"] == "lut" else None)
  return ref.QMatmulWeight(codes=codes, scales=scales, zero_points=zeros,
                           levels=levels, bits=spec["bits"],
                           format=spec["format"], packed=spec["packed"],
                           signed=spec["signed"])


def _make_fn(spec, backend_fn, grad=False):
  def fn(x, codes, scales, zeros=None):
    w = _weight(spec, codes, scales, zeros)
    call = lambda x_: backend_fn(x_, w, interpret=False,
                                 activation_bits=spec["activation_bits"],
                                 out_dtype=x_.dtype)
    if grad:
      return jax.value_and_grad(
          lambda x_: jnp.sum(call(x_).astype(jnp.float32)))(x)
    return call(x)
  return fn


def _args(spec):
  a = (spec["x"], spec["codes"], spec["scales"])
  return a + ((spec["zeros"],) if spec["zeros"] is not None else ())


def _nbytes(a):
  return 0 if a is None else a.size * jnp.dtype(a.dtype).itemsize


def estimate(spec, grad=False) -> dict[str, float]:
  """Analytic FLOPs and HBM bytes of one call (the kernel is opaque to XLA).

  Forward: ``2 M K N`` FLOPs; bytes = codes + scales + zero points + x +
  output, each read / written once (the weight tile is not re-read per M
  block while ``bm = M``). The grad case adds the XLA backward
  ``dx = dy W^T`` (another ``2 M K N`` FLOPs, the weight read again and
  dequantized, dy read, dx written).
  """
  x = spec["x"]
  m, k = x.shape
  n = spec["codes"].shape[1]
  out = m * n * jnp.dtype(x.dtype).itemsize
  b = (_nbytes(spec["codes"]) + _nbytes(spec["scales"])
       + _nbytes(spec["zeros"]) + _nbytes(x) + out)
  f = 2.0 * m * k * n
  if grad:
    f *= 2
    b += _nbytes(spec["codes"]) + 4 * k * n * 2 + out + _nbytes(x)
  return {"flops": f, "bytes": float(b)}


def aot_cases(platform: str) -> list[tuple[str, Callable, tuple, dict]]:
  """``(case_name, fn, arg_avals, estimate)`` compiling the Pallas backend directly.

  Args:
    platform: ``"tpu"`` (Mosaic kernel) or ``"cuda"`` (Triton kernel).

  Returns:
    Forward cases at realistic shapes plus one ``value_and_grad`` case.

  Raises:
    ValueError: unknown platform.

  Examples:
    >>> from jaxkit.kernels.quantized_matmul import arg_specs
    >>> [c[0] for c in arg_specs.aot_cases("tpu")][:2]
    ['llama7b_decode_w4_g128', 'llama7b_mlp_batched_int8_g128']
  """
  if platform == "tpu":
    fn, names = pallas_tpu.quantized_matmul_pallas_tpu, list(ARG_SPECS)
  elif platform == "cuda":
    fn = pallas_gpu.quantized_matmul_pallas_gpu
    names = [n for n in ARG_SPECS if ARG_SPECS[n]["format"] != "lut"]
  else:
    raise ValueError(f"`platform` must be 'tpu' or 'cuda', got {platform!r}.")
  cases = [(n, _make_fn(ARG_SPECS[n], fn), _args(ARG_SPECS[n]),
            estimate(ARG_SPECS[n])) for n in names]
  g = "llama7b_decode_w4_g128"
  cases.append((g + "_value_and_grad", _make_fn(ARG_SPECS[g], fn, grad=True),
                _args(ARG_SPECS[g]), estimate(ARG_SPECS[g], grad=True)))
  return cases
