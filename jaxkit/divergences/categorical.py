r"""Exact f-divergences and Rényi divergences between categorical distributions.

Every function takes log-probabilities, **target first**: ``kl(log_p, log_q)``
is :math:`\mathrm{KL}(P\|Q)`, with :math:`P` the target (data, teacher,
reference policy) and :math:`Q` the model. The sum runs over ``axis`` (the
class / vocabulary axis, ``-1`` by default) and the result has that axis
removed, so a ``[B, T, V]`` input gives per-token divergences ``[B, T]``.

Conventions shared by every function here:

* **Log space.** Inputs are log-probabilities (``jax.nn.log_softmax`` of the
  logits, or use the ``*_from_logits`` twins). A ``-inf`` entry is an exact
  zero probability and is handled exactly: ``0 · log 0 = 0``, and an entry
  with :math:`p > 0 = q` makes :math:`\mathrm{KL}(P\|Q) = \infty`.
* **Masks.** ``where`` (same rank as the input; each dimension equal or 1)
  selects the entries that take part: masked entries may hold anything
  (padding, ``nan``) and never reach the value or the gradient. A fully
  masked row gives ``0`` with zero gradients. For a per-token mask of a
  ``[B, T, V]`` input pass ``where=mask[..., None]``.
* **Precision.** bf16 / f16 inputs are upcast and accumulated in float32;
  results are float32 (float64 stays float64).
* **Normalisation.** :func:`amari_alpha` and :func:`renyi` use the normalised
  closed form :math:`\log\sum_k p_k^\alpha q_k^{1-\alpha}` and therefore
  require normalised inputs: called eagerly they raise ``ValueError``
  otherwise (under ``jit`` values cannot be inspected, so the check is
  skipped). The other functions evaluate the defining sum literally.

References:
  Csiszár, `Information-type measures of difference of probability
  distributions and indirect observations`, 1967.

  Rényi, `On measures of entropy and information`, 1961.

  Amari, `Differential-Geometrical Methods in Statistics`, 1985.

  Lin, `Divergence measures based on the Shannon entropy
  <https://doi.org/10.1109/18.61115>`_, IEEE Trans. Inf. Theory, 1991 (JS).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike, Axis
from jaxkit.divergences import generators as gen_lib

_LOG2 = math.log(2.0)


# ----------------------------------------------------------------------------
# Shared preparation and safe pointwise pieces.
# ----------------------------------------------------------------------------


def _prepare(log_p, log_q, axis, where, *, require_normalized=False):
  """Validates inputs; returns (lp, lq, axes, row_valid) in the compute dtype.

  Masked entries are replaced by -inf in both inputs (exact zero
  probability), which every pointwise term below maps to an exact 0 with a
  zero gradient.
  """
  log_p = checks.check_floating(log_p, "log_p")
  log_q = checks.check_floating(log_q, "log_q")
  checks.check_same_shape(log_p, log_q, "log_p", "log_q")
  axes = checks.normalize_axis(axis, log_p.ndim)
  mask = checks.check_where(where, log_p.shape, "where")
  if require_normalized:
    checks.check_log_normalized(log_p, "log_p", axis=axes, where=mask)
    checks.check_log_normalized(log_q, "log_q", axis=axes, where=mask)
  dtype = checks.compute_dtype(log_p, log_q)
  lp = log_p.astype(dtype)
  lq = log_q.astype(dtype)
  if mask is None:
    row_valid = None
  else:
    lp = jnp.where(mask, lp, -jnp.inf)
    lq = jnp.where(mask, lq, -jnp.inf)
    row_valid = jnp.any(mask, axis=axes)
  return lp, lq, axes, row_valid


def _finish(value, row_valid):
  if row_valid is None:
    return value
  return jnp.where(row_valid, value, 0.0)


def _safe(x):
  """(is_finite_log, x with -inf replaced by 0) for double-where tricks."""
  ok = x > -jnp.inf
  return ok, jnp.where(ok, x, 0.0)


def _plogp_ratio(la, lb):
  """a·(log a − log b) elementwise: 0 where a = 0, +inf where a > 0 = b."""
  a_ok, la_s = _safe(la)
  b_ok, lb_s = _safe(lb)
  val = jnp.exp(la_s) * (la_s - lb_s)
  return jnp.where(a_ok, jnp.where(b_ok, val, jnp.inf), 0.0)


def _pearson_terms(lp, lq):
  r"""(p − q)²/q elementwise, overflow-free (branch on the sign of log r)."""
  p_ok, lp_s = _safe(lp)
  q_ok, lq_s = _safe(lq)
  lr = lp_s - lq_s
  small = lr <= 0
  lr_lo = jnp.where(small, lr, 0.0)
  lr_hi = jnp.where(small, 0.0, lr)
  val = jnp.where(small, jnp.exp(lq_s) * jnp.square(jnp.expm1(lr_lo)),
                  jnp.exp(lp_s + lr_hi) * jnp.square(jnp.expm1(-lr_hi)))
  # p = 0 < q: the term is q. q = 0 < p: infinite. Both zero: 0.
  val = jnp.where(p_ok, val, jnp.exp(lq_s))
  val = jnp.where(q_ok, val, jnp.where(p_ok, jnp.inf, 0.0))
  return val


def _hellinger_terms(lp, lq):
  r"""(√p − √q)² elementwise, written so that it never cancels or overflows."""
  p_ok, lp_s = _safe(lp)
  q_ok, lq_s = _safe(lq)
  lr = lp_s - lq_s
  small = lr <= 0
  lr_lo = jnp.where(small, lr, 0.0)
  lr_hi = jnp.where(small, 0.0, lr)
  val = jnp.where(small, jnp.exp(lq_s) * jnp.square(jnp.expm1(0.5 * lr_lo)),
                  jnp.exp(lp_s) * jnp.square(jnp.expm1(-0.5 * lr_hi)))
  val = jnp.where(p_ok, val, jnp.exp(lq_s))
  val = jnp.where(q_ok, val, jnp.exp(lp_s))
  return jnp.where(p_ok | q_ok, val, 0.0)


def _log_power_sum(lp, lq, alpha, axes, row_valid):
  r""":math:`\log\sum_k p_k^\alpha q_k^{1-\alpha}` with exact zero handling."""
  p_ok, lp_s = _safe(lp)
  q_ok, lq_s = _safe(lq)
  e = alpha * lp_s + (1.0 - alpha) * lq_s
  # p = 0 < q: p^a q^(1-a) is 0 for a >= 0, inf for a < 0.
  e = jnp.where(p_ok, e, jnp.where(alpha >= 0, -jnp.inf, jnp.inf))
  # q = 0 < p: 0 for a < 1, inf for a > 1.
  e = jnp.where(q_ok, e, jnp.where(alpha < 1, -jnp.inf, jnp.inf))
  e = jnp.where(p_ok | q_ok, e, -jnp.inf)
  if row_valid is not None:
    # Fully masked rows: a harmless finite row, zeroed by _finish later.
    rv = jnp.expand_dims(row_valid, axes)
    e = jnp.where(rv, e, 0.0)
  return jax.nn.logsumexp(e, axis=axes)


# ----------------------------------------------------------------------------
# Public functions.
# ----------------------------------------------------------------------------


def kl(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1,
       where: ArrayLike | None = None) -> jax.Array:
  r"""Kullback–Leibler divergence :math:`\mathrm{KL}(P\|Q)` (forward KL).

  .. math::
    \mathrm{KL}(P\|Q) = \sum_k p_k (\log p_k - \log q_k).

  Forward KL is mass-covering: minimised over a model :math:`Q` it puts mass
  wherever the target :math:`P` has any. It is the f-divergence with
  :math:`f(t) = t\log t`.

  Args:
    log_p: target log-probabilities, shape ``[..., K]`` (any floating dtype).
    log_q: model log-probabilities, same shape as ``log_p``.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed, e.g. ``[...]``; ``inf`` where some
    :math:`p_k > 0 = q_k`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import kl
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(kl(log_p, log_q)):.4f}")
    0.5108

  References:
    Kullback, Leibler, `On Information and Sufficiency
    <https://doi.org/10.1214/aoms/1177729694>`_, 1951.
  """
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  return _finish(jnp.sum(_plogp_ratio(lp, lq), axis=axes), rv)


def reverse_kl(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1,
               where: ArrayLike | None = None) -> jax.Array:
  r"""Reverse KL :math:`\mathrm{KL}(Q\|P)`, target still first.

  .. math::
    \mathrm{KL}(Q\|P) = \sum_k q_k (\log q_k - \log p_k).

  Mode-seeking (zero-forcing): the RLHF / DPO / VSD default. f-divergence
  with :math:`f(t) = -\log t`.

  Args:
    log_p: target log-probabilities, shape ``[..., K]``.
    log_q: model log-probabilities, same shape.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import reverse_kl
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(reverse_kl(log_p, log_q)):.4f}")
    0.3681

  References:
    Kullback, Leibler, 1951; Minka, `Divergence measures and message passing
    <https://www.microsoft.com/en-us/research/publication/divergence-measures-and-message-passing/>`_,
    2005 (mode-seeking vs mass-covering).
  """
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  return _finish(jnp.sum(_plogp_ratio(lq, lp), axis=axes), rv)


def js(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1,
       where: ArrayLike | None = None) -> jax.Array:
  r"""Jensen–Shannon divergence (natural log, bounded by :math:`\log 2`).

  .. math::
    \mathrm{JS}(P\|Q) = \tfrac12 \mathrm{KL}(P\|M) + \tfrac12
    \mathrm{KL}(Q\|M), \qquad M = \tfrac12 (P + Q),

  with :math:`\log m_k` computed as ``logaddexp(log_p, log_q) - log 2``.
  Note that ``scipy.spatial.distance.jensenshannon`` returns
  :math:`\sqrt{\mathrm{JS}}`, and TFP's self-normalised ``jensen_shannon``
  returns :math:`2\,\mathrm{JS}`.

  Args:
    log_p: target log-probabilities, shape ``[..., K]``.
    log_q: model log-probabilities, same shape.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed, in :math:`[0, \log 2]` for
    normalised inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import js
    >>> log_p = jnp.log(jnp.array([1.0, 0.0]))
    >>> log_q = jnp.log(jnp.array([0.0, 1.0]))
    >>> print(f"{float(js(log_p, log_q)):.4f}")  # disjoint supports: log 2
    0.6931

  References:
    Lin, `Divergence measures based on the Shannon entropy
    <https://doi.org/10.1109/18.61115>`_, 1991.
  """
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  # Where p = q = 0, logaddexp(-inf, -inf) has a nan gradient: keep it out.
  none = (lp == -jnp.inf) & (lq == -jnp.inf)
  lm = jnp.logaddexp(jnp.where(none, 0.0, lp), jnp.where(none, 0.0, lq)) - _LOG2
  lm = jnp.where(none, -jnp.inf, lm)
  terms = 0.5 * (_plogp_ratio(lp, lm) + _plogp_ratio(lq, lm))
  return _finish(jnp.sum(terms, axis=axes), rv)


def tv(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1,
       where: ArrayLike | None = None) -> jax.Array:
  r"""Total variation distance :math:`\tfrac12 \sum_k |p_k - q_k|`.

  f-divergence with :math:`f(t) = \tfrac12|t - 1|`; bounded by 1. Not
  differentiable where :math:`p_k = q_k` (the gradient there is 0).

  Args:
    log_p: target log-probabilities, shape ``[..., K]``.
    log_q: model log-probabilities, same shape.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The distance with ``axis`` removed, in :math:`[0, 1]`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import tv
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(tv(log_p, log_q)):.4f}")
    0.4000

  References:
    Csiszár, 1967; Tsybakov, `Introduction to Nonparametric Estimation`,
    2009, §2.4.
  """
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  terms = 0.5 * jnp.abs(jnp.exp(lp) - jnp.exp(lq))
  return _finish(jnp.sum(terms, axis=axes), rv)


def pearson_chi2(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1,
                 where: ArrayLike | None = None) -> jax.Array:
  r"""Pearson :math:`\chi^2` divergence :math:`\sum_k (p_k - q_k)^2 / q_k`.

  f-divergence with :math:`f(t) = (t - 1)^2`; strongly mass-covering. Each
  term is evaluated as :math:`q\,(e^{\log r} - 1)^2` when :math:`r \le 1` and
  as :math:`p\, r\,(1 - e^{-\log r})^2` otherwise, so it neither cancels for
  :math:`p \approx q` nor overflows before the true value does.

  Args:
    log_p: target log-probabilities, shape ``[..., K]``.
    log_q: model log-probabilities, same shape.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import pearson_chi2
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(pearson_chi2(log_p, log_q)):.4f}")  # .16/.9 + .16/.1
    1.7778

  References:
    Pearson, `On the criterion that a given system of deviations ...`, 1900.
  """
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  return _finish(jnp.sum(_pearson_terms(lp, lq), axis=axes), rv)


def neyman_chi2(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1,
                where: ArrayLike | None = None) -> jax.Array:
  r"""Neyman :math:`\chi^2` divergence :math:`\sum_k (p_k - q_k)^2 / p_k`.

  f-divergence with :math:`f(t) = (1 - t)^2 / t`, the Csiszár dual of
  Pearson's: ``neyman_chi2(log_p, log_q) == pearson_chi2(log_q, log_p)``.
  Mode-seeking.

  Args:
    log_p: target log-probabilities, shape ``[..., K]``.
    log_q: model log-probabilities, same shape.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import neyman_chi2
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(neyman_chi2(log_p, log_q)):.4f}")  # .16/.5 + .16/.5
    0.6400

  References:
    Neyman, `Contribution to the theory of the χ² test`, 1949.
  """
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  return _finish(jnp.sum(_pearson_terms(lq, lp), axis=axes), rv)


def squared_hellinger(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1,
                      where: ArrayLike | None = None) -> jax.Array:
  r"""Squared Hellinger distance :math:`\sum_k (\sqrt{p_k} - \sqrt{q_k})^2`.

  f-divergence with :math:`f(t) = (\sqrt t - 1)^2` (no factor ½, so it lies
  in :math:`[0, 2]`); symmetric. Equals :math:`2 - 2\sum_k\sqrt{p_k q_k}` for
  normalised inputs and half the Amari divergence of order ½.

  Args:
    log_p: target log-probabilities, shape ``[..., K]``.
    log_q: model log-probabilities, same shape.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed, in :math:`[0, 2]`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import squared_hellinger
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(squared_hellinger(log_p, log_q)):.4f}")
    0.2111

  References:
    Hellinger, `Neue Begründung der Theorie quadratischer Formen von
    unendlichvielen Veränderlichen`, 1909.
  """
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  return _finish(jnp.sum(_hellinger_terms(lp, lq), axis=axes), rv)


def jeffreys(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1,
             where: ArrayLike | None = None) -> jax.Array:
  r"""Jeffreys divergence :math:`\mathrm{KL}(P\|Q) + \mathrm{KL}(Q\|P)`.

  .. math::
    J(P\|Q) = \sum_k (p_k - q_k)(\log p_k - \log q_k),

  the f-divergence with :math:`f(t) = (t - 1)\log t`; symmetric and
  unbounded both ways (the implicit regulariser of D2O).

  Args:
    log_p: target log-probabilities, shape ``[..., K]``.
    log_q: model log-probabilities, same shape.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import jeffreys
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(jeffreys(log_p, log_q)):.4f}")
    0.8789

  References:
    Jeffreys, `An invariant form for the prior probability in estimation
    problems <https://doi.org/10.1098/rspa.1946.0056>`_, 1946.
  """
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  terms = _plogp_ratio(lp, lq) + _plogp_ratio(lq, lp)
  return _finish(jnp.sum(terms, axis=axes), rv)


def amari_alpha(log_p: ArrayLike, log_q: ArrayLike, *, alpha: float,
                axis: Axis = -1, where: ArrayLike | None = None) -> jax.Array:
  r"""Amari :math:`\alpha`-divergence, :math:`\alpha \notin \{0, 1\}`.

  The f-divergence with :math:`f(t) = \frac{t^\alpha - 1 - \alpha(t -
  1)}{\alpha(\alpha - 1)}`; for normalised inputs

  .. math::
    D_\alpha(P\|Q) = \frac{\sum_k p_k^\alpha q_k^{1-\alpha} - 1}
    {\alpha(\alpha - 1)}
    = \frac{\operatorname{expm1}\left(\operatorname{LSE}_k(\alpha \log p_k
    + (1-\alpha)\log q_k)\right)}{\alpha(\alpha - 1)}.

  :math:`\alpha \to 1` gives :math:`\mathrm{KL}(P\|Q)`, :math:`\alpha \to 0`
  gives :math:`\mathrm{KL}(Q\|P)`, :math:`\alpha = \tfrac12` is twice
  :func:`squared_hellinger`, :math:`\alpha = 2` is half Pearson's
  :math:`\chi^2` and :math:`\alpha = -1` half Neyman's. Larger :math:`\alpha`
  is more mass-covering.

  Args:
    log_p: target log-probabilities, shape ``[..., K]``; must be normalised.
    log_q: model log-probabilities, same shape; must be normalised.
    alpha: the order, a float not in ``{0, 1}`` (may be traced; checked when
      concrete).
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed.

  Raises:
    ValueError: ``alpha`` in ``{0, 1}`` or (eagerly) non-normalised inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import amari_alpha
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(amari_alpha(log_p, log_q, alpha=0.5)):.4f}")
    0.4223

  References:
    Amari, `Differential-Geometrical Methods in Statistics`, 1985;
    Cichocki, Amari, `Families of Alpha- Beta- and Gamma- Divergences
    <https://doi.org/10.3390/e12061532>`_, 2010.
  """
  checks.check_scalar(alpha, "alpha", excluded=(0.0, 1.0))
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where,
                              require_normalized=True)
  alpha = jnp.asarray(alpha, lp.dtype)
  s = _log_power_sum(lp, lq, alpha, axes, rv)
  return _finish(jnp.expm1(s) / (alpha * (alpha - 1.0)), rv)


def renyi(log_p: ArrayLike, log_q: ArrayLike, *, alpha: float,
          axis: Axis = -1, where: ArrayLike | None = None) -> jax.Array:
  r"""Rényi divergence of order :math:`\alpha \ge 0`, :math:`\alpha \ne 1`.

  .. math::
    R_\alpha(P\|Q) = \frac{1}{\alpha - 1}\log\sum_k p_k^\alpha
    q_k^{1-\alpha} = \frac{\operatorname{LSE}_k(\alpha\log p_k +
    (1-\alpha)\log q_k)}{\alpha - 1}.

  Not an f-divergence but a monotone transform of the Amari one:
  :math:`R_\alpha = \log(1 + \alpha(\alpha-1) D_\alpha) / (\alpha - 1)`.
  :math:`\alpha \to 1` is :math:`\mathrm{KL}(P\|Q)`; :math:`\alpha = 0` is
  :math:`-\log Q(\operatorname{supp} P)`; :math:`\alpha = \tfrac12` is
  :math:`-2\log\sum_k\sqrt{p_k q_k}` (twice the Bhattacharyya distance).

  Args:
    log_p: target log-probabilities, shape ``[..., K]``; must be normalised.
    log_q: model log-probabilities, same shape; must be normalised.
    alpha: the order, a float :math:`\ge 0` and :math:`\ne 1` (may be traced;
      checked when concrete).
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed.

  Raises:
    ValueError: ``alpha`` negative or equal to 1, or (eagerly)
      non-normalised inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import renyi
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(renyi(log_p, log_q, alpha=2.0)):.4f}")  # log(1 + chi2)
    1.0217

  References:
    Rényi, `On measures of entropy and information`, 1961; van Erven,
    Harremoës, `Rényi Divergence and Kullback-Leibler Divergence
    <https://arxiv.org/abs/1206.2459>`_, 2014.
  """
  checks.check_scalar(alpha, "alpha", nonnegative=True, excluded=(1.0,))
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where,
                              require_normalized=True)
  alpha = jnp.asarray(alpha, lp.dtype)
  s = _log_power_sum(lp, lq, alpha, axes, rv)
  return _finish(s / (alpha - 1.0), rv)


def f_divergence(log_p: ArrayLike, log_q: ArrayLike,
                 generator: gen_lib.FGenerator | str, *, axis: Axis = -1,
                 where: ArrayLike | None = None) -> jax.Array:
  r"""The f-divergence :math:`D_f(P\|Q) = \sum_k q_k f(p_k / q_k)`.

  Works for any :class:`~jaxkit.divergences.FGenerator` (see
  :func:`~jaxkit.divergences.get_generator`). Each term is evaluated from
  :math:`\log r = \log p - \log q` as :math:`q\,f(r)` when :math:`r \le 1`
  and as :math:`p\,(f(r)/r)` when :math:`r > 1`, so nothing overflows before
  :math:`f(r)` itself does; entries with :math:`p = 0` contribute
  :math:`q\,f(0)` and entries with :math:`q = 0` contribute
  :math:`p \lim_{t\to\infty} f(t)/t` (both may be ``inf``). The named
  functions (:func:`kl`, :func:`js`, ...) compute the same values with forms
  specialised to each divergence, which stay accurate further out.

  Args:
    log_p: target log-probabilities, shape ``[..., K]``.
    log_q: model log-probabilities, same shape.
    generator: an ``FGenerator`` or the name of a parameter-free one.
    axis: the distribution axis (or axes) summed over.
    where: optional mask of entries that take part, same rank as ``log_p``.

  Returns:
    The divergence with ``axis`` removed.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import f_divergence, get_generator
    >>> log_p = jnp.log(jnp.array([0.5, 0.5]))
    >>> log_q = jnp.log(jnp.array([0.9, 0.1]))
    >>> print(f"{float(f_divergence(log_p, log_q, 'kl')):.4f}")
    0.5108
    >>> g = get_generator('amari_alpha', alpha=0.5)
    >>> print(f"{float(f_divergence(log_p, log_q, g)):.4f}")
    0.4223

  References:
    Csiszár, 1967; Ali, Silvey, `A General Class of Coefficients of
    Divergence of One Distribution from Another`, 1966.
  """
  gen = gen_lib.as_generator(generator)
  lp, lq, axes, rv = _prepare(log_p, log_q, axis, where)
  p_ok, lp_s = _safe(lp)
  q_ok, lq_s = _safe(lq)
  lr = lp_s - lq_s
  small = lr <= 0
  lr_lo = jnp.where(small, lr, 0.0)
  lr_hi = jnp.where(small, 0.0, lr)
  # Where p > q, q f(p/q) = p f(t)/t = p f^◇(1/t) with the Csiszár dual
  # f^◇(u) = u f(1/u): evaluating the dual at log(1/t) <= 0 stays finite where
  # f(t) itself overflows (e.g. Amari α > 1 at log-ratios ~ 100 in float32,
  # where f(t)·e^{-lr} would be inf − inf). Every named dual is exact except
  # 'gan' (its dual is itself up to an affine term), which keeps f(t)/t.
  if gen.name == "gan":
    f_over_t = gen.f(lr_hi) * jnp.exp(-lr_hi)
  else:
    f_over_t = gen.csiszar_dual().f(-lr_hi)
  val = jnp.where(small, jnp.exp(lq_s) * gen.f(lr_lo),
                  jnp.exp(lp_s) * f_over_t)
  f0 = jnp.asarray(gen.f_at_zero, lp.dtype)
  slope = jnp.asarray(gen.slope_at_infinity, lp.dtype)
  # q f(0) and p·slope, with 0·inf := 0 never arising (p, q > 0 there).
  at_p0 = jnp.where(f0 == jnp.inf, jnp.inf, jnp.exp(lq_s) * jnp.where(
      f0 == jnp.inf, 0.0, f0))
  at_q0 = jnp.where(slope == jnp.inf, jnp.inf, jnp.exp(lp_s) * jnp.where(
      slope == jnp.inf, 0.0, slope))
  val = jnp.where(p_ok, val, at_p0)
  val = jnp.where(q_ok, val, at_q0)
  val = jnp.where(p_ok | q_ok, val, 0.0)
  return _finish(jnp.sum(val, axis=axes), rv)


# ----------------------------------------------------------------------------
# *_from_logits twins.
# ----------------------------------------------------------------------------


def _log_softmax(logits, name, axes, mask, temperature):
  x = checks.check_floating(logits, name)
  x = x.astype(checks.compute_dtype(x)) / temperature
  if mask is not None:
    x = jnp.where(mask, x, -jnp.inf)
    # A fully masked row would be all -inf: keep it finite; it is masked out.
    row_valid = jnp.any(mask, axis=axes, keepdims=True)
    x = jnp.where(row_valid, x, 0.0)
  return jax.nn.log_softmax(x, axis=axes)


def _from_logits(fn, *, name: str):
  """Builds the ``*_from_logits`` twin of a log-probability divergence."""

  @functools.wraps(fn)
  def wrapped(logits_p, logits_q, *args, temperature=1.0, axis=-1,
              where=None, **kwargs):
    checks.check_scalar(temperature, "temperature", positive=True)
    logits_p = checks.check_floating(logits_p, "logits_p")
    logits_q = checks.check_floating(logits_q, "logits_q")
    checks.check_same_shape(logits_p, logits_q, "logits_p", "logits_q")
    axes = checks.normalize_axis(axis, logits_p.ndim)
    mask = checks.check_where(where, logits_p.shape, "where")
    lp = _log_softmax(logits_p, "logits_p", axes, mask, temperature)
    lq = _log_softmax(logits_q, "logits_q", axes, mask, temperature)
    return fn(lp, lq, *args, axis=axes, where=mask, **kwargs)

  wrapped.__name__ = name
  wrapped.__qualname__ = name
  wrapped.__doc__ = (
      f"Like :func:`{fn.__name__}`, from unnormalised logits.\n\n"
      f"  ``{name}(logits_p, logits_q, ..., *, temperature=1.0, axis=-1, "
      "where=None)`` applies\n"
      "  ``jax.nn.log_softmax(logits / temperature)`` over ``axis`` to both "
      "inputs (masked\n"
      "  entries excluded from the normalisation) and calls "
      f":func:`{fn.__name__}`. The result is\n"
      "  not multiplied by ``temperature**2`` (distillation losses do that).\n\n"
      "  .. math::\n"
      "    D\\big(\\mathrm{softmax}(z_p/\\tau)\\,\\|\\,"
      "\\mathrm{softmax}(z_q/\\tau)\\big)\n\n"
      "  Args and returns as for the log-probability version, with logits "
      "``[..., V]`` in\n"
      "  place of log-probabilities and a positive ``temperature``.\n\n"
      "  Examples:\n"
      "    >>> import jax.numpy as jnp\n"
      f"    >>> from jaxkit.divergences import {name}\n"
      "    >>> x = jnp.array([2.0, 0.0, -1.0])\n"
      f"    >>> print(f\"{{float({name}(x, x{_EXTRA_DOC_ARGS.get(fn.__name__, '')})):.4f}}\")\n"
      "    0.0000\n\n"
      "  References:\n"
      f"    As for :func:`{fn.__name__}`; temperature-scaled softmax as in "
      "Hinton, Vinyals, Dean,\n"
      "    `Distilling the Knowledge in a Neural Network "
      "<https://arxiv.org/abs/1503.02531>`_, 2015.\n")
  return wrapped


_EXTRA_DOC_ARGS = {"f_divergence": ", 'js'"}

kl_from_logits = _from_logits(kl, name="kl_from_logits")
reverse_kl_from_logits = _from_logits(reverse_kl, name="reverse_kl_from_logits")
js_from_logits = _from_logits(js, name="js_from_logits")
f_divergence_from_logits = _from_logits(
    f_divergence, name="f_divergence_from_logits")
