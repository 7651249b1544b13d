r"""Distilling a preference-aligned teacher into a small student (DCKD, ADPA).

Gao et al. transfer alignment in two stages. DCKD ("dual-constrained" KD)
matches the teacher's token distributions on *both* the chosen and the
rejected response of each preference pair. ADPA then uses the aligned
teacher's token-level advantage — the DPO implicit reward of every
vocabulary item, :math:`\beta(\log\pi_{\text{dpo}} - \log\pi_{\text{ref}})` —
as a dense reward that the student's next-token distribution maximises.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.losses import distillation as _kd


def _token_mean(values, mask):
  """Mean over the token axis (-1) of ``values`` [B, T] over valid tokens."""
  if mask is None:
    return jnp.mean(values, axis=-1)
  m = mask.astype(values.dtype)
  return jnp.sum(values * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)


def _check_rank3(x, name):
  x = checks.check_floating(x, name)
  checks.check_rank(x, 3, name)
  return x


def dckd_loss(student_chosen_logits: ArrayLike,
              teacher_chosen_logits: ArrayLike,
              student_rejected_logits: ArrayLike,
              teacher_rejected_logits: ArrayLike, *,
              chosen_where: ArrayLike | None = None,
              rejected_where: ArrayLike | None = None,
              temperature: float = 1.0, divergence: str = "kl",
              rejected_weight: float = 1.0) -> jax.Array:
  r"""Dual-constrained KD: token-level KD on the chosen *and* rejected answer.

  .. math::
    \ell = \frac{1}{|y_c|}\sum_{t \in y_c}
        \tau^2 D_f\big(p_T(\cdot|s_t)\,\|\,p_S(\cdot|s_t)\big)
      + \lambda\,\frac{1}{|y_r|}\sum_{t \in y_r}
        \tau^2 D_f\big(p_T(\cdot|s_t)\,\|\,p_S(\cdot|s_t)\big),

  with :math:`D_f` = KL by default (the paper's two KL constraints) and
  :math:`\lambda` = ``rejected_weight`` (1 in the paper). The per-token term
  is :func:`jaxkit.losses.kd_loss`; masked tokens count nowhere and a fully
  masked answer contributes 0.

  Args:
    student_chosen_logits: ``[B, T, V]`` student logits on the chosen answers.
    teacher_chosen_logits: ``[B, T, V]`` aligned-teacher logits, same tokens.
    student_rejected_logits: ``[B, T', V]`` student logits, rejected answers.
    teacher_rejected_logits: ``[B, T', V]`` teacher logits, rejected answers.
    chosen_where: optional ``[B, T]`` mask of the chosen answers' tokens.
    rejected_where: optional ``[B, T']`` mask of the rejected answers' tokens.
    temperature: softmax temperature :math:`\tau > 0`.
    divergence: a generator name, as in :func:`jaxkit.losses.kd_loss`.
    rejected_weight: :math:`\lambda \ge 0`.

  Returns:
    ``[B]`` per-pair losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import dckd_loss
    >>> s = jnp.zeros((1, 2, 2))
    >>> t = jnp.log(jnp.array([[[0.9, 0.1], [0.5, 0.5]]]))
    >>> # chosen: mean of KL([.9,.1]||U) = 0.3681 and 0; rejected: same.
    >>> print(jnp.round(dckd_loss(s, t, s, t), 4))
    [0.3681]

  References:
    Gao, Tan, Wang, Zhao, Chen, Wen, `Advantage-Guided Distillation for
    Preference Alignment in Small Language Models
    <https://arxiv.org/abs/2502.17927>`_, ICLR 2025.

    Catalog: seed_000 #32.
  """
  checks.check_scalar(rejected_weight, "rejected_weight", nonnegative=True)
  sc = _check_rank3(student_chosen_logits, "student_chosen_logits")
  sr = _check_rank3(student_rejected_logits, "student_rejected_logits")
  if sc.shape[0] != sr.shape[0]:
    raise ValueError(
        "`student_chosen_logits` and `student_rejected_logits` must have the "
        f"same batch size, got {sc.shape[0]} and {sr.shape[0]}.")
  cm = checks.check_where(chosen_where, sc.shape[:-1], "chosen_where")
  rm = checks.check_where(rejected_where, sr.shape[:-1], "rejected_where")
  kc = _kd.kd_loss(sc, teacher_chosen_logits, temperature=temperature,
                   divergence=divergence, where=cm)
  kr = _kd.kd_loss(sr, teacher_rejected_logits, temperature=temperature,
                   divergence=divergence, where=rm)
  return _token_mean(kc, cm) + rejected_weight * _token_mean(kr, rm)


def adpa_loss(student_logits: ArrayLike, teacher_dpo_logits: ArrayLike,
              teacher_ref_logits: ArrayLike, *, beta: float = 0.1,
              where: ArrayLike | None = None) -> jax.Array:
  r"""ADPA: advantage-guided distillation from a DPO-aligned teacher.

  The DPO teacher's implicit reward of every next token :math:`a` in every
  state :math:`s_t` of a (student-generated or data) response is the
  token-level advantage

  .. math::
    A_t(a) = \beta\big(\log\pi_{\text{dpo}}(a|s_t)
                       - \log\pi_{\text{ref}}(a|s_t)\big),

  and the student maximises its expected advantage under its own
  next-token distribution:

  .. math::
    \ell = -\frac{1}{|y|}\sum_{t \in y} \sum_{a} \pi_S(a|s_t)\,A_t(a).

  The advantages are constants (``stop_gradient``); adding any per-state
  baseline to :math:`A_t` leaves the gradient unchanged because
  :math:`\sum_a \pi_S(a|s_t) = 1`, so the baseline choice of the reference
  code only shifts the reported value. How the states :math:`s_t` are sampled
  (the paper uses the student's own responses) is the caller's choice.

  Args:
    student_logits: ``[B, T, V]`` student logits at the response positions.
    teacher_dpo_logits: ``[B, T, V]`` logits of the DPO-aligned teacher.
    teacher_ref_logits: ``[B, T, V]`` logits of the teacher's reference
      (its SFT model before DPO).
    beta: the teacher's DPO :math:`\beta > 0`.
    where: optional ``[B, T]`` mask of the response tokens; a fully masked
      row gives 0.

  Returns:
    ``[B]`` per-sequence losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import adpa_loss
    >>> dpo = jnp.log(jnp.array([[[0.8, 0.2]]]))
    >>> ref = jnp.log(jnp.array([[[0.5, 0.5]]]))
    >>> s = jnp.log(jnp.array([[[0.6, 0.4]]]))
    >>> # -(0.6 * log 1.6 + 0.4 * log 0.4) with beta = 1
    >>> print(jnp.round(adpa_loss(s, dpo, ref, beta=1.0), 4))
    [0.0845]

  References:
    Gao, Tan, Wang, Zhao, Chen, Wen, `Advantage-Guided Distillation for
    Preference Alignment in Small Language Models
    <https://arxiv.org/abs/2502.17927>`_, ICLR 2025.

    Catalog: seed_000 #32.
  """
  checks.check_scalar(beta, "beta", positive=True)
  s = _check_rank3(student_logits, "student_logits")
  td = _check_rank3(teacher_dpo_logits, "teacher_dpo_logits")
  tr = _check_rank3(teacher_ref_logits, "teacher_ref_logits")
  checks.check_same_shape(s, td, "student_logits", "teacher_dpo_logits")
  checks.check_same_shape(s, tr, "student_logits", "teacher_ref_logits")
  mask = checks.check_where(where, s.shape[:-1], "where")
  dtype = checks.compute_dtype(s, td, tr)
  ls = _kd._tempered_log_softmax(s, mask, 1.0, dtype)  # pylint: disable=protected-access
  ld = _kd._tempered_log_softmax(td, mask, 1.0, dtype)  # pylint: disable=protected-access
  lr = _kd._tempered_log_softmax(tr, mask, 1.0, dtype)  # pylint: disable=protected-access
  adv = jax.lax.stop_gradient(beta * (ld - lr))
  per_token = -jnp.sum(jnp.exp(ls) * adv, axis=-1)
  if mask is not None:
    per_token = jnp.where(mask, per_token, 0.0)
  return _token_mean(per_token, mask)
