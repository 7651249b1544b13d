"""Public entry of block-sparse attention: argument checks and dispatch."""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit.kernels import _registry
from jaxkit.kernels.sparse_attention import masks as masks_lib
from jaxkit.kernels.sparse_attention import pallas_gpu
from jaxkit.kernels.sparse_attention import pallas_tpu
from jaxkit.kernels.sparse_attention import reference

OP = "sparse_attention"

DEFAULT_BLOCK = 128


def _round_up(x: int, m: int) -> int:
  return -(-x // m) * m


def default_blocks(t: int, s: int, block_q: int | None,
                   block_kv: int | None) -> tuple[int, int]:
  """Default tile sizes: 128, or the (8-aligned) whole length when shorter."""
  if block_q is None:
    block_q = min(DEFAULT_BLOCK, _round_up(t, 8))
  if block_kv is None:
    block_kv = min(DEFAULT_BLOCK, _round_up(s, 8))
  return block_q, block_kv


def _xla_backend(q, k, v, valid, *, mask, scale, block_q, block_kv,
                 interpret):
  bq, bk = default_blocks(q.shape[1], k.shape[1], block_q, block_kv)
  info = masks_lib.block_mask_info(mask, q.shape[1], k.shape[1], bq, bk)
  return reference.sparse_attention_xla(q, k, v, valid, mask_info=info,
                                        scale=scale, interpret=interpret)


BACKENDS = (
    _registry.Backend("pallas_tpu", ("tpu",), pallas_tpu.sparse_attention_tpu),
    _registry.Backend("pallas_gpu", ("gpu",), pallas_gpu.sparse_attention_gpu),
    _registry.Backend("xla", None, _xla_backend),
)


def _check_block(value, name):
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"`{name}` must be a positive int or None, got {value!r}.")
  if value < 1:
    raise ValueError(f"`{name}` must be a positive int, got {value}.")
  return int(value)


def check_inputs(q, k, v, padding_mask, mask, scale):
  """Validates shapes / dtypes at trace time; returns normalised arguments."""
  arrays = {}
  for name, x in (("q", q), ("k", k), ("v", v)):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise TypeError(f"`{name}` must be floating, got dtype {x.dtype}.")
    if x.ndim != 4:
      raise ValueError(
          f"`{name}` must have rank 4 ([B, T, N, H] for q, [B, S, K, H] for "
          f"k/v), got shape {x.shape}.")
    arrays[name] = x
  q, k, v = arrays["q"], arrays["k"], arrays["v"]
  b, t, n, h = q.shape
  if k.shape != v.shape:
    raise ValueError(
        f"`k` and `v` must have the same shape [B, S, K, H], got {k.shape} and "
        f"{v.shape}.")
  if k.shape[0] != b:
    raise ValueError(f"batch mismatch: q has B={b}, k/v have B={k.shape[0]}.")
  if k.shape[3] != h:
    raise ValueError(
        f"head dim mismatch: q has H={h}, k/v have H={k.shape[3]}.")
  kh = k.shape[2]
  if n % kh:
    raise ValueError(
        f"the number of query heads N={n} must be a multiple of the number of "
        f"key/value heads K={kh} (grouped-query attention).")
  s = k.shape[1]
  if padding_mask is not None:
    if isinstance(padding_mask, jax.core.Tracer) or hasattr(
        padding_mask, "dtype"):
      pm_dtype = padding_mask.dtype
    else:
      padding_mask = np.asarray(padding_mask)
      pm_dtype = padding_mask.dtype
    if pm_dtype != jnp.bool_:
      raise TypeError(
          f"`padding_mask` must be boolean [B, S] (True = real key), got dtype "
          f"{pm_dtype}.")
    if tuple(padding_mask.shape) != (b, s):
      raise ValueError(
          f"`padding_mask` must have shape [B, S] = {(b, s)}, got "
          f"{tuple(padding_mask.shape)}.")
    padding_mask = jnp.asarray(padding_mask)
  mask = masks_lib.as_mask(mask)
  mask.materialize(t, s)  # raises on a user array of the wrong shape
  if scale is None:
    scale = 1.0 / math.sqrt(h)
  elif isinstance(scale, jax.core.Tracer):
    raise TypeError("`scale` must be a static Python number, got a tracer.")
  else:
    scale = float(scale)
    if not math.isfinite(scale):
      raise ValueError(f"`scale` must be finite, got {scale}.")
  return q, k, v, padding_mask, mask, scale


def sparse_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                     mask, padding_mask: jax.Array | None = None,
                     scale: float | None = None, block_q: int | None = None,
                     block_kv: int | None = None,
                     implementation: str | None = None,
                     interpret: bool | None = None) -> jax.Array:
  r"""Block-sparse (grouped-query) softmax attention with a static mask.

  .. math::
    o_{b t n} = \sum_{s} \mathrm{softmax}_s\big(\sigma\, q_{b t n} \cdot
      k_{b s g(n)} + \log M_{t s} + \log P_{b s}\big)\, v_{b s g(n)},
    \qquad g(n) = \lfloor n K / N \rfloor,

  where ``M`` is the static ``mask`` and ``P`` the per-row ``padding_mask``.
  Computed tile by tile with a flash-style softmax; the ``(q-block,
  kv-block)`` tiles that ``mask`` leaves empty are skipped (never computed),
  tiles it fills completely are not masked. Query rows that see no key
  (mask and padding together) output zeros, with finite (zero) gradients.
  bf16/f16 inputs are computed in float32.

  Args:
    q: queries ``[B, T, N, H]``.
    k: keys ``[B, S, K, H]``, ``N`` a multiple of ``K``.
    v: values ``[B, S, K, H]``.
    mask: a :mod:`jaxkit.kernels.masks` object (``CausalMask()``,
      ``LocalMask(w)``, ``GlobalLocalMask(w, g)``, ... and their ``|`` / ``&``)
      or a concrete boolean ``[T, S]`` array; static (compiled once into block
      metadata). Query ``i`` sits at position ``i + S - T``.
    padding_mask: optional boolean ``[B, S]``; ``False`` marks padded keys of
      that batch row (may be traced).
    scale: logits scale :math:`\sigma` (static); default ``1 / sqrt(H)``.
    block_q: query tile size (default 128, or ``T`` rounded up to 8 when
      shorter; 64 on GPU).
    block_kv: key tile size (same defaults).
    implementation: ``None`` (best for the device, else ``"xla"``),
      ``"pallas_tpu"``, ``"pallas_gpu"`` or ``"xla"``.
    interpret: run a Pallas kernel in the Pallas interpreter (CPU tests).

  Returns:
    ``[B, T, N, H]`` in ``q.dtype``.

  Raises:
    ValueError: on shapes that do not fit (head counts that do not divide, head
      dims or batch that differ, a mask array or padding mask of the wrong
      shape).
    TypeError: on non-float inputs, a non-bool or traced mask.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit.kernels.sparse_attention import masks, sparse_attention
    >>> q = jnp.ones((1, 16, 4, 8)); kv = jnp.ones((1, 16, 2, 8))
    >>> sparse_attention(q, kv, kv, mask=masks.CausalMask()).shape
    (1, 16, 4, 8)

  References:
    Dao et al., "FlashAttention: Fast and Memory-Efficient Exact Attention with
    IO-Awareness", NeurIPS 2022, arXiv:2205.14135; Zaheer et al., "Big Bird:
    Transformers for Longer Sequences", NeurIPS 2020, arXiv:2007.14062.
  """
  q, k, v, padding_mask, mask, scale = check_inputs(q, k, v, padding_mask,
                                                    mask, scale)
  block_q = _check_block(block_q, "block_q")
  block_kv = _check_block(block_kv, "block_kv")
  return _registry.dispatch(OP, BACKENDS, implementation, interpret, q, k, v,
                            padding_mask, mask=mask, scale=scale,
                            block_q=block_q, block_kv=block_kv)
