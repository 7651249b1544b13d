r"""Adaptive-margin none-of-the-above (NOTA) loss for prototype classifiers.

Few-shot classification "with NOTA" must also reject queries that belong to
none of the :math:`N` support classes. GPAM (Guo et al., 2024) learns, on top
of its Gaussian-prototype distances
(:func:`jaxkit.losses.gaussian_prototype_logits`), a decision boundary per
class — a *range* inside which a query belongs to the class — and separates
known classes from NOTA queries (real or negatively sampled) by a *margin*
around that boundary, with a contrastive (softmax) loss that weighs range and
margin for known and unknown queries alike.

* :func:`adaptive_margin_nota_loss` — that loss, with NOTA as an extra class
  whose logit is the boundary.
* :func:`nota_predictions` — the matching decision rule (NOTA when a query
  lies outside every class's range).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.losses.distillation import _check_label_range
from jaxkit.losses.distillation import _check_labels


def _per_class(value, name, num_classes, dtype, *, nonnegative=False):
  """A scalar or ``[N]`` hyperparameter / parameter as an array."""
  arr = jnp.asarray(value)
  if arr.dtype == bool:
    raise TypeError(f"`{name}` must be a number or a float array, got bool.")
  if arr.ndim == 0:
    checks.check_scalar(value, name, nonnegative=nonnegative)
  elif arr.shape != (num_classes,):
    raise ValueError(f"`{name}` must be a scalar or have one entry per class "
                     f"({num_classes},), got shape {arr.shape}.")
  elif nonnegative and checks.is_concrete(arr):
    vals = np.asarray(arr, np.float64)
    if np.any(vals < 0) or not np.all(np.isfinite(vals)):
      raise ValueError(f"`{name}` must be finite and >= 0.")
  return arr.astype(dtype)


def _prepare(logits, ranges, where):
  z = checks.check_floating(logits, "logits")
  if z.ndim < 1 or z.shape[-1] < 1:
    raise ValueError(f"`logits` must be [..., N] with N >= 1 known classes, "
                     f"got shape {z.shape}.")
  n = z.shape[-1]
  mask = checks.check_where(where, z.shape)
  dtype = checks.compute_dtype(z, jnp.asarray(ranges))
  r = _per_class(ranges, "ranges", n, dtype)
  s = z.astype(dtype) + r                     # > 0 inside class n's range
  if mask is not None:
    s = jnp.where(mask, s, 0.0)
  return s, mask, dtype


def adaptive_margin_nota_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    ranges: ArrayLike,
    margin: ArrayLike = 0.0,
    scale: float = 1.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Contrastive NOTA loss with per-class ranges and (adaptive) margins.

  With :math:`z_n` a query's logit for class :math:`n` (e.g. the
  Gaussian-prototype log-likelihood, i.e. minus a distance), :math:`r_n` the
  class's learned range and :math:`s_n = z_n + r_n` (positive inside the
  range), NOTA is an extra option whose score is the boundary, 0. The loss is
  the cross-entropy over the :math:`N + 1` options with an additive margin
  :math:`m` on the target:

  .. math::
    \ell_{y \le N} = -\log\frac{e^{\kappa(s_y - m_y)}}
      {e^{\kappa(s_y - m_y)} + \sum_{k \ne y} e^{\kappa s_k} + 1},
    \qquad
    \ell_{\mathrm{NOTA}} = -\log\frac{1}{1 + \sum_{k} e^{\kappa(s_k + m_k)}},

  (:math:`\kappa` = ``scale``), so a known query is pushed inside its own
  range by :math:`m_y` and above every other class, and a NOTA query is pushed
  outside every range by :math:`m_k`. As :math:`\kappa \to \infty`,
  :math:`\ell/\kappa` tends to the hinge losses
  :math:`\max(0, \max(0, \max_{k\ne y}s_k) - s_y + m_y)` and
  :math:`\max(0, \max_k(s_k + m_k))`. The margin may be a scalar or per class
  (``[N]``; "adaptive" margins, e.g. scaled with a class's spread), and both
  ranges and margins may be traced parameters (they receive gradients).

  GPAM's exact margin parameterisation and loss are not public (no code, and
  the paper text was not available here); this is the standard
  boundary-with-margin construction its description names — per-class
  ranges, margins, a contrastive loss over known classes and NOTA, NOTA
  queries (real or negatively sampled) labelled ``N``. Stated as an
  assumption; check it against the paper before relying on exact numbers.

  Args:
    logits: ``[..., N]`` query-to-class logits (larger = closer).
    labels: ``[...]`` integer labels in ``[0, N]``; ``N`` means NOTA.
    ranges: class ranges :math:`r`, a scalar or ``[N]`` (may be traced).
    margin: margins :math:`m \ge 0`, a scalar or ``[N]``.
    scale: inverse temperature :math:`\kappa > 0`.
    where: optional class mask with the logits' rank (each dimension equal to
      theirs or 1, e.g. ``[1, N]`` for a smaller episode or ``[Q, 1]`` to drop
      queries): masked classes leave every sum; a known query whose class is
      masked gives 0.

  Returns:
    ``[...]`` per-query losses (float32 or wider).

  Raises:
    ValueError: shapes, labels outside ``[0, N]`` (checked eagerly), negative
      margins, ``scale <= 0``.
    TypeError: non-floating logits or non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.prototype_margins import adaptive_margin_nota_loss
    >>> z = jnp.array([[-1.0, -3.0], [-4.0, -5.0]])  # minus distances
    >>> labels = jnp.array([0, 2])                  # class 0; NOTA
    >>> l = adaptive_margin_nota_loss(z, labels, ranges=2.0, margin=0.5)
    >>> print([f"{v:.4f}" for v in l])
    ['0.6041', '0.2664']

  References:
    Guo, Zhang, Wang, Lei, Li, Wang, Liu, `Few-shot Open Relation Extraction
    with Gaussian Prototype and Adaptive Margin
    <https://arxiv.org/abs/2410.20320>`_, 2024.

    Catalog: seed_000 #5.
  """
  checks.check_scalar(scale, "scale", positive=True)
  s, mask, dtype = _prepare(logits, ranges, where)
  n = s.shape[-1]
  lab = _check_labels(labels, s.shape[:-1], n + 1)
  _check_label_range(lab, n + 1, None)
  lab = lab.astype(jnp.int32)
  m = _per_class(margin, "margin", n, dtype, nonnegative=True)
  m = jnp.broadcast_to(m, s.shape)
  is_nota = lab == n
  onehot = jnp.arange(n) == lab[..., None]                        # [..., N]
  shift = jnp.where(is_nota[..., None], m, jnp.where(onehot, -m, 0.0))
  u = scale * (s + shift)
  if mask is not None:
    u = jnp.where(mask, u, -jnp.inf)
  u = jnp.concatenate([u, jnp.zeros(u.shape[:-1] + (1,), dtype)], axis=-1)
  target = jnp.take_along_axis(
      u, jnp.clip(lab, 0, n)[..., None], axis=-1)[..., 0]
  valid = None
  if mask is not None:
    mask_ext = jnp.concatenate(
        [mask, jnp.ones(mask.shape[:-1] + (1,), bool)], axis=-1)
    valid = jnp.take_along_axis(mask_ext, lab[..., None], axis=-1)[..., 0]
    target = jnp.where(valid, target, 0.0)
  loss = jax.nn.logsumexp(u, axis=-1) - target
  if valid is not None:
    loss = jnp.where(valid, loss, 0.0)
  return loss


def nota_predictions(logits: ArrayLike, *, ranges: ArrayLike,
                     where: ArrayLike | None = None) -> jax.Array:
  r"""Predicted class, or ``N`` (NOTA) when outside every class's range.

  .. math::
    \hat y = \begin{cases} \arg\max_n (z_n + r_n) & \text{if }
      \max_n (z_n + r_n) > 0, \\ N & \text{otherwise,} \end{cases}

  the decision rule that :func:`adaptive_margin_nota_loss` trains (the
  argmax over the :math:`N` class scores and the NOTA score 0).

  Args:
    logits: ``[..., N]`` query-to-class logits.
    ranges: class ranges, a scalar or ``[N]``.
    where: optional class mask (masked classes are never predicted).

  Returns:
    ``[...]`` int32 predictions in ``[0, N]``.

  Raises:
    ValueError: bad shapes.
    TypeError: non-floating logits.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.prototype_margins import nota_predictions
    >>> z = jnp.array([[-1.0, -3.0], [-4.0, -5.0]])
    >>> print(nota_predictions(z, ranges=2.0))
    [0 2]

  References:
    Guo, Zhang, Wang, Lei, Li, Wang, Liu, `Few-shot Open Relation Extraction
    with Gaussian Prototype and Adaptive Margin
    <https://arxiv.org/abs/2410.20320>`_, 2024.

    Catalog: seed_000 #5.
  """
  s, mask, _ = _prepare(logits, ranges, where)
  n = s.shape[-1]
  if mask is not None:
    s = jnp.where(mask, s, -jnp.inf)
  best = jnp.argmax(s, axis=-1).astype(jnp.int32)
  return jnp.where(jnp.max(s, axis=-1) > 0, best, jnp.int32(n))
