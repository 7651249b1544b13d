r"""Semi-supervised and test-time-adaptation losses on unlabelled batches.

* FixMatch's confidence-masked pseudo-label loss and ShrinkMatch's
  class-space shrinking for the *uncertain* samples FixMatch discards;
* entropy minimisation (TENT) and the "wisdom of crowds" filter that keeps
  only the samples whose confidence did not drop during adaptation.

Inputs are logits / probabilities ``[..., C]`` and the losses are
per-example ``[...]`` (reduce with :func:`jaxkit.masked_mean` or, for
ShrinkMatch's principle 2, as described in :func:`shrinkmatch_loss`).
Pseudo-labels and masks derived from the weak view are ``stop_gradient``-ed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.losses.classification import _at_label


def _probs(p, name):
  p = checks.check_floating(p, name)
  if p.ndim < 1 or p.shape[-1] < 2:
    raise ValueError(f"`{name}` must have shape [..., C] with C >= 2, got "
                     f"{p.shape}.")
  return jax.lax.stop_gradient(p.astype(checks.compute_dtype(p)))


def _logits_like(z, like, name):
  z = checks.check_floating(z, name)
  if z.shape != like.shape:
    raise ValueError(f"`{name}` must have shape {like.shape} (like the "
                     f"weak-view probabilities), got {z.shape}.")
  return z.astype(checks.compute_dtype(z))


def fixmatch_loss(logits_strong: ArrayLike, probs_weak: ArrayLike, *,
                  threshold: float = 0.95,
                  hard_labels: bool = True) -> jax.Array:
  r"""FixMatch's consistency loss: confident weak-view pseudo-labels.

  .. math::
    \ell_i = [\max_c p^w_{ic} \ge \tau]\; \mathrm{CE}(\hat q_i,
      \operatorname{softmax}(z^s_i)),

  with :math:`\hat q_i` the one-hot argmax of the weak-view probabilities
  (``hard_labels=True``, FixMatch) or :math:`p^w_i` itself
  (``hard_labels=False``, what ShrinkMatch's code uses). The weak view is
  gradient-stopped.

  Args:
    logits_strong: ``[..., C]`` logits of the strongly augmented view.
    probs_weak: ``[..., C]`` probabilities of the weakly augmented view.
    threshold: confidence threshold :math:`\tau \in [0, 1]`.
    hard_labels: hard (argmax) or soft pseudo-labels (static bool).

  Returns:
    ``[...]`` per-example losses (0 for unconfident samples).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.semi_supervised import fixmatch_loss
    >>> pw = jnp.array([[0.97, 0.03], [0.6, 0.4]])
    >>> zs = jnp.zeros((2, 2))
    >>> print(jnp.round(fixmatch_loss(zs, pw), 4))
    [0.6931 0.    ]

  References:
    Sohn et al., `FixMatch: Simplifying Semi-Supervised Learning with
    Consistency and Confidence <https://arxiv.org/abs/2001.07685>`_, NeurIPS
    2020.

    Catalog: seed_001 #4, seed_002 #62.
  """
  checks.check_scalar(threshold, "threshold", nonnegative=True, upper=1.0)
  p = _probs(probs_weak, "probs_weak")
  z = _logits_like(logits_strong, p, "logits_strong")
  logq = jax.nn.log_softmax(z, axis=-1)
  conf = jnp.max(p, axis=-1)
  if hard_labels:
    ce = -_at_label(logq, jnp.argmax(p, axis=-1))
  else:
    ce = -jnp.sum(p * logq, axis=-1)
  return jnp.where(conf >= threshold, ce, 0.0)


def shrink_class_mask(probs_weak: ArrayLike, *, threshold: float = 0.95
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""ShrinkMatch's shrunk class space for each sample.

  Sort the weak-view probabilities :math:`p_{(0)} \ge p_{(1)} \ge \dots`.
  For :math:`c = 2, \dots, C-1` (0-based sorted positions) the confidence of
  the top class after removing the "confusion" classes at positions
  :math:`1, \dots, c-1` is

  .. math::
    \text{conf}_c = \frac{p_{(0)}}{p_{(0)} + \sum_{j \ge c} p_{(j)}}.

  The chosen :math:`c^\star` is the smallest with
  :math:`\text{conf}_c \ge \tau`, else :math:`C - 1`; the kept classes are
  the top-1 and the positions :math:`\ge c^\star`. Vectorised with a
  reversed cumulative sum (the authors' ``shrink_loss`` loops in Python;
  same choice of :math:`c^\star`, checked against ``LiheYoung/ShrinkMatch``
  ``CIFAR/shrinkmatch.py``). With :math:`C = 2` nothing can be removed and
  ``ok`` is False.

  Args:
    probs_weak: ``[..., C]`` weak-view probabilities.
    threshold: :math:`\tau \in [0, 1]`.

  Returns:
    ``(keep, sub_conf, ok)``: ``keep [..., C]`` boolean kept classes (in the
    original class order), ``sub_conf [...]`` the confidence
    :math:`\text{conf}_{c^\star}` in the shrunk space, ``ok [...]`` whether
    it reaches :math:`\tau`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.semi_supervised import shrink_class_mask
    >>> keep, conf, ok = shrink_class_mask(jnp.array([[0.5, 0.4, 0.05, 0.05]]),
    ...                                    threshold=0.8)
    >>> print(keep, jnp.round(conf, 4), ok)
    [[ True False  True  True]] [0.8333] [ True]

  References:
    Yang, Zhao, Qi, Shi, `Shrinking Class Space for Enhanced Certainty in
    Semi-Supervised Learning <https://arxiv.org/abs/2308.06777>`_, ICCV 2023.

    Catalog: seed_001 #4, seed_002 #62.
  """
  checks.check_scalar(threshold, "threshold", nonnegative=True, upper=1.0)
  p = _probs(probs_weak, "probs_weak")
  num = p.shape[-1]
  order = jnp.argsort(-p, axis=-1)
  ps = jnp.take_along_axis(p, order, axis=-1)
  tail = jnp.flip(jnp.cumsum(jnp.flip(ps, -1), -1), -1)  # sum_{j >= c}
  top = ps[..., :1]
  conf = top / jnp.maximum(top + tail, 1e-30)
  pos = jnp.arange(num)
  cand = (pos >= 2) & (pos <= num - 1)
  hit = cand & ((conf >= threshold) | (pos == num - 1))
  if num <= 2:
    cstar = jnp.full(p.shape[:-1], num, jnp.int32)
    sub = jnp.zeros(p.shape[:-1], p.dtype)
  else:
    cstar = jnp.argmax(hit, axis=-1).astype(jnp.int32)
    sub = _at_label(conf, cstar)
  keep_sorted = (pos == 0) | (pos >= cstar[..., None])
  rank = jnp.argsort(order, axis=-1)
  keep = jnp.take_along_axis(keep_sorted, rank, axis=-1)
  ok = (sub >= threshold) & (num > 2)
  return keep, sub, ok


def shrinkmatch_loss(logits_strong: ArrayLike, probs_weak: ArrayLike, *,
                     threshold: float = 0.95) -> jax.Array:
  r"""ShrinkMatch's loss on the uncertain samples, in the shrunk class space.

  For each sample with :math:`\max_c p^w_c < \tau`, the cross-entropy of the
  strong-view logits restricted to the kept classes of
  :func:`shrink_class_mask`, with the weak view's top-1 class as target,
  weighted by reweighting principle 1 (the original confidence
  :math:`p_{(0)}`, and 0 unless the shrunk confidence reaches :math:`\tau`):

  .. math::
    \ell_i = [\max p^w_i < \tau]\,[\text{conf}_i \ge \tau]\; p_{i(0)}\,
      \Big(\operatorname{logsumexp}_{c \in \text{kept}_i} z^s_{ic}
      - z^s_{i,\hat y_i}\Big).

  Reweighting principle 2 is the caller's: sum over the batch, divide by
  :math:`B` and multiply by the EMA (momentum 0.999) of the fraction of
  certain samples, i.e. ``jnp.mean(loss) * certain_ratio_ema`` (as in
  ``LiheYoung/ShrinkMatch``; their code applies this to an auxiliary head's
  logits).

  Args:
    logits_strong: ``[..., C]`` strong-view logits (of the auxiliary head).
    probs_weak: ``[..., C]`` weak-view probabilities (gradient-stopped).
    threshold: :math:`\tau`.

  Returns:
    ``[...]`` per-example losses (0 for certain samples).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.semi_supervised import shrinkmatch_loss
    >>> pw = jnp.array([[0.5, 0.4, 0.05, 0.05]])
    >>> zs = jnp.zeros((1, 4))
    >>> print(jnp.round(shrinkmatch_loss(zs, pw, threshold=0.8), 4))  # 0.5 log 3
    [0.5493]

  References:
    Yang, Zhao, Qi, Shi, `Shrinking Class Space for Enhanced Certainty in
    Semi-Supervised Learning <https://arxiv.org/abs/2308.06777>`_, ICCV 2023.

    Catalog: seed_001 #4, seed_002 #62.
  """
  keep, sub, ok = shrink_class_mask(probs_weak, threshold=threshold)
  p = _probs(probs_weak, "probs_weak")
  z = _logits_like(logits_strong, p, "logits_strong")
  top = jnp.argmax(p, axis=-1)
  conf = jnp.max(p, axis=-1)
  lse = jax.nn.logsumexp(jnp.where(keep, z, -jnp.inf), axis=-1)
  ce = lse - _at_label(z, top)
  use = (conf < threshold) & ok
  return jnp.where(use, conf * ce, 0.0)


def entropy_loss(logits: ArrayLike, *,
                 where: ArrayLike | None = None) -> jax.Array:
  r"""Shannon entropy of the softmax, :math:`-\sum_c p_c \log p_c` (TENT).

  Computed from ``log_softmax`` (finite and with finite gradients for any
  finite logits). ``where`` masks classes.

  Args:
    logits: ``[..., C]`` logits.
    where: optional class mask with the logits' rank.

  Returns:
    ``[...]`` entropies (nats).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.semi_supervised import entropy_loss
    >>> print(f"{float(entropy_loss(jnp.zeros((1, 4)))[0]):.4f}")  # log 4
    1.3863

  References:
    Wang, Shelhamer, Liu, Olshausen, Darrell, `Tent: Fully Test-time
    Adaptation by Entropy Minimization <https://arxiv.org/abs/2006.10726>`_,
    ICLR 2021.

    Catalog: seed_001 #37.
  """
  z = checks.check_floating(logits, "logits")
  if z.ndim < 1:
    raise ValueError("`logits` must have a class axis [..., C].")
  z = z.astype(checks.compute_dtype(z))
  mask = checks.check_where(where, z.shape)
  if mask is not None:
    z = jnp.where(mask, z, -jnp.inf)
    z = jnp.where(jnp.any(mask, -1, keepdims=True), z, 0.0)
  logp = jax.nn.log_softmax(z, axis=-1)
  p = jnp.exp(logp)
  terms = jnp.where(p > 0, p * logp, 0.0)
  if mask is not None:
    terms = jnp.where(mask, terms, 0.0)
  return -jnp.sum(terms, axis=-1)


def crowd_filter_mask(probs_adapted: ArrayLike,
                      probs_source: ArrayLike) -> jax.Array:
  r"""The "wisdom of crowds" filter for entropy minimisation at test time.

  Keep sample :math:`i` only if its confidence in the adapted model's
  prediction :math:`\hat y_i = \arg\max_c p^{\text{adapt}}_{ic}` did not drop
  relative to the frozen source model:

  .. math::
    m_i = [\,p^{\text{adapt}}_{i\hat y_i} \ge p^{\text{source}}_{i\hat y_i}\,].

  Most samples (the crowd) gain confidence under entropy minimisation;
  noisy / open-set ones lose it and are filtered out. Use the mask as the
  ``where`` of :func:`jaxkit.masked_mean` over :func:`entropy_loss`. The
  paper's code is not public; :math:`\hat y` is the adapted model's
  prediction, as the paper's text describes.

  Args:
    probs_adapted: ``[..., C]`` probabilities of the adapting model.
    probs_source: ``[..., C]`` probabilities of the frozen source model.

  Returns:
    ``[...]`` boolean keep-mask (no gradient).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.semi_supervised import crowd_filter_mask
    >>> pa = jnp.array([[0.9, 0.1], [0.55, 0.45]])
    >>> ps = jnp.array([[0.7, 0.3], [0.8, 0.2]])
    >>> print(crowd_filter_mask(pa, ps))
    [ True False]

  References:
    Lee, Jung, Choo, et al., `Towards Open-Set Test-Time Adaptation Utilizing
    the Wisdom of Crowds in Entropy Minimization
    <https://arxiv.org/abs/2308.06879>`_, ICCV 2023.

    Catalog: seed_001 #37.
  """
  pa = _probs(probs_adapted, "probs_adapted")
  ps = _probs(probs_source, "probs_source")
  checks.check_same_shape(pa, ps, "probs_adapted", "probs_source")
  yhat = jnp.argmax(pa, axis=-1)
  return _at_label(pa, yhat) >= _at_label(ps, yhat)
