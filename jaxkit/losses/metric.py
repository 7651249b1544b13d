r"""Deep-metric-learning losses, miners and threshold-consistency metrics.

Every function here takes a batch of embeddings ``[B, D]`` and integer class
``labels`` ``[B]`` (or query / document embeddings for the retrieval losses)
and compares **all pairs of the batch**, so the examples are coupled: under
``jax.jit`` with a batch-sharded input the pairwise similarity matrix is global
(XLA gathers what it needs) and the sharded result equals the single-device one.

* :func:`multi_similarity_miner` and :func:`multi_similarity_loss` — the
  multi-similarity (MS) loss with general pair weighting and its hard-pair
  miner (Wang et al., 2019), with pytorch-metric-learning's semantics.
* :func:`tcm_regularizer` — the threshold-consistent margin (TCM) regulariser
  (Zhang et al., 2023), added to any base loss.
* :func:`threshold_f1_curves` and :func:`opis` — per-class and overall pair
  F1 as a function of the similarity threshold, and the operating-point
  inconsistency score (OPIS) computed from them.
* :func:`batch_all_triplet_loss` — the triplet margin loss over all valid
  triplets of a batch, averaged over the non-zero ones.
* :func:`ntxent_loss` — supervised NT-Xent / N-pair (InfoNCE) loss.
* :func:`info_nce_hard_negatives_loss` — query/document InfoNCE with
  in-batch and mined hard negatives, with an optional focal weight
  (KaLM-Embedding-V2).

Similarities are cosine similarities of L2-normalised embeddings (rows are
divided by ``max(‖x‖, 1e-12)``, as ``torch.nn.functional.normalize`` does).
bf16 / f16 embeddings are upcast and accumulated in float32. A ``where`` mask
``[B]`` removes examples from the batch entirely: a masked example is neither
an anchor nor a positive / negative of another anchor, and its (possibly junk,
even ``nan``) embedding never reaches the value or the gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike

_NORM_EPS = 1e-12


# ----------------------------------------------------------------- helpers --


def _check_batch(embeddings, labels, where, name="embeddings"):
  """Validates ``embeddings [B, D]``, integer ``labels [B]`` and ``where [B]``."""
  emb = checks.check_floating(embeddings, name)
  checks.check_rank(emb, 2, name)
  if isinstance(labels, (bool, np.bool_)):
    raise TypeError("`labels` must be an integer array, got a bool.")
  lab = jnp.asarray(labels)
  if not jnp.issubdtype(lab.dtype, jnp.integer):
    raise TypeError(
        f"`labels` must be an integer array of class ids, got dtype "
        f"{lab.dtype}.")
  checks.check_rank(lab, 1, "labels")
  if lab.shape[0] != emb.shape[0]:
    raise ValueError(
        f"`labels` must have one entry per row of `{name}`: got "
        f"{lab.shape[0]} labels for {emb.shape[0]} embeddings (mismatched "
        "batch sizes).")
  mask = checks.check_where(where, lab.shape, "where")
  return emb, lab, mask


def _normalize(x, mask, dtype):
  """L2-normalises rows of ``x`` (masked rows replaced by a constant row)."""
  x = x.astype(dtype)
  if mask is not None:
    x = jnp.where(mask[..., None], x, 1.0)
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _NORM_EPS**2))


def _cosine_matrix(emb, mask, dtype):
  """``[B, B]`` cosine similarities of the rows of ``emb``."""
  z = _normalize(emb, mask, dtype)
  return z @ z.T


def _pair_masks(labels, mask):
  """Positive (same label, i ≠ j) and negative (different label) pair masks."""
  b = labels.shape[0]
  same = labels[:, None] == labels[None, :]
  pos = same & ~jnp.eye(b, dtype=bool)
  neg = ~same
  if mask is not None:
    valid = mask[:, None] & mask[None, :]
    pos, neg = pos & valid, neg & valid
  return pos, neg


def _log1p_sum_exp(a, mask, axis=-1):
  """``log(1 + Σ_{mask} exp(a))`` along ``axis``, stable; 0 when all masked."""
  a = jnp.where(mask, a, -jnp.inf)
  mx = jax.lax.stop_gradient(
      jnp.maximum(jnp.max(a, axis=axis, keepdims=True), 0.0))
  s = jnp.exp(-mx) + jnp.sum(jnp.exp(a - mx), axis=axis, keepdims=True)
  return jnp.squeeze(mx + jnp.log(s), axis)


def _masked_lse(a, mask, axis=-1):
  """``log Σ_{mask} exp(a)``; ``-inf`` (finite gradients) when all masked."""
  a = jnp.where(mask, a, -jnp.inf)
  mx = jax.lax.stop_gradient(jnp.max(a, axis=axis, keepdims=True))
  mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
  s = jnp.sum(jnp.exp(a - mx), axis=axis, keepdims=True)
  ok = s > 0
  out = jnp.where(ok, mx + jnp.log(jnp.where(ok, s, 1.0)), -jnp.inf)
  return jnp.squeeze(out, axis)


def _safe_div(num, den):
  """``num / den`` with 0 where ``den == 0`` (and finite gradients)."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _check_pair_mask(m, b, name):
  if m is None:
    return None
  m = jnp.asarray(m)
  if m.shape != (b, b):
    raise ValueError(f"`{name}` must be a [B, B] = [{b}, {b}] pair mask, got "
                     f"shape {m.shape}.")
  return m.astype(bool)


# ----------------------------------------------------------- multi-similarity --


def multi_similarity_miner(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    epsilon: float = 0.1,
    where: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""Multi-similarity hard-pair miner: informative positive and negative pairs.

  With :math:`S` the cosine-similarity matrix, :math:`P_i` the positives of
  anchor :math:`i` (same label, :math:`j \ne i`) and :math:`N_i` its negatives,
  a negative pair is kept when it is more similar than the anchor's hardest
  positive (minus a margin) and a positive pair is kept when it is less similar
  than the anchor's hardest negative (plus a margin):

  .. math::
    \tilde N_i = \{j \in N_i : S_{ij} + \epsilon > \min_{k \in P_i} S_{ik}\},
    \qquad
    \tilde P_i = \{j \in P_i : S_{ij} - \epsilon < \max_{k \in N_i} S_{ik}\}.

  An anchor without positives keeps no negatives and vice versa. As in
  pytorch-metric-learning's ``MultiSimilarityMiner(epsilon)`` (checked against
  its source and numerically in the tests), when the whole batch has no
  positive pair or no negative pair nothing is mined. The masks are boolean and
  carry no gradient; pass them to :func:`multi_similarity_loss`
  (``pos_mask=``, ``neg_mask=``) for the paper's mine-then-weight method.

  Args:
    embeddings: ``[B, D]`` embeddings (normalised internally).
    labels: ``[B]`` integer class ids.
    epsilon: the mining margin :math:`\epsilon` (>= 0).
    where: optional ``[B]`` mask of valid examples.

  Returns:
    ``(pos_mask, neg_mask)``, two boolean ``[B, B]`` matrices; entry
    ``[i, j]`` marks the mined pair (anchor ``i``, partner ``j``).

  Raises:
    ValueError: wrong ranks, mismatched batch sizes or a negative ``epsilon``.
    TypeError: non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.metric import multi_similarity_miner
    >>> emb = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    >>> pos, neg = multi_similarity_miner(emb, jnp.array([0, 0, 1, 1]))
    >>> print(pos.astype(int))
    [[0 0 0 0]
     [1 0 0 0]
     [0 0 0 1]
     [0 0 0 0]]
    >>> print(neg.astype(int))
    [[0 0 0 0]
     [0 0 1 0]
     [0 1 0 0]
     [0 0 0 0]]

  References:
    Wang, Han, Huang, Dong, Scott, `Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning <https://arxiv.org/abs/1904.06627>`_,
    CVPR 2019.

    Catalog: seed_001 #18.
  """
  emb, lab, mask = _check_batch(embeddings, labels, where)
  checks.check_scalar(epsilon, "epsilon", nonnegative=True)
  dtype = checks.compute_dtype(emb)
  sim = jax.lax.stop_gradient(_cosine_matrix(emb, mask, dtype))
  pos, neg = _pair_masks(lab, mask)
  max_neg = jnp.max(jnp.where(neg, sim, -jnp.inf), axis=1, keepdims=True)
  min_pos = jnp.min(jnp.where(pos, sim, jnp.inf), axis=1, keepdims=True)
  hard_pos = pos & (sim - epsilon < max_neg)
  hard_neg = neg & (sim + epsilon > min_pos)
  anything = jnp.any(pos) & jnp.any(neg)
  return hard_pos & anything, hard_neg & anything


def multi_similarity_loss(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    where: ArrayLike | None = None,
    pos_mask: ArrayLike | None = None,
    neg_mask: ArrayLike | None = None,
) -> jax.Array:
  r"""Multi-similarity loss: soft-weights every positive and negative pair.

  With :math:`S_{ij}` the cosine similarity of the L2-normalised embeddings,
  each anchor :math:`i` gets

  .. math::
    \ell_i = \frac1\alpha \log\Big(1 + \sum_{k \in P_i}
      e^{-\alpha (S_{ik} - \lambda)}\Big)
      + \frac1\beta \log\Big(1 + \sum_{k \in N_i} e^{\beta (S_{ik} - \lambda)}
      \Big),

  :math:`\lambda` = ``base``. The gradient w.r.t. :math:`S_{ij}` is the
  paper's general pair weight (self-similarity via the exponent, relative
  similarity via the normaliser). By default :math:`P_i` / :math:`N_i` are all
  positives / negatives of the anchor (pytorch-metric-learning's
  ``MultiSimilarityLoss`` without a miner); pass the masks of
  :func:`multi_similarity_miner` as ``pos_mask`` / ``neg_mask`` for the
  paper's mined version. An anchor with no positives (negatives) has a zero
  positive (negative) term. Sums are evaluated as stable log-sum-exps.

  **Reduction.** pytorch-metric-learning's ``MultiSimilarityLoss`` returns
  ``"element"`` losses (one per anchor) reduced by its default ``MeanReducer``
  — the plain mean over **all** ``B`` anchors, zeros included (not
  ``AvgNonZeroReducer``). So ``jnp.mean(multi_similarity_loss(e, y))`` equals
  ``MultiSimilarityLoss()(e, y)`` (tested to 1e-5), and with a mask,
  ``jaxkit.masked_mean(loss, where)`` equals it on the unmasked sub-batch.
  (One corner differs: given at most one mined pair of each kind, PML returns
  0 instead of that pair's loss.)

  Args:
    embeddings: ``[B, D]`` embeddings (normalised internally).
    labels: ``[B]`` integer class ids.
    alpha: positive-pair scale :math:`\alpha > 0`.
    beta: negative-pair scale :math:`\beta > 0`.
    base: similarity offset :math:`\lambda`.
    where: optional ``[B]`` mask of valid examples.
    pos_mask: optional ``[B, B]`` boolean mask restricting the positive pairs
      (e.g. mined); it is intersected with the label-defined positives.
    neg_mask: optional ``[B, B]`` mask restricting the negative pairs.

  Returns:
    ``[B]`` per-anchor losses (0 for masked anchors).

  Raises:
    ValueError: wrong ranks, mismatched batch sizes, non-positive ``alpha`` /
      ``beta``, or pair masks that are not ``[B, B]``.
    TypeError: non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.metric import multi_similarity_loss
    >>> emb = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    >>> print(jnp.round(multi_similarity_loss(emb, jnp.array([0, 0, 1, 1])), 4))
    [0.3189 0.6787 0.6787 0.3189]

  References:
    Wang, Han, Huang, Dong, Scott, `Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning <https://arxiv.org/abs/1904.06627>`_,
    CVPR 2019.

    Catalog: seed_001 #18.
  """
  emb, lab, mask = _check_batch(embeddings, labels, where)
  checks.check_scalar(alpha, "alpha", positive=True)
  checks.check_scalar(beta, "beta", positive=True)
  checks.check_scalar(base, "base")
  b = emb.shape[0]
  pm = _check_pair_mask(pos_mask, b, "pos_mask")
  nm = _check_pair_mask(neg_mask, b, "neg_mask")
  dtype = checks.compute_dtype(emb)
  sim = _cosine_matrix(emb, mask, dtype)
  pos, neg = _pair_masks(lab, mask)
  if pm is not None:
    pos = pos & pm
  if nm is not None:
    neg = neg & nm
  pos_term = _log1p_sum_exp(-alpha * (sim - base), pos) / alpha
  neg_term = _log1p_sum_exp(beta * (sim - base), neg) / beta
  loss = pos_term + neg_term
  if mask is not None:
    loss = jnp.where(mask, loss, 0.0)
  return loss


# ------------------------------------------------------------------- TCM --


def tcm_regularizer(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    pos_margin: float = 0.9,
    neg_margin: float = 0.5,
    pos_weight: float = 1.0,
    neg_weight: float = 1.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Threshold-consistent margin (TCM) regulariser (a scalar for the batch).

  Penalises only the hard pairs: positive pairs whose cosine similarity is
  below the positive margin :math:`m^+` and negative pairs above the negative
  margin :math:`m^-`, each averaged over its hard pairs:

  .. math::
    \mathcal L_\mathrm{TCM} = \lambda^+ \frac{\sum_{s \in S^+} (m^+ - s)
      [s \le m^+]}{\sum_{s \in S^+} [s \le m^+]}
      + \lambda^- \frac{\sum_{s \in S^-} (s - m^-)[s \ge m^-]}
      {\sum_{s \in S^-} [s \ge m^-]},

  where :math:`S^\pm` are the similarities of all ordered positive pairs
  (same label, :math:`i \ne j`) and negative pairs of the batch; a term whose
  set of hard pairs is empty is 0. Added to a base metric-learning loss, it
  makes the distance threshold that achieves a target operating point more
  consistent across classes (lower :func:`opis`). Semantics of
  pytorch-metric-learning's ``ThresholdConsistentMarginLoss(lambda_plus,
  lambda_minus, margin_plus, margin_minus)`` (checked against its source; equal
  to 1e-6 in the tests).

  Args:
    embeddings: ``[B, D]`` embeddings (normalised internally).
    labels: ``[B]`` integer class ids.
    pos_margin: :math:`m^+`.
    neg_margin: :math:`m^-`.
    pos_weight: :math:`\lambda^+ \ge 0`.
    neg_weight: :math:`\lambda^- \ge 0`.
    where: optional ``[B]`` mask of valid examples.

  Returns:
    A scalar (the regulariser couples all pairs of the batch).

  Raises:
    ValueError: wrong ranks, mismatched batch sizes, negative weights.
    TypeError: non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.metric import tcm_regularizer
    >>> emb = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    >>> print(f"{tcm_regularizer(emb, jnp.array([0, 0, 1, 1])):.4f}")
    0.3200

  References:
    Zhang, Jiang, Yang, Wang, Zheng, Sun, Song, Wang, `Threshold-Consistent
    Margin Loss for Open-World Deep Metric Learning
    <https://arxiv.org/abs/2307.04047>`_, ICLR 2024.

    Catalog: seed_000 #39.
  """
  emb, lab, mask = _check_batch(embeddings, labels, where)
  checks.check_scalar(pos_margin, "pos_margin")
  checks.check_scalar(neg_margin, "neg_margin")
  checks.check_scalar(pos_weight, "pos_weight", nonnegative=True)
  checks.check_scalar(neg_weight, "neg_weight", nonnegative=True)
  dtype = checks.compute_dtype(emb)
  sim = _cosine_matrix(emb, mask, dtype)
  pos, neg = _pair_masks(lab, mask)
  hard_pos = pos & (sim <= pos_margin)
  hard_neg = neg & (sim >= neg_margin)
  pos_term = _safe_div(jnp.sum(jnp.where(hard_pos, pos_margin - sim, 0.0)),
                       jnp.sum(hard_pos).astype(dtype))
  neg_term = _safe_div(jnp.sum(jnp.where(hard_neg, sim - neg_margin, 0.0)),
                       jnp.sum(hard_neg).astype(dtype))
  return pos_weight * pos_term + neg_weight * neg_term


def threshold_f1_curves(
    embeddings: ArrayLike,
    labels: ArrayLike,
    thresholds: ArrayLike,
    *,
    num_classes: int,
    where: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""Pair-verification F1 per class and overall, as a function of threshold.

  Every ordered pair :math:`(i, j)`, :math:`i \ne j`, of the batch is a
  verification trial, declared "same" when the cosine similarity
  :math:`S_{ij} \ge d`. For a threshold :math:`d`, the F1 score of a set of
  trials is :math:`2\mathrm{TP} / (2\mathrm{TP} + \mathrm{FP} + \mathrm{FN})`
  (0 when the set has no positive trial and no false positive). The per-class
  curve uses the trials whose anchor :math:`i` belongs to the class; the
  overall curve uses all trials. These are the utility curves
  :math:`U_c(d)` and :math:`\bar U(d)` of :func:`opis`.

  Memory: ``[B, B, T]`` booleans (an evaluation helper, not a training loss).

  Args:
    embeddings: ``[B, D]`` embeddings (normalised internally).
    labels: ``[B]`` integer class ids in ``[0, num_classes)``.
    thresholds: ``[T]`` cosine-similarity thresholds.
    num_classes: number of classes ``C`` (static).
    where: optional ``[B]`` mask of valid examples.

  Returns:
    ``(per_class, overall)``: ``[C, T]`` and ``[T]`` F1 scores.

  Raises:
    ValueError: bad ranks / sizes, ``num_classes < 1`` or (eagerly) labels
      outside ``[0, num_classes)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.metric import threshold_f1_curves
    >>> emb = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    >>> per_class, overall = threshold_f1_curves(
    ...     emb, jnp.array([0, 0, 1, 1]), jnp.array([0.5, 0.9]), num_classes=2)
    >>> print(jnp.round(overall, 4))
    [0.5714 0.    ]

  References:
    Zhang et al., `Threshold-Consistent Margin Loss for Open-World Deep Metric
    Learning <https://arxiv.org/abs/2307.04047>`_, ICLR 2024 (utility curves
    of the OPIS metric).

    Catalog: seed_000 #39.
  """
  emb, lab, mask = _check_batch(embeddings, labels, where)
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f"`num_classes` must be a positive int, got "
                     f"{num_classes!r}.")
  thr = checks.check_floating(thresholds, "thresholds")
  checks.check_rank(thr, 1, "thresholds")
  if checks.is_concrete(lab):
    arr = np.asarray(lab)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
      raise ValueError(f"`labels` must lie in [0, {num_classes}), got values "
                       f"in [{arr.min()}, {arr.max()}].")
  dtype = checks.compute_dtype(emb, thr)
  sim = jax.lax.stop_gradient(_cosine_matrix(emb, mask, dtype))
  pos, neg = _pair_masks(lab, mask)
  above = sim[..., None] >= thr.astype(dtype)                    # [B, B, T]
  tp = jnp.sum(pos[..., None] & above, axis=1).astype(dtype)     # [B, T]
  fn = jnp.sum(pos[..., None] & ~above, axis=1).astype(dtype)
  fp = jnp.sum(neg[..., None] & above, axis=1).astype(dtype)
  onehot = jax.nn.one_hot(lab, num_classes, dtype=dtype)         # [B, C]
  if mask is not None:
    onehot = onehot * mask[:, None]
  tp_c, fn_c, fp_c = (onehot.T @ a for a in (tp, fn, fp))

  def f1(tp, fp, fn):
    return _safe_div(2.0 * tp, 2.0 * tp + fp + fn)

  return f1(tp_c, fp_c, fn_c), f1(tp.sum(0), fp.sum(0), fn.sum(0))


def opis(
    per_class_utility: ArrayLike,
    overall_utility: ArrayLike,
    *,
    class_where: ArrayLike | None = None,
) -> jax.Array:
  r"""Operating-point-inconsistency score (OPIS) of utility-vs-threshold curves.

  .. math::
    \mathrm{OPIS} = \frac1C \sum_{c=1}^{C}
      \frac{\int_{d_\min}^{d_\max} w(d)\, \big(U_c(d) - \bar U(d)\big)^2\,
      \mathrm{d}d}{\int_{d_\min}^{d_\max} w(d)\, \mathrm{d}d},

  the mean over (test) classes of the squared deviation of each class's
  utility curve :math:`U_c(d)` from the overall utility :math:`\bar U(d)`
  over the calibration range of thresholds. Lower is more threshold
  consistent: one global threshold gives every class a similar operating
  point. Utilities are usually the F1 curves of :func:`threshold_f1_curves`.
  This implementation uses a uniform weight :math:`w = 1` and evaluates the
  integral on the grid the curves were computed on (the mean over the ``T``
  grid points, i.e. a Riemann sum on a uniform grid); choose the grid to span
  the calibration range (the paper picks it from a range of false-acceptance
  rates). The exact definition could not be checked against the authors'
  code (not found in the searchable corpus); it follows the paper's equation.

  Args:
    per_class_utility: ``[C, T]`` utility of each class at each threshold.
    overall_utility: ``[T]`` utility of the whole data set.
    class_where: optional ``[C]`` mask of the classes that count (e.g. classes
      present in the evaluation set).

  Returns:
    A scalar (0 when no class is selected).

  Raises:
    ValueError: wrong ranks or mismatched ``T``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.metric import opis
    >>> u = jnp.array([[0.9, 0.7], [0.5, 0.3]])
    >>> print(f"{opis(u, jnp.array([0.7, 0.5])):.4f}")
    0.0400

  References:
    Zhang et al., `Threshold-Consistent Margin Loss for Open-World Deep Metric
    Learning <https://arxiv.org/abs/2307.04047>`_, ICLR 2024.

    Catalog: seed_000 #39.
  """
  u = checks.check_floating(per_class_utility, "per_class_utility")
  ub = checks.check_floating(overall_utility, "overall_utility")
  checks.check_rank(u, 2, "per_class_utility")
  checks.check_rank(ub, 1, "overall_utility")
  if u.shape[1] != ub.shape[0]:
    raise ValueError(
        f"`per_class_utility` [C, T] and `overall_utility` [T] must share T; "
        f"got shapes {u.shape} and {ub.shape}.")
  cm = checks.check_where(class_where, (u.shape[0],), "class_where")
  dtype = checks.compute_dtype(u, ub)
  dev = jnp.mean(jnp.square(u.astype(dtype) - ub.astype(dtype)), axis=1)
  if cm is None:
    return jnp.mean(dev)
  return _safe_div(jnp.sum(jnp.where(cm, dev, 0.0)), jnp.sum(cm).astype(dtype))


# --------------------------------------------------------------- triplet --


def _safe_sqrt(x):
  ok = x > 0
  return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def batch_all_triplet_loss(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    margin: float = 0.05,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Triplet margin loss over all triplets of a batch, mean of the non-zero ones.

  With :math:`d_{ij} = \|\hat x_i - \hat x_j\|_2` the Euclidean distance of the
  L2-normalised embeddings, every triplet (anchor :math:`a`, positive
  :math:`p \in P_a`, negative :math:`n \in N_a`) gives
  :math:`[d_{ap} - d_{an} + m]_+`, and the result is the sum over all triplets
  divided by the number of triplets with a positive loss (0 if none):
  pytorch-metric-learning's ``TripletMarginLoss(margin)`` with its default
  all-triplets selection, ``LpDistance`` on normalised embeddings and
  ``AvgNonZeroReducer`` (checked against its source and numerically).

  **Cost.** There are :math:`O(B^3)` triplets, but they are never
  materialised: for each anchor the negative distances are sorted once and,
  for each positive, the count and sum of the negatives with
  :math:`d_{an} < d_{ap} + m` come from a binary search and a prefix sum, so
  time is :math:`O(B^2 \log B)` and memory :math:`O(B^2)`.

  Args:
    embeddings: ``[B, D]`` embeddings (normalised internally).
    labels: ``[B]`` integer class ids.
    margin: the margin :math:`m`.
    where: optional ``[B]`` mask of valid examples.

  Returns:
    A scalar (the average couples all triplets of the batch).

  Raises:
    ValueError: wrong ranks or mismatched batch sizes.
    TypeError: non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.metric import batch_all_triplet_loss
    >>> emb = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    >>> loss = batch_all_triplet_loss(emb, jnp.array([0, 0, 1, 1]), margin=0.5)
    >>> print(f"{loss:.4f}")
    0.4419

  References:
    Schroff, Kalenichenko, Philbin, `FaceNet: A Unified Embedding for Face
    Recognition and Clustering <https://arxiv.org/abs/1503.03832>`_, CVPR 2015;
    Musgrave, Belongie, Lim, `A Metric Learning Reality Check
    <https://arxiv.org/abs/2003.08505>`_, ECCV 2020 (pytorch-metric-learning).
  """
  emb, lab, mask = _check_batch(embeddings, labels, where)
  checks.check_scalar(margin, "margin")
  dtype = checks.compute_dtype(emb)
  sim = _cosine_matrix(emb, mask, dtype)
  dist = _safe_sqrt(jnp.maximum(2.0 - 2.0 * sim, 0.0))
  pos, neg = _pair_masks(lab, mask)
  big = jnp.asarray(1e6, dtype)  # larger than any distance + margin
  neg_d = jnp.sort(jnp.where(neg, dist, big), axis=1)            # [B, B]
  csum = jnp.concatenate(
      [jnp.zeros((neg_d.shape[0], 1), dtype), jnp.cumsum(neg_d, axis=1)], 1)
  a = dist + margin                                              # [B, B]
  # count of negatives with d_an < a_p (strict: zero losses are not counted).
  count = jax.vmap(lambda row, q: jnp.searchsorted(row, q, side="left"))(
      jax.lax.stop_gradient(neg_d), jax.lax.stop_gradient(a))
  prefix = jnp.take_along_axis(csum, count, axis=1)
  cnt = count.astype(dtype)
  total = jnp.sum(jnp.where(pos, cnt * a - prefix, 0.0))
  nonzero = jnp.sum(jnp.where(pos, cnt, 0.0))
  return _safe_div(total, nonzero)


# ---------------------------------------------------------------- InfoNCE --


def ntxent_loss(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    temperature: float = 0.07,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Supervised NT-Xent (N-pair / InfoNCE) loss, averaged per anchor.

  For anchor :math:`i` and each positive :math:`p \in P_i`, with cosine
  similarities :math:`S` and temperature :math:`\tau`,

  .. math::
    \ell_{ip} = -\log \frac{e^{S_{ip}/\tau}}{e^{S_{ip}/\tau}
      + \sum_{n \in N_i} e^{S_{in}/\tau}},
    \qquad \ell_i = \frac{1}{|P_i|}\sum_{p \in P_i} \ell_{ip}

  (0 for an anchor without positives). Each positive competes only with the
  anchor's negatives, not with its other positives (NT-Xent as in
  pytorch-metric-learning's ``NTXentLoss`` and ``optax.ntxent``; with two views
  per label it is SimCLR's loss and the N-pair loss). Those libraries average
  over all positive pairs, i.e. ``jaxkit.masked_mean(loss, weights=n_pos)``
  with ``n_pos`` the number of positives of each anchor; that weighted mean is
  what the tests compare.

  Args:
    embeddings: ``[B, D]`` embeddings (normalised internally).
    labels: ``[B]`` integer class ids; equal ids are positives.
    temperature: :math:`\tau > 0`.
    where: optional ``[B]`` mask of valid examples.

  Returns:
    ``[B]`` per-anchor losses (0 for masked anchors and anchors without
    positives).

  Raises:
    ValueError: wrong ranks, mismatched batch sizes, ``temperature <= 0``.
    TypeError: non-floating embeddings or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.metric import ntxent_loss
    >>> emb = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    >>> print(jnp.round(ntxent_loss(emb, jnp.array([0, 0, 1, 1]),
    ...                             temperature=1.0), 4))
    [0.8189 1.096  1.096  0.8189]

  References:
    Sohn, `Improved Deep Metric Learning with Multi-class N-pair Loss
    Objective <https://papers.nips.cc/paper/6200>`_, NeurIPS 2016; Chen,
    Kornblith, Norouzi, Hinton, `A Simple Framework for Contrastive Learning of
    Visual Representations <https://arxiv.org/abs/2002.05709>`_, ICML 2020.
  """
  emb, lab, mask = _check_batch(embeddings, labels, where)
  checks.check_scalar(temperature, "temperature", positive=True)
  dtype = checks.compute_dtype(emb)
  logits = _cosine_matrix(emb, mask, dtype) / temperature
  pos, neg = _pair_masks(lab, mask)
  lse_neg = _masked_lse(logits, neg)                              # [B]
  pair = jnp.logaddexp(logits, lse_neg[:, None]) - logits         # [B, B]
  n_pos = jnp.sum(pos, axis=1).astype(dtype)
  return _safe_div(jnp.sum(jnp.where(pos, pair, 0.0), axis=1), n_pos)


def info_nce_hard_negatives_loss(
    queries: ArrayLike,
    positives: ArrayLike,
    negatives: ArrayLike | None = None,
    *,
    temperature: float = 0.05,
    gamma: float = 0.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Query–document InfoNCE with in-batch and hard negatives, optionally focal.

  Query :math:`q_i`'s positive document is :math:`p_i^+`; every other
  positive :math:`p_j^+` of the batch and every hard negative
  :math:`p_{j,k}^-` (of any query) is a negative:

  .. math::
    P_i = \frac{e^{s(q_i, p_i^+)/\tau}}{Z_i},\quad
    Z_i = e^{s(q_i,p_i^+)/\tau} + \sum_{j \ne i} e^{s(q_i,p_j^+)/\tau}
      + \sum_{j}\sum_{k=1}^{M} e^{s(q_i,p_{j,k}^-)/\tau},
    \qquad \ell_i = -(1 - P_i)^{\gamma} \log P_i,

  with :math:`s` the cosine similarity. :math:`\gamma = 0` is the standard
  InfoNCE of KaLM-Embedding-V2's fine-tuning stage (its Eq. 3);
  :math:`\gamma > 0` is its "focal-style reweighting" of difficult samples.
  The exact focal form is not given in the sources available here; the
  focal-loss form :math:`(1 - P_i)^\gamma` (weight not stop-gradiented, as in
  focal loss) is an assumption, stated as such. Masked queries are dropped as
  queries, and their positives and hard negatives are dropped as negatives of
  the other queries.

  Args:
    queries: ``[B, D]`` query embeddings.
    positives: ``[B, D]`` positive document embeddings.
    negatives: optional ``[B, M, D]`` hard negatives (shared across the batch).
    temperature: :math:`\tau > 0`.
    gamma: focal exponent :math:`\gamma \ge 0`.
    where: optional ``[B]`` mask of valid queries.

  Returns:
    ``[B]`` per-query losses (0 where masked).

  Raises:
    ValueError: bad ranks, mismatched shapes, ``temperature <= 0`` or
      ``gamma < 0``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.metric import info_nce_hard_negatives_loss
    >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> print(jnp.round(info_nce_hard_negatives_loss(q, q, temperature=1.0), 4))
    [0.3133 0.3133]

  References:
    Zhao et al., `KaLM-Embedding-V2: Superior Training Techniques and Data
    Inspire A Versatile Embedding Model <https://arxiv.org/abs/2506.20923>`_,
    2025; van den Oord, Li, Vinyals, `Representation Learning with Contrastive
    Predictive Coding <https://arxiv.org/abs/1807.03748>`_, 2018.

    Catalog: seed_001 #10, seed_002 #58.
  """
  q = checks.check_floating(queries, "queries")
  p = checks.check_floating(positives, "positives")
  checks.check_rank(q, 2, "queries")
  checks.check_same_shape(q, p, "queries", "positives")
  checks.check_scalar(temperature, "temperature", positive=True)
  checks.check_scalar(gamma, "gamma", nonnegative=True)
  b, d = q.shape
  mask = checks.check_where(where, (b,), "where")
  arrays = [q, p]
  if negatives is not None:
    n = checks.check_floating(negatives, "negatives")
    checks.check_rank(n, 3, "negatives")
    if n.shape[0] != b or n.shape[2] != d:
      raise ValueError(
          f"`negatives` must be [B, M, D] = [{b}, M, {d}], got shape "
          f"{n.shape}.")
    arrays.append(n)
  dtype = checks.compute_dtype(*arrays)
  qn = _normalize(q, mask, dtype)
  pn = _normalize(p, mask, dtype)
  logits = (qn @ pn.T) / temperature                             # [B, B]
  valid = jnp.ones((b, b), bool) if mask is None else jnp.broadcast_to(
      mask[None, :], (b, b))
  lse = _masked_lse(logits, valid)
  if negatives is not None:
    m = n.shape[1]
    nmask = None if mask is None else jnp.repeat(mask, m)
    nn = _normalize(n.reshape(b * m, d), nmask, dtype)
    neg_logits = (qn @ nn.T) / temperature                       # [B, B*M]
    nvalid = jnp.ones((b, b * m), bool) if nmask is None else jnp.broadcast_to(
        nmask[None, :], (b, b * m))
    lse = jnp.logaddexp(lse, _masked_lse(neg_logits, nvalid))
  log_p = jnp.diagonal(logits) - lse
  loss = -log_p
  if not (isinstance(gamma, (int, float)) and gamma == 0):
    # clamp: finite gradients of (1 - P)^γ at P = 1 for γ < 1.
    one_minus_p = jnp.maximum(-jnp.expm1(log_p), jnp.finfo(dtype).tiny)
    loss = jnp.power(one_minus_p, gamma) * loss
  if mask is not None:
    loss = jnp.where(mask, loss, 0.0)
  return loss
