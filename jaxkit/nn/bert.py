"""A BERT encoder (post-LayerNorm, GELU MLP) and sentence-embedding pooling.

The architecture of Devlin et al. (2019) as implemented by Hugging Face's
``BertModel`` (without the pooler head): word + position + token-type
embeddings → LayerNorm → ``depth`` × [self-attention with biases → residual
→ LayerNorm; dense → exact (erf) GELU → dense → residual → LayerNorm]. It
can represent all-MiniLM-L6-v2 (:meth:`BertConfig.minilm_l6`, loaded by
:func:`jaxkit.nn.loaders.load_minilm`).

Every linear layer is a 2-D :class:`~jaxkit.nn.Dense` (``[in, out]``
kernels), so :func:`jaxkit.quantization.quantize_model` quantizes them
without a matrix view. The query/key/value kernels are ``[embed, heads]``
where the ``heads`` axis is the flattened ``heads × head_dim`` (sharding it
by heads keeps whole heads together); the output kernel is ``[heads,
embed]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkit._src import checks
from jaxkit.nn import layers
from jaxkit.nn import partitioning as pt

_MASK_VALUE = -1e30  # finite: a fully masked row gives a uniform softmax


@dataclasses.dataclass(frozen=True, kw_only=True)
class BertConfig:
  """Hyper-parameters of :class:`BertEncoder` (all keyword-only).

  Attributes:
    vocab_size: vocabulary size ``V``.
    width: model width ``D``.
    depth: number of encoder layers.
    num_heads: attention heads ``N`` (must divide ``width``).
    mlp_dim: hidden width of the GELU MLP.
    max_len: number of learned positions (longest accepted sequence).
    type_vocab_size: number of token types (segments).
    norm_eps: LayerNorm epsilon (BERT: 1e-12).
    dtype: computation dtype of activations.
    param_dtype: parameter dtype.

  Raises:
    ValueError: non-positive sizes, ``num_heads`` not dividing ``width``,
      negative ``norm_eps``.

  Examples:
    >>> import jaxkit
    >>> cfg = jaxkit.nn.BertConfig.minilm_l6()
    >>> print(cfg.width, cfg.depth, cfg.num_heads, cfg.head_dim)
    384 6 12 32

  References:
    Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers
    for Language Understanding", NAACL 2019, arXiv:1810.04805.
  """
  vocab_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  max_len: int = 512
  type_vocab_size: int = 2
  norm_eps: float = 1e-12
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    for name in ("vocab_size", "width", "depth", "num_heads", "mlp_dim",
                 "max_len", "type_vocab_size"):
      layers._check_positive_int(getattr(self, name), name)  # pylint: disable=protected-access
    if self.width % self.num_heads:
      raise ValueError(f"`width` ({self.width}) must be divisible by "
                       f"`num_heads` ({self.num_heads}).")
    checks.check_scalar(self.norm_eps, "norm_eps", nonnegative=True)

  @property
  def head_dim(self) -> int:
    """Per-head size ``width // num_heads``."""
    return self.width // self.num_heads

  @classmethod
  def minilm_l6(cls, **overrides) -> "BertConfig":
    """all-MiniLM-L6-v2: 6 layers, width 384, 12 heads, MLP 1536, uncased."""
    kw = dict(vocab_size=30522, width=384, depth=6, num_heads=12,
              mlp_dim=1536, max_len=512, type_vocab_size=2, norm_eps=1e-12)
    kw.update(overrides)
    return cls(**kw)


def _layer_norm(width: int, c: BertConfig) -> nnx.LayerNorm:
  return nnx.LayerNorm(
      width, epsilon=c.norm_eps, dtype=c.dtype, param_dtype=c.param_dtype,
      use_fast_variance=False,
      scale_init=pt.partitioned(nnx.initializers.ones_init(), (pt.EMBED,)),
      bias_init=pt.partitioned(nnx.initializers.zeros_init(), (pt.EMBED,)),
      rngs=nnx.Rngs(0))


class BertSelfAttention(nnx.Module):
  """Bidirectional multi-head self-attention with biases (BERT).

  .. math::
    \\mathrm{softmax}\\Big(\\frac{Q_h K_h^\\top}{\\sqrt{H}} + M\\Big) V_h,
    \\quad Q = xW_q + b_q,\\ \\dots,\\qquad y = [\\cdot]_h W_o + b_o,

  with :math:`M = -10^{30}` on padded keys. Logits and softmax in float32.
  A row whose keys are all masked attends uniformly (finite, no NaN).

  Args:
    config: :class:`BertConfig`.
    rngs: ``nnx.Rngs``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> cfg = jaxkit.nn.BertConfig(vocab_size=8, width=8, depth=1,
    ...     num_heads=2, mlp_dim=16)
    >>> att = jaxkit.nn.bert.BertSelfAttention(cfg, rngs=nnx.Rngs(0))
    >>> att(jnp.ones((1, 3, 8)), jnp.array([[True, True, False]])).shape
    (1, 3, 8)

  References:
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
    arXiv:1706.03762.
  """

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    c = config
    self.num_heads = c.num_heads
    self.head_dim = c.head_dim
    kw = dict(dtype=c.dtype, param_dtype=c.param_dtype, rngs=rngs)
    self.q = layers.Dense(c.width, c.width, names=(pt.EMBED, pt.HEADS), **kw)
    self.k = layers.Dense(c.width, c.width, names=(pt.EMBED, pt.HEADS), **kw)
    self.v = layers.Dense(c.width, c.width, names=(pt.EMBED, pt.HEADS), **kw)
    self.o = layers.Dense(c.width, c.width, names=(pt.HEADS, pt.EMBED), **kw)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None
               ) -> jax.Array:
    """``x`` ``[B, T, D]``, ``mask`` bool ``[B, T]`` (keys) → ``[B, T, D]``."""
    b, t, _ = x.shape
    n, h = self.num_heads, self.head_dim

    def heads(y):
      return y.reshape(b, t, n, h)

    q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
    logits = jnp.einsum("bqnh,bknh->bnqk", q, k,
                        preferred_element_type=jnp.float32)
    logits = logits.astype(jnp.float32) / math.sqrt(h)
    if mask is not None:
      logits = jnp.where(mask[:, None, None, :], logits, _MASK_VALUE)
    p = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    ctx = jnp.einsum("bnqk,bknh->bqnh", p, v).reshape(b, t, n * h)
    return self.o(ctx)


class BertLayer(nnx.Module):
  """One post-LayerNorm BERT layer.

  .. math::
    u = \\mathrm{LN}_1(x + \\mathrm{Att}(x)),\\qquad
    y = \\mathrm{LN}_2\\big(u + \\mathrm{GELU}(uW_1 + b_1)W_2 + b_2\\big),

  with the exact GELU :math:`z\\,\\Phi(z)` (erf form, HF ``"gelu"``).
  Parameters: ``attn/{q,k,v,o}/{kernel,bias}``, ``attn_norm/{scale,bias}``,
  ``mlp_in/kernel [embed, mlp]``, ``mlp_out/kernel [mlp, embed]`` (with
  biases), ``mlp_norm/{scale,bias}``.

  Args:
    config: :class:`BertConfig`.
    rngs: ``nnx.Rngs``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> cfg = jaxkit.nn.BertConfig(vocab_size=8, width=8, depth=1,
    ...     num_heads=2, mlp_dim=16)
    >>> layer = jaxkit.nn.bert.BertLayer(cfg, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((2, 3, 8))).shape
    (2, 3, 8)

  References:
    Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers
    for Language Understanding", NAACL 2019, arXiv:1810.04805.
  """

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    c = config
    kw = dict(dtype=c.dtype, param_dtype=c.param_dtype, rngs=rngs)
    self.attn = BertSelfAttention(c, rngs=rngs)
    self.attn_norm = _layer_norm(c.width, c)
    self.mlp_in = layers.Dense(c.width, c.mlp_dim, names=(pt.EMBED, pt.MLP),
                               **kw)
    self.mlp_out = layers.Dense(c.mlp_dim, c.width,
                                names=(pt.MLP, pt.EMBED), **kw)
    self.mlp_norm = _layer_norm(c.width, c)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None
               ) -> jax.Array:
    """``x`` ``[B, T, D]``, optional key ``mask`` ``[B, T]`` → ``[B, T, D]``."""
    x = self.attn_norm(x + self.attn(x, mask))
    hid = jax.nn.gelu(self.mlp_in(x), approximate=False)
    return self.mlp_norm(x + self.mlp_out(hid))


class BertEncoder(nnx.Module):
  """BERT encoder: token ids → contextual hidden states ``[B, T, D]``.

  .. math::
    h^{(0)} = \\mathrm{LN}(E_{\\text{word}}[x_t] + E_{\\text{pos}}[t]
    + E_{\\text{type}}[s_t]),\\qquad h^{(\\ell)} =
    \\mathrm{Layer}_\\ell(h^{(\\ell-1)}),

  the ``last_hidden_state`` of Hugging Face's ``BertModel`` (no pooler
  head: sentence-transformers models pool the hidden states instead, see
  :func:`mean_pool` and :meth:`sentence_embedding`). Positions are
  ``0..T-1`` (right padding, as BERT tokenizers pad). Padded keys (``False``
  in ``attention_mask``) are never attended; hidden states at padded
  positions are finite but meaningless. Dropout is omitted (inference).

  Parameter paths: ``word_embed/embedding [vocab, embed]``,
  ``pos_embed/embedding [None, embed]``, ``type_embed/embedding [None,
  embed]``, ``embed_norm/{scale,bias}``, ``layers/<i>/...`` (see
  :class:`BertLayer`).

  Args:
    config: :class:`BertConfig`.
    rngs: ``nnx.Rngs``.

  Raises:
    TypeError: ``config`` not a :class:`BertConfig`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> cfg = jaxkit.nn.BertConfig(vocab_size=16, width=8, depth=2,
    ...     num_heads=2, mlp_dim=16, max_len=8)
    >>> enc = jaxkit.nn.BertEncoder(cfg, rngs=nnx.Rngs(0))
    >>> tokens = jnp.array([[1, 5, 2, 0], [1, 2, 0, 0]])
    >>> h = enc(tokens, attention_mask=tokens > 0)
    >>> h.shape, enc.sentence_embedding(tokens, tokens > 0).shape
    ((2, 4, 8), (2, 8))

  References:
    Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers
    for Language Understanding", NAACL 2019, arXiv:1810.04805.
  """

  def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
    if not isinstance(config, BertConfig):
      raise TypeError(
          f"`config` must be a BertConfig, got {type(config).__name__}.")
    c = config
    self.config = c
    init = nnx.initializers.normal(stddev=0.02)

    def embed(n, names):
      return nnx.Embed(n, c.width, dtype=c.dtype, param_dtype=c.param_dtype,
                       embedding_init=pt.partitioned(init, names), rngs=rngs)

    self.word_embed = embed(c.vocab_size, (pt.VOCAB, pt.EMBED))
    self.pos_embed = embed(c.max_len, (None, pt.EMBED))
    self.type_embed = embed(c.type_vocab_size, (None, pt.EMBED))
    self.embed_norm = _layer_norm(c.width, c)
    self.layers = nnx.List([BertLayer(c, rngs=rngs) for _ in range(c.depth)])

  def _check(self, tokens, attention_mask, token_types):
    tokens = jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise TypeError(
          f"`tokens` must be an integer array [B, T], got dtype {tokens.dtype}.")
    checks.check_rank(tokens, 2, "tokens")
    b, t = tokens.shape
    if t > self.config.max_len:
      raise ValueError(f"`tokens` has length {t} > max_len="
                       f"{self.config.max_len}.")
    if checks.is_concrete(tokens) and tokens.size:
      a = np.asarray(tokens)
      if a.min() < 0 or a.max() >= self.config.vocab_size:
        raise ValueError(
            f"`tokens` must lie in [0, {self.config.vocab_size}), got values "
            f"in [{a.min()}, {a.max()}].")
    if attention_mask is not None:
      attention_mask = jnp.asarray(attention_mask)
      if attention_mask.dtype != jnp.bool_:
        raise TypeError("`attention_mask` must be boolean [B, T], got dtype "
                        f"{attention_mask.dtype}.")
      if attention_mask.shape != (b, t):
        raise ValueError(f"`attention_mask` must have shape {(b, t)}, got "
                         f"{attention_mask.shape}.")
    if token_types is None:
      token_types = jnp.zeros((b, t), jnp.int32)
    token_types = jnp.asarray(token_types)
    if token_types.shape != (b, t):
      raise ValueError(f"`token_types` must have shape {(b, t)}, got "
                       f"{token_types.shape}.")
    return tokens, attention_mask, token_types

  def __call__(self, tokens: jax.Array, *,
               attention_mask: jax.Array | None = None,
               token_types: jax.Array | None = None) -> jax.Array:
    """Last hidden states.

    Args:
      tokens: int ``[B, T]`` in ``[0, V)``, ``T <= max_len``.
      attention_mask: optional bool ``[B, T]``; ``False`` marks padding.
      token_types: optional int ``[B, T]`` segment ids (default 0).

    Returns:
      ``[B, T, D]`` hidden states in ``config.dtype``.

    Raises:
      TypeError: non-integer ``tokens`` or non-bool ``attention_mask``.
      ValueError: wrong ranks/shapes, ``T > max_len`` or (concrete input)
        ids outside ``[0, V)``.
    """
    tokens, attention_mask, token_types = self._check(tokens, attention_mask,
                                                      token_types)
    t = tokens.shape[1]
    x = (self.word_embed(tokens) + self.pos_embed(jnp.arange(t))[None]
         + self.type_embed(token_types))
    x = self.embed_norm(x)
    for layer in self.layers:
      x = layer(x, attention_mask)
    return x

  def sentence_embedding(self, tokens: jax.Array,
                         attention_mask: jax.Array | None = None, *,
                         normalize: bool = True) -> jax.Array:
    """Mean-pooled (and by default L2-normalised) sentence embeddings ``[B, D]``.

    ``mean_pool(self(tokens, attention_mask=...), attention_mask)`` followed
    by :math:`e / \\max(\\lVert e\\rVert_2, 10^{-12})`, as the
    sentence-transformers ``Pooling`` + ``Normalize`` modules of
    all-MiniLM-L6-v2 do.
    """
    h = self(tokens, attention_mask=attention_mask)
    e = mean_pool(h, attention_mask)
    if normalize:
      # sqrt(max(|e|^2, 1e-24)) = max(|e|, 1e-12), with a finite gradient
      # at e = 0 (a fully padded row).
      sq = jnp.sum(jnp.square(e), axis=-1, keepdims=True)
      e = e / jnp.sqrt(jnp.maximum(sq, 1e-24))
    return e


def mean_pool(hidden: jax.Array, attention_mask: jax.Array | None = None
              ) -> jax.Array:
  """Mean of the hidden states over the unpadded tokens (sentence-transformers).

  .. math::
    e_b = \\frac{\\sum_t m_{bt} h_{bt}}{\\max(\\sum_t m_{bt}, 10^{-9})}

  in float32. A fully padded row gives a zero vector (finite value and
  gradient).

  Args:
    hidden: ``[B, T, D]`` hidden states.
    attention_mask: optional bool ``[B, T]`` (``None``: every token counts).

  Returns:
    ``[B, D]`` float32.

  Raises:
    ValueError: ``hidden`` not rank 3 or ``attention_mask`` not ``[B, T]``.
    TypeError: non-bool ``attention_mask``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.nn import mean_pool
    >>> h = jnp.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    >>> print(mean_pool(h, jnp.array([[True, True, False]])))
    [[2. 3.]]

  References:
    Reimers & Gurevych, "Sentence-BERT: Sentence Embeddings using Siamese
    BERT-Networks", EMNLP 2019, arXiv:1908.10084.
  """
  checks.check_rank(hidden, 3, "hidden")
  h = jnp.asarray(hidden).astype(jnp.promote_types(hidden.dtype, jnp.float32))
  if attention_mask is None:
    return jnp.mean(h, axis=1)
  attention_mask = jnp.asarray(attention_mask)
  if attention_mask.dtype != jnp.bool_:
    raise TypeError("`attention_mask` must be boolean [B, T], got dtype "
                    f"{attention_mask.dtype}.")
  if attention_mask.shape != h.shape[:2]:
    raise ValueError(f"`attention_mask` must have shape {h.shape[:2]}, got "
                     f"{attention_mask.shape}.")
  m = attention_mask.astype(h.dtype)[..., None]
  return jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)
