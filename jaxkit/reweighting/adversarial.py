r"""Imbalanced adversarial training with reweighting (SRAT).

Under class imbalance, adversarial training hurts the minority classes far
more than natural training, and plain class reweighting stops helping: the
adversarial features of different classes are poorly separable, so
up-weighting the minority classes mostly costs the majority ones. SRAT
(*Separable Reweighted Adversarial Training*) combines

* a class-reweighted adversarial loss — per-example weights
  :math:`\propto w_{y_i}`, optionally switched on only after a warm-up
  (deferred re-weighting): :func:`srat` (an optax-style rule) and
  :func:`srat_loss`;
* a feature-separation term on the adversarial examples' features that pulls
  same-class features together and pushes other classes away:
  :func:`feature_separation_loss`.

The adversarial examples come from any attack, e.g.
:func:`jaxkit.losses.classification.pgd_attack` (PGD, Madry et al.).

No reference code of SRAT is public, and only the abstract was available
when this module was written: the structure (reweighted adversarial
cross-entropy + a feature-separability term) follows the paper's
description, while the separability term's exact form (here: supervised
contrastive) and the weight schedule (here: caller-chosen class weights with
an optional deferred switch) are our choices, checked against their own
formulas, not against the authors' implementation.

References:
  Wang, Xu, Liu, Li, Thuraisingham, Tang, `Imbalanced Adversarial Training
  with Reweighting <https://arxiv.org/abs/2107.13639>`_, ICDM 2022.

  Khosla et al., `Supervised Contrastive Learning
  <https://arxiv.org/abs/2004.11362>`_, NeurIPS 2020.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.reweighting import base

_NORM_EPS = 1e-12


class SRATState(NamedTuple):
  """State of :func:`srat`: the number of updates so far.

  Attributes:
    count: int32 scalar step counter (drives the deferred switch).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> rule = rw.srat(jnp.array([0.5, 1.5]))
    >>> print(rule.init().count)
    0
  """
  count: jax.Array


def _check_class_weights(class_weights) -> jax.Array:
  cw = checks.check_floating(class_weights, "class_weights")
  checks.check_rank(cw, 1, "class_weights")
  if cw.shape[0] == 0:
    raise ValueError("`class_weights` must hold at least one class.")
  if checks.is_concrete(cw):
    arr = np.asarray(cw, np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
      raise ValueError(f"`class_weights` must be finite and >= 0, got {arr}.")
  return cw


def _example_weights(cw, labels, mask, axis_name=None):
  """``w_i ∝ cw[y_i]`` over valid examples, summing to 1 (or all 0)."""
  onehot = labels[:, None] == jnp.arange(cw.shape[0])[None, :]
  w = jnp.sum(jnp.where(onehot, cw[None, :], 0.0), axis=1)
  return base._normalize(w, mask, axis_name)


def srat(class_weights: ArrayLike, *, defer_steps: int = 0,
         axis_name: str | None = None) -> base.ReweightingRule:
  r"""SRAT's class reweighting of the adversarial loss, as an optax-style rule.

  .. math::
    w_i = \frac{c_{y_i}}{\sum_{j\ \mathrm{valid}} c_{y_j}}, \qquad
    c = \begin{cases} \mathbf 1 & t < T_{\mathrm{defer}} \\
      \texttt{class\_weights} & t \ge T_{\mathrm{defer}} \end{cases}

  (uniform weights during the first ``defer_steps`` updates — deferred
  re-weighting as in LDAM-DRW; ``defer_steps=0`` reweights from the
  start). The objective is :math:`\sum_i w_i\,\ell_{\mathrm{CE}}
  (f(x'_i), y_i)` on adversarial examples :math:`x'_i`, plus
  :func:`feature_separation_loss`; :func:`srat_loss` computes both at once.
  Typical class weights are the effective-number weights
  ``jaxkit.reweighting.class_balanced_weights(counts, beta=0.9999)`` or
  inverse frequencies (``beta=1``). Labels are passed as ``group_ids``.
  **Scale:** the house convention — sum 1 over the valid examples, 0 on
  masked ones, all 0 when no example is valid (or every valid example has a
  zero class weight).

  Args:
    class_weights: ``[C]`` non-negative per-class weights.
    defer_steps: :math:`T_{\mathrm{defer}}` (static int >= 0).
    axis_name: optional ``shard_map`` axis for the normalisation.

  Returns:
    A :class:`ReweightingRule` with state :class:`SRATState`;
    ``update(losses, state, *, where=None, group_ids, step=None)`` needs the
    labels as ``group_ids`` (``step`` overrides the state's counter).

  Raises:
    ValueError: bad ``class_weights`` or ``defer_steps``; (in ``update``)
      missing / out-of-range ``group_ids``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> rule = rw.srat(jnp.array([1., 3.]), defer_steps=1)
    >>> losses, labels = jnp.array([1., 1., 1., 1.]), jnp.array([0, 0, 0, 1])
    >>> w, state = rule.update(losses, rule.init(), group_ids=labels)
    >>> print(w)
    [0.25 0.25 0.25 0.25]
    >>> w, state = rule.update(losses, state, group_ids=labels)
    >>> print(w)
    [0.16666667 0.16666667 0.16666667 0.5       ]

  References:
    Wang et al., `Imbalanced Adversarial Training with Reweighting`, ICDM
    2022, arXiv:2107.13639; Cao et al., `Learning Imbalanced Datasets with
    Label-Distribution-Aware Margin Loss`, NeurIPS 2019, arXiv:1906.07413
    (deferred re-weighting).

    Catalog: seed_001 #36.
  """
  cw = _check_class_weights(class_weights)
  if (isinstance(defer_steps, bool) or not isinstance(defer_steps,
                                                      numbers.Integral)
      or defer_steps < 0):
    raise ValueError(f"`defer_steps` must be an int >= 0, got "
                     f"{defer_steps!r}.")
  num_classes = cw.shape[0]

  def init():
    return SRATState(count=jnp.zeros((), jnp.int32))

  def update(losses, state, *, where=None, group_ids=None, step=None):
    x, mask, dtype = base._prepare(losses, where)
    labels = base._check_group_ids(group_ids, x.shape, num_classes)
    t = base._resolve_step(step, state.count)
    c = jnp.where(t >= defer_steps, cw.astype(dtype), jnp.ones_like(cw, dtype))
    w = _example_weights(c, labels, mask, axis_name)
    return jax.lax.stop_gradient(w), SRATState(count=state.count + 1)

  return base.ReweightingRule(init, update)


def feature_separation_loss(features: ArrayLike, labels: ArrayLike, *,
                            temperature: float = 0.1,
                            where: ArrayLike | None = None) -> jax.Array:
  r"""SRAT's feature-separation term: supervised contrastive loss per anchor.

  With :math:`z_i` the L2-normalised features (penultimate layer) of the
  adversarial examples, :math:`P(i)` the other valid examples of the same
  class and :math:`A(i)` all other valid examples,

  .. math::
    \ell_{\mathrm{sep}}(i) = -\frac{1}{|P(i)|} \sum_{p \in P(i)}
      \log \frac{\exp(z_i^\top z_p / \tau)}
                {\sum_{a \in A(i)} \exp(z_i^\top z_a / \tau)}

  (the :math:`\mathcal L^{\mathrm{sup}}_{\mathrm{out}}` form of Khosla et
  al.; 0 for an anchor without positives). Minimising it makes the classes
  separable in feature space, which the paper shows is what plain
  reweighting lacks under adversarial training. Unlike
  :func:`jaxkit.losses.metric.ntxent_loss`, the other positives stay in the
  denominator. Note: SRAT's code is not public; this contrastive form is our
  reading of its separability regulariser, checked against the SupCon
  formula, not against the authors' implementation.

  Args:
    features: ``[B, D]`` floating features (normalised internally; a zero
      row gets finite gradients).
    labels: ``[B]`` integer class ids.
    temperature: :math:`\tau > 0`.
    where: optional ``[B]`` mask; masked examples (even ``nan``) are neither
      anchors nor partners.

  Returns:
    ``[B]`` per-anchor losses (0 for masked anchors and anchors without a
    positive); reduce with ``jaxkit.masked_mean``.

  Raises:
    ValueError: wrong ranks, mismatched batch sizes, ``temperature <= 0``.
    TypeError: non-floating features or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> z = jnp.array([[1., 0.], [1., 0.], [0., 1.]])
    >>> print(jnp.round(rw.feature_separation_loss(z, jnp.array([0, 0, 1]),
    ...                                            temperature=1.0), 4))
    [0.3133 0.3133 0.    ]

  References:
    Wang et al., `Imbalanced Adversarial Training with Reweighting`, ICDM
    2022, arXiv:2107.13639; Khosla et al., `Supervised Contrastive
    Learning`, NeurIPS 2020, arXiv:2004.11362.

    Catalog: seed_001 #36.
  """
  f = checks.check_floating(features, "features")
  checks.check_rank(f, 2, "features")
  if isinstance(labels, (bool, np.bool_)):
    raise TypeError("`labels` must be an integer array, got a bool.")
  lab = jnp.asarray(labels)
  if not jnp.issubdtype(lab.dtype, jnp.integer):
    raise TypeError(f"`labels` must be integer class ids, got {lab.dtype}.")
  checks.check_rank(lab, 1, "labels")
  b = f.shape[0]
  if lab.shape[0] != b:
    raise ValueError(f"`labels` must have one entry per row of `features`: got "
                     f"{lab.shape[0]} labels for {b} rows.")
  checks.check_scalar(temperature, "temperature", positive=True)
  mask = checks.check_where(where, (b,), "where")
  valid = jnp.ones((b,), bool) if mask is None else mask
  return _supcon(f, lab, valid, temperature)


@jax.jit
def _supcon(f, lab, valid, temperature):
  b = f.shape[0]
  dtype = checks.compute_dtype(f)
  f = jnp.where(valid[:, None], f.astype(dtype), 1.0)
  sq = jnp.sum(f * f, axis=-1, keepdims=True)
  z = f * jax.lax.rsqrt(jnp.maximum(sq, _NORM_EPS**2))
  logits = (z @ z.T) / temperature
  pair = valid[:, None] & valid[None, :] & ~jnp.eye(b, dtype=bool)
  pos = pair & (lab[:, None] == lab[None, :])
  masked = jnp.where(pair, logits, -jnp.inf)
  mx = jax.lax.stop_gradient(jnp.max(masked, axis=1, keepdims=True))
  mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
  se = jnp.sum(jnp.where(pair, jnp.exp(masked - mx), 0.0), axis=1)
  lse = jnp.squeeze(mx, 1) + jnp.log(jnp.where(se > 0, se, 1.0))
  n_pos = jnp.sum(pos, axis=1).astype(dtype)
  mean_pos = jnp.sum(jnp.where(pos, logits, 0.0), axis=1) / jnp.maximum(n_pos,
                                                                       1.0)
  return jnp.where(n_pos > 0, lse - mean_pos, 0.0)


def srat_loss(logits: ArrayLike, features: ArrayLike, labels: ArrayLike, *,
              class_weights: ArrayLike, sep_weight: float,
              temperature: float = 0.1,
              where: ArrayLike | None = None) -> jax.Array:
  r"""SRAT objective on a batch of adversarial examples (a scalar).

  .. math::
    \mathcal L = \sum_i w_i\,\ell_{\mathrm{CE}}\big(f(x'_i), y_i\big)
      + \lambda\,\frac{1}{|V|}\sum_{i \in V}\ell_{\mathrm{sep}}(i),
    \qquad w_i = \frac{c_{y_i}}{\sum_{j \in V} c_{y_j}},

  with ``logits`` :math:`f(x'_i)` and ``features`` of the adversarial
  examples :math:`x'_i` (e.g. from
  :func:`jaxkit.losses.classification.pgd_attack`), :math:`c` =
  ``class_weights`` (already deferred by the caller, e.g.
  ``jaxkit.losses.classification.drw_class_weights(counts, step=t,
  start_step=T)``), :math:`V` the valid examples, :math:`\lambda` =
  ``sep_weight`` and :math:`\ell_{\mathrm{sep}}` =
  :func:`feature_separation_loss`. The weights :math:`w` are stop-gradient
  (as :func:`srat`'s). A fully masked batch gives 0 with zero gradients.

  Args:
    logits: ``[B, C]`` floating logits of the adversarial examples.
    features: ``[B, D]`` floating features of the same examples.
    labels: ``[B]`` integer labels in ``[0, C)``.
    class_weights: ``[C]`` non-negative class weights.
    sep_weight: :math:`\lambda \ge 0` (may be traced).
    temperature: :math:`\tau > 0` of the separation term.
    where: optional ``[B]`` mask of valid examples.

  Returns:
    A scalar (the weights couple the examples of the batch).

  Raises:
    ValueError: wrong ranks / shapes, ``class_weights`` not of length ``C``,
      negative ``sep_weight``, (eagerly) labels out of range.
    TypeError: non-floating logits / features, non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> logits = jnp.array([[2., 0.], [0., 1.]])
    >>> feats = jnp.array([[1., 0.], [0., 1.]])
    >>> loss = rw.srat_loss(logits, feats, jnp.array([0, 1]),
    ...                     class_weights=jnp.array([1., 1.]), sep_weight=0.5)
    >>> print(round(float(loss), 4))
    0.2201

  References:
    Wang et al., `Imbalanced Adversarial Training with Reweighting`, ICDM
    2022, arXiv:2107.13639.

    Catalog: seed_001 #36.
  """
  z = checks.check_floating(logits, "logits")
  checks.check_rank(z, 2, "logits")
  cw = _check_class_weights(class_weights)
  b, c = z.shape
  if cw.shape[0] != c:
    raise ValueError(f"`class_weights` must have one entry per class (C={c} "
                     f"from `logits` {z.shape}), got {cw.shape}.")
  checks.check_scalar(sep_weight, "sep_weight", nonnegative=True)
  if jnp.ndim(features) < 1 or jnp.shape(features)[0] != b:
    raise ValueError(f"`features` must have {b} rows (the batch of `logits`), "
                     f"got shape {jnp.shape(features)}.")
  lab = jnp.asarray(labels)
  if (checks.is_concrete(lab) and lab.size
      and jnp.issubdtype(lab.dtype, jnp.integer)):
    ln = np.asarray(lab)
    if ln.min() < 0 or ln.max() >= c:
      raise ValueError(f"`labels` must lie in [0, {c}), got values in "
                       f"[{ln.min()}, {ln.max()}].")
  sep = feature_separation_loss(features, labels, temperature=temperature,
                                where=where)
  mask = checks.check_where(where, (b,), "where")
  valid = jnp.ones((b,), bool) if mask is None else mask
  return _srat_objective(z, cw, lab, valid, sep, sep_weight)


@jax.jit
def _srat_objective(z, cw, lab, valid, sep, sep_weight):
  c = z.shape[1]
  dtype = checks.compute_dtype(z)
  zz = jnp.where(valid[:, None], z.astype(dtype), 0.0)
  logp = jax.nn.log_softmax(zz, axis=-1)
  onehot = lab[:, None] == jnp.arange(c)[None, :]
  ce = -jnp.sum(jnp.where(onehot, logp, 0.0), axis=1)
  w = jax.lax.stop_gradient(_example_weights(cw.astype(dtype), lab, valid))
  n_valid = jnp.sum(valid).astype(dtype)
  sep_mean = jnp.sum(jnp.where(valid, sep, 0.0)) / jnp.maximum(n_valid, 1.0)
  return jnp.sum(jnp.where(valid, w * ce, 0.0)) + sep_weight * sep_mean
