r"""Deployment layouts: AutoAWQ GEMM int32 packing and MARLIN tiles (offline).

Both take a 4-bit :class:`~jaxkit.quantization.QuantizedArray` of a Flax
``[in, out]`` kernel grouped along the input axis (``axis=0``) and return
the arrays a GPU kernel reads; the ``from_*`` functions invert them exactly.

* **AutoAWQ (GEMM)**: asymmetric codes, 8 nibbles per int32 along the output
  axis in the order ``AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]`` (nibble ``i`` of
  packed column ``c`` holds output column ``8c + AWQ_ORDER[i]``), for both
  ``qweight [in, out/8]`` and ``qzeros [in/G, out/8]``; ``scales [in/G, out]``
  float16. Checked against AutoAWQ's ``WQLinear_GEMM.from_linear`` and
  ``awq/utils/packing_utils.py`` (``AWQ_ORDER`` / ``AWQ_REVERSE_ORDER``).
* **MARLIN**: symmetric codes offset by 8, 16×16 tiles, the per-1024
  permutation ``_perm`` and scale permutations of ``IST-DASLab/marlin``
  (``marlin/__init__.py``: ``_get_perms`` and ``Layer.pack``), 8 nibbles per
  int32: ``B [in/16, 2·out]``, ``s [in/G, out]`` float16. The MARLIN kernel
  itself needs ``in % 128 == 0``, ``out % 256 == 0`` and ``G ∈ {128, in}``;
  the repacking here only needs ``in % 16``, ``out % 64`` (and the scale
  permutation's size) — the kernel is in the kernels issue.

References:
  Frantar et al., `MARLIN: Mixed-Precision Auto-Regressive Parallel Inference
  on Large Language Models`, arXiv:2408.11743, 2024.

  Lin et al., `AWQ`, arXiv:2306.00978 (AutoAWQ packing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src.typing import ArrayLike
from jaxkit.quantization import formats as F

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def _check_int4(q, symmetric, name="q"):
  if not isinstance(q, F.QuantizedArray) or q.format != "int":
    raise TypeError(f"`{name}` must be an integer QuantizedArray.")
  if q.bits != 4 or q.ndim != 2 or q.axis != 0:
    raise ValueError(f"`{name}` must be a 4-bit [in, out] kernel grouped along "
                     f"axis 0; got bits={q.bits}, shape={q.shape}, "
                     f"axis={q.axis}.")
  if symmetric and q.zero_points is not None:
    raise ValueError(f"`{name}` must be symmetric (no zero points) for MARLIN.")
  if not symmetric and q.zero_points is None:
    raise ValueError(f"`{name}` must be asymmetric (zero points) for AutoAWQ.")


def _pack8(v):
  """[..., n] ints in [0, 15] -> [..., n/8] int32, nibble i = column 8c + i."""
  v = v.astype(jnp.uint32).reshape(*v.shape[:-1], -1, 8)
  shifts = jnp.arange(8, dtype=jnp.uint32) * 4
  return jax.lax.bitcast_convert_type(
      jnp.sum(v << shifts, axis=-1, dtype=jnp.uint32), jnp.int32)


def _unpack8(p):
  u = jax.lax.bitcast_convert_type(jnp.asarray(p, jnp.int32), jnp.uint32)
  shifts = jnp.arange(8, dtype=jnp.uint32) * 4
  v = (u[..., None] >> shifts) & 0xF
  return v.reshape(*u.shape[:-1], -1).astype(jnp.int32)


def to_awq_layout(q: F.QuantizedArray) -> dict[str, jax.Array]:
  """AutoAWQ GEMM layout of an asymmetric 4-bit kernel.

  Args:
    q: 4-bit asymmetric :class:`~jaxkit.quantization.QuantizedArray` of an
      ``[in, out]`` kernel grouped along axis 0 (``out % 8 == 0``).

  Returns:
    ``{'qweight': int32 [in, out/8], 'qzeros': int32 [in/G, out/8],
    'scales': float16 [in/G, out]}``.

  Raises:
    TypeError / ValueError: not a 4-bit asymmetric axis-0 kernel, ``out`` not
      a multiple of 8.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import quantize, to_awq_layout
    >>> q = quantize(jnp.ones((4, 8)), bits=4, axis=0, symmetric=False)
    >>> {k: v.shape for k, v in to_awq_layout(q).items()}
    {'qweight': (4, 1), 'qzeros': (1, 1), 'scales': (1, 8)}
  """
  _check_int4(q, symmetric=False)
  if q.shape[1] % 8:
    raise ValueError(f"`q` needs out % 8 == 0, got shape {q.shape}.")
  order = np.asarray(AWQ_ORDER)

  def pack(v):
    v = v.reshape(v.shape[0], -1, 8)[:, :, order]
    return _pack8(v.reshape(v.shape[0], -1))

  return dict(qweight=pack(q.codes.astype(jnp.int32)),
              qzeros=pack(jnp.round(q.zero_points).astype(jnp.int32)),
              scales=q.scales.astype(jnp.float16))


def from_awq_layout(qweight: ArrayLike, qzeros: ArrayLike, scales: ArrayLike,
                    *, dtype=jnp.float16) -> F.QuantizedArray:
  """Inverse of :func:`to_awq_layout` (reads AutoAWQ GEMM checkpoints).

  Args:
    qweight: int32 ``[in, out/8]``.
    qzeros: int32 ``[in/G, out/8]``.
    scales: ``[in/G, out]``.
    dtype: the dtype :func:`~jaxkit.quantization.dequantize` returns.

  Returns:
    4-bit asymmetric :class:`~jaxkit.quantization.QuantizedArray`
    (``axis=0``, ``group_size = in / (in/G)``).

  Raises:
    ValueError: inconsistent shapes.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import (quantize, to_awq_layout,
    ...                                  from_awq_layout, dequantize)
    >>> q = quantize(jnp.arange(64.0).reshape(8, 8), bits=4, axis=0,
    ...              symmetric=False, dtype=jnp.float16)
    >>> r = from_awq_layout(**to_awq_layout(q))
    >>> bool(jnp.all(r.codes == q.codes))
    True
  """
  qweight, qzeros, scales = map(jnp.asarray, (qweight, qzeros, scales))
  n_in, n_out = qweight.shape[0], qweight.shape[1] * 8
  if scales.shape[1] != n_out or qzeros.shape != (scales.shape[0],
                                                  qweight.shape[1]):
    raise ValueError(f"inconsistent AWQ shapes: qweight {qweight.shape}, "
                     f"qzeros {qzeros.shape}, scales {scales.shape}.")
  if n_in % scales.shape[0]:
    raise ValueError("`scales` rows must divide the input size.")
  inv = np.argsort(np.asarray(AWQ_ORDER))

  def unpack(p):
    v = _unpack8(p).reshape(p.shape[0], -1, 8)[:, :, inv]
    return v.reshape(p.shape[0], -1)

  group = n_in // scales.shape[0]
  return F.QuantizedArray(
      codes=unpack(qweight).astype(jnp.uint8), scales=scales,
      zero_points=unpack(qzeros).astype(scales.dtype), bits=4,
      group_size=None if group == n_in else group, axis=0, format="int",
      dtype=dtype)


def _marlin_perms():
  """MARLIN's weight (1024) and scale (64, 32) permutations."""
  perm = []
  for i in range(32):
    col = i // 4
    rows = [2 * (i % 4), 2 * (i % 4) + 1, 2 * (i % 4 + 4),
            2 * (i % 4 + 4) + 1]
    perm1 = [16 * r + col + 8 * b for b in (0, 1) for r in rows]
    for j in range(4):
      perm.extend(p + 256 * j for p in perm1)
  perm = np.asarray(perm).reshape(-1, 8)[:, list(AWQ_ORDER)].ravel()
  scale_perm = [i + 8 * j for i in range(8) for j in range(8)]
  single = [2 * i + j for i in range(4) for j in (0, 1, 8, 9, 16, 17, 24, 25)]
  return perm, np.asarray(scale_perm), np.asarray(single)


def to_marlin_layout(q: F.QuantizedArray) -> dict[str, jax.Array]:
  r"""MARLIN layout of a symmetric 4-bit kernel (offline repack).

  Codes :math:`c \in [-7, 7]` become :math:`c + 8`; the ``[in, out]`` code
  matrix is cut into 16×16 tiles (tile-major rows of length ``16·out``),
  each run of 1024 values is permuted by MARLIN's ``_perm`` and packed 8 per
  int32; scales are permuted by ``_scale_perm`` (grouped) or
  ``_scale_perm_single`` (one group).

  Args:
    q: symmetric 4-bit :class:`~jaxkit.quantization.QuantizedArray` of an
      ``[in, out]`` kernel grouped along axis 0.

  Returns:
    ``{'B': int32 [in/16, 2·out], 's': float16 [in/G, out]}``.

  Raises:
    TypeError / ValueError: not a symmetric 4-bit axis-0 kernel; ``in`` not
      a multiple of 16 or ``out`` not a multiple of 64.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import quantize, to_marlin_layout
    >>> q = quantize(jnp.ones((16, 64)), bits=4, axis=0)
    >>> {k: v.shape for k, v in to_marlin_layout(q).items()}
    {'B': (1, 128), 's': (1, 64)}

  References:
    Frantar et al., arXiv:2408.11743; ``IST-DASLab/marlin`` ``Layer.pack``.

    Catalog: seed_002 #57.
  """
  _check_int4(q, symmetric=True)
  k, n = q.shape
  if k % 16 or n % 64:
    raise ValueError(f"MARLIN repacking needs in % 16 == 0 and out % 64 == 0, "
                     f"got shape {q.shape}.")
  perm, scale_perm, single = _marlin_perms()
  w = q.codes.astype(jnp.int32) + 8
  w = w.reshape(k // 16, 16, n // 16, 16).transpose(0, 2, 1, 3)
  w = w.reshape(k // 16, n * 16)
  w = w.reshape(-1, perm.size)[:, perm].reshape(k // 16, n * 16)
  s = q.scales.astype(jnp.float16)
  sp = scale_perm if s.shape[0] > 1 else single
  if s.size % sp.size:
    raise ValueError(f"MARLIN's scale permutation needs a multiple of "
                     f"{sp.size} scales, got {s.shape}.")
  s = s.reshape(-1, sp.size)[:, sp].reshape(-1, n)
  return dict(B=_pack8(w), s=s)


def from_marlin_layout(b: ArrayLike, s: ArrayLike, *, dtype=jnp.float16
                       ) -> F.QuantizedArray:
  """Inverse of :func:`to_marlin_layout`.

  Args:
    b: int32 ``[in/16, 2·out]``.
    s: ``[in/G, out]`` permuted scales.
    dtype: the dtype :func:`~jaxkit.quantization.dequantize` returns.

  Returns:
    Symmetric 4-bit :class:`~jaxkit.quantization.QuantizedArray`
    (``axis=0``).

  Raises:
    ValueError: inconsistent shapes.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import (quantize, to_marlin_layout,
    ...                                  from_marlin_layout)
    >>> w = jax.random.normal(jax.random.key(0), (32, 64))
    >>> q = quantize(w, bits=4, group_size=16, axis=0, dtype=jnp.float16)
    >>> r = from_marlin_layout(**{k.lower(): v for k, v in
    ...                           to_marlin_layout(q).items()})
    >>> bool(jnp.all(r.codes == q.codes)), bool(jnp.all(r.scales == q.scales))
    (True, True)

  References:
    Frantar, Castro, Chen, Hoefler, Alistarh, `MARLIN: Mixed-Precision
    Auto-Regressive Parallel Inference on Large Language Models`,
    arXiv:2408.11743, 2024.

    Catalog: seed_002 #57.
  """
  b, s = jnp.asarray(b), jnp.asarray(s)
  k, n = b.shape[0] * 16, b.shape[1] // 2
  if s.shape[1] != n or k % s.shape[0]:
    raise ValueError(f"inconsistent MARLIN shapes: B {b.shape}, s {s.shape}.")
  perm, scale_perm, single = _marlin_perms()
  w = _unpack8(b)  # [k/16, 16n]
  w = w.reshape(-1, perm.size)[:, np.argsort(perm)].reshape(k // 16, n * 16)
  w = w.reshape(k // 16, n // 16, 16, 16).transpose(0, 2, 1, 3).reshape(k, n)
  sp = scale_perm if s.shape[0] > 1 else single
  s = s.reshape(-1, sp.size)[:, np.argsort(sp)].reshape(-1, n)
  group = k // s.shape[0]
  return F.QuantizedArray(
      codes=(w - 8).astype(jnp.int8), scales=s, bits=4,
      group_size=None if group == k else group, axis=0, format="int",
      dtype=dtype)
