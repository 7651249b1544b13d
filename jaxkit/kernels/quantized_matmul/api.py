r"""Public entry of the quantized matmul: :func:`quantized_matmul`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxkit.kernels import _registry
from jaxkit.kernels.quantized_matmul import pallas_gpu
from jaxkit.kernels.quantized_matmul import pallas_tpu
from jaxkit.kernels.quantized_matmul import reference
from jaxkit.quantization import formats as F

QMatmulWeight = reference.QMatmulWeight

BACKENDS = (
    _registry.Backend("pallas_tpu", ("tpu",),
                      pallas_tpu.quantized_matmul_pallas_tpu),
    _registry.Backend("pallas_gpu", ("gpu",),
                      pallas_gpu.quantized_matmul_pallas_gpu),
    _registry.Backend("xla", None, reference.quantized_matmul_xla),
)
IMPLEMENTATIONS = tuple(b.name for b in BACKENDS)
_X_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


def _outlier_correction(x2, w: QMatmulWeight, outliers):
  """``x @ (S - W_dense|_S)``: the sparse side term, [M, N] float32."""
  k, n = w.shape
  idx = outliers.indices.astype(jnp.int32)
  rows, cols = idx // n, idx % n
  delta = (outliers.values.astype(jnp.float32)
           - reference.dequantize_entries(w, rows, cols))
  contrib = x2[:, rows].astype(jnp.float32) * delta[None, :]
  return jnp.zeros((x2.shape[0], n), jnp.float32).at[:, cols].add(contrib)


def quantized_matmul(
    x: jax.Array,
    w: Any,
    *,
    lowrank: tuple[jax.Array, jax.Array] | None = None,
    activation_bits: int | None = None,
    implementation: str | None = None,
    interpret: bool | None = None,
    preferred_element_type: Any = None,
    block_sizes: tuple[int, int, int] | None = None,
) -> jax.Array:
  r"""``x @ dequantize(w)`` with a quantized ``[K, N]`` weight, fused.

  .. math::
    y = x\,\hat W + (x A) B + x\,(S - \hat W|_S), \qquad
    \hat W_{kn} = (q_{kn} - z_{gh})\,s_{gh} \text{ or } \ell[q_{kn}]\,s_{gh}
    + z_{gh},

  with the optional low-rank side term :math:`(xA)B` (LQ-LoRA, LoRC) and the
  sparse outliers :math:`S` of a ``SparseOutlierArray`` (GWQ, SpQR), which
  replace the dense weight at their positions. With ``activation_bits=8``
  (W8A8) each row of ``x`` is quantized to int8 with a dynamic abs-max scale
  :math:`s_x = \max_k |x_k| / 127` and the product runs int8 x int8 with
  int32 accumulation:
  :math:`y_{mn} = s_{x,m} \sum_g s_{gn} \sum_{k \in g} \hat x_{mk} q_{kn}`.

  Accumulation is float32 for every dtype. The side terms and the backward
  pass run in XLA on every backend. Backward: ``dx = dy @ \hat W^T`` (for
  W8A8 straight through the activation rounding); codes, scales, zero points
  and levels get zero cotangents (no gradient to the quantized weight); the
  low-rank factors and outlier values get their ordinary gradients.

  Backends (``implementation``): ``"pallas_tpu"`` (Mosaic; int8 / uint8 /
  packed int4 with or without zero points, float8 E4M3FN / E5M2, LUT up to
  16 levels, W8A8), ``"pallas_gpu"`` (Triton; the same without LUT),
  ``"xla"`` (everything, including float4 codes, large codebooks and scales
  tiled along N). ``None`` picks the first that runs here and takes the
  arguments (on CPU: ``"xla"``, or the TPU kernel in interpret mode with
  ``interpret=True``).

  Args:
    x: ``[..., K]`` float32 or bfloat16 activations.
    w: the weight: a 2-D :class:`~jaxkit.quantization.QuantizedArray`
      (``'int'`` / ``'fp'`` / ``'lut'``; scales ``[K/g, N]`` for groups along
      K, ``[1, N]`` per output channel, ``[K, 1]`` per input channel or
      ``[1, 1]`` per tensor), a
      :class:`~jaxkit.quantization.SparseOutlierArray` over one, or a
      :class:`QMatmulWeight` (packed int4, see :func:`as_qmatmul_weight`
      and :func:`from_quant_dense`).
    lowrank: optional ``(A [K, r], B [r, N])``.
    activation_bits: ``None`` (weight-only) or ``8`` (W8A8; needs symmetric
      integer codes and scales per (group, column) or per tensor).
    implementation: ``None``, ``"pallas_tpu"``, ``"pallas_gpu"`` or
      ``"xla"``.
    interpret: run a Pallas backend with the Pallas interpreter.
    preferred_element_type: output dtype; ``None`` = ``x.dtype``.
    block_sizes: optional ``(bm, bn, bk)`` for the Pallas backends (``bk`` in
      code rows, i.e. K/2 rows for packed codes); ``None`` picks per regime
      (decode ``M <= 16`` or batched).

  Returns:
    ``[..., N]`` array of dtype ``preferred_element_type`` or ``x.dtype``.

  Raises:
    TypeError: ``x`` is not float32 / bfloat16, or ``w`` is not a quantized
      weight.
    ValueError: ``x``'s last dimension is not ``K``, bad ``lowrank`` shapes,
      ``activation_bits`` not in (None, 8) or incompatible with ``w``.
    BackendUnsupportedError: an explicit backend cannot run here or cannot
      take this format.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import quantize, dequantize
    >>> from jaxkit.kernels.quantized_matmul import quantized_matmul
    >>> w = quantize(jax.random.normal(jax.random.key(0), (64, 16)), bits=4,
    ...              group_size=32, axis=0)
    >>> x = jnp.ones((2, 64))
    >>> y = quantized_matmul(x, w)
    >>> y.shape, bool(jnp.allclose(y, x @ dequantize(w), atol=1e-4))
    ((2, 16), True)
    >>> y8 = quantized_matmul(x, w, activation_bits=8)
    >>> bool(jnp.allclose(y8, y, atol=1e-3))
    True

  References:
    Frantar et al., `GPTQ`, arXiv:2210.17323, 2022 (group-wise W4);
    Dettmers et al., `LLM.int8()`, arXiv:2208.07339, 2022 and Xiao et al.,
    `SmoothQuant`, arXiv:2211.10438, 2022 (per-token W8A8);
    Guo et al., `LQ-LoRA`, arXiv:2311.12023, 2023 and Yao et al., `ZeroQuant-V2`
    (LoRC), arXiv:2303.08302, 2023 (low-rank side term);
    Shao et al., `GWQ`, arXiv:2411.00850, 2024 (sparse outliers).

    Catalog: seed_002 #57.
  """
  outliers = None
  if isinstance(w, F.SparseOutlierArray):
    outliers, w = w, w.dense
  w = reference.as_qmatmul_weight(w)
  if isinstance(x, (bool, int, float)) or not hasattr(x, "dtype"):
    x = jnp.asarray(x)
  if jnp.dtype(x.dtype) not in _X_DTYPES:
    raise TypeError(f"`x` must be float32 or bfloat16, got dtype {x.dtype}; "
                    "cast it explicitly.")
  k, n = w.shape
  if x.ndim < 1 or x.shape[-1] != k:
    raise ValueError(f"`x` must have shape [..., K={k}] to match `w` of shape "
                     f"[K, N]={w.shape}, got {x.shape}.")
  if activation_bits not in (None, 8):
    raise ValueError(f"`activation_bits` must be None or 8, got "
                     f"{activation_bits!r}.")
  if activation_bits == 8:
    reference.check_w8a8_weight(w)
  if lowrank is not None:
    if len(lowrank) != 2:
      raise ValueError("`lowrank` must be a pair (A [K, r], B [r, N]).")
    a, b = lowrank
    if (a.ndim != 2 or b.ndim != 2 or a.shape[0] != k or b.shape[1] != n
        or a.shape[1] != b.shape[0]):
      raise ValueError(f"`lowrank` must be (A [{k}, r], B [r, {n}]), got "
                       f"{a.shape} and {b.shape}.")
  out_dtype = jnp.dtype(x.dtype if preferred_element_type is None
                        else preferred_element_type)
  batch = x.shape[:-1]
  x2 = x.reshape(-1, k)
  y = _registry.dispatch(
      "quantized_matmul", BACKENDS, implementation, interpret, x2, w,
      activation_bits=activation_bits, out_dtype=out_dtype,
      block_sizes=block_sizes)
  if lowrank is not None or outliers is not None:
    y = y.astype(jnp.float32)
    if lowrank is not None:
      a, b = lowrank
      xa = jnp.dot(x2, a.astype(x2.dtype), preferred_element_type=jnp.float32)
      y = y + jnp.dot(xa, b.astype(jnp.float32),
                      preferred_element_type=jnp.float32)
    if outliers is not None:
      y = y + _outlier_correction(x2, w, outliers)
    y = y.astype(out_dtype)
  return y.reshape(*batch, n)
