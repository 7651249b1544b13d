r"""Pallas TPU (Mosaic) kernel of :func:`~jaxkit.kernels.quantized_matmul`.

Grid ``(M / bm, N / bn, K / bk)`` (``parallel, parallel, arbitrary``) with a
float32 accumulator in VMEM. Each step loads a ``[bk, bn]`` tile of codes,
decodes it in int32 (PLATFORM.md: int4 nibbles are unpacked in int32, never
int8), applies the scales of the ``bk / g`` groups it covers, and feeds the
MXU in the activation dtype with float32 accumulation.

* Formats: ``'int'`` (int8 / uint8 codes, packed int4 signed or unsigned,
  zero points), ``'fp'`` (float8 E4M3FN / E5M2 decoded from their bits with
  integer ops, so it compiles on chips without fp8 units), ``'lut'`` (at most
  16 levels, read from SMEM, decoded with a select chain).
* Packed 4-bit codes stay in the standard layout (byte ``i`` = rows ``2i``,
  ``2i+1``): the wrapper splits ``x`` into its even and odd columns and the
  kernel computes ``x_even @ lo + x_odd @ hi``.
* Scales are read through a 3-D view ``[K / bk, bk / g, N]`` (or
  ``[G, 1, N]`` when a group spans several tiles), so every scale block's
  last two dimensions satisfy the (8, 128) rule by equalling the array's.
* W8A8 (``activation_bits=8``): ``x`` is quantized per row in XLA; the kernel
  runs int8 x int8 dots accumulated in int32, rescaled per tile.
* Block sizes: decode (``M <= 16``) ``bm = M``, ``bn <= 512``,
  ``bk <= 2048`` (memory bound: few, large weight tiles); batched
  ``bm = M`` up to 512 (else 256), ``bn <= 512``, ``bk <= 512``.
* Backward: ``dx = dy @ dequantize(w)^T`` in XLA (shared ``custom_vjp`` of
  :mod:`.reference`); no gradient to codes / scales.

Unsupported arguments (LUT with more than 16 levels, float4 codes, scales
tiled along N, shapes no legal block divides) raise
:class:`~jaxkit.kernels._registry.BackendUnsupportedError` at trace time.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxkit.kernels._registry import BackendUnsupportedError
from jaxkit.kernels.quantized_matmul import reference as ref

MAX_LUT_LEVELS = 16


@dataclasses.dataclass(frozen=True)
class Plan:
  """Static description of one kernel call (hashable)."""
  m: int
  kc: int          # code rows (K, or K/2 when packed)
  n: int
  bm: int
  bn: int
  bk: int
  gc: int          # code rows per scale group
  r: int           # scale groups per K tile (>= 1)
  fmt: str
  fp_kind: str | None
  packed: bool
  signed: bool
  unsigned_storage: bool
  n_levels: int
  has_zero: bool
  w8a8: bool
  fold_rows: bool  # per-row scales folded into x


def _fail(msg):
  raise BackendUnsupportedError(msg)


def check_weight(w: ref.QMatmulWeight, backend: str, *, max_levels: int,
                 activation_bits) -> tuple[str | None, bool]:
  """Format checks shared by the kernels: returns (fp_kind, fold_rows)."""
  k, n = w.shape
  gk, gn = w.scales.shape
  fp_kind = None
  if w.format == "fp":
    fp_kind = ref._FP_CODE_DTYPES.get(jnp.dtype(w.codes.dtype))  # pylint: disable=protected-access
    if fp_kind is None:
      _fail(f"{backend}: fp codes of dtype {w.codes.dtype} are not supported "
            "(float8_e4m3fn / float8_e5m2 only); use implementation='xla'.")
  elif w.format == "lut":
    nl = w.levels.shape[0]
    if nl > max_levels:
      _fail(f"{backend}: a look-up table of {nl} levels is not supported "
            f"(at most {max_levels}); use implementation='xla'.")
  if not w.packed and jnp.dtype(w.codes.dtype).itemsize != 1:
    _fail(f"{backend}: codes must be 1-byte, got {w.codes.dtype}.")
  fold = False
  if gn != n:
    if gn == 1 and gk == 1:
      pass
    elif gn == 1 and gk == k and w.zero_points is None and not w.packed:
      fold = True  # W = diag(s) Q: fold the per-row scale into x
    else:
      _fail(f"{backend}: scales {w.scales.shape} for a weight {w.shape} "
            "(tiled along N, or per-row with zero points / packing) are not "
            "supported; use implementation='xla'.")
  if activation_bits == 8:
    ref.check_w8a8_weight(w)
  return fp_kind, fold


def _pick(dim, target, align, ok):
  """Largest block <= target that divides dim, is a multiple of align and
  satisfies ok(block); dim itself if dim <= target and ok(dim)."""
  if dim <= target and ok(dim):
    return dim
  b = (min(target, dim) // align) * align
  while b >= align:
    if dim % b == 0 and ok(b):
      return b
    b -= align
  return None


def _group_ok(gc, w8a8, sub):
  def ok(bk):
    if gc % bk == 0:
      return True
    if w8a8:
      return False
    return bk % gc == 0 and (bk // gc == 1 or gc % sub == 0)
  return ok


def make_plan(x2: jax.Array, w: ref.QMatmulWeight, *, activation_bits,
              block_sizes, backend="pallas_tpu") -> Plan:
  """Validates and picks block sizes (raises BackendUnsupportedError)."""
  fp_kind, fold = check_weight(w, backend, max_levels=MAX_LUT_LEVELS,
                               activation_bits=activation_bits)
  w8a8 = activation_bits == 8
  if w8a8 and w.packed:
    _fail(f"{backend}: activation_bits=8 with packed 4-bit codes is not "
          "supported (unpack them); use implementation='xla'.")
  m = x2.shape[0]
  kc, n = w.codes.shape
  gk = 1 if fold else w.scales.shape[0]
  gc = kc // gk
  decode = m <= ref.GEMV_MAX_ROWS
  if block_sizes is not None:
    bm, bn, bk = block_sizes
  else:
    bm = m if m <= 512 else 256
    bn = _pick(n, 512, 128, lambda b: True)
    bk = _pick(kc, 2048 if decode else 512, 128, _group_ok(gc, w8a8, 8))
  if bn is None or bk is None:
    _fail(f"{backend}: no legal block for (K codes={kc}, N={n}, group="
          f"{gc} code rows); use implementation='xla'.")
  for name, b, d, a in (("bm", bm, m, 8), ("bn", bn, n, 128),
                        ("bk", bk, kc, 128)):
    if b != d and (b % a or (name != "bm" and d % b)):
      raise ValueError(f"`block_sizes` {name}={b} must equal {d} or be a "
                       f"multiple of {a} dividing it.")
  if not _group_ok(gc, w8a8, 8)(bk):
    _fail(f"{backend}: bk={bk} does not fit groups of {gc} code rows.")
  r = bk // gc if bk % gc == 0 else 1
  return Plan(m=m, kc=kc, n=n, bm=bm, bn=bn, bk=bk, gc=gc, r=r,
              fmt=w.format, fp_kind=fp_kind, packed=w.packed,
              signed=w.signed,
              unsigned_storage=(not w.packed and not jnp.issubdtype(
                  w.codes.dtype, jnp.signedinteger) and w.format != "fp"),
              n_levels=0 if w.levels is None else int(w.levels.shape[0]),
              has_zero=w.zero_points is not None, w8a8=w8a8,
              fold_rows=fold)


# ----------------------------------------------------------------------------
# In-kernel decoding (plain jnp on int32, shared with the Triton kernel).
# ----------------------------------------------------------------------------


def decode_fp8(c, kind):
  """float32 values of float8 bit patterns ``c`` (int32 in [0, 255])."""
  neg = (c >> 7) != 0
  if kind == "e4m3":
    e, mant, sh, bias, sub = (c >> 3) & 0xF, c & 7, 20, 120, 2.0**-9
  else:
    e, mant, sh, bias, sub = (c >> 2) & 0x1F, c & 3, 21, 112, 2.0**-16
  bits = ((e + bias) << 23) | (mant << sh)
  normal = jax.lax.bitcast_convert_type(bits, jnp.float32)
  mag = jnp.where(e == 0, mant.astype(jnp.float32) * sub, normal)
  return jnp.where(neg, -mag, mag)


def decode_values(c, p: Plan, level):
  """Decodes a tile of raw codes (int32, sign-extended bytes).

  Returns a list of float32 arrays: ``[lo, hi]`` when packed, else ``[v]``.
  ``level(i)`` returns LUT level ``i`` as a scalar.
  """
  if p.packed:
    b = c & 0xFF
    outs = [b & 0xF, b >> 4]
    if p.signed and p.fmt == "int":
      outs = [(o ^ 8) - 8 for o in outs]
  elif p.fmt == "fp":
    return [decode_fp8(c & 0xFF, p.fp_kind)]
  else:
    outs = [c & 0xFF if (p.unsigned_storage or p.fmt == "lut") else c]
  if p.fmt == "lut":
    res = []
    for o in outs:
      v = jnp.zeros(o.shape, jnp.float32)
      for i in range(p.n_levels):
        v = jnp.where(o == i, level(i), v)
      res.append(v)
    return res
  return [o.astype(jnp.float32) for o in outs]


def apply_scales(v, s, z, p: Plan):
  """``v`` [bk, bn] f32, ``s`` / ``z`` [r, bn] f32 -> dequantized tile."""
  bk, bn = v.shape
  if p.r > 1:
    v3 = v.reshape(p.r, bk // p.r, bn)
    s3 = s[:, None, :]
    z3 = None if z is None else z[:, None, :]
    if p.fmt == "lut":
      out = v3 * s3 + (0.0 if z3 is None else z3)
    else:
      out = (v3 - (0.0 if z3 is None else z3)) * s3
    return out.reshape(bk, bn)
  if p.fmt == "lut":
    return v * s + (0.0 if z is None else z)
  return (v - (0.0 if z is None else z)) * s


# ----------------------------------------------------------------------------
# The kernel.
# ----------------------------------------------------------------------------


def _kernel(*refs, p: Plan, nx: int):
  it = iter(refs)
  xs = [next(it) for _ in range(nx)]
  sx_ref = next(it) if p.w8a8 else None
  c_ref, s_ref = next(it), next(it)
  z_ref = next(it) if p.has_zero else None
  lv_ref = next(it) if p.fmt == "lut" else None
  o_ref, acc_ref = next(it), next(it)
  k = pl.program_id(2)

  @pl.when(k == 0)
  def _init():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  s = s_ref[...].astype(jnp.float32)  # [r, bn]
  if p.w8a8:
    part = jnp.dot(xs[0][...], c_ref[...], preferred_element_type=jnp.int32)
    acc_ref[...] += part.astype(jnp.float32) * s
  else:
    c = c_ref[...].astype(jnp.int32)
    z = None if z_ref is None else z_ref[...].astype(jnp.float32)
    vals = decode_values(c, p, (lambda i: lv_ref[i]) if lv_ref is not None
                         else None)
    acc = acc_ref[...]
    for x_ref, v in zip(xs, vals):
      xt = x_ref[...]
      wt = apply_scales(v, s, z, p).astype(xt.dtype)
      acc = acc + jnp.dot(xt, wt, preferred_element_type=jnp.float32)
    acc_ref[...] = acc

  @pl.when(k == pl.num_programs(2) - 1)
  def _flush():
    out = acc_ref[...]
    if p.w8a8:
      out = out * sx_ref[...]
    o_ref[...] = out.astype(o_ref.dtype)


def _as_int8(a):
  if a.dtype == jnp.int8:
    return a
  return jax.lax.bitcast_convert_type(a, jnp.int8)


def prepare_inputs(x2, w: ref.QMatmulWeight, p: Plan):
  """XLA-side preparation: x split/quantized/folded, codes as int8 bytes,
  scales as float32 ``[G, N]``."""
  k, n = w.shape
  sx = None
  if p.fold_rows:
    x2 = (x2.astype(jnp.float32)
          * w.scales[:, 0].astype(jnp.float32)).astype(x2.dtype)
    scales = jnp.ones((1, n), jnp.float32)
  else:
    scales = jnp.broadcast_to(w.scales.astype(jnp.float32),
                              (w.scales.shape[0], n))
  zeros = None
  if p.has_zero:
    zeros = jnp.broadcast_to(w.zero_points.astype(jnp.float32), scales.shape)
  if p.w8a8:
    xq, sx = ref.quantize_rows_int8(x2)
    xs = [xq]
  elif p.packed:
    xs = [x2[:, 0::2], x2[:, 1::2]]
  else:
    xs = [x2]
  codes = _as_int8(w.codes)
  levels = None if w.levels is None else w.levels.astype(jnp.float32)
  return xs, sx, codes, scales, zeros, levels


def forward(x2, w: ref.QMatmulWeight, *, p: Plan, interpret: bool, out_dtype):
  """The pallas_call (no custom_vjp)."""
  xs, sx, codes, scales, zeros, levels = prepare_inputs(x2, w, p)
  nm, nn, nk = pl.cdiv(p.m, p.bm), p.n // p.bn, p.kc // p.bk
  if p.r > 1 or p.gc == p.bk:
    view = (p.kc // p.bk, p.r, p.n)
    s_spec = pl.BlockSpec((None, p.r, p.bn), lambda i, j, k: (k, 0, j))
  else:  # one group spans gc / bk tiles
    view = (scales.shape[0], 1, p.n)
    ratio = p.gc // p.bk
    # lax.div, not //: floor_divide lowers through `sign`, whose Mosaic rule
    # queries the local device (fails in deviceless AOT compiles).
    s_spec = pl.BlockSpec((None, 1, p.bn),
                          lambda i, j, k: (jax.lax.div(k, ratio), 0, j))
  args, specs = [], []
  for xa in xs:
    args.append(xa)
    specs.append(pl.BlockSpec((p.bm, p.bk), lambda i, j, k: (i, k)))
  if p.w8a8:
    args.append(sx)
    specs.append(pl.BlockSpec((p.bm, 1), lambda i, j, k: (i, 0)))
  args += [codes, scales.reshape(view)]
  specs += [pl.BlockSpec((p.bk, p.bn), lambda i, j, k: (k, j)), s_spec]
  if p.has_zero:
    args.append(zeros.reshape(view))
    specs.append(s_spec)
  if p.fmt == "lut":
    args.append(levels)
    specs.append(pl.BlockSpec(memory_space=pltpu.SMEM))
  vmem = 4 * (p.bk * p.bn * (6 if not p.w8a8 else 2) + 3 * p.bm * p.bn
              + 2 * len(xs) * p.bm * p.bk)
  out = pl.pallas_call(
      functools.partial(_kernel, p=p, nx=len(xs)),
      out_shape=jax.ShapeDtypeStruct((p.m, p.n), out_dtype),
      grid=(nm, nn, nk),
      in_specs=specs,
      out_specs=pl.BlockSpec((p.bm, p.bn), lambda i, j, k: (i, j)),
      scratch_shapes=[pltpu.VMEM((p.bm, p.bn), jnp.float32)],
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "arbitrary"),
          vmem_limit_bytes=int(min(max(2 * vmem, 32 << 20), 100 << 20))),
      interpret=interpret,
      name=f"qmm_{p.fmt}{'_packed' if p.packed else ''}"
           f"{'_w8a8' if p.w8a8 else ''}_bm{p.bm}_bn{p.bn}_bk{p.bk}",
  )(*args)
  return out


def quantized_matmul_pallas_tpu(x2: jax.Array, w: ref.QMatmulWeight, *,
                                interpret: bool, activation_bits: int | None,
                                out_dtype: Any,
                                block_sizes: Any = None) -> jax.Array:
  """The ``"pallas_tpu"`` backend: ``[M, K] x W -> [M, N]`` (custom_vjp)."""
  return ref.run_pallas_backend(make_plan, forward, x2, w,
                                interpret=interpret,
                                activation_bits=activation_bits,
                                out_dtype=out_dtype, block_sizes=block_sizes)
