r"""Reranking losses: pointwise yes/no (SFT) and listwise contrastive (CL).

An LLM reranker scores a (query, document) pair either generatively — the
logits of the "yes" and "no" tokens after a relevance prompt, trained with
cross-entropy on the relevance label (supervised fine-tuning, SFT) — or
through an embedding / score head trained with a listwise InfoNCE loss over
one positive and :math:`M` negatives (contrastive learning, CL). Both are here
as per-example losses; :func:`margin_mse_loss` (ranking distillation) lives
in :mod:`jaxkit.losses.distillation`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


def yes_no_pointwise_loss(
    logit_yes: ArrayLike,
    logit_no: ArrayLike,
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Pointwise SFT reranking loss: cross-entropy over the {yes, no} tokens.

  With the relevance score :math:`d = z_\mathrm{yes} - z_\mathrm{no}` (the
  log-odds of "yes" in the two-token softmax) and label
  :math:`y \in [0, 1]` (1 = relevant; soft labels allowed),

  .. math::
    \ell = -y \log\sigma(d) - (1 - y)\log\sigma(-d)
      = \mathrm{softplus}(d) - y\,d.

  The gradient :math:`\partial\ell/\partial d = \sigma(d) - y` is the
  "weight" that, per the paper's analysis, is larger for SFT than for CL on
  hard examples. Computed with ``softplus`` (finite for :math:`|d| = 10^4`).

  Args:
    logit_yes: ``[...]`` logits of the "yes" token.
    logit_no: ``[...]`` logits of the "no" token.
    labels: ``[...]`` relevance labels in ``[0, 1]`` (bool/int/float).
    where: optional ``[...]`` mask of valid pairs.

  Returns:
    ``[...]`` per-pair losses (0 where masked).

  Raises:
    ValueError: shape mismatches or (eagerly) labels outside ``[0, 1]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.ranking import yes_no_pointwise_loss
    >>> l = yes_no_pointwise_loss(jnp.array([2.0, 2.0]), jnp.array([0.0, 0.0]),
    ...                           jnp.array([1, 0]))
    >>> print(jnp.round(l, 4))
    [0.1269 2.1269]

  References:
    Chen et al., `Supervised Fine-Tuning or Contrastive Learning? Towards
    Better Multimodal LLM Reranking <https://arxiv.org/abs/2510.14824>`_,
    2025; Nogueira et al., `Document Ranking with a Pretrained
    Sequence-to-Sequence Model <https://arxiv.org/abs/2003.06713>`_, 2020.

    Catalog: seed_001 #43.
  """
  zy = checks.check_floating(logit_yes, "logit_yes")
  zn = checks.check_floating(logit_no, "logit_no")
  checks.check_same_shape(zy, zn, "logit_yes", "logit_no")
  y = jnp.asarray(labels)
  if y.shape != zy.shape:
    raise ValueError(f"`labels` must have the logits' shape {zy.shape}, got "
                     f"{y.shape}.")
  if checks.is_concrete(y):
    import numpy as np  # pylint: disable=g-import-not-at-top
    arr = np.asarray(y, np.float64)
    if arr.size and (arr.min() < 0 or arr.max() > 1):
      raise ValueError(f"`labels` must lie in [0, 1], got values in "
                       f"[{arr.min()}, {arr.max()}].")
  mask = checks.check_where(where, zy.shape, "where")
  dtype = checks.compute_dtype(zy, zn)
  d = zy.astype(dtype) - zn.astype(dtype)
  y = y.astype(dtype)
  if mask is not None:
    d = jnp.where(mask, d, 0.0)
  loss = jax.nn.softplus(d) - y * d
  if mask is not None:
    loss = jnp.where(mask, loss, 0.0)
  return loss


def listwise_contrastive_loss(
    scores: ArrayLike,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Listwise contrastive (InfoNCE) reranking loss; the positive is column 0.

  .. math::
    \ell = -\log\frac{e^{s_0/\tau}}{\sum_{m=0}^{M} e^{s_m/\tau}}

  for a list of scores whose first entry belongs to the relevant document and
  the rest to :math:`M` negatives. Equal to ``optax.ranking_softmax_loss``
  with a one-hot label on the first item (tested). ``where`` masks padded
  candidates (the positive must stay valid; a row whose positive is masked
  gives 0).

  Args:
    scores: ``[..., 1 + M]`` scores, positive first.
    temperature: :math:`\tau > 0`.
    where: optional ``[..., 1 + M]`` mask of valid candidates.

  Returns:
    ``[...]`` per-list losses.

  Raises:
    ValueError: rank < 1, fewer than 2 candidates, ``temperature <= 0``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.ranking import listwise_contrastive_loss
    >>> l = listwise_contrastive_loss(jnp.array([[2.0, 0.0, 0.0]]))
    >>> print(jnp.round(l, 4))
    [0.2395]

  References:
    Chen et al., `Supervised Fine-Tuning or Contrastive Learning? Towards
    Better Multimodal LLM Reranking <https://arxiv.org/abs/2510.14824>`_,
    2025; van den Oord, Li, Vinyals, `Representation Learning with
    Contrastive Predictive Coding <https://arxiv.org/abs/1807.03748>`_, 2018.

    Catalog: seed_001 #43.
  """
  s = checks.check_floating(scores, "scores")
  if s.ndim < 1 or s.shape[-1] < 2:
    raise ValueError(f"`scores` must be [..., 1 + M] with M >= 1 negatives, "
                     f"got shape {s.shape}.")
  checks.check_scalar(temperature, "temperature", positive=True)
  mask = checks.check_where(where, s.shape, "where")
  dtype = checks.compute_dtype(s)
  z = s.astype(dtype) / temperature
  if mask is None:
    return jax.nn.logsumexp(z, axis=-1) - z[..., 0]
  z = jnp.where(mask, z, 0.0)
  lse = jax.nn.logsumexp(jnp.where(mask, z, -jnp.inf), axis=-1, where=mask)
  ok = mask[..., 0]
  return jnp.where(ok, jnp.where(ok, lse, 0.0) - z[..., 0], 0.0)
