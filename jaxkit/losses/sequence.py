r"""Sequence helpers: token and sequence log-probabilities from logits.

Preference losses (:mod:`jaxkit.losses.preference`) take summed sequence
log-probabilities :math:`\log \pi(y \mid x) = \sum_t \log \pi(y_t \mid x,
y_{<t})`; the two functions here compute them from a language model's logits
and the (already shifted) target labels, in float32 or wider, with padded
positions masked out by ``where``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


def _check_logits_labels(logits, labels, where):
  logits = checks.check_floating(logits, "logits")
  checks.check_rank(logits, 3, "logits")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(
        f"`labels` must hold integer token ids, got dtype {labels.dtype}.")
  checks.check_rank(labels, 2, "labels")
  if labels.shape != logits.shape[:2]:
    raise ValueError(
        f"`labels` must have shape logits.shape[:2] = {logits.shape[:2]}, got "
        f"{labels.shape}.")
  mask = checks.check_where(where, labels.shape, "where")
  return logits, labels, mask


def token_log_probs(logits: ArrayLike, labels: ArrayLike, *,
                    where: ArrayLike | None = None) -> jax.Array:
  r"""Log-probability of each label token under the logits' softmax.

  .. math::
    \ell_{bt} = z_{bt, y_{bt}} - \log \sum_v e^{z_{btv}}

  computed as a gather minus a ``logsumexp`` (never a full ``log_softmax``
  tensor), in float32 or wider (bf16 logits accumulate in float32). Positions
  where ``where`` is ``False`` give exactly ``0`` with zero gradients; their
  labels are never used, so padding ids such as ``-100`` are fine there.

  Unmasked labels must lie in ``[0, V)`` (out-of-range ids at unmasked
  positions give ``nan``, JAX's gather fill value) and logits must be finite.
  The float32 cast of bf16 logits materialises one ``[B, T, V]`` float32
  tensor.

  Args:
    logits: ``[B, T, V]`` floating logits, aligned with ``labels`` (shift them
      before calling: ``logits[:, :-1]`` predict ``tokens[:, 1:]``).
    labels: ``[B, T]`` integer token ids.
    where: optional ``[B, T]`` (or ``[B, 1]`` / ``[1, T]``) boolean mask of
      valid tokens; ``None`` means all tokens are valid.

  Returns:
    ``[B, T]`` log-probabilities (float32 or wider), ``0`` where masked.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import token_log_probs
    >>> logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))
    >>> labels = jnp.array([[0, -100]])
    >>> lp = token_log_probs(logits, labels, where=jnp.array([[True, False]]))
    >>> print(jnp.round(lp, 4))
    [[-0.6931  0.    ]]

  References:
    Rafailov, Sharma, Mitchell, Ermon, Manning, Finn, `Direct Preference
    Optimization: Your Language Model is Secretly a Reward Model
    <https://arxiv.org/abs/2305.18290>`_, 2023 (sequence log-probabilities as
    the input of DPO-style losses).
  """
  logits, labels, mask = _check_logits_labels(logits, labels, where)
  dtype = checks.compute_dtype(logits)
  logits = logits.astype(dtype)
  if mask is None:
    safe = labels
  else:
    safe = jnp.where(mask, labels, 0)  # junk labels never reach the gather
  picked = jnp.take_along_axis(logits, safe[..., None].astype(jnp.int32),
                               axis=-1)[..., 0]
  lp = picked - jax.nn.logsumexp(logits, axis=-1)
  if mask is not None:
    lp = jnp.where(mask, lp, jnp.zeros((), dtype))
  return lp


def sequence_log_probs(logits: ArrayLike, labels: ArrayLike, *,
                       where: ArrayLike | None = None) -> jax.Array:
  r"""Summed log-probability of each label sequence over its valid tokens.

  .. math::
    \log \pi(y_b \mid x_b) = \sum_{t:\, m_{bt}} \bigl(z_{bt, y_{bt}} -
    \log \textstyle\sum_v e^{z_{btv}}\bigr)

  This is the input that :func:`jaxkit.losses.preference.dpo_loss` and its
  relatives expect (TRL's ``concatenated_forward`` with ``loss_mask``).
  Divide by ``where.sum(-1)`` for the average log-probability used by
  SimPO / ORPO (or pass the lengths to those losses). Same masking and
  precision rules as :func:`token_log_probs`; a fully masked row gives ``0``.

  Args:
    logits: ``[B, T, V]`` floating logits aligned with ``labels``.
    labels: ``[B, T]`` integer token ids.
    where: optional ``[B, T]`` boolean mask of valid (completion) tokens.

  Returns:
    ``[B]`` summed log-probabilities (float32 or wider).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import sequence_log_probs
    >>> logits = jnp.log(jnp.array([[[0.5, 0.5], [0.25, 0.75]]]))
    >>> print(f"{float(sequence_log_probs(logits, jnp.array([[0, 1]]))[0]):.4f}")
    -0.9808

  References:
    Rafailov, Sharma, Mitchell, Ermon, Manning, Finn, `Direct Preference
    Optimization: Your Language Model is Secretly a Reward Model
    <https://arxiv.org/abs/2305.18290>`_, 2023.
  """
  return jnp.sum(token_log_probs(logits, labels, where=where), axis=-1)
