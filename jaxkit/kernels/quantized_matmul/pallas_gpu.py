r"""Pallas Triton (GPU) kernel of :func:`~jaxkit.kernels.quantized_matmul`.

Grid ``(M / bm, N / bn)``; each program loops over K tiles of ``bk`` code
rows (``lax.fori_loop``, pipelined by Triton), decodes the codes in int32
(the decoders of :mod:`.pallas_tpu`), scales them and accumulates
``x_tile @ w_tile`` in float32. All blocks are powers of two (Triton's rule)
and ``bm >= 16`` (``tl.dot``'s minimum): ``M`` is padded to ``bm``, ``N`` /
``K`` are padded only where no power-of-two block divides them (``K`` only
for per-channel scales). A K tile never straddles a scale group (``bk``
divides the group), so each tile reads one scale row.

Formats: ``'int'`` (int8 / uint8, packed int4, zero points), ``'fp'``
(float8 E4M3FN / E5M2 decoded from bits); W8A8 (int8 ``tl.dot`` with int32
accumulation). ``'lut'`` codes raise
:class:`~jaxkit.kernels._registry.BackendUnsupportedError` (the XLA path
takes them). Backward: XLA (shared ``custom_vjp``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from jaxkit.kernels._registry import BackendUnsupportedError
from jaxkit.kernels.quantized_matmul import pallas_tpu
from jaxkit.kernels.quantized_matmul import reference as ref


def _pow2_divisor(d, cap):
  b = cap
  while b >= 16:
    if d % b == 0:
      return b
    b //= 2
  return None


def _next_pow2(v):
  return 1 << max(int(v) - 1, 0).bit_length()


def make_plan(x2, w: ref.QMatmulWeight, *, activation_bits, block_sizes):
  """Validates and picks power-of-two blocks; returns (Plan, kc_pad, n_pad)."""
  be = "pallas_gpu"
  if w.format == "lut":
    raise BackendUnsupportedError(
        f"{be}: look-up-table codes are not implemented in the Triton kernel; "
        "use implementation='xla' (or None).")
  fp_kind, fold = pallas_tpu.check_weight(
      w, be, max_levels=0, activation_bits=activation_bits)
  w8a8 = activation_bits == 8
  if w8a8 and w.packed:
    raise BackendUnsupportedError(
        f"{be}: activation_bits=8 with packed 4-bit codes is not supported.")
  m = x2.shape[0]
  kc, n = w.codes.shape
  gk = 1 if fold else w.scales.shape[0]
  gc = kc // gk
  decode = m <= ref.GEMV_MAX_ROWS
  if block_sizes is not None:
    bm, bn, bk = block_sizes
    for name, b in (("bm", bm), ("bn", bn), ("bk", bk)):
      if b < 16 or b & (b - 1):
        raise ValueError(f"`block_sizes` {name}={b} must be a power of two "
                         ">= 16 for pallas_gpu.")
  else:
    bm = min(max(16, _next_pow2(m)), 64 if decode else 128)
    bn = _pow2_divisor(n, 64 if decode else 128) or (64 if n >= 64 else 16)
    if gk == 1:
      bk = _pow2_divisor(kc, 128) or (128 if kc >= 128 else 16)
    else:
      bk = _pow2_divisor(gc, 128)
  if bk is None or (gk > 1 and gc % bk):
    raise BackendUnsupportedError(
        f"{be}: groups of {gc} code rows have no power-of-two K tile >= 16; "
        "use implementation='xla'.")
  kc_pad = -(-kc // bk) * bk
  n_pad = -(-n // bn) * bn
  p = pallas_tpu.Plan(
      m=-(-m // bm) * bm, kc=kc_pad, n=n_pad, bm=bm, bn=bn, bk=bk,
      gc=kc_pad if gk == 1 else gc, r=1, fmt=w.format, fp_kind=fp_kind,
      packed=w.packed, signed=w.signed,
      unsigned_storage=(not w.packed and not jnp.issubdtype(
          w.codes.dtype, jnp.signedinteger) and w.format != "fp"),
      n_levels=0, has_zero=w.zero_points is not None, w8a8=w8a8,
      fold_rows=fold)
  return p


def _kernel(*refs, p, nx):
  it = iter(refs)
  xs = [next(it) for _ in range(nx)]
  sx_ref = next(it) if p.w8a8 else None
  c_ref, s_ref = next(it), next(it)
  z_ref = next(it) if p.has_zero else None
  o_ref = next(it)
  nk = p.kc // p.bk
  tiles_per_group = p.gc // p.bk

  def body(kk, acc):
    rows = pl.ds(kk * p.bk, p.bk)
    g = jax.lax.div(kk, tiles_per_group)
    s = s_ref[pl.ds(g, 1), :].astype(jnp.float32)  # [1, bn]
    if p.w8a8:
      part = jnp.dot(xs[0][:, rows], c_ref[rows, :],
                    preferred_element_type=jnp.int32)
      return acc + part.astype(jnp.float32) * s
    c = c_ref[rows, :].astype(jnp.int32)
    z = None if z_ref is None else z_ref[pl.ds(g, 1), :].astype(jnp.float32)
    for x_ref, v in zip(xs, pallas_tpu.decode_values(c, p, None)):
      xt = x_ref[:, rows]
      wt = pallas_tpu.apply_scales(v, s, z, p).astype(xt.dtype)
      acc = acc + jnp.dot(xt, wt, preferred_element_type=jnp.float32)
    return acc

  acc = jax.lax.fori_loop(0, nk, body, jnp.zeros((p.bm, p.bn), jnp.float32))
  if p.w8a8:
    acc = acc * sx_ref[...]
  o_ref[...] = acc.astype(o_ref.dtype)


def _pad(a, axis, size, value=0):
  if a is None or a.shape[axis] == size:
    return a
  pads = [(0, 0)] * a.ndim
  pads[axis] = (0, size - a.shape[axis])
  return jnp.pad(a, pads, constant_values=value)


def forward(x2, w: ref.QMatmulWeight, *, p, interpret: bool, out_dtype):
  """The pallas_call (no custom_vjp)."""
  m, _ = x2.shape
  xs, sx, codes, scales, zeros, _ = pallas_tpu.prepare_inputs(x2, w, p)
  xs = [_pad(_pad(xa, 0, p.m), 1, p.kc) for xa in xs]
  codes = _pad(_pad(codes, 0, p.kc), 1, p.n)
  scales = _pad(scales, 1, p.n, 1)
  zeros = _pad(zeros, 1, p.n)
  args = list(xs)
  specs = [pl.BlockSpec((p.bm, p.kc), lambda i, j: (i, 0)) for _ in xs]
  if p.w8a8:
    args.append(_pad(sx, 0, p.m, 1))
    specs.append(pl.BlockSpec((p.bm, 1), lambda i, j: (i, 0)))
  gk = scales.shape[0]
  args += [codes, scales]
  specs += [pl.BlockSpec((p.kc, p.bn), lambda i, j: (0, j)),
            pl.BlockSpec((gk, p.bn), lambda i, j: (0, j))]
  if p.has_zero:
    args.append(zeros)
    specs.append(pl.BlockSpec((gk, p.bn), lambda i, j: (0, j)))
  out = pl.pallas_call(
      functools.partial(_kernel, p=p, nx=len(xs)),
      out_shape=jax.ShapeDtypeStruct((p.m, p.n), out_dtype),
      grid=(p.m // p.bm, p.n // p.bn),
      in_specs=specs,
      out_specs=pl.BlockSpec((p.bm, p.bn), lambda i, j: (i, j)),
      compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=3),
      interpret=interpret,
      name=f"qmm_triton_{p.fmt}_bm{p.bm}_bn{p.bn}_bk{p.bk}",
  )(*args)
  return out[:m, :w.shape[1]]


def quantized_matmul_pallas_gpu(x2: jax.Array, w: ref.QMatmulWeight, *,
                                interpret: bool, activation_bits: int | None,
                                out_dtype: Any,
                                block_sizes: Any = None) -> jax.Array:
  """The ``"pallas_gpu"`` backend: ``[M, K] x W -> [M, N]`` (custom_vjp)."""
  return ref.run_pallas_backend(make_plan, forward, x2, w,
                                interpret=interpret,
                                activation_bits=activation_bits,
                                out_dtype=out_dtype, block_sizes=block_sizes)
