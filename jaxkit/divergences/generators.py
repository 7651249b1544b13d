r"""f-divergence generators: f, its derivatives, its conjugate and its dual.

An f-divergence between a target :math:`P` and a model :math:`Q` is

.. math::
  D_f(P \| Q) = \mathbb{E}_{Q}\left[f\left(\frac{dP}{dQ}\right)\right]
             = \sum_k q_k\, f(r_k), \qquad r_k = p_k / q_k,

with :math:`f` convex and :math:`f(1) = 0`. jaxkit puts the target (data,
teacher, reference policy) in the first slot :math:`P` and the trainable model
in :math:`Q`. Papers that write the model first, :math:`D_g(\pi\|p)`, are
mapped through the Csiszár dual :math:`g^\diamond(t) = t\,g(1/t)`, since
:math:`D_g(\pi\|p) = D_{g^\diamond}(p\|\pi)`.

A generator (:class:`FGenerator`) carries, as functions of :math:`\log r` (never
the ratio itself, so that nothing overflows before it has to):

=========================  =====================================================
``f(log_r)``               the generator :math:`f(r)`
``f_prime(log_r)``         :math:`f'(r)`
``f_double_prime(log_r)``  :math:`f''(r)`
``pathwise_weight(log_r)`` :math:`r^2 f''(r)`, the weight of the pathwise
                           (reparameterised) gradient (f-distill)
``pseudo_reward(log_r)``   :math:`f^*(f'(r)) = r f'(r) - f(r)`, the reward of the
                           score-function gradient (f-DPG)
``conjugate(u)``           the convex conjugate :math:`f^*(u) = \sup_{t \ge 0}
                           ut - f(t)`, on ``conjugate_domain``
``output_activation(v)``   maps a real critic output into the conjugate's
                           domain (f-GAN, Nowozin et al. 2016)
``f_at_zero``              :math:`f(0) = \lim_{t\to 0} f(t)` (``inf`` allowed)
``slope_at_infinity``      :math:`\lim_{t\to\infty} f(t)/t` (``inf`` allowed)
=========================  =====================================================

The last two give the exact contribution of entries where one distribution
is zero: :math:`q\,f(0)` where :math:`p = 0`, and :math:`p \cdot
\lim f(t)/t` where :math:`q = 0`.

Generators by name (:func:`get_generator`): ``'kl'``, ``'reverse_kl'``,
``'js'``, ``'tv'``, ``'pearson_chi2'``, ``'neyman_chi2'``,
``'squared_hellinger'``, ``'jeffreys'``, ``'amari_alpha'`` (needs ``alpha``) and
``'gan'``.

References:
  Csiszár, `Information-type measures of difference of probability
  distributions and indirect observations`, 1967.

  Nowozin, Cseke, Tomioka, `f-GAN: Training Generative Neural Samplers using
  Variational Divergence Minimization <https://arxiv.org/abs/1606.00709>`_,
  2016.

  Go, Korbak, Kruszewski, Rozen, Ryu, Dymetman, `Aligning Language Models with
  Preferences through f-divergence Minimization
  <https://arxiv.org/abs/2302.08215>`_, 2023.

  Xu, Nie, Vahdat, `One-step Diffusion Models with f-Divergence Distribution
  Matching <https://arxiv.org/abs/2502.15681>`_, 2025.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxkit._src import checks

_LOG2 = math.log(2.0)
_LOG4 = math.log(4.0)
_INF = float("inf")


# ----------------------------------------------------------------------------
# Small numerically careful helpers, all in terms of log_r.
# ----------------------------------------------------------------------------


def _r_log_r(log_r):
  """r·log r from log r, exactly 0 at log r = -inf, with finite gradients."""
  finite = log_r > -jnp.inf
  safe = jnp.where(finite, log_r, 0.0)
  return jnp.where(finite, jnp.exp(safe) * safe, 0.0)


def _r_softplus_neg(log_r):
  """r·log(1 + 1/r) = r·softplus(−log r): 0 at r = 0, → 1 as r → ∞, no inf − inf."""
  finite = jnp.isfinite(log_r)
  safe = jnp.where(finite, log_r, 0.0)
  # log softplus(x) without underflow: softplus(x) = e^x (1 + O(e^x)) below -20.
  x = -safe
  log_sp = jnp.where(x < -20.0, x, jnp.log(jax.nn.softplus(jnp.maximum(x, -20.0))))
  val = jnp.exp(safe + log_sp)
  return jnp.where(finite, val, jnp.where(log_r > 0, 1.0, 0.0))


def _lambertw_of_exp(x):
  """W(e^x): principal Lambert W of exp(x), for real x, by Newton in log space.

  Solves w + log w = x for w > 0 (i.e. w·e^w = e^x). The iteration is run on
  v = log w: g(v) = v + e^v - x, g'(v) = 1 + e^v; it converges in a few steps
  from the asymptotic initial guess for all real x.
  """
  # Initial guess: w ~ e^x for x << 0, w ~ x - log x for x >> 1.
  v0 = jnp.where(x < 1.0, x - jnp.log1p(jnp.exp(jnp.minimum(x, 1.0))),
                 jnp.log(jnp.maximum(x - jnp.log(jnp.maximum(x, 1.0)), 1e-3)))

  def body(_, v):
    ev = jnp.exp(v)
    return v - (v + ev - x) / (1.0 + ev)

  v = jax.lax.fori_loop(0, 30, body, v0)
  return jnp.exp(v)


# ----------------------------------------------------------------------------
# The table. Every entry is a pure function of (log_r, alpha) or (u, alpha).
# ----------------------------------------------------------------------------


class _Spec(NamedTuple):
  f: Callable
  f_prime: Callable
  f_double_prime: Callable
  pathwise_weight: Callable
  pseudo_reward: Callable
  conjugate: Callable
  conjugate_domain: Callable  # alpha -> (lo, hi), open interval on R.
  output_activation: Callable
  f_at_zero: Callable  # alpha -> float
  slope_at_infinity: Callable  # alpha -> float
  dual: Callable  # alpha -> (name, alpha)
  needs_alpha: bool = False
  # f*(g(v)) in a form that stays finite where g(v) rounds onto the edge of
  # the conjugate's domain; None means conjugate(output_activation(v)).
  conjugate_activation: Callable | None = None


def _const(c):
  return lambda alpha=None: c


def _amari_f(lr, a):
  return (jnp.expm1(a * lr) - a * jnp.expm1(lr)) / (a * (a - 1.0))


def _amari_conj(u, a):
  # f*(u) = ((1 + (a-1)u)^{a/(a-1)} - 1)/a where 1 + (a-1)u > 0. For a > 1 and
  # 1 + (a-1)u <= 0 the sup over t >= 0 sits at t = 0 and f*(u) = -f(0) = -1/a.
  # For a < 1 and 1 + (a-1)u <= 0 the conjugate is +inf (outside the domain).
  base = 1.0 + (a - 1.0) * u
  pos = base > 0
  safe = jnp.where(pos, base, 1.0)
  val = (jnp.exp(a / (a - 1.0) * jnp.log(safe)) - 1.0) / a
  outside = jnp.where(a > 1.0, -1.0 / a, jnp.inf)
  return jnp.where(pos, val, outside)


def _amari_domain(a):
  # The conjugate is finite on (-inf, 1/(1-a)) for a < 1 and on all of R for
  # a > 1 (flat at -1/a below -1/(a-1)).
  if not checks.is_concrete(a):
    return (-_INF, _INF)
  a = float(a)
  return (-_INF, 1.0 / (1.0 - a)) if a < 1.0 else (-_INF, _INF)


def _amari_activation(v, a):
  # a < 1: u = hi - softplus(hi - v) < hi (identity for v << hi); a > 1: u = v.
  hi = 1.0 / jnp.where(a < 1.0, 1.0 - a, 1.0)
  return jnp.where(a < 1.0, hi - jax.nn.softplus(hi - v), v)


def _amari_conjugate_activation(v, a):
  # For a < 1 the activation is u = hi - softplus(hi - v), hi = 1/(1 - a), so
  # 1 + (a - 1) u = (1 - a) softplus(hi - v): take its log without rounding.
  one_minus = jnp.where(a < 1.0, 1.0 - a, 1.0)
  x = 1.0 / one_minus - v
  log_sp = jnp.where(x < -20.0, x, jnp.log(jax.nn.softplus(jnp.maximum(x, -20.0))))
  log_base = jnp.log(one_minus) + log_sp
  below = (jnp.exp(a / (a - 1.0) * log_base) - 1.0) / a
  return jnp.where(a < 1.0, below, _amari_conj(v, a))


def _amari_f0(a):
  if not checks.is_concrete(a):
    return jnp.where(a > 0, 1.0 / a, jnp.inf)
  return 1.0 / float(a) if float(a) > 0 else _INF


def _amari_slope(a):
  if not checks.is_concrete(a):
    return jnp.where(a < 1, 1.0 / (1.0 - a), jnp.inf)
  return 1.0 / (1.0 - float(a)) if float(a) < 1 else _INF


def _jeffreys_conj(u):
  w = _lambertw_of_exp(1.0 - u)
  return w + 1.0 / w + u - 2.0


_TABLE: dict[str, _Spec] = {
    # KL(P||Q): f(t) = t log t.
    "kl": _Spec(
        f=lambda lr, a=None: _r_log_r(lr),
        f_prime=lambda lr, a=None: 1.0 + lr,
        f_double_prime=lambda lr, a=None: jnp.exp(-lr),
        pathwise_weight=lambda lr, a=None: jnp.exp(lr),
        pseudo_reward=lambda lr, a=None: jnp.exp(lr),
        conjugate=lambda u, a=None: jnp.exp(u - 1.0),
        conjugate_domain=_const((-_INF, _INF)),
        output_activation=lambda v, a=None: v,
        f_at_zero=_const(0.0),
        slope_at_infinity=_const(_INF),
        dual=lambda a=None: ("reverse_kl", None),
    ),
    # KL(Q||P): f(t) = -log t.
    "reverse_kl": _Spec(
        f=lambda lr, a=None: -lr,
        f_prime=lambda lr, a=None: -jnp.exp(-lr),
        f_double_prime=lambda lr, a=None: jnp.exp(-2.0 * lr),
        pathwise_weight=lambda lr, a=None: jnp.ones_like(lr),
        pseudo_reward=lambda lr, a=None: lr - 1.0,
        conjugate=lambda u, a=None: jnp.where(
            u < 0, -1.0 - jnp.log(jnp.where(u < 0, -u, 1.0)), jnp.inf),
        conjugate_domain=_const((-_INF, 0.0)),
        output_activation=lambda v, a=None: -jnp.exp(-v),
        f_at_zero=_const(_INF),
        slope_at_infinity=_const(0.0),
        conjugate_activation=lambda v, a=None: v - 1.0,
        dual=lambda a=None: ("kl", None),
    ),
    # Jensen-Shannon (natural log, <= log 2):
    # f(t) = 1/2 [t log t - (1 + t) log((1 + t)/2)].
    "js": _Spec(
        # = 1/2 [(1 + r) log 2 - r softplus(-log r) - softplus(log r)]: no
        # inf - inf for large r (the naive form is nan beyond log r ~ 88).
        f=lambda lr, a=None: jnp.where(
            lr == jnp.inf, jnp.inf,
            0.5 * ((1.0 + jnp.exp(lr)) * _LOG2 - _r_softplus_neg(lr)
                   - jax.nn.softplus(jnp.minimum(lr, 1e30)))),
        f_prime=lambda lr, a=None: 0.5 * (_LOG2 - jax.nn.softplus(-lr)),
        f_double_prime=lambda lr, a=None: 0.5 * jnp.exp(-lr - jax.nn.softplus(lr)),
        pathwise_weight=lambda lr, a=None: 0.5 * jax.nn.sigmoid(lr),
        pseudo_reward=lambda lr, a=None: 0.5 * (jax.nn.softplus(lr) - _LOG2),
        conjugate=lambda u, a=None: jnp.where(
            u < 0.5 * _LOG2,
            -0.5 * jnp.log(jnp.where(u < 0.5 * _LOG2, 2.0 - jnp.exp(2.0 * u), 1.0)),
            jnp.inf),
        conjugate_domain=_const((-_INF, 0.5 * _LOG2)),
        output_activation=lambda v, a=None: 0.5 * (_LOG2 - jax.nn.softplus(-v)),
        f_at_zero=_const(0.5 * _LOG2),
        slope_at_infinity=_const(0.5 * _LOG2),
        conjugate_activation=lambda v, a=None: 0.5 * (jax.nn.softplus(v) - _LOG2),
        dual=lambda a=None: ("js", None),
    ),
    # Total variation: f(t) = 1/2 |t - 1|.
    "tv": _Spec(
        f=lambda lr, a=None: 0.5 * jnp.abs(jnp.expm1(lr)),
        f_prime=lambda lr, a=None: 0.5 * jnp.sign(lr),
        f_double_prime=lambda lr, a=None: jnp.zeros_like(lr),
        pathwise_weight=lambda lr, a=None: jnp.zeros_like(lr),
        pseudo_reward=lambda lr, a=None: 0.5 * jnp.sign(lr),
        conjugate=lambda u, a=None: jnp.where(jnp.abs(u) <= 0.5, u,
                                              jnp.where(u < -0.5, -0.5, jnp.inf)),
        conjugate_domain=_const((-_INF, 0.5)),
        output_activation=lambda v, a=None: 0.5 * jnp.tanh(v),
        f_at_zero=_const(0.5),
        slope_at_infinity=_const(0.5),
        dual=lambda a=None: ("tv", None),
    ),
    # Pearson chi^2: f(t) = (t - 1)^2.
    "pearson_chi2": _Spec(
        f=lambda lr, a=None: jnp.square(jnp.expm1(lr)),
        f_prime=lambda lr, a=None: 2.0 * jnp.expm1(lr),
        f_double_prime=lambda lr, a=None: 2.0 * jnp.ones_like(lr),
        pathwise_weight=lambda lr, a=None: 2.0 * jnp.exp(2.0 * lr),
        pseudo_reward=lambda lr, a=None: jnp.expm1(2.0 * lr),
        # sup_{t>=0} ut - (t-1)^2: interior optimum t = 1 + u/2 needs u >= -2.
        conjugate=lambda u, a=None: jnp.where(u >= -2.0, u + 0.25 * u * u, -1.0),
        conjugate_domain=_const((-_INF, _INF)),
        output_activation=lambda v, a=None: v,
        f_at_zero=_const(1.0),
        slope_at_infinity=_const(_INF),
        dual=lambda a=None: ("neyman_chi2", None),
    ),
    # Neyman chi^2: f(t) = (1 - t)^2 / t.
    "neyman_chi2": _Spec(
        f=lambda lr, a=None: -jnp.expm1(lr) * jnp.expm1(-lr),
        f_prime=lambda lr, a=None: -jnp.expm1(-2.0 * lr),
        f_double_prime=lambda lr, a=None: 2.0 * jnp.exp(-3.0 * lr),
        pathwise_weight=lambda lr, a=None: 2.0 * jnp.exp(-lr),
        pseudo_reward=lambda lr, a=None: -2.0 * jnp.expm1(-lr),
        conjugate=lambda u, a=None: jnp.where(
            u < 1.0, 2.0 - 2.0 * jnp.sqrt(jnp.where(u < 1.0, 1.0 - u, 1.0)), jnp.inf),
        conjugate_domain=_const((-_INF, 1.0)),
        output_activation=lambda v, a=None: -jnp.expm1(-v),
        f_at_zero=_const(_INF),
        slope_at_infinity=_const(1.0),
        conjugate_activation=lambda v, a=None: 2.0 - 2.0 * jnp.exp(-0.5 * v),
        dual=lambda a=None: ("pearson_chi2", None),
    ),
    # Squared Hellinger (no 1/2): f(t) = (sqrt t - 1)^2.
    "squared_hellinger": _Spec(
        f=lambda lr, a=None: jnp.square(jnp.expm1(0.5 * lr)),
        f_prime=lambda lr, a=None: -jnp.expm1(-0.5 * lr),
        f_double_prime=lambda lr, a=None: 0.5 * jnp.exp(-1.5 * lr),
        pathwise_weight=lambda lr, a=None: 0.5 * jnp.exp(0.5 * lr),
        pseudo_reward=lambda lr, a=None: jnp.expm1(0.5 * lr),
        conjugate=lambda u, a=None: jnp.where(
            u < 1.0, u / jnp.where(u < 1.0, 1.0 - u, 1.0), jnp.inf),
        conjugate_domain=_const((-_INF, 1.0)),
        output_activation=lambda v, a=None: -jnp.expm1(-v),
        f_at_zero=_const(1.0),
        slope_at_infinity=_const(1.0),
        conjugate_activation=lambda v, a=None: jnp.expm1(v),
        dual=lambda a=None: ("squared_hellinger", None),
    ),
    # Jeffreys: f(t) = (t - 1) log t.
    "jeffreys": _Spec(
        f=lambda lr, a=None: jnp.expm1(lr) * lr,
        f_prime=lambda lr, a=None: lr - jnp.expm1(-lr),
        f_double_prime=lambda lr, a=None: jnp.exp(-lr) + jnp.exp(-2.0 * lr),
        pathwise_weight=lambda lr, a=None: jnp.exp(lr) + 1.0,
        pseudo_reward=lambda lr, a=None: jnp.expm1(lr) + lr,
        conjugate=lambda u, a=None: _jeffreys_conj(u),
        conjugate_domain=_const((-_INF, _INF)),
        output_activation=lambda v, a=None: v,
        f_at_zero=_const(_INF),
        slope_at_infinity=_const(_INF),
        dual=lambda a=None: ("jeffreys", None),
    ),
    # Amari alpha: f(t) = (t^a - 1 - a (t - 1)) / (a (a - 1)), a not in {0, 1}.
    "amari_alpha": _Spec(
        f=lambda lr, a: _amari_f(lr, a),
        f_prime=lambda lr, a: jnp.expm1((a - 1.0) * lr) / (a - 1.0),
        f_double_prime=lambda lr, a: jnp.exp((a - 2.0) * lr),
        pathwise_weight=lambda lr, a: jnp.exp(a * lr),
        pseudo_reward=lambda lr, a: jnp.expm1(a * lr) / a,
        conjugate=lambda u, a: _amari_conj(u, a),
        conjugate_domain=_amari_domain,
        output_activation=lambda v, a: _amari_activation(v, a),
        f_at_zero=_amari_f0,
        slope_at_infinity=_amari_slope,
        conjugate_activation=_amari_conjugate_activation,
        dual=lambda a: ("amari_alpha", 1.0 - a),
        needs_alpha=True,
    ),
    # GAN (logistic critic), shifted so that f(1) = 0; D_gan = 2 JS.
    # f(t) = t log t - (1 + t) log(1 + t) + log 4.
    "gan": _Spec(
        # = log 4 - r softplus(-log r) - softplus(log r), stable for all r.
        f=lambda lr, a=None: _LOG4 - _r_softplus_neg(lr) - jax.nn.softplus(lr),
        f_prime=lambda lr, a=None: -jax.nn.softplus(-lr),
        f_double_prime=lambda lr, a=None: jnp.exp(-lr - jax.nn.softplus(lr)),
        pathwise_weight=lambda lr, a=None: jax.nn.sigmoid(lr),
        pseudo_reward=lambda lr, a=None: jax.nn.softplus(lr) - _LOG4,
        conjugate=lambda u, a=None: jnp.where(
            u < 0, -jnp.log(-jnp.expm1(jnp.where(u < 0, u, -1.0))) - _LOG4, jnp.inf),
        conjugate_domain=_const((-_INF, 0.0)),
        output_activation=lambda v, a=None: -jax.nn.softplus(-v),
        f_at_zero=_const(_LOG4),
        slope_at_infinity=_const(0.0),
        conjugate_activation=lambda v, a=None: jax.nn.softplus(v) - _LOG4,
        dual=lambda a=None: ("gan", None),
    ),
}

GENERATOR_NAMES: tuple[str, ...] = tuple(_TABLE)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FGenerator:
  r"""An f-divergence generator, with every quantity a loss or estimator needs.

  Build one with :func:`get_generator`. The object is a pytree whose only leaf
  is ``alpha`` (for ``'amari_alpha'``), so a scheduled ``alpha`` can be traced
  through :func:`jax.jit`; ``name`` is static.

  Every method takes :math:`\log r = \log p - \log q` (broadcasting
  elementwise) except :meth:`conjugate` and :meth:`output_activation`, which
  take a point :math:`u` (resp. a raw critic output :math:`v`).

  Attributes:
    name: the generator's name, one of :data:`GENERATOR_NAMES`.
    alpha: the Amari order for ``'amari_alpha'``; ``None`` otherwise.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import get_generator
    >>> js = get_generator('js')
    >>> print(f"{float(js.f(jnp.log(3.0))):.4f}")  # 1/2[3 log 3 - 4 log 2]
    0.2616
    >>> print(js.csiszar_dual().name)
    js
  """

  name: str = dataclasses.field(metadata=dict(static=True))
  alpha: Any = None

  @property
  def _spec(self) -> _Spec:
    return _TABLE[self.name]

  def _a(self):
    return self.alpha

  def f(self, log_r: jax.typing.ArrayLike) -> jax.Array:
    """The generator :math:`f(r)` evaluated at ``r = exp(log_r)``."""
    return self._spec.f(jnp.asarray(log_r), self._a())

  def f_prime(self, log_r: jax.typing.ArrayLike) -> jax.Array:
    """The derivative :math:`f'(r)`."""
    return self._spec.f_prime(jnp.asarray(log_r), self._a())

  def f_double_prime(self, log_r: jax.typing.ArrayLike) -> jax.Array:
    """The second derivative :math:`f''(r)`."""
    return self._spec.f_double_prime(jnp.asarray(log_r), self._a())

  def pathwise_weight(self, log_r: jax.typing.ArrayLike) -> jax.Array:
    r"""The pathwise-gradient weight :math:`h(r) = r^2 f''(r)`.

    :math:`\nabla_\theta D_f(p\|q_\theta) = -\mathbb{E}_z[h(r)\,(\nabla_x \log
    p - \nabla_x \log q_\theta)\cdot \partial_\theta x]` (f-distill, Xu et al.
    2025; :math:`h = 1` is reverse KL, i.e. VSD / DMD).
    """
    return self._spec.pathwise_weight(jnp.asarray(log_r), self._a())

  def pseudo_reward(self, log_r: jax.typing.ArrayLike) -> jax.Array:
    r"""The score-function pseudo-reward :math:`f^*(f'(r)) = r f'(r) - f(r)`.

    :math:`\nabla_\theta D_f(p\|q_\theta) = -\mathbb{E}_{q_\theta}[f^*(f'(r))
    \nabla_\theta \log q_\theta]` (f-DPG, Go et al. 2023).
    """
    return self._spec.pseudo_reward(jnp.asarray(log_r), self._a())

  def conjugate(self, u: jax.typing.ArrayLike) -> jax.Array:
    r"""The convex conjugate :math:`f^*(u) = \sup_{t\ge 0}\, u t - f(t)`.

    Returns ``inf`` outside :attr:`conjugate_domain`.
    """
    return self._spec.conjugate(jnp.asarray(u), self._a())

  @property
  def conjugate_domain(self) -> tuple[float, float]:
    """The open interval ``(lo, hi)`` on which :meth:`conjugate` is finite."""
    return self._spec.conjugate_domain(self._a())

  def output_activation(self, v: jax.typing.ArrayLike) -> jax.Array:
    """Maps a real critic output into the conjugate domain (f-GAN's g_f)."""
    return self._spec.output_activation(jnp.asarray(v), self._a())

  def conjugate_activation(self, v: jax.typing.ArrayLike) -> jax.Array:
    r""":math:`f^*(g_f(v))`, the conjugate of the critic's activated output.

    Equal to ``conjugate(output_activation(v))`` but evaluated in closed form
    where the activation can round onto the edge of the conjugate's domain
    (e.g. JS at large ``v``), so the f-GAN bound stays finite.
    """
    fn = self._spec.conjugate_activation
    if fn is None:
      return self.conjugate(self.output_activation(v))
    return fn(jnp.asarray(v), self._a())

  @property
  def f_at_zero(self):
    """:math:`f(0) = \\lim_{t \\to 0^+} f(t)` (may be ``inf``)."""
    return self._spec.f_at_zero(self._a())

  @property
  def slope_at_infinity(self):
    """:math:`\\lim_{t\\to\\infty} f(t)/t` (may be ``inf``)."""
    return self._spec.slope_at_infinity(self._a())

  def csiszar_dual(self) -> "FGenerator":
    """The Csiszár dual :math:`f^\\diamond(t) = t f(1/t)`; see :func:`csiszar_dual`."""
    return csiszar_dual(self)


def get_generator(name: str, **params) -> FGenerator:
  r"""Returns the f-divergence generator called ``name``.

  ==========================  ========================================================  ============
  name                        :math:`f(t)`                                              dual
  ==========================  ========================================================  ============
  ``'kl'``                    :math:`t \log t`                                          reverse_kl
  ``'reverse_kl'``            :math:`-\log t`                                           kl
  ``'js'``                    :math:`\tfrac12[t\log t-(1+t)\log\tfrac{1+t}2]`           js
  ``'tv'``                    :math:`\tfrac12|t-1|`                                     tv
  ``'pearson_chi2'``          :math:`(t-1)^2`                                           neyman_chi2
  ``'neyman_chi2'``           :math:`(1-t)^2/t`                                         pearson_chi2
  ``'squared_hellinger'``     :math:`(\sqrt t-1)^2`                                     itself
  ``'jeffreys'``              :math:`(t-1)\log t`                                       itself
  ``'amari_alpha'``           :math:`\frac{t^\alpha-1-\alpha(t-1)}{\alpha(\alpha-1)}`   amari 1−α
  ``'gan'``                   :math:`t\log t-(1+t)\log(1+t)+\log 4`                     gan (*)
  ==========================  ========================================================  ============

  (*) :math:`t f(1/t)` for ``'gan'`` differs from :math:`f` by the affine term
  :math:`(t - 1)\log 4`, which integrates to zero against normalised
  distributions, so ``'gan'`` is returned as its own dual. The GAN generator is
  shifted by :math:`\log 4` so that :math:`f(1) = 0`; then
  :math:`D_{gan} = 2\,\mathrm{JS}`.

  Args:
    name: one of :data:`GENERATOR_NAMES`.
    **params: ``alpha`` for ``'amari_alpha'`` (a float not in ``{0, 1}``, may
      be traced); no other parameters are accepted.

  Returns:
    An :class:`FGenerator`.

  Raises:
    ValueError: unknown name, missing/unexpected parameters, ``alpha`` in
      ``{0, 1}``.

  Examples:
    >>> from jaxkit.divergences import get_generator
    >>> g = get_generator('amari_alpha', alpha=0.3)
    >>> print(g.csiszar_dual().alpha)
    0.7
    >>> print(get_generator('kl').csiszar_dual().name)
    reverse_kl

  References:
    Nowozin, Cseke, Tomioka, `f-GAN <https://arxiv.org/abs/1606.00709>`_, 2016
    (Table 1: generators, conjugates and output activations).
  """
  if not isinstance(name, str) or name not in _TABLE:
    raise ValueError(
        f"`name` must be one of {GENERATOR_NAMES}, got {name!r}.")
  spec = _TABLE[name]
  params = dict(params)
  alpha = params.pop("alpha", None)
  if params:
    raise ValueError(
        f"Generator {name!r} got unexpected parameters {sorted(params)}.")
  if spec.needs_alpha:
    if alpha is None:
      raise ValueError(f"Generator {name!r} needs `alpha` (a float not in {{0, 1}}).")
    checks.check_scalar(alpha, "alpha", excluded=(0.0, 1.0))
  elif alpha is not None:
    raise ValueError(f"Generator {name!r} takes no `alpha`, got alpha={alpha!r}.")
  return FGenerator(name=name, alpha=alpha)


def csiszar_dual(generator: FGenerator) -> FGenerator:
  r"""The Csiszár dual generator :math:`f^\diamond(t) = t\, f(1/t)`.

  .. math::
    D_f(P\|Q) = D_{f^\diamond}(Q\|P).

  Forward KL ↔ reverse KL, Pearson ↔ Neyman, Amari :math:`\alpha` ↔ Amari
  :math:`1-\alpha`; JS, TV, squared Hellinger, Jeffreys and GAN are self-dual
  (GAN up to an affine term that integrates to zero).

  Args:
    generator: an :class:`FGenerator`.

  Returns:
    The dual :class:`FGenerator`.

  Examples:
    >>> from jaxkit.divergences import get_generator, csiszar_dual
    >>> print(csiszar_dual(get_generator('pearson_chi2')).name)
    neyman_chi2

  References:
    Csiszár, 1967; Go et al., `f-DPG <https://arxiv.org/abs/2302.08215>`_, 2023
    (model-first divergences are used through the dual).
  """
  if not isinstance(generator, FGenerator):
    raise TypeError(
        f"`generator` must be an FGenerator (see get_generator), got "
        f"{type(generator).__name__}.")
  name, alpha = _TABLE[generator.name].dual(generator.alpha)
  return FGenerator(name=name, alpha=alpha)


def as_generator(generator) -> FGenerator:
  """Accepts an :class:`FGenerator` or a parameter-free generator name."""
  if isinstance(generator, FGenerator):
    return generator
  if isinstance(generator, str):
    return get_generator(generator)
  raise TypeError(
      "`generator` must be an FGenerator or a generator name, got "
      f"{type(generator).__name__}.")
