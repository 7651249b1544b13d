"""Grouped-query attention with rotary embeddings, and boolean mask builders.

The layer computes attention in exactly one place, the private
:func:`_attend`. With a mask *object* from :mod:`jaxkit.kernels.masks`
(``CausalMask()``, ``LocalMask(w)``, ``GlobalLocalMask(w, g)``, unions …)
it calls :func:`jaxkit.kernels.sparse_attention`, which skips the tiles the
mask leaves empty (Pallas on TPU / GPU, a block-sparse XLA path on CPU); with
a boolean mask *array* it uses ``jax.nn.dot_product_attention`` (dense XLA).
Both have the layout q ``[B, T, N, H]``, k/v ``[B, S, K, H]``.

Mask builders return boolean ``[T, S]`` arrays (``True`` = the query may
attend the key). Query ``i`` sits at absolute position ``i + S - T`` (queries
are the last ``T`` of ``S`` positions, as in decoding with a cache).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkit._src import checks
from jaxkit.kernels.sparse_attention import masks as kmasks
from jaxkit.kernels.sparse_attention.api import sparse_attention
from jaxkit.nn import layers
from jaxkit.nn import partitioning as pt
from jaxkit.nn import rotary


_check_len = layers._check_positive_int  # pylint: disable=protected-access


def _query_key_positions(q_len: int, kv_len: int | None):
  q_len = _check_len(q_len, "q_len")
  kv_len = q_len if kv_len is None else _check_len(kv_len, "kv_len")
  if kv_len < q_len:
    raise ValueError(
        f"`kv_len` must be >= `q_len` (queries are the last q_len of kv_len "
        f"positions), got kv_len={kv_len} < q_len={q_len}.")
  i = np.arange(q_len)[:, None] + (kv_len - q_len)
  j = np.arange(kv_len)[None, :]
  return i, j


def causal_mask(q_len: int, kv_len: int | None = None) -> jax.Array:
  """Causal mask: query ``i`` attends keys ``j <= i + S - T``.

  Args:
    q_len: number of queries ``T`` (static).
    kv_len: number of keys ``S >= T`` (static; default ``T``).

  Returns:
    Boolean ``[T, S]``.

  Examples:
    >>> import jaxkit
    >>> print(jaxkit.nn.causal_mask(3).astype(int))
    [[1 0 0]
     [1 1 0]
     [1 1 1]]
  """
  i, j = _query_key_positions(q_len, kv_len)
  return jnp.asarray(j <= i)


def local_mask(q_len: int, kv_len: int | None = None, *, window: int,
               causal: bool = True) -> jax.Array:
  """Sliding-window mask: query ``i`` attends keys with ``|i - j| < window``.

  With ``causal=True`` only the past half is kept: ``i - window < j <= i``
  (each query sees itself and the ``window - 1`` previous keys, Mistral /
  Longformer-style local attention).

  Args:
    q_len: number of queries ``T`` (static).
    kv_len: number of keys ``S >= T`` (static; default ``T``).
    window: window size (static, positive).
    causal: also apply the causal constraint.

  Returns:
    Boolean ``[T, S]``.

  Examples:
    >>> import jaxkit
    >>> print(jaxkit.nn.local_mask(4, window=2).astype(int))
    [[1 0 0 0]
     [1 1 0 0]
     [0 1 1 0]
     [0 0 1 1]]

  References:
    Beltagy et al., "Longformer: The Long-Document Transformer",
    arXiv:2004.05150, 2020.
  """
  window = _check_len(window, "window")
  i, j = _query_key_positions(q_len, kv_len)
  m = np.abs(i - j) < window
  if causal:
    m &= j <= i
  return jnp.asarray(m)


def global_local_mask(q_len: int, kv_len: int | None = None, *, window: int,
                      global_tokens: int | Sequence[int] = 1,
                      causal: bool = True) -> jax.Array:
  """Global + local mask (Longformer / BigBird style).

  Every query attends its local window (:func:`local_mask`); global tokens
  (given by absolute position) attend every key and are attended by every
  query. With ``causal=True`` the causal constraint is applied last, so a
  global key is seen only by queries at or after it.

  Args:
    q_len: number of queries ``T`` (static).
    kv_len: number of keys ``S >= T`` (static; default ``T``).
    window: local window size (static, positive).
    global_tokens: an int ``g`` (the first ``g`` positions are global) or a
      sequence of absolute positions in ``[0, S)``.
    causal: also apply the causal constraint.

  Returns:
    Boolean ``[T, S]``.

  Raises:
    ValueError: if a global position is out of range.

  Examples:
    >>> import jaxkit
    >>> print(jaxkit.nn.global_local_mask(4, window=1, global_tokens=1).astype(int))
    [[1 0 0 0]
     [1 1 0 0]
     [1 0 1 0]
     [1 0 0 1]]

  References:
    Beltagy et al., "Longformer: The Long-Document Transformer",
    arXiv:2004.05150, 2020; Zaheer et al., "Big Bird: Transformers for Longer
    Sequences", NeurIPS 2020, arXiv:2007.14062.
  """
  window = _check_len(window, "window")
  i, j = _query_key_positions(q_len, kv_len)
  s = j.shape[1]
  if isinstance(global_tokens, (int, np.integer)) and not isinstance(
      global_tokens, bool):
    if not 0 <= global_tokens <= s:
      raise ValueError(
          f"`global_tokens`={global_tokens} must be in [0, kv_len={s}].")
    glob = np.arange(s) < global_tokens
  else:
    idx = np.asarray(global_tokens, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= s):
      raise ValueError(
          f"`global_tokens` positions must be in [0, {s}), got {idx.tolist()}.")
    glob = np.zeros(s, bool)
    glob[idx] = True
  m = np.abs(i - j) < window
  m |= glob[None, :]
  m |= glob[i[:, 0]][:, None]
  if causal:
    m &= j <= i
  return jnp.asarray(m)


def _broadcast_mask(mask, b: int, t: int, s: int) -> jax.Array:
  """Validates a boolean mask and returns it as ``[B|1, 1|N, T, S]``."""
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise TypeError(f"`mask` must be a boolean array, got dtype {mask.dtype}.")
  if mask.ndim == 2:
    mask = mask[None, None]
  elif mask.ndim == 3:
    mask = mask[:, None]
  elif mask.ndim != 4:
    raise ValueError(
        f"`mask` must be [T, S], [B, T, S] or [B, N|1, T, S], got shape "
        f"{mask.shape}.")
  if (mask.shape[-2:] != (t, s)) or mask.shape[0] not in (1, b):
    raise ValueError(
        f"`mask` of shape {mask.shape} does not fit queries T={t}, keys S={s}, "
        f"batch B={b}.")
  return mask


def _attend(q: jax.Array, k: jax.Array, v: jax.Array,
            mask: jax.Array | kmasks.Mask | None,
            padding_mask: jax.Array | None = None, *,
            implementation: str | None = None,
            interpret: bool | None = None) -> jax.Array:
  """Softmax attention, scale ``1/sqrt(H)``: the layer's one attention call.

  A :class:`jaxkit.kernels.masks.Mask` object goes to
  :func:`jaxkit.kernels.sparse_attention` (block-sparse; ``padding_mask``
  ``[B, S]`` marks real keys; ``implementation`` / ``interpret`` select its
  backend). Otherwise ``jax.nn.dot_product_attention`` (XLA) computes it in
  float32 (at least) with the dense boolean ``mask``. Either way query rows
  that see no key output zeros (finite values and gradients).

  Args:
    q: ``[B, T, N, H]``.
    k: ``[B, S, K, H]`` with ``N % K == 0`` (grouped-query attention).
    v: ``[B, S, K, H]``.
    mask: ``None``, a ``Mask`` object, or boolean broadcastable to
      ``[B, N, T, S]``.
    padding_mask: bool ``[B, S]`` (only with a ``Mask`` object).
    implementation: sparse-attention backend (``None``: best available).
    interpret: run the Pallas kernel with the Pallas interpreter.

  Returns:
    ``[B, T, N, H]`` in ``q.dtype``.
  """
  if isinstance(mask, kmasks.Mask):
    return sparse_attention(q, k, v, mask=mask, padding_mask=padding_mask,
                            implementation=implementation,
                            interpret=interpret)
  cdt = jnp.promote_types(q.dtype, jnp.float32)
  out = jax.nn.dot_product_attention(
      q.astype(cdt), k.astype(cdt), v.astype(cdt), mask=mask,
      implementation="xla")
  if mask is not None:
    any_key = jnp.any(mask, axis=-1)  # [B|1, N|1, T]
    any_key = jnp.swapaxes(any_key, 1, 2)[..., None]  # [B|1, T, N|1, 1]
    out = jnp.where(any_key, out, 0.0)
  return out.astype(q.dtype)


def _proj_init(in_axis, out_axis):
  return nnx.initializers.variance_scaling(
      1.0, "fan_in", "truncated_normal", in_axis=in_axis, out_axis=out_axis)


class Attention(nnx.Module):
  """Multi-head / grouped-query self-attention with rotary embeddings (Llama).

  .. math::
    \\mathrm{out} = \\sum_{n} \\mathrm{softmax}\\Big(
      \\frac{\\mathrm{rope}(x W_q^{n})\\,\\mathrm{rope}(x W_k^{g(n)})^\\top}
      {\\sqrt{H}} + \\log M\\Big)\\, x W_v^{g(n)}\\, W_o^{n},
    \\qquad g(n) = \\lfloor n K / N \\rfloor,

  i.e. query head ``n`` uses key/value head ``n // (N / K)`` (the
  ``repeat_kv`` grouping of Hugging Face Llama). ``K = N`` is multi-head
  attention, ``K = 1`` multi-query attention.

  Parameters: ``q/kernel [embed, heads, head_dim]``, ``k/kernel`` and
  ``v/kernel [embed, kv_heads, head_dim]``, ``o/kernel [heads, head_dim,
  embed]`` (no biases unless ``use_bias``).

  Args:
    width: model width ``D``.
    num_heads: query heads ``N``.
    num_kv_heads: key/value heads ``K`` (divides ``N``; default ``N``).
    head_dim: head size ``H`` (default ``D // N``; then ``N`` must divide
      ``D``).
    rope_theta: rotary base; ``None`` disables rotary embeddings.
    use_bias: add biases to the q/k/v projections (Qwen-style).
    dtype: computation dtype (``None``: promote).
    param_dtype: parameter dtype.
    implementation: backend of :func:`jaxkit.kernels.sparse_attention`,
      used when the mask is a ``jaxkit.kernels.masks.Mask`` object.
    interpret: run that Pallas kernel with the Pallas interpreter (CPU).
    rngs: ``nnx.Rngs``.

  Raises:
    ValueError: on head counts that do not divide.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> attn = jaxkit.nn.Attention(8, 4, 2, rngs=nnx.Rngs(0))
    >>> attn(jnp.ones((2, 5, 8)), mask=jaxkit.nn.causal_mask(5)).shape
    (2, 5, 8)
    >>> # The same through the block-sparse kernel (skips empty tiles):
    >>> attn(jnp.ones((2, 5, 8)), mask=jaxkit.kernels.masks.CausalMask()).shape
    (2, 5, 8)

  References:
    Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models
    from Multi-Head Checkpoints", EMNLP 2023, arXiv:2305.13245; Touvron et
    al., "Llama 2", arXiv:2307.09288, 2023.
  """

  def __init__(self, width: int, num_heads: int,
               num_kv_heads: int | None = None, head_dim: int | None = None,
               *, rope_theta: float | None = 10000.0, use_bias: bool = False,
               dtype=None, param_dtype=jnp.float32,
               implementation: str | None = None,
               interpret: bool | None = None, rngs: nnx.Rngs):
    width = _check_len(width, "width")
    num_heads = _check_len(num_heads, "num_heads")
    num_kv_heads = num_heads if num_kv_heads is None else _check_len(
        num_kv_heads, "num_kv_heads")
    if num_heads % num_kv_heads:
      raise ValueError(
          f"`num_heads` ({num_heads}) must be a multiple of `num_kv_heads` "
          f"({num_kv_heads}) for grouped-query attention.")
    if head_dim is None:
      if width % num_heads:
        raise ValueError(
            f"`width` ({width}) must be divisible by `num_heads` ({num_heads})"
            " when `head_dim` is not given.")
      head_dim = width // num_heads
    head_dim = _check_len(head_dim, "head_dim")
    if rope_theta is not None and head_dim % 2:
      raise ValueError(f"`head_dim` must be even for rotary embeddings, got "
                       f"{head_dim}.")
    self.width, self.num_heads, self.num_kv_heads = width, num_heads, num_kv_heads
    self.head_dim = head_dim
    self.rope_theta = rope_theta
    self.dtype = dtype
    self.implementation, self.interpret = implementation, interpret
    d, n, kv, h = width, num_heads, num_kv_heads, head_dim
    def einsum(spec, shape, names, in_axis, out_axis, bias_shape=None,
               bias_names=None):
      return nnx.Einsum(
          spec, shape, bias_shape,
          kernel_init=pt.partitioned(_proj_init(in_axis, out_axis), names),
          bias_init=pt.partitioned(nnx.initializers.zeros_init(),
                                   bias_names or (None,)),
          dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    qkv_bias = (lambda k: (k, h)) if use_bias else (lambda k: None)
    self.q = einsum("btd,dnh->btnh", (d, n, h), (pt.EMBED, pt.HEADS,
                    pt.HEAD_DIM), 0, (1, 2), qkv_bias(n),
                    (pt.HEADS, pt.HEAD_DIM))
    self.k = einsum("btd,dkh->btkh", (d, kv, h), (pt.EMBED, pt.KV_HEADS,
                    pt.HEAD_DIM), 0, (1, 2), qkv_bias(kv),
                    (pt.KV_HEADS, pt.HEAD_DIM))
    self.v = einsum("btd,dkh->btkh", (d, kv, h), (pt.EMBED, pt.KV_HEADS,
                    pt.HEAD_DIM), 0, (1, 2), qkv_bias(kv),
                    (pt.KV_HEADS, pt.HEAD_DIM))
    self.o = einsum("btnh,nhd->btd", (n, h, d), (pt.HEADS, pt.HEAD_DIM,
                    pt.EMBED), (0, 1), 2)

  def __call__(self, x: jax.Array, *,
               mask: jax.Array | kmasks.Mask | None = None,
               padding_mask: jax.Array | None = None,
               positions: jax.Array | None = None) -> jax.Array:
    """Self-attention over ``x``.

    Args:
      x: ``[B, T, D]`` floating.
      mask: ``None`` (every query sees every key); a boolean mask ``[T,
        T]``, ``[B, T, T]`` or ``[B, N|1, T, T]`` (``True`` = may attend;
        build causal / local / global masks with :func:`causal_mask`,
        :func:`local_mask`, :func:`global_local_mask` and combine them with
        ``&``, e.g. with a padding mask ``pad[:, None, None, :]``); or a
        static :class:`jaxkit.kernels.masks.Mask` object, which runs the
        block-sparse kernel :func:`jaxkit.kernels.sparse_attention`.
      padding_mask: bool ``[B, T]``, ``False`` marks padding keys; only with
        a ``Mask`` object (fold it into a boolean array mask otherwise).
      positions: rotary positions ``[B, T]`` or ``[T]`` (default
        ``arange(T)``).

    Returns:
      ``[B, T, D]``.
    """
    x = checks.check_floating(x, "x")
    checks.check_rank(x, 3, "x")
    b, t, d = x.shape
    if d != self.width:
      raise ValueError(f"`x` must have last dimension {self.width}, got "
                       f"shape {x.shape}.")
    if isinstance(mask, kmasks.Mask):
      if padding_mask is not None:
        padding_mask = jnp.asarray(padding_mask)
        if padding_mask.dtype != jnp.bool_ or padding_mask.shape != (b, t):
          raise ValueError(
              f"`padding_mask` must be bool [B, T] = {(b, t)}, got "
              f"{padding_mask.dtype} {padding_mask.shape}.")
    else:
      if padding_mask is not None:
        raise ValueError(
            "`padding_mask` is only taken with a jaxkit.kernels.masks.Mask "
            "object; with a boolean array mask combine them: "
            "mask & padding_mask[:, None, None, :].")
      if mask is not None:
        mask = _broadcast_mask(mask, b, t, t)
    q, k, v = self.q(x), self.k(x), self.v(x)
    if self.rope_theta is not None:
      if positions is None:
        positions = jnp.arange(t)
      positions = jnp.asarray(positions)
      if positions.shape not in ((t,), (b, t)):
        raise ValueError(
            f"`positions` must be [T] or [B, T] = {(b, t)}, got shape "
            f"{positions.shape}.")
      cos, sin = rotary.rotary_embedding(positions, self.head_dim,
                                         theta=self.rope_theta)
      q = rotary.apply_rotary(q, cos, sin)
      k = rotary.apply_rotary(k, cos, sin)
    out = _attend(q, k, v, mask, padding_mask,
                  implementation=self.implementation, interpret=self.interpret)
    return self.o(out)
