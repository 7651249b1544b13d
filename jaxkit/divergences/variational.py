r"""Variational (critic-based) f-divergence bounds and density-ratio critics.

When neither density can be evaluated but both distributions can be sampled,
an f-divergence can still be estimated, and optimised, through its
variational (Fenchel dual) representation (Nguyen, Wainwright, Jordan 2010;
f-GAN, Nowozin et al. 2016):

.. math::
  D_f(P\|Q) = \sup_{T} \; \mathbb{E}_P[T(x)] - \mathbb{E}_Q[f^*(T(x))],

attained at :math:`T^*(x) = f'(p(x)/q(x))`. This module holds

* :func:`variational_bound` — the bound for a critic :math:`T = g_f(V)`,
  where :math:`g_f` (``generator.output_activation``) maps a real critic
  output :math:`V` into the domain of :math:`f^*` (FLAT maximises it between
  template and forget responses);
* :func:`density_ratio_logistic_loss` — the logistic (GAN-discriminator) loss
  whose optimal logit is :math:`\log p(x)/q(x)`, the log density-ratio
  estimator used by f-distill and DiDi-Instruct to form :math:`\log r`.

Both take critic outputs on samples of :math:`P` (``[..., N]``) and of
:math:`Q` (``[..., M]``), reduce over the sample axis with masked means
(``where_p`` / ``where_q``), and are batched over the leading axes; the two
sample counts may differ.
"""

from __future__ import annotations

import numbers

import jax

from jaxkit._src import checks
from jaxkit._src.typing import Array, ArrayLike
from jaxkit.divergences.generators import FGenerator
from jaxkit.divergences.sampled import _check_generator
from jaxkit.divergences.sampled import _fill
from jaxkit.divergences.sampled import _mean

__all__ = ["variational_bound", "density_ratio_logistic_loss"]


def _prepare_two(a, b, name_a, name_b, axis, where_a, where_b, where_a_name,
                 where_b_name):
  """Two sample sets that agree on every axis except the sample axis."""
  a = checks.check_floating(a, name_a)
  b = checks.check_floating(b, name_b)
  if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
    raise TypeError(f"`axis` must be an int (the sample axis), got {axis!r}.")
  if a.ndim == 0 or b.ndim == 0:
    raise ValueError(
        f"`{name_a}` and `{name_b}` need a sample axis, got shapes {a.shape} "
        f"and {b.shape}.")
  if a.ndim != b.ndim:
    raise ValueError(
        f"`{name_a}` and `{name_b}` must have the same rank, got shapes "
        f"{a.shape} and {b.shape}.")
  (ax,) = checks.normalize_axis(axis, a.ndim)
  rest_a = a.shape[:ax] + a.shape[ax + 1:]
  rest_b = b.shape[:ax] + b.shape[ax + 1:]
  if rest_a != rest_b:
    raise ValueError(
        f"`{name_a}` and `{name_b}` must have the same shape except on the "
        f"sample axis {axis}, got {a.shape} and {b.shape}.")
  dtype = checks.compute_dtype(a, b)
  mask_a = checks.check_where(where_a, a.shape, where_a_name)
  mask_b = checks.check_where(where_b, b.shape, where_b_name)
  return a.astype(dtype), b.astype(dtype), (ax,), mask_a, mask_b


def variational_bound(critic_p: ArrayLike, critic_q: ArrayLike,
                      generator: FGenerator | str, *, axis: int = -1,
                      where_p: ArrayLike | None = None,
                      where_q: ArrayLike | None = None) -> Array:
  r"""The f-GAN variational lower bound on :math:`D_f(P\|Q)`.

  For raw critic outputs :math:`V` on samples :math:`x_i \sim P`
  (``critic_p``) and :math:`y_j \sim Q` (``critic_q``),

  .. math::
    \hat B = \frac1N\sum_{i=1}^N g_f(V(x_i))
      - \frac1M\sum_{j=1}^M f^*\big(g_f(V(y_j))\big)
      \;\lesssim\; D_f(P\|Q),

  where :math:`g_f` is ``generator.output_activation`` (keeps the critic in
  the domain of the conjugate :math:`f^*`). In expectation the bound is
  :math:`\le D_f(P\|Q)` for every critic (pointwise Fenchel–Young:
  :math:`u\,r - f^*(u) \le f(r)`), with equality at the optimal critic
  :math:`g_f(V^*(x)) = f'(p(x)/q(x))`. The Monte Carlo value itself can exceed
  :math:`D_f` by sampling noise. Maximise it over the critic to estimate
  :math:`D_f`; f-GAN minimises it over the generator of :math:`Q` (or
  :math:`P`) at the same time. For ``'gan'``, :math:`\hat B = \log 4 -`
  :func:`density_ratio_logistic_loss`. For ``'tv'`` the optimal critic
  :math:`\tfrac12\operatorname{sign}(r - 1)` is only reached as :math:`V \to
  \pm\infty`.

  Args:
    critic_p: critic outputs on samples of :math:`P`, ``[..., N]``.
    critic_q: critic outputs on samples of :math:`Q`, ``[..., M]``; the same
      leading shape as ``critic_p``.
    generator: an :class:`~jaxkit.divergences.FGenerator` or a generator name.
    axis: the sample axis of both inputs; default ``-1``.
    where_p: optional mask of valid ``critic_p`` entries (same rank, each
      dimension equal or 1).
    where_q: optional mask of valid ``critic_q`` entries.

  Returns:
    The bound, shape ``[...]`` (inputs with ``axis`` removed), float32 or
    wider.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.divergences import variational_bound
    >>> # P = N(1, 1), Q = N(0, 1): the optimal KL critic is f'(r) = 1 + log r
    >>> # = 1 + x - 1/2 (KL's activation is the identity); KL = 0.5.
    >>> kx, ky = jax.random.split(jax.random.key(0))
    >>> x = 1.0 + jax.random.normal(kx, (200_000,))
    >>> y = jax.random.normal(ky, (200_000,))
    >>> critic = lambda t: 0.5 + t
    >>> print(f"{float(variational_bound(critic(x), critic(y), 'kl')):.2f}")
    0.50
    >>> print(f"{float(variational_bound(0.8 * x, 0.8 * y, 'kl')):.2f}")  # worse
    0.29

  References:
    Nowozin, Cseke, Tomioka, `f-GAN: Training Generative Neural Samplers using
    Variational Divergence Minimization <https://arxiv.org/abs/1606.00709>`_,
    2016.

    Nguyen, Wainwright, Jordan, `Estimating divergence functionals and the
    likelihood ratio by convex risk minimization
    <https://arxiv.org/abs/0809.0853>`_, 2010.

    Wang, Wei, Liu, Pang, Liu, Shah, Bao, Liu, Wei, `LLM Unlearning via Loss
    Adjustment with Only Forget Data <https://arxiv.org/abs/2410.11143>`_,
    2024 (FLAT maximises this bound).

    Catalog: seed_003 #26.
  """
  gen = _check_generator(generator)
  vp, vq, axes, mp, mq = _prepare_two(critic_p, critic_q, "critic_p",
                                      "critic_q", axis, where_p, where_q,
                                      "where_p", "where_q")
  tp = gen.output_activation(_fill(vp, mp))
  # f*(g(v)) in closed form: stays finite where g(v) rounds onto the edge of
  # the conjugate's domain (e.g. JS, GAN, Amari for large critic outputs).
  conj_q = gen.conjugate_activation(_fill(vq, mq))
  return _mean(tp, mp, axes) - _mean(conj_q, mq, axes)


def density_ratio_logistic_loss(logit_p: ArrayLike, logit_q: ArrayLike, *,
                                axis: int = -1,
                                where_p: ArrayLike | None = None,
                                where_q: ArrayLike | None = None) -> Array:
  r"""Logistic density-ratio (discriminator) loss; optimum logit = log p/q.

  A classifier :math:`d(x)` (a logit) trained to tell samples of :math:`P`
  (label 1) from samples of :math:`Q` (label 0), with the two classes weighted
  equally,

  .. math::
    L(d) = \frac1N\sum_{i=1}^N \operatorname{softplus}(-d(x_i))
         + \frac1M\sum_{j=1}^M \operatorname{softplus}(d(y_j)),
    \qquad x_i \sim P,\; y_j \sim Q,

  has population minimiser :math:`d^*(x) = \log p(x) - \log q(x)` (pointwise:
  :math:`p\,\sigma(-d) = q\,\sigma(d)`), independently of :math:`N` and
  :math:`M` because each class is averaged separately. The trained logit is
  the :math:`\log r` that :func:`~jaxkit.divergences.pathwise_surrogate`
  (f-distill) and score-function rewards (DiDi-Instruct) need. At the
  optimum :math:`L^* = \log 4 - 2\,\mathrm{JS}(P\|Q)`; in general
  :math:`\log 4 - L` is the f-GAN bound of the ``'gan'`` generator.

  Args:
    logit_p: discriminator logits on samples of :math:`P`, ``[..., N]``.
    logit_q: discriminator logits on samples of :math:`Q`, ``[..., M]``; the
      same leading shape.
    axis: the sample axis of both inputs; default ``-1``.
    where_p: optional mask of valid ``logit_p`` entries (same rank, each
      dimension equal or 1).
    where_q: optional mask of valid ``logit_q`` entries.

  Returns:
    The loss, shape ``[...]``, float32 or wider.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import density_ratio_logistic_loss
    >>> # A chance-level discriminator (logit 0) scores 2 log 2.
    >>> print(f"{float(density_ratio_logistic_loss(jnp.zeros(4), jnp.zeros(3))):.4f}")
    1.3863

  References:
    Goodfellow et al., `Generative Adversarial Networks
    <https://arxiv.org/abs/1406.2661>`_, 2014.

    Sugiyama, Suzuki, Kanamori, `Density Ratio Estimation in Machine
    Learning`, 2012 (probabilistic classification).

    Xu, Nie, Vahdat, `One-step Diffusion Models with f-Divergence Distribution
    Matching <https://arxiv.org/abs/2502.15681>`_, 2025 (log r from a GAN
    discriminator).
  """
  dp, dq, axes, mp, mq = _prepare_two(logit_p, logit_q, "logit_p", "logit_q",
                                      axis, where_p, where_q, "where_p",
                                      "where_q")
  lp = jax.nn.softplus(-_fill(dp, mp))
  lq = jax.nn.softplus(_fill(dq, mq))
  return _mean(lp, mp, axes) + _mean(lq, mq, axes)
