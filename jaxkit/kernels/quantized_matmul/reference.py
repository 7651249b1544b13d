r"""XLA reference of :func:`~jaxkit.kernels.quantized_matmul` (oracle + CPU path).

Also holds what every backend shares:

* :class:`QMatmulWeight`, the weight layout the kernels read: codes
  ``[K, N]`` (or packed two 4-bit codes per byte, ``[K/2, N]``, in the
  layout of :func:`jaxkit.quantization.pack_int4` along axis 0 and of
  ``jaxkit.nn.QuantDense``: byte ``[i, n]`` holds row ``2i`` in its low and
  row ``2i+1`` in its high nibble), scales ``[G_k, G_n]`` broadcast over
  groups of ``K/G_k`` rows and ``N/G_n`` columns, optional zero points and a
  look-up table;
* :func:`as_qmatmul_weight` / :func:`from_quant_dense`, the converters;
* :func:`dequantize_weight` and the shared ``custom_vjp``
  (:func:`with_dequant_vjp`): ``dx = dy @ dequantize(w)^T`` computed in XLA
  for every backend; codes, scales, zero points and levels get zero
  cotangents.

The reference computes in float32 (at least): for ``M <= 16`` rows it is a
scan over K chunks that reads the (packed) codes once without writing a
dequantized ``[K, N]`` copy (the decode regime is memory bound); for more
rows it dequantizes to the activation dtype and calls ``jnp.dot`` with float32
accumulation. The W8A8 path quantizes each row of ``x`` to int8 with an
abs-max scale and runs an int8 x int8 -> int32 ``dot_general``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxkit.quantization import formats as F

FORMATS = ("int", "fp", "lut")
# Rows at or below which the XLA path scans over K chunks (GEMV regime).
GEMV_MAX_ROWS = 16
_FP_CODE_DTYPES = {jnp.dtype(jnp.float8_e4m3fn): "e4m3",
                   jnp.dtype(jnp.float8_e5m2): "e5m2"}


@flax.struct.dataclass
class QMatmulWeight:
  r"""A ``[K, N]`` quantized weight in the layout the matmul kernels read.

  .. math::
    W_{kn} = (q_{kn} - z_{gh})\,s_{gh} \;(\texttt{'int'}, \texttt{'fp'}
    \text{ without } z), \qquad W_{kn} = \ell[q_{kn}]\,s_{gh} + z_{gh}
    \;(\texttt{'lut'}),

  with :math:`g = \lfloor k\,G_k / K \rfloor`, :math:`h = \lfloor n\,G_n /
  N\rfloor`.

  Attributes:
    codes: ``[K, N]`` int8 / uint8 / float8 codes, or ``[K/2, N]`` uint8 /
      int8 bytes holding two 4-bit codes (``packed=True``).
    scales: ``[G_k, G_n]`` scales (``G_k`` divides ``K``, ``G_n`` divides
      ``N``).
    zero_points: like ``scales`` or ``None``.
    levels: ``[L]`` look-up table (``format='lut'``) or ``None``.
    bits: bits per code (static).
    format: ``'int'``, ``'fp'`` or ``'lut'`` (static).
    packed: two 4-bit codes per byte along K (static).
    signed: packed nibbles are two's complement (static; unpacked codes
      carry their signedness in their dtype).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit.kernels import QMatmulWeight, quantized_matmul
    >>> w = QMatmulWeight(codes=jnp.array([[1, -2], [3, 0]], jnp.int8),
    ...                   scales=jnp.array([[0.5, 0.25]]))
    >>> print(w.shape, w.group_rows)
    (2, 2) 2
    >>> print(quantized_matmul(jnp.array([[1., 1.]]), w, implementation="xla"))
    [[ 2.  -0.5]]
  """

  codes: jax.Array
  scales: jax.Array
  zero_points: jax.Array | None = None
  levels: jax.Array | None = None
  bits: int = flax.struct.field(pytree_node=False, default=8)
  format: str = flax.struct.field(pytree_node=False, default="int")
  packed: bool = flax.struct.field(pytree_node=False, default=False)
  signed: bool = flax.struct.field(pytree_node=False, default=True)

  @property
  def shape(self) -> tuple[int, int]:
    kc, n = self.codes.shape
    return (2 * kc if self.packed else kc, n)

  @property
  def group_rows(self) -> int:
    """Rows of W per scale (``K / G_k``)."""
    return self.shape[0] // self.scales.shape[0]


def as_qmatmul_weight(w: Any, *, pack: bool = False) -> QMatmulWeight:
  """Converts a 2-D :class:`~jaxkit.quantization.QuantizedArray` (no copy).

  Args:
    w: ``QuantizedArray`` of shape ``[K, N]`` (any ``axis`` / ``group_size``
      layout), or a :class:`QMatmulWeight` (returned as is).
    pack: pack 4-bit (or narrower) ``'int'`` / ``'lut'`` codes two per byte
      along K (halves the bytes the kernels read; ``K`` must be even). Do
      this once, outside the step function.

  Returns:
    :class:`QMatmulWeight`.

  Raises:
    TypeError: ``w`` is not a ``QuantizedArray``.
    ValueError: not 2-D, an unsupported format, or ``pack`` with codes wider
      than 4 bits or an odd ``K``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import quantize
    >>> from jaxkit.kernels.quantized_matmul import as_qmatmul_weight
    >>> q = quantize(jnp.ones((64, 8)), bits=4, group_size=32, axis=0)
    >>> pw = as_qmatmul_weight(q, pack=True)
    >>> pw.codes.shape, pw.scales.shape, pw.shape
    ((32, 8), (2, 8), (64, 8))
  """
  if isinstance(w, QMatmulWeight):
    return w
  if not isinstance(w, F.QuantizedArray):
    raise TypeError("`w` must be a jaxkit.quantization.QuantizedArray, a "
                    "SparseOutlierArray or a QMatmulWeight, got "
                    f"{type(w).__name__}.")
  if w.codes.ndim != 2:
    raise ValueError(f"`w` must be a 2-D [K, N] weight, got shape {w.shape}.")
  if w.format not in FORMATS:
    raise ValueError(f"`w.format` must be one of {FORMATS}, got {w.format!r}.")
  if w.format == "lut" and w.levels is None:
    raise ValueError("`w` has format='lut' but no `levels`.")
  if w.scales.ndim != 2 or any(
      s == 0 or d % s for d, s in zip(w.shape, w.scales.shape)):
    raise ValueError(f"`w.scales` must be [G_k, G_n] dividing {w.shape}, got "
                     f"{w.scales.shape}.")
  codes = w.codes
  if w.format == "fp" and jnp.dtype(codes.dtype) not in _FP_CODE_DTYPES:
    # float4 etc: keep as is; only the XLA path takes them.
    pass
  signed = jnp.issubdtype(codes.dtype, jnp.signedinteger)
  packed = False
  if pack:
    if w.format == "fp" or w.bits > 4:
      raise ValueError("`pack=True` needs 'int' / 'lut' codes of at most 4 "
                       f"bits, got format={w.format!r}, bits={w.bits}.")
    if w.shape[0] % 2:
      raise ValueError(f"`pack=True` needs an even K, got K={w.shape[0]}.")
    codes = F.pack_int4(codes, axis=0)
    packed = True
  return QMatmulWeight(codes=codes, scales=w.scales,
                       zero_points=w.zero_points, levels=w.levels,
                       bits=int(w.bits), format=w.format, packed=packed,
                       signed=bool(signed))


def from_quant_dense(codes: jax.Array, scales: jax.Array,
                     zeros: jax.Array | None, *, bits: int) -> QMatmulWeight:
  r"""Wraps ``jaxkit.nn.QuantDense`` storage (no copy).

  ``QuantDense`` stores signed codes ``int8 [K, N]`` (8 bits) or
  two's-complement nibbles ``uint8 [K/2, N]`` (4 bits, row ``2i`` in the low
  nibble), scales ``[K/g, N]`` and signed integer zero points ``int8
  [K/g, N]`` (or ``None``): :math:`W = (q - z)\,s`.

  Args:
    codes: ``int8 [K, N]`` or ``uint8 [K/2, N]``.
    scales: ``[K/g, N]``.
    zeros: ``[K/g, N]`` or ``None``.
    bits: 8 or 4.

  Returns:
    :class:`QMatmulWeight` (``format='int'``).

  Raises:
    ValueError: ``bits`` not 4 / 8.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.kernels.quantized_matmul import from_quant_dense
    >>> w = from_quant_dense(jnp.zeros((4, 3), jnp.uint8), jnp.ones((1, 3)),
    ...                      None, bits=4)
    >>> w.shape
    (8, 3)
  """
  if bits not in (4, 8):
    raise ValueError(f"`bits` must be 4 or 8, got {bits!r}.")
  return QMatmulWeight(codes=codes, scales=scales, zero_points=zeros,
                       bits=bits, format="int", packed=bits == 4, signed=True)


# ----------------------------------------------------------------------------
# Dequantization (XLA).
# ----------------------------------------------------------------------------


def unpack_codes(w: QMatmulWeight) -> jax.Array:
  """``[K, N]`` int32 codes (packed nibbles split, uint8 kept unsigned)."""
  c = w.codes
  if w.format == "fp":
    raise ValueError("fp codes are not integers.")
  if not w.packed:
    return c.astype(jnp.int32)
  p = c.astype(jnp.int32) & 0xFF
  lo, hi = p & 0xF, p >> 4
  if w.signed:
    lo, hi = (lo ^ 8) - 8, (hi ^ 8) - 8
  return jnp.stack([lo, hi], axis=1).reshape(w.shape)


def _expand(a, shape):
  for ax, (d, s) in enumerate(zip(shape, a.shape)):
    if s != d and s != 1:
      a = jnp.repeat(a, d // s, axis=ax)
  return jnp.broadcast_to(a, shape)


def _values(w: QMatmulWeight, cdt) -> jax.Array:
  """``[K, N]`` code values before scaling (levels looked up for 'lut')."""
  if w.format == "fp":
    return w.codes.astype(cdt)
  c = unpack_codes(w)
  if w.format == "lut":
    return jnp.take(w.levels.astype(cdt), c)
  return c.astype(cdt)


def _half_values(w: QMatmulWeight, cdt) -> tuple[jax.Array, jax.Array]:
  """Packed codes: values of rows ``0::2`` and ``1::2``, each ``[K/2, N]``."""
  p = w.codes.astype(jnp.int32) & 0xFF
  halves = [p & 0xF, p >> 4]
  if w.signed and w.format == "int":
    halves = [(h ^ 8) - 8 for h in halves]
  if w.format == "lut":
    lv = w.levels.astype(cdt)
    return tuple(jnp.take(lv, h) for h in halves)
  return tuple(h.astype(cdt) for h in halves)


def _scale_rows(v, s, z, fmt):
  """``v [R, N]`` values, ``s`` / ``z`` ``[G, G_n]`` with ``G | R``."""
  r, n = v.shape
  g, gn = s.shape
  if gn not in (1, n):
    s = _expand(s, (g, n))
    z = None if z is None else _expand(z, (g, n))
  v3 = v.reshape(g, r // g, n)
  s3 = s[:, None, :]
  z3 = 0.0 if z is None else z[:, None, :]
  out = v3 * s3 + z3 if fmt == "lut" else (v3 - z3) * s3
  return out.reshape(r, n)


def _cast_sz(w, cdt):
  return (w.scales.astype(cdt),
          None if w.zero_points is None else w.zero_points.astype(cdt))


def dequantize_halves(w: QMatmulWeight, cdt=jnp.float32):
  """Packed weight -> dequantized rows ``0::2`` and ``1::2`` (``[K/2, N]``)."""
  s, z = _cast_sz(w, cdt)
  return tuple(_scale_rows(v, s, z, w.format) for v in _half_values(w, cdt))


def dequantize_weight(w: QMatmulWeight, dtype=jnp.float32) -> jax.Array:
  """``[K, N]`` dequantized weight (computed in float32, cast to ``dtype``)."""
  cdt = jnp.promote_types(w.scales.dtype, jnp.float32)
  kc, n = w.codes.shape
  gk = w.scales.shape[0]
  if w.packed and kc % gk == 0:
    lo, hi = dequantize_halves(w, cdt)
    return jnp.stack([lo, hi], axis=1).reshape(w.shape).astype(dtype)
  s, z = _cast_sz(w, cdt)
  return _scale_rows(_values(w, cdt), s, z, w.format).astype(dtype)


def dequantize_entries(w: QMatmulWeight, rows: jax.Array,
                       cols: jax.Array) -> jax.Array:
  """Dequantized ``W[rows, cols]`` (float32), reading only those entries."""
  k, n = w.shape
  if w.packed:
    byte = w.codes[rows // 2, cols].astype(jnp.int32) & 0xFF
    c = jnp.where(rows % 2 == 0, byte & 0xF, byte >> 4)
    if w.signed:
      c = (c ^ 8) - 8
    v = c.astype(jnp.float32)
  elif w.format == "fp":
    v = w.codes[rows, cols].astype(jnp.float32)
  else:
    v = w.codes[rows, cols].astype(jnp.float32)
  if w.format == "lut":
    v = jnp.take(w.levels.astype(jnp.float32), v.astype(jnp.int32))
  gk, gn = w.scales.shape
  gi, gj = rows // (k // gk), cols // (n // gn)
  s = w.scales[gi, gj].astype(jnp.float32)
  z = (None if w.zero_points is None
       else w.zero_points[gi, gj].astype(jnp.float32))
  if w.format == "lut":
    return v * s + (0.0 if z is None else z)
  return (v - (0.0 if z is None else z)) * s


# ----------------------------------------------------------------------------
# Forward implementations.
# ----------------------------------------------------------------------------


def _num_chunks(w: QMatmulWeight, chunk_bytes: int) -> int:
  """Chunks along K such that one dequantized float32 chunk ~ chunk_bytes."""
  kc, n = w.codes.shape
  gk = w.scales.shape[0]
  base = kc if gk == 1 else int(np.gcd(kc, gk))
  want = max(1, (w.shape[0] * n * 4) // chunk_bytes)
  divisors = [d for d in range(1, base + 1) if base % d == 0]
  return min((d for d in divisors if d >= want), default=base)


def _gemv(x2, w: QMatmulWeight, chunk_bytes: int = 4 << 20):
  """Small-M product: a scan over K chunks, each dequantized (float32, in
  cache) and multiplied; reads the (packed) codes once and never writes a
  dequantized ``[K, N]`` copy to memory."""
  k, n = w.shape
  kc = w.codes.shape[0]
  m = x2.shape[0]
  nc = _num_chunks(w, chunk_bytes)
  if nc == 1:
    return jnp.dot(x2.astype(jnp.float32), dequantize_weight(w, jnp.float32),
                   preferred_element_type=jnp.float32)
  gk, gn = w.scales.shape

  def split(a):
    return None if a is None else a.reshape(nc, a.shape[0] // nc, *a.shape[1:])

  halves = w.packed and kc % gk == 0
  xf = x2.astype(jnp.float32)
  if halves:  # never interleave: x_even @ W[0::2] + x_odd @ W[1::2]
    xs = tuple(a.reshape(m, nc, kc // nc).transpose(1, 0, 2)
               for a in (xf[:, 0::2], xf[:, 1::2]))
  else:
    xs = (xf.reshape(m, nc, k // nc).transpose(1, 0, 2),)
  chunked = gk > 1
  seq = (xs, split(w.codes), split(w.scales) if chunked else None,
         split(w.zero_points) if chunked else None)

  def body(acc, inp):
    xc, c, s, z = inp
    cw = w.replace(codes=c, scales=w.scales if s is None else s,
                   zero_points=w.zero_points if z is None else z)
    if halves:
      parts = dequantize_halves(cw, jnp.float32)
    else:
      parts = (dequantize_weight(cw, jnp.float32),)
    for xa, wd in zip(xc, parts):
      acc = acc + jnp.dot(xa, wd, preferred_element_type=jnp.float32)
    return acc, None

  acc, _ = jax.lax.scan(body, jnp.zeros((m, n), jnp.float32), seq)
  return acc


def quantize_rows_int8(x2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-row abs-max int8 quantization: ``(q int8 [M, K], s f32 [M, 1])``."""
  xf = x2.astype(jnp.float32)
  amax = jnp.max(jnp.abs(xf), axis=-1, keepdims=True)
  s = jnp.where(amax > 0, amax / 127.0, 1.0)
  q = jnp.clip(jnp.round(xf / s), -127, 127).astype(jnp.int8)
  return q, s


def check_w8a8_weight(w: QMatmulWeight) -> None:
  """Raises ValueError unless ``w`` can take int8 activations."""
  k, n = w.shape
  gk, gn = w.scales.shape
  if w.format != "int" or w.zero_points is not None or (
      not w.packed and not jnp.issubdtype(w.codes.dtype, jnp.signedinteger)):
    raise ValueError(
        "`activation_bits=8` needs symmetric integer weight codes (format "
        f"'int', signed, no zero points); got format={w.format!r}, zero "
        f"points={w.zero_points is not None}, codes {w.codes.dtype}.")
  if gn not in (1, n) or (gn == 1 and gk != 1):
    raise ValueError(
        "`activation_bits=8` needs scales per (K-group, output column) or per "
        f"tensor, got scales {w.scales.shape} for a weight {w.shape}.")


def w8a8_xla(x2, w: QMatmulWeight):
  """int8 x int8 -> int32 matmul with per-row / per-group rescaling (f32)."""
  k, n = w.shape
  gk, _ = w.scales.shape
  xq, sx = quantize_rows_int8(x2)
  q = (unpack_codes(w).astype(jnp.int8) if w.packed
       else w.codes.astype(jnp.int8))
  s = jnp.broadcast_to(w.scales.astype(jnp.float32), (gk, n))
  if gk == 1:
    acc = jax.lax.dot_general(xq, q, (((1,), (0,)), ((), ())),
                              preferred_element_type=jnp.int32)
    return acc.astype(jnp.float32) * s * sx
  g = k // gk
  acc = jax.lax.dot_general(
      xq.reshape(-1, gk, g), q.reshape(gk, g, n),
      (((2,), (1,)), ((1,), (0,))), preferred_element_type=jnp.int32)
  return jnp.einsum("gmn,gn->mn", acc.astype(jnp.float32), s) * sx


def forward_xla(x2: jax.Array, w: QMatmulWeight, *,
                activation_bits: int | None) -> jax.Array:
  """``[M, K] @ W`` in float32 (the reference forward)."""
  if activation_bits == 8:
    return w8a8_xla(x2, w)
  if x2.shape[0] <= GEMV_MAX_ROWS:
    return _gemv(x2, w)
  # XLA:CPU's bf16 GEMM is slower than its f32 one: compute in f32 there.
  cdt = jnp.float32 if jax.default_backend() == "cpu" else x2.dtype
  wd = dequantize_weight(w, cdt)
  return jnp.dot(x2.astype(cdt), wd, preferred_element_type=jnp.float32)


# ----------------------------------------------------------------------------
# The shared custom_vjp.
# ----------------------------------------------------------------------------


def _zero_cotangent(a):
  if a is None:
    return None
  if jnp.issubdtype(a.dtype, jnp.inexact):
    return jnp.zeros_like(a)
  return np.zeros(a.shape, dtype=jax.dtypes.float0)


def run_pallas_backend(make_plan, forward, x2, w, *, interpret: bool,
                       activation_bits, out_dtype, block_sizes=None):
  """Shared body of the Pallas backends: plan the blocks, then call the
  backend's ``forward`` under the dequantized-weight custom VJP."""
  p = make_plan(x2, w, activation_bits=activation_bits,
                block_sizes=block_sizes)
  out_dtype = jnp.dtype(out_dtype)
  impl = functools.partial(forward, p=p, interpret=interpret,
                           out_dtype=out_dtype)
  return with_dequant_vjp(impl, out_dtype, x2, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def with_dequant_vjp(impl, out_dtype, x2, w):
  """``impl(x2, w).astype(out_dtype)`` with ``dx = dy @ dequantize(w)^T``."""
  return impl(x2, w).astype(out_dtype)


def _vjp_fwd(impl, out_dtype, x2, w):
  return impl(x2, w).astype(out_dtype), (w, jnp.zeros((0,), x2.dtype))


def _vjp_bwd(impl, out_dtype, res, dy):
  del impl, out_dtype
  w, xdt = res
  wd = dequantize_weight(w, jnp.float32)
  dx = jax.lax.dot_general(dy.astype(jnp.float32), wd,
                           (((1,), (1,)), ((), ())),
                           preferred_element_type=jnp.float32)
  return dx.astype(xdt.dtype), jax.tree.map(_zero_cotangent, w)


with_dequant_vjp.defvjp(_vjp_fwd, _vjp_bwd)


def quantized_matmul_xla(x2: jax.Array, w: QMatmulWeight, *, interpret: bool,
                         activation_bits: int | None, out_dtype: Any,
                         block_sizes: Any = None) -> jax.Array:
  """The ``"xla"`` backend: ``[M, K] x W -> [M, N]`` (``custom_vjp``)."""
  del interpret, block_sizes
  impl = functools.partial(forward_xla, activation_bits=activation_bits)
  return with_dequant_vjp(impl, jnp.dtype(out_dtype), x2, w)
