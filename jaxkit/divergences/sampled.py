r"""Sample-based (Monte Carlo) estimators of f-divergences.

When the distributions are too large to enumerate (sequences, images) the
f-divergence

.. math::
  D_f(P \| Q) = \mathbb{E}_{Q}\left[f(r)\right], \qquad r = \frac{p}{q},

is estimated from samples, given the log-densities (or sequence
log-probabilities) of both distributions *evaluated at the samples*:

* :func:`mc_under_q` — samples from the model :math:`Q` (E2 in the design
  notes), :math:`\tfrac1N\sum_i f(r_i)`;
* :func:`mc_under_p` — samples from the target :math:`P` (E3), e.g. offline
  samples of a reference policy (DPH-RL), :math:`\tfrac1N\sum_i f(r_i)/r_i`;
* :func:`importance_sampled` — samples from any proposal :math:`\pi` (E4),
  with (self-normalised) importance weights :math:`w_i\propto q(x_i)/\pi(x_i)`
  and the Kish effective sample size as a diagnostic.

Conventions (shared with :mod:`jaxkit.divergences.generators`): the target is
the first argument (``log_p``, slot :math:`P`) and the model the second
(``log_q``, slot :math:`Q`); everything is computed from log-densities, never
from ratios. Every function reduces over a *sample* axis (``axis``, default
``-1``) and is batched over the others; ``where`` masks samples (padding,
invalid rollouts). Masked samples never contribute and never produce ``nan``
(values or gradients); a fully masked row gives ``0``. bf16 inputs are
computed and returned in float32.

These estimators return *values*. Their autodiff gradient is an unbiased
gradient estimate only when the sampling distribution does not depend on the
parameters (e.g. :func:`mc_under_p` with a fixed target and a trainable
``log_q``); for samples drawn from the trainable model use
:mod:`jaxkit.divergences.gradients`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.reductions import masked_mean
from jaxkit._src.typing import Array, ArrayLike, Axis
from jaxkit.divergences.generators import FGenerator
from jaxkit.divergences.generators import as_generator

__all__ = ["mc_under_q", "mc_under_p", "importance_sampled"]

_LOG4 = math.log(4.0)


# ----------------------------------------------------------------------------
# Private helpers shared with gradients.py and variational.py.
# ----------------------------------------------------------------------------


def _check_generator(generator) -> FGenerator:
  """as_generator with an error that names the argument."""
  if isinstance(generator, str):
    # get_generator raises a ValueError naming `name`; re-raise naming ours.
    try:
      return as_generator(generator)
    except ValueError as e:
      raise ValueError(f"`generator`: {e}") from None
  return as_generator(generator)


def _prepare(arrays: dict[str, ArrayLike], axis: Axis, where,
             where_name: str = "where"):
  """Checks floating dtypes, equal shapes, the axis and the mask.

  Returns (list of arrays cast to the compute dtype, axes tuple, bool mask or
  None, dtype).
  """
  names = list(arrays)
  arrs = [checks.check_floating(arrays[n], n) for n in names]
  for n, a in zip(names[1:], arrs[1:]):
    checks.check_same_shape(arrs[0], a, names[0], n)
  shape = arrs[0].shape
  if len(shape) == 0:
    raise ValueError(
        f"`{names[0]}` must have at least one (sample) axis, got a scalar "
        "(shape ()).")
  if axis is None:
    raise ValueError(
        "`axis` must be an int or a tuple of ints naming the sample axis, got "
        "None.")
  axes = checks.normalize_axis(axis, len(shape))
  mask = checks.check_where(where, shape, where_name)
  dtype = checks.compute_dtype(*arrs)
  arrs = [a.astype(dtype) for a in arrs]
  return arrs, axes, mask, dtype


def _fill(x: Array, mask: Array | None, value: float = 0.0) -> Array:
  """Replaces masked entries by a harmless constant (first `where` of two)."""
  if mask is None:
    return x
  return jnp.where(mask, x, value)


def _mean(x: Array, mask: Array | None, axes: tuple[int, ...]) -> Array:
  return masked_mean(x, where=mask, axis=axes)


def _f_over_r(gen: FGenerator, log_r: Array) -> Array:
  r"""Returns :math:`f(r)/r = f^\diamond(1/r)` from ``log_r``, stably.

  The Csiszár dual evaluated at :math:`-\log r` never forms :math:`1/r` or
  :math:`f(r)` separately (no ``inf * 0``). The dual returned for ``'gan'``
  differs from :math:`t f(1/t)` by :math:`(t - 1)\log 4` (see
  :func:`~jaxkit.divergences.generators.get_generator`); that term is added
  back here so the per-sample value is exact.
  """
  val = gen.csiszar_dual().f(-log_r)
  if gen.name == "gan":
    val = val + jnp.expm1(-log_r) * _LOG4
  return val


# ----------------------------------------------------------------------------
# Public estimators.
# ----------------------------------------------------------------------------


def mc_under_q(log_p: ArrayLike, log_q: ArrayLike,
               generator: FGenerator | str, *, axis: Axis = -1,
               where: ArrayLike | None = None) -> Array:
  r"""Monte Carlo f-divergence from samples of the model :math:`Q`.

  With samples :math:`x_i \sim Q` and the log-densities of both distributions
  at those samples, the plain Monte Carlo average of the generator is an
  unbiased estimate of :math:`D_f(P\|Q)`:

  .. math::
    \hat D_f = \frac{1}{N}\sum_{i=1}^N f(r_i), \qquad
    \log r_i = \log p(x_i) - \log q(x_i), \quad x_i \sim Q.

  With ``generator='reverse_kl'`` this is the "k1" per-token KL estimator of
  RLHF, :math:`\mathrm{KL}(Q\|P) \approx \tfrac1N\sum_i \log q - \log p`.
  ``log_p`` may be :math:`-\infty` (target density zero): the sample then
  contributes :math:`f(0)` (``inf`` for reverse KL, as it should).

  The gradient of this value w.r.t. the parameters of :math:`Q` is *not* the
  gradient of the divergence (the samples depend on :math:`Q` too); use
  :func:`jaxkit.divergences.score_function_surrogate` or
  :func:`jaxkit.divergences.pathwise_surrogate` for that.

  Args:
    log_p: target log-density at the samples, ``[..., N, ...]``.
    log_q: model log-density at the same samples, same shape.
    generator: an :class:`~jaxkit.divergences.FGenerator` or a generator name
      (e.g. ``'kl'``, ``'js'``).
    axis: the sample axis (or axes) averaged over; default ``-1``.
    where: optional boolean mask of valid samples, same rank as ``log_p`` with
      each dimension equal or 1.

  Returns:
    The estimate, shape ``log_p.shape`` with ``axis`` removed, float32 or
    wider.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.divergences import mc_under_q
    >>> # KL(P||Q) for P = N(1, 1), Q = N(0, 1) is 0.5.
    >>> x = jax.random.normal(jax.random.key(0), (200_000,))
    >>> log_p, log_q = -0.5 * (x - 1.0) ** 2, -0.5 * x ** 2
    >>> print(f"{float(mc_under_q(log_p, log_q, 'kl')):.2f}")
    0.50

  References:
    Go, Korbak, Kruszewski, Rozen, Ryu, Dymetman, `Aligning Language Models
    with Preferences through f-divergence Minimization
    <https://arxiv.org/abs/2302.08215>`_, 2023.
  """
  gen = _check_generator(generator)
  (lp, lq), axes, mask, _ = _prepare({"log_p": log_p, "log_q": log_q}, axis,
                                     where)
  log_r = _fill(lp, mask) - _fill(lq, mask)
  return _mean(gen.f(log_r), mask, axes)


def mc_under_p(log_p: ArrayLike, log_q: ArrayLike,
               generator: FGenerator | str, *, axis: Axis = -1,
               where: ArrayLike | None = None) -> Array:
  r"""Monte Carlo f-divergence from samples of the target :math:`P`.

  With samples :math:`x_i \sim P` (e.g. offline samples of a reference
  policy :math:`\pi_0` with stored log-probabilities, as in DPH-RL),

  .. math::
    \hat D_f = \frac{1}{N}\sum_{i=1}^N \frac{f(r_i)}{r_i}
             = \frac{1}{N}\sum_{i=1}^N f^\diamond\!\left(\frac{1}{r_i}\right),
    \qquad x_i \sim P,

  since :math:`\mathbb{E}_Q[f(r)] = \mathbb{E}_P[f(r)/r]`. The value is
  computed as the Csiszár dual :math:`f^\diamond(t) = t f(1/t)` at
  :math:`\log t = -\log r`, so sequence-level log-ratios far from zero do not
  overflow (the paper's JS form :math:`e^{-\log r}(\dots)` overflows in
  float32 below :math:`\log r \approx -88`; this does not). ``log_q`` may be
  :math:`-\infty` (model density zero): the sample then contributes
  :math:`\lim_{t\to\infty} f(t)/t`.

  Because the samples do not depend on :math:`Q`, the autodiff gradient of
  this value w.r.t. the parameters of :math:`Q` (through ``log_q``) is an
  unbiased estimate of :math:`\nabla_\theta D_f(P\|Q_\theta)`: for
  ``generator='kl'`` it is the SFT / "rehearsal" loss on :math:`P`'s samples.

  Args:
    log_p: target log-density at the samples (drawn from :math:`P`),
      ``[..., N, ...]``.
    log_q: model log-density at the same samples, same shape.
    generator: an :class:`~jaxkit.divergences.FGenerator` or a generator name.
    axis: the sample axis (or axes) averaged over; default ``-1``.
    where: optional boolean mask of valid samples, same rank as ``log_p`` with
      each dimension equal or 1.

  Returns:
    The estimate, shape ``log_p.shape`` with ``axis`` removed, float32 or
    wider.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.divergences import mc_under_p
    >>> # KL(P||Q) for P = N(1, 1), Q = N(0, 1) is 0.5; samples from P.
    >>> x = 1.0 + jax.random.normal(jax.random.key(0), (200_000,))
    >>> log_p, log_q = -0.5 * (x - 1.0) ** 2, -0.5 * x ** 2
    >>> print(f"{float(mc_under_p(log_p, log_q, 'kl')):.2f}")
    0.50

  References:
    Csiszár, `Information-type measures of difference of probability
    distributions and indirect observations`, 1967.

    Li, Zhou, Hao, Liu, Miao, Pang, Tan, Chu, Wang, Pan, Qu, Qi, `The Choice
    of Divergence: A Neglected Key to Mitigating Diversity Collapse in
    Reinforcement Learning with Verifiable Reward
    <https://arxiv.org/abs/2509.07430>`_, 2025 (DPH-RL:
    :math:`D_f(\pi_0\|\pi_\theta)` from offline samples of :math:`\pi_0`).
  """
  gen = _check_generator(generator)
  (lp, lq), axes, mask, _ = _prepare({"log_p": log_p, "log_q": log_q}, axis,
                                     where)
  log_r = _fill(lp, mask) - _fill(lq, mask)
  return _mean(_f_over_r(gen, log_r), mask, axes)


def importance_sampled(log_p: ArrayLike, log_q: ArrayLike,
                       log_proposal: ArrayLike, generator: FGenerator | str, *,
                       axis: Axis = -1, where: ArrayLike | None = None,
                       self_normalize: bool = True) -> tuple[Array, Array]:
  r"""Importance-sampled f-divergence from samples of a proposal :math:`\pi`.

  With samples :math:`x_i \sim \pi` and log importance weights
  :math:`\log w_i = \log q(x_i) - \log \pi(x_i)`,

  .. math::
    \hat D_f^{\mathrm{SN}} = \sum_i \frac{w_i}{\sum_j w_j} f(r_i)
    \quad (\texttt{self\_normalize=True}), \qquad
    \hat D_f^{\mathrm{IS}} = \frac1N \sum_i w_i f(r_i)
    \quad (\texttt{self\_normalize=False}),

  with :math:`r_i = p(x_i)/q(x_i)`, and the Kish effective sample size

  .. math::
    \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2} \in [1, N].

  The self-normalised weights are a softmax of :math:`\log w` over the sample
  axis (consistent, slightly biased, and valid when ``log_q`` is only known up
  to a constant); the unnormalised estimate is unbiased but needs normalised
  :math:`q` and :math:`\pi`. Both are computed with the largest log-weight
  factored out. A sample with :math:`q(x_i) = 0` has :math:`w_i = 0` and
  :math:`r_i = \infty`; its term :math:`w_i f(r_i)` is replaced by its limit
  :math:`\tfrac{p(x_i)}{\pi(x_i)}\lim_{t\to\infty} f(t)/t` (0 when
  :math:`p(x_i) = 0` too), the exact contribution of :math:`Q`'s zero set.
  If every valid sample has :math:`w_i = 0`, the self-normalised value is 0.

  Args:
    log_p: target log-density at the samples, ``[..., N, ...]``.
    log_q: model log-density at the samples, same shape.
    log_proposal: log-density of the proposal the samples were drawn from,
      same shape.
    generator: an :class:`~jaxkit.divergences.FGenerator` or a generator name.
    axis: the sample axis (or axes); default ``-1``.
    where: optional boolean mask of valid samples, same rank as ``log_p`` with
      each dimension equal or 1.
    self_normalize: normalise the weights by their sum (default) or divide by
      the number of valid samples.

  Returns:
    ``(value, ess)``, both of shape ``log_p.shape`` with ``axis`` removed,
    float32 or wider. ``ess`` is 0 for fully masked rows.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.divergences import importance_sampled
    >>> # KL(P||Q), P = N(1, 1), Q = N(0, 1), samples from N(0.5, 1.5^2).
    >>> x = 0.5 + 1.5 * jax.random.normal(jax.random.key(0), (200_000,))
    >>> log_p, log_q = -0.5 * (x - 1.0) ** 2, -0.5 * x ** 2
    >>> log_pi = -0.5 * ((x - 0.5) / 1.5) ** 2 - jnp.log(1.5)
    >>> value, ess = importance_sampled(log_p, log_q, log_pi, 'kl')
    >>> print(f"{float(value):.2f}")
    0.50
    >>> print(f"{float(ess) / x.size:.2f}")  # fraction of effective samples
    0.77

  References:
    Kong, `A note on importance sampling using standardized weights`, 1992
    (Kish effective sample size in importance sampling).

    Go, Korbak, Kruszewski, Rozen, Ryu, Dymetman, `Aligning Language Models
    with Preferences through f-divergence Minimization
    <https://arxiv.org/abs/2302.08215>`_, 2023 (off-policy estimation with a
    proposal).
  """
  gen = _check_generator(generator)
  if not isinstance(self_normalize, bool):
    raise TypeError(
        f"`self_normalize` must be a Python bool, got {self_normalize!r}.")
  (lp, lq, lpi), axes, mask, _ = _prepare(
      {"log_p": log_p, "log_q": log_q, "log_proposal": log_proposal}, axis,
      where)
  valid = jnp.ones(lp.shape, bool) if mask is None else mask
  lp, lq, lpi = _fill(lp, mask), _fill(lq, mask), _fill(lpi, mask)
  log_w = lq - lpi
  # Shift by the (stop-gradient) largest valid log-weight.
  shift = jnp.max(jnp.where(valid, log_w, -jnp.inf), axis=axes, keepdims=True)
  shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
  q_zero = valid & (lq == -jnp.inf)
  p_zero = lp == -jnp.inf
  regular = valid & ~q_zero
  # Regular samples: exp(log_w - shift) * f(log_r), safe inputs elsewhere.
  log_w_s = jnp.where(regular, log_w, shift)
  w = jnp.where(regular, jnp.exp(log_w_s - shift), 0.0)
  log_r = jnp.where(regular, lp - lq, 0.0)
  term = w * gen.f(log_r)
  # q(x) = 0 samples: (p / pi) * lim f(t)/t, scaled by the same shift.
  limit = q_zero & ~p_zero
  log_a = jnp.where(limit, lp - lpi - shift, 0.0)
  term_limit = jnp.exp(log_a) * gen.slope_at_infinity
  term = jnp.where(regular, term, jnp.where(limit, term_limit, 0.0))

  total = jnp.sum(term, axis=axes)
  sum_w = jnp.sum(w, axis=axes)
  sum_w2 = jnp.sum(w * w, axis=axes)
  if self_normalize:
    safe = jnp.where(sum_w > 0, sum_w, 1.0)
    value = jnp.where(sum_w > 0, total / safe, 0.0)
  else:
    count = jnp.sum(valid, axis=axes).astype(total.dtype)
    scale = jnp.exp(jnp.squeeze(shift, axis=axes))
    value = jnp.where(count > 0, scale * total / jnp.maximum(count, 1.0), 0.0)
  safe2 = jnp.where(sum_w2 > 0, sum_w2, 1.0)
  ess = jnp.where(sum_w2 > 0, jnp.square(sum_w) / safe2, 0.0)
  return value, ess
