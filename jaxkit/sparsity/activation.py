r"""Activation sparsity: WINA, TEAL, and DeltaLLM's temporal-delta attention mask.

Training-free methods that zero *inputs* of a linear layer (or skip attention
positions) at inference time; the weights stay dense.

* :func:`teal_mask` — keep the largest :math:`|x_i|` per token (TEAL).
* :func:`wina_mask` — keep the largest :math:`|x_i|\cdot\|W_{i,:}\|_2` per
  token (WINA: weight-informed).
* :func:`delta_attention_mask` — DeltaLLM-style temporal sparsity: a boolean
  ``[T, S]`` (or block) attention mask that keeps a local window plus the
  positions whose keys changed by more than a threshold.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.sparsity import _common


def teal_mask(x: ArrayLike, *, sparsity: float) -> jax.Array:
  r"""TEAL: per token, zero the ``sparsity`` fraction of smallest :math:`|x_i|`.

  .. math::
    M_{t,i} = [\,\mathrm{rank}_t(|x_{t,i}|) < K - \lfloor sK\rfloor\,].

  TEAL calibrates per-layer magnitude thresholds offline; this is the
  equivalent exact top-k per token (ties keep the lower index).

  Args:
    x: ``[..., K]`` layer inputs (``K`` = input features).
    sparsity: fraction of inputs zeroed per token, in ``[0, 1)``.

  Returns:
    ``bool [..., K]`` (``True`` = kept).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import teal_mask
    >>> print(teal_mask(jnp.array([0.1, -3.0, 2.0, 0.5]), sparsity=0.5))
    [False  True  True False]

  References:
    Liu et al., "Training-Free Activation Sparsity in Large Language Models"
    (TEAL), ICLR 2025, arXiv:2408.14690.

    Catalog: seed_002 #25.
  """
  x = checks.check_floating(x, "x")
  _common.check_sparsity(sparsity)
  if x.ndim < 1:
    raise ValueError("`x` must have rank >= 1 ([..., K]).")
  return _common.keep_top_fraction(jnp.abs(x.astype(jnp.float32)), sparsity,
                                   x.ndim - 1)


def wina_mask(x: ArrayLike, w: ArrayLike, *, sparsity: float) -> jax.Array:
  r"""WINA: per token, keep the inputs with the largest :math:`|x_i|\,\|W_{i,:}\|_2`.

  For a Flax ``[in, out]`` kernel the input :math:`x_i` multiplies row
  :math:`i`, so the score is

  .. math::
    s_{t,i} = |x_{t,i}|\cdot\|W_{i,:}\|_2

  (the column norm :math:`\|W_{:,i}\|` in the paper's ``[out, in]`` layout),
  and the ``sparsity`` fraction with the smallest scores is zeroed per token.
  With orthogonal-column weights this minimises an upper bound of the output
  error; WINA's optional SVD transform that makes columns orthogonal and its
  greedy per-layer sparsity allocation are not included (use the same
  ``sparsity`` per layer, as in the paper's uniform baseline).

  Args:
    x: ``[..., in]`` layer inputs.
    w: ``[in, out]`` kernel the inputs multiply.
    sparsity: fraction of inputs zeroed per token, in ``[0, 1)``.

  Returns:
    ``bool [..., in]`` (``True`` = kept). Use as ``(x * mask) @ w``.

  Raises:
    ValueError: ``w`` not rank 2, width mismatch, ``sparsity`` out of range.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import wina_mask
    >>> x = jnp.array([1.0, 1.0, 2.0, 0.1])
    >>> w = jnp.array([[10.0, 0.0], [0.1, 0.0], [1.0, 0.0], [100.0, 0.0]])
    >>> print(wina_mask(x, w, sparsity=0.5))   # scores 10, .1, 2, 10
    [ True False False  True]

  References:
    Chen et al., "WINA: Weight Informed Neuron Activation for Accelerating
    Large Language Model Inference", 2025, arXiv:2505.19427.

    Catalog: seed_002 #25.
  """
  x = checks.check_floating(x, "x")
  w = checks.check_floating(w, "w")
  checks.check_rank(w, 2, "w")
  _common.check_sparsity(sparsity)
  if x.ndim < 1 or x.shape[-1] != w.shape[0]:
    raise ValueError(
        f"`x` must be [..., {w.shape[0]}] (the kernel's input features, Flax "
        f"[in, out] layout), got shape {x.shape}.")
  w32 = w.astype(jnp.float32)
  row_norm = jnp.sqrt(jnp.sum(jnp.square(w32), axis=1))
  score = jnp.abs(x.astype(jnp.float32)) * row_norm
  return _common.keep_top_fraction(score, sparsity, x.ndim - 1)


def delta_attention_mask(keys: ArrayLike, *, threshold: float,
                         window: int, block_size: int | None = None
                         ) -> jax.Array:
  r"""DeltaLLM-style temporal-delta attention mask (causal).

  A delta network keeps a reference key and recomputes (here: attends to)
  position :math:`s` only when its key has drifted from the last recomputed
  one by more than :math:`\theta`:

  .. math::
    c_s = \big[\|k_s - k_{\mathrm{ref}(s)}\|_\infty > \theta\big],\qquad
    k_{\mathrm{ref}(s+1)} = c_s\,k_s + (1-c_s)\,k_{\mathrm{ref}(s)},

  with :math:`c_0 = 1`. Query :math:`t` attends to :math:`s \le t` iff
  :math:`t - s <` ``window`` (the dense local window of DeltaLLM's hybrid
  attention) or :math:`c_s`. With ``block_size`` the mask is reduced to
  ``[T/b, T/b]`` blocks (a block is kept if any entry is), the form a
  block-sparse attention kernel consumes.

  Deviation: the paper reuses the *reference* key/value for skipped positions
  (an approximation of the dense output); a mask can only drop them. The exact
  delta-matrix construction and memory policy of the paper are not
  reproduced (no reference code is public).

  Args:
    keys: ``[..., T, D]`` keys (one head; leading axes are vmapped).
    threshold: :math:`\theta \ge 0`.
    window: local window size (static int >= 1).
    block_size: optional block size (static; ``T`` divisible by it).

  Returns:
    ``bool [..., T, T]`` (or ``[..., T/b, T/b]``), ``True`` = attend.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import delta_attention_mask
    >>> k = jnp.array([[0.0], [0.01], [1.0], [1.01]])
    >>> delta_attention_mask(k, threshold=0.1, window=1).astype(int)
    Array([[1, 0, 0, 0],
           [1, 1, 0, 0],
           [1, 0, 1, 0],
           [1, 0, 1, 1]], dtype=int32)

  References:
    Qu et al., "DeltaLLM: A Training-Free Framework Exploiting Temporal
    Sparsity for Efficient Edge LLM Inference", 2025, arXiv:2507.19608.

    Catalog: seed_000 #58.
  """
  k = checks.check_floating(keys, "keys")
  if k.ndim < 2:
    raise ValueError(f"`keys` must be [..., T, D], got shape {k.shape}.")
  checks.check_scalar(threshold, "threshold", nonnegative=True)
  if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 1:
    raise ValueError(f"`window` must be an int >= 1, got {window!r}.")
  t = k.shape[-2]
  if block_size is not None and (block_size < 1 or t % block_size):
    raise ValueError(
        f"`block_size` must divide T={t}, got block_size={block_size}.")
  k = k.astype(jnp.float32)

  def changed(seq):                                     # seq [T, D]
    def step(ref, ks):
      c = jnp.max(jnp.abs(ks - ref)) > threshold
      return jnp.where(c, ks, ref), c
    _, c = jax.lax.scan(step, seq[0], seq[1:])
    return jnp.concatenate([jnp.ones((1,), bool), c])

  flat = k.reshape(-1, t, k.shape[-1])
  c = jax.vmap(changed)(flat).reshape(k.shape[:-1])     # [..., T]
  q_idx = jnp.arange(t)[:, None]
  s_idx = jnp.arange(t)[None, :]
  causal = s_idx <= q_idx
  local = (q_idx - s_idx) < window
  mask = causal & (local | c[..., None, :])
  if block_size is not None:
    nb = t // block_size
    mask = mask.reshape(*mask.shape[:-2], nb, block_size, nb, block_size)
    mask = jnp.any(mask, axis=(-3, -1))
  return mask
