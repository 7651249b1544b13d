"""A decoder-only transformer language model with the Llama architecture."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkit._src import checks
from jaxkit.kernels.sparse_attention import masks as kmasks
from jaxkit.nn import attention as attn_lib
from jaxkit.nn import layers
from jaxkit.nn import partitioning as pt


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerConfig:
  """Hyper-parameters of :class:`TransformerLM` (all keyword-only).

  Attributes:
    vocab_size: vocabulary size ``V``.
    width: model width ``D``.
    depth: number of decoder blocks.
    num_heads: query heads ``N``.
    num_kv_heads: key/value heads ``K`` (``N % K == 0``).
    head_dim: head size ``H``; ``None`` means ``width // num_heads`` (then
      ``num_heads`` must divide ``width``). Resolved in ``__post_init__``.
    mlp_dim: SwiGLU hidden width.
    max_len: longest sequence the model accepts.
    rope_theta: rotary base.
    norm_eps: RMSNorm epsilon.
    tie_embeddings: unembed with the transposed token embedding.
    dtype: computation dtype of activations.
    param_dtype: parameter dtype.
    attention_pattern: ``None`` (dense causal attention in XLA) or a static
      :class:`jaxkit.kernels.masks.Mask` (e.g. ``CausalMask()``,
      ``LocalMask(256)``, ``GlobalLocalMask(...)``): attention then runs
      through the block-sparse :func:`jaxkit.kernels.sparse_attention`,
      which skips empty tiles. The pattern is used as given (intersect it
      with ``CausalMask()`` yourself for a causal LM).
    attention_implementation: backend of ``sparse_attention`` (``None``:
      the best for the device; ``"pallas_tpu"`` with
      ``attention_interpret=True`` runs the kernel interpreted on CPU).
    attention_interpret: see ``attention_implementation``.

  Raises:
    ValueError: on non-positive sizes or head counts that do not divide.

  Examples:
    >>> import jaxkit
    >>> cfg = jaxkit.nn.TransformerConfig(vocab_size=32, width=16, depth=2,
    ...     num_heads=4, num_kv_heads=2, mlp_dim=32, max_len=8)
    >>> cfg.head_dim
    4
  """
  vocab_size: int
  width: int
  depth: int
  num_heads: int
  num_kv_heads: int
  head_dim: int | None = None
  mlp_dim: int
  max_len: int
  rope_theta: float = 10000.0
  norm_eps: float = 1e-5
  tie_embeddings: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  attention_pattern: Any = None
  attention_implementation: str | None = None
  attention_interpret: bool | None = None

  def __post_init__(self):
    for name in ("vocab_size", "width", "depth", "num_heads", "num_kv_heads",
                 "mlp_dim", "max_len"):
      layers._check_positive_int(getattr(self, name), name)  # pylint: disable=protected-access
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"`num_heads` ({self.num_heads}) must be a multiple of "
          f"`num_kv_heads` ({self.num_kv_heads}).")
    if not (self.attention_pattern is None
            or isinstance(self.attention_pattern, kmasks.Mask)):
      raise TypeError(
          "`attention_pattern` must be None or a jaxkit.kernels.masks.Mask, "
          f"got {type(self.attention_pattern).__name__}.")
    if self.head_dim is None:
      if self.width % self.num_heads:
        raise ValueError(
            f"`width` ({self.width}) must be divisible by `num_heads` "
            f"({self.num_heads}) when `head_dim` is not given.")
      object.__setattr__(self, "head_dim", self.width // self.num_heads)
    layers._check_positive_int(self.head_dim, "head_dim")  # pylint: disable=protected-access
    if self.head_dim % 2:
      raise ValueError(f"`head_dim` must be even (rotary), got {self.head_dim}.")
    checks.check_scalar(self.rope_theta, "rope_theta", positive=True)
    checks.check_scalar(self.norm_eps, "norm_eps", nonnegative=True)

  @classmethod
  def smollm2_135m(cls, **overrides) -> "TransformerConfig":
    """SmolLM2-135M(-Instruct): 30 layers, width 576, GQA 9/3, tied."""
    kw = dict(vocab_size=49152, width=576, depth=30, num_heads=9,
              num_kv_heads=3, head_dim=64, mlp_dim=1536, max_len=8192,
              rope_theta=100000.0, norm_eps=1e-5, tie_embeddings=True)
    kw.update(overrides)
    return cls(**kw)


class Block(nnx.Module):
  """One pre-norm Llama decoder block: ``x + attn(norm(x))``, ``+ mlp(norm)``.

  Args:
    config: the model's :class:`TransformerConfig`.
    rngs: ``nnx.Rngs``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> cfg = jaxkit.nn.TransformerConfig(vocab_size=8, width=8, depth=1,
    ...     num_heads=2, num_kv_heads=1, mlp_dim=16, max_len=4)
    >>> blk = jaxkit.nn.transformer.Block(cfg, rngs=nnx.Rngs(0))
    >>> blk(jnp.ones((1, 4, 8)), mask=jaxkit.nn.causal_mask(4)).shape
    (1, 4, 8)
  """

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    c = config
    self.attn_norm = layers.RMSNorm(c.width, eps=c.norm_eps, dtype=c.dtype,
                                    param_dtype=c.param_dtype)
    self.attn = attn_lib.Attention(
        c.width, c.num_heads, c.num_kv_heads, c.head_dim,
        rope_theta=c.rope_theta, dtype=c.dtype, param_dtype=c.param_dtype,
        implementation=c.attention_implementation,
        interpret=c.attention_interpret, rngs=rngs)
    self.mlp_norm = layers.RMSNorm(c.width, eps=c.norm_eps, dtype=c.dtype,
                                   param_dtype=c.param_dtype)
    self.mlp = layers.SwiGLU(c.width, c.mlp_dim, dtype=c.dtype,
                             param_dtype=c.param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, *, mask=None, padding_mask=None,
               positions=None) -> jax.Array:
    """``x`` ``[B, T, D]`` → ``[B, T, D]``; other arguments as Attention."""
    x = x + self.attn(self.attn_norm(x), mask=mask, padding_mask=padding_mask,
                      positions=positions)
    return x + self.mlp(self.mlp_norm(x))


class TransformerLM(nnx.Module):
  """Decoder-only causal language model, Llama architecture.

  Token embedding → ``depth`` × [RMSNorm → grouped-query attention with
  rotary embeddings (HF ``rotate_half``) → residual; RMSNorm → SwiGLU →
  residual] → final RMSNorm → unembedding (tied: :math:`W_E^\\top`, or a
  separate ``[embed, vocab]`` matrix). Causal; with an ``attention_mask``
  padded keys are never attended.

  Parameter paths: ``embed/embedding [vocab, embed]``,
  ``blocks/<i>/{attn_norm,mlp_norm}/scale``,
  ``blocks/<i>/attn/{q,k,v,o}/kernel``,
  ``blocks/<i>/mlp/{gate,up,down}/kernel``, ``final_norm/scale`` and, when
  untied, ``unembed/kernel [embed, vocab]``. Can represent SmolLM2-135M
  (:meth:`TransformerConfig.smollm2_135m`).

  Args:
    config: :class:`TransformerConfig`.
    rngs: ``nnx.Rngs``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> cfg = jaxkit.nn.TransformerConfig(vocab_size=32, width=16, depth=2,
    ...     num_heads=4, num_kv_heads=2, mlp_dim=32, max_len=8)
    >>> lm = jaxkit.nn.TransformerLM(cfg, rngs=nnx.Rngs(0))
    >>> logits = lm(jnp.zeros((2, 5), jnp.int32))
    >>> logits.shape, logits.dtype
    ((2, 5, 32), dtype('float32'))

  References:
    Touvron et al., "Llama 2: Open Foundation and Fine-Tuned Chat Models",
    arXiv:2307.09288, 2023.
  """

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    if not isinstance(config, TransformerConfig):
      raise TypeError(
          f"`config` must be a TransformerConfig, got {type(config).__name__}.")
    c = config
    self.config = c
    self.embed = nnx.Embed(
        c.vocab_size, c.width, dtype=c.dtype, param_dtype=c.param_dtype,
        embedding_init=pt.partitioned(
            nnx.initializers.normal(stddev=c.width ** -0.5),
            (pt.VOCAB, pt.EMBED)),
        rngs=rngs)
    self.blocks = nnx.List([Block(c, rngs=rngs) for _ in range(c.depth)])
    self.final_norm = layers.RMSNorm(c.width, eps=c.norm_eps, dtype=c.dtype,
                                     param_dtype=c.param_dtype)
    if c.tie_embeddings:
      self.unembed = None
    else:
      self.unembed = layers.Dense(
          c.width, c.vocab_size, names=(pt.EMBED, pt.VOCAB), use_bias=False,
          dtype=c.dtype, param_dtype=c.param_dtype, rngs=rngs)

  def _check_tokens(self, tokens):
    tokens = jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise TypeError(
          f"`tokens` must be an integer array [B, T], got dtype {tokens.dtype}.")
    checks.check_rank(tokens, 2, "tokens")
    if tokens.shape[1] > self.config.max_len:
      raise ValueError(
          f"`tokens` has length {tokens.shape[1]} > max_len="
          f"{self.config.max_len}.")
    if checks.is_concrete(tokens) and tokens.size:
      t = np.asarray(tokens)
      if t.min() < 0 or t.max() >= self.config.vocab_size:
        raise ValueError(
            f"`tokens` must lie in [0, {self.config.vocab_size}), got values "
            f"in [{t.min()}, {t.max()}].")
    return tokens

  def unembedding(self) -> jax.Array:
    """The unembedding matrix ``[D, V]`` (the transposed embedding if tied)."""
    if self.unembed is None:
      return self.embed.embedding[...].T
    return self.unembed.kernel[...]

  def hidden_states(self, tokens: jax.Array, *,
                    attention_mask: jax.Array | None = None,
                    positions: jax.Array | None = None) -> jax.Array:
    """Final-normed hidden states ``[B, T, D]`` (the input of the unembedding).

    Args and checks as :meth:`__call__`; useful for fused
    unembedding-plus-loss computations that never materialise the logits.
    """
    tokens = self._check_tokens(tokens)
    b, t = tokens.shape
    pattern = self.config.attention_pattern
    mask = attn_lib.causal_mask(t)[None, None] if pattern is None else pattern
    if attention_mask is not None:
      attention_mask = jnp.asarray(attention_mask)
      if attention_mask.dtype != jnp.bool_:
        raise TypeError("`attention_mask` must be boolean [B, T], got dtype "
                        f"{attention_mask.dtype}.")
      if attention_mask.shape != (b, t):
        raise ValueError(f"`attention_mask` must have shape {(b, t)}, got "
                         f"{attention_mask.shape}.")
      if pattern is None:
        mask = mask & attention_mask[:, None, None, :]
    if positions is None:
      if attention_mask is None:
        positions = jnp.arange(t)
      else:
        positions = jnp.maximum(
            jnp.cumsum(attention_mask.astype(jnp.int32), axis=1) - 1, 0)
    positions = jnp.asarray(positions)
    if positions.shape not in ((t,), (b, t)):
      raise ValueError(f"`positions` must be [T] or [B, T] = {(b, t)}, got "
                       f"shape {positions.shape}.")
    x = self.embed(tokens)
    padding = None if pattern is None else attention_mask
    for block in self.blocks:
      x = block(x, mask=mask, padding_mask=padding, positions=positions)
    return self.final_norm(x)

  def __call__(self, tokens: jax.Array, *,
               attention_mask: jax.Array | None = None,
               positions: jax.Array | None = None) -> jax.Array:
    """Next-token logits.

    Args:
      tokens: int ``[B, T]`` in ``[0, V)``, ``T <= max_len``.
      attention_mask: optional bool ``[B, T]``; ``False`` marks padding keys
        (never attended). Logits at padded positions are defined (finite) but
        meaningless.
      positions: rotary positions ``[B, T]`` or ``[T]``. Default:
        ``arange(T)``, or with an ``attention_mask`` the count of real
        tokens before each position (correct for left and right padding).

    Returns:
      Logits ``[B, T, V]`` float32 (accumulated in float32 for bf16 models).

    Raises:
      TypeError: non-integer ``tokens`` or non-bool ``attention_mask``.
      ValueError: wrong ranks/shapes, ``T > max_len``, or (on concrete input)
        token ids outside ``[0, V)``.
    """
    h = self.hidden_states(tokens, attention_mask=attention_mask,
                           positions=positions)
    w = self.unembedding().astype(h.dtype)
    return jnp.einsum("btd,dv->btv", h, w,
                      preferred_element_type=jnp.float32).astype(jnp.float32)
