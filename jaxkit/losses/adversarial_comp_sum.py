r"""Smooth adversarial comp-sum losses (Mao, Mohri and Zhong, 2023).

The comp-sum family :math:`\Phi^\tau` (:func:`jaxkit.losses.comp_sum_loss`)
gets an adversarial counterpart by adding a smooth term that measures how
much an input perturbation :math:`x'` (within :math:`\|x - x'\|_p \le
\gamma`) moves the score margins relative to the label:

.. math::
  \tilde\ell^{\,\tau}(h, x, y) = \Phi^\tau\Big(\sum_{y' \ne y}
    e^{h(x,y') - h(x,y)}\Big)
  + \nu \sup_{\|x - x'\|_p \le \gamma}
    \big\lVert \bar\Delta_h(x', y) - \bar\Delta_h(x, y) \big\rVert_2,
  \qquad
  \bar\Delta_h(x, y) = \big(h(x, k) - h(x, y)\big)_{k=1}^{C}.

The paper's algorithm (ADV-COMP-SUM) minimises the mean of this loss plus a
weight penalty, with the supremum approximated by PGD, like TRADES but with
the margin-difference norm in place of TRADES' KL term. The losses here take
the logits at the clean input and at the (already found) perturbed input, so
they stay model-agnostic; :func:`comp_sum_smooth_term` is also the objective
to maximise when searching for :math:`x'`, e.g. with
:func:`jaxkit.losses.pgd_attack`::

  clean = jax.lax.stop_gradient(model(params, x))
  x_adv = pgd_attack(lambda xa: comp_sum_smooth_term(clean, model(params, xa),
                                                     y),
                     x, eps=8/255, step_size=2/255, n_steps=10, key=key)
  loss = smooth_adversarial_comp_sum_loss(model(params, x),
                                          model(params, x_adv), y,
                                          tau=1.0, nu=...)

(use ``key=`` for a random start: the smooth term's gradient vanishes at
:math:`x' = x`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.losses.classification import _at_label
from jaxkit.losses.classification import _prepare
from jaxkit.losses.classification import comp_sum_loss


def comp_sum_smooth_term(logits: ArrayLike, adv_logits: ArrayLike,
                         labels: ArrayLike, *,
                         where: ArrayLike | None = None) -> jax.Array:
  r"""Smooth term of the adversarial comp-sum losses: margin-vector shift.

  .. math::
    \big\lVert \bar\Delta_h(x', y) - \bar\Delta_h(x, y) \big\rVert_2
    = \Big(\sum_{k} \big(\delta_k - \delta_y\big)^2\Big)^{1/2},
    \qquad \delta = h(x') - h(x),

  the Euclidean distance between the label-relative score margins
  :math:`\bar\Delta_h(x, y)_k = h(x,k) - h(x,y)` at the perturbed and the
  clean input. It is invariant to adding a constant to all logits of either
  input, and 0 when :math:`h(x') = h(x)` (where its gradient is taken as 0,
  a subgradient of the norm, instead of ``nan``).

  Args:
    logits: ``[..., C]`` scores :math:`h(x)` at the clean input.
    adv_logits: ``[..., C]`` scores :math:`h(x')` at the perturbed input.
    labels: ``[...]`` integer labels in ``[0, C)``.
    where: optional class mask with the logits' rank (each dimension equal
      to theirs or 1): masked classes are left out of the norm; a row whose
      label class is masked gives 0.

  Returns:
    ``[...]`` per-example distances (float32 or wider).

  Raises:
    ValueError: shapes disagree, labels out of range.
    TypeError: non-floating logits, non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.adversarial_comp_sum import comp_sum_smooth_term
    >>> z = jnp.array([[2.0, 0.0, 0.0]])
    >>> z_adv = jnp.array([[1.0, 1.0, 0.0]])  # margins (0,-2,-2) -> (0,0,-1)
    >>> print(comp_sum_smooth_term(z, z_adv, jnp.array([0])))
    [2.236068]

  References:
    Mao, Mohri, Zhong, `Cross-Entropy Loss Functions: Theoretical Analysis and
    Applications <https://arxiv.org/abs/2304.07288>`_, ICML 2023; Awasthi,
    Mao, Mohri, Zhong, Theoretically Grounded Loss Functions and Algorithms
    for Adversarial Robustness, AISTATS 2023.

    Catalog: seed_003 #30.
  """
  z, labels, mask = _prepare(logits, labels, where)
  za = checks.check_floating(adv_logits, "adv_logits")
  checks.check_same_shape(z, za, "logits", "adv_logits")
  za = za.astype(z.dtype)
  delta = za - z
  if mask is not None:
    delta = jnp.where(mask, delta, 0.0)
  diff = delta - _at_label(delta, labels)[..., None]
  if mask is not None:
    diff = jnp.where(mask, diff, 0.0)
  sq = jnp.sum(jnp.square(diff), axis=-1)
  pos = sq > 0
  out = jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)
  if mask is not None:
    out = jnp.where(_at_label(mask, labels), out, 0.0)
  return out


def smooth_adversarial_comp_sum_loss(logits: ArrayLike, adv_logits: ArrayLike,
                                     labels: ArrayLike, *, tau: float,
                                     nu: float,
                                     where: ArrayLike | None = None
                                     ) -> jax.Array:
  r"""Smooth adversarial comp-sum loss: comp-sum on clean logits + ν · shift.

  .. math::
    \tilde\ell^{\,\tau} = \Phi^\tau\Big(\sum_{k \ne y} e^{h(x,k) - h(x,y)}\Big)
      + \nu\,\big\lVert \bar\Delta_h(x', y) - \bar\Delta_h(x, y)\big\rVert_2,

  with :math:`\Phi^\tau` the comp-sum transform of
  :func:`jaxkit.losses.comp_sum_loss` (:math:`\tau = 1` cross-entropy,
  :math:`\tau = 2` MAE, :math:`\tau = 0` sum-exponential, ...) and the second
  term :func:`comp_sum_smooth_term` evaluated at the perturbed input
  :math:`x'` the caller found by (approximately) maximising it over the
  :math:`\gamma`-ball — the paper's supremum, approximated by PGD in its
  experiments. :math:`\nu = 0`, or :math:`x' = x`, gives the plain comp-sum
  loss.

  Not checked against code (the authors publish none) nor against the full
  paper text (not available to this implementation): the formula follows
  the paper's abstract (comp-sum loss plus "a related smooth term") and its
  definition of that term as :math:`\nu` times the supremum of the
  Euclidean shift of the label-relative margin vector, as recalled from the
  paper. Any margin scaling of the hypothesis is left to the caller (scale
  both logits).

  Args:
    logits: ``[..., C]`` scores at the clean input.
    adv_logits: ``[..., C]`` scores at the perturbed input (gradients flow
      into both).
    labels: ``[...]`` integer labels in ``[0, C)``.
    tau: comp-sum parameter :math:`\tau \ge 0` (may be traced).
    nu: weight :math:`\nu \ge 0` of the smooth term (may be traced).
    where: optional class mask (see :func:`comp_sum_smooth_term`).

  Returns:
    ``[...]`` per-example losses (float32 or wider).

  Raises:
    ValueError: ``tau < 0``, ``nu < 0``, shapes disagree, labels out of
      range.
    TypeError: non-floating logits, non-integer labels.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.adversarial_comp_sum import (
    ...     smooth_adversarial_comp_sum_loss)
    >>> z = jnp.array([[2.0, 0.0, 0.0]])
    >>> z_adv = jnp.array([[1.0, 1.0, 0.0]])
    >>> l = smooth_adversarial_comp_sum_loss(z, z_adv, jnp.array([0]),
    ...                                      tau=1.0, nu=0.5)
    >>> print(jnp.round(l, 4))  # CE 0.2395 + 0.5 * sqrt(5)
    [1.3575]

  References:
    Mao, Mohri, Zhong, `Cross-Entropy Loss Functions: Theoretical Analysis and
    Applications <https://arxiv.org/abs/2304.07288>`_, ICML 2023.

    Catalog: seed_003 #30.
  """
  checks.check_scalar(nu, "nu", nonnegative=True)
  base = comp_sum_loss(logits, labels, tau=tau, where=where)
  smooth = comp_sum_smooth_term(logits, adv_logits, labels, where=where)
  return base + jnp.asarray(nu, smooth.dtype) * smooth
