r"""Distillation from several teachers: ensembles and selector-fused targets.

Both losses distil a student towards a *mixture* of teacher distributions,
built in log space (``logsumexp`` over teachers of :math:`\log w_m + \log
p_m`), and measure the distance with the same divergence machinery as
:func:`jaxkit.losses.kd_loss` (any generator name of
:mod:`jaxkit.divergences`, teacher in the target slot).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.losses import distillation as _kd


def _check_teachers(student_logits, teacher_logits):
  s = checks.check_floating(student_logits, "student_logits")
  t = checks.check_floating(teacher_logits, "teacher_logits")
  if s.ndim < 1:
    raise ValueError(
        f"`student_logits` must have rank >= 1 ([..., V]), got shape {s.shape}.")
  if t.shape[1:] != s.shape:
    raise ValueError(
        "`teacher_logits` must be [M, *student_logits.shape] = "
        f"[M, {', '.join(map(str, s.shape))}], got shape {t.shape}.")
  if t.shape[0] < 1:
    raise ValueError("`teacher_logits` needs at least one teacher (M >= 1).")
  return s, t


def ensemble_log_probs(logits: ArrayLike, *, temperature: float = 1.0,
                       weights: ArrayLike | None = None) -> jax.Array:
  r"""Log-probabilities of an ensemble: the (weighted) mean of member softmaxes.

  .. math::
    \log \bar p(k) = \log \sum_{m=1}^M w_m\,
      \operatorname{softmax}(z_m/\tau)_k, \qquad
    w_m = 1/M \text{ by default},

  computed as a ``logsumexp`` over members of :math:`\log w_m +
  \log\operatorname{softmax}(z_m/\tau)` (no probability is exponentiated).
  This is the ensemble prediction of Kim et al. (probability averaging, not
  logit averaging).

  Args:
    logits: ``[M, ..., V]`` member logits, the member axis first.
    temperature: softmax temperature :math:`\tau > 0`.
    weights: optional ``[M]`` non-negative member weights summing to 1
      (uniform if ``None``).

  Returns:
    ``[..., V]`` log-probabilities (float32 or wider).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import ensemble_log_probs
    >>> z = jnp.log(jnp.array([[0.9, 0.1], [0.5, 0.5]]))  # two members
    >>> print(jnp.round(jnp.exp(ensemble_log_probs(z)), 4))
    [0.7 0.3]

  References:
    Kim, Kotha, Liang, Hashimoto, `Pre-training under infinite compute
    <https://arxiv.org/abs/2509.14786>`_, 2025.

    Catalog: seed_002 #52.
  """
  checks.check_scalar(temperature, "temperature", positive=True)
  z = checks.check_floating(logits, "logits")
  if z.ndim < 2:
    raise ValueError(
        f"`logits` must be [M, ..., V] (rank >= 2), got shape {z.shape}.")
  dtype = checks.compute_dtype(z)
  logp = jax.nn.log_softmax(z.astype(dtype) / temperature, axis=-1)
  m = z.shape[0]
  if weights is None:
    log_w = jnp.full((m,), -jnp.log(jnp.asarray(m, dtype)))
  else:
    w = checks.check_floating(weights, "weights").astype(dtype)
    if w.shape != (m,):
      raise ValueError(f"`weights` must have shape ({m},), got {w.shape}.")
    log_w = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
  log_w = log_w.reshape((m,) + (1,) * (z.ndim - 1))
  return jax.nn.logsumexp(logp + log_w, axis=0)


def ensemble_distill_loss(student_logits: ArrayLike,
                          teacher_logits: ArrayLike, *,
                          temperature: float = 1.0, divergence: str = "kl",
                          alpha: float | None = None,
                          where: ArrayLike | None = None) -> jax.Array:
  r"""Distillation of an ensemble of teachers into one student.

  The target is the ensemble's averaged distribution
  (:func:`ensemble_log_probs` at temperature :math:`\tau`); the loss is
  :math:`\tau^2 D_f(\bar p_T \| p_S)` per example / token, as
  :func:`jaxkit.losses.kd_loss` (the same ``divergence`` names). With one
  teacher it equals ``kd_loss``.

  Args:
    student_logits: ``[..., V]`` student logits.
    teacher_logits: ``[M, ..., V]`` logits of the M ensemble members (wrap in
      :func:`jax.lax.stop_gradient` for frozen teachers).
    temperature: softmax temperature :math:`\tau > 0`.
    divergence: a generator name (``'kl'``, ``'reverse_kl'``, ``'js'``, ...).
    alpha: the α of ``'amari_alpha'``.
    where: optional ``[...]`` mask of the examples / tokens that count.

  Returns:
    ``[...]`` per-example losses; 0 where masked.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import ensemble_distill_loss
    >>> s = jnp.zeros((1, 2))                              # uniform student
    >>> t = jnp.log(jnp.array([[[0.9, 0.1]], [[0.5, 0.5]]]))
    >>> # KL([0.7, 0.3] || [0.5, 0.5])
    >>> print(jnp.round(ensemble_distill_loss(s, t), 4))
    [0.0823]

  References:
    Kim, Kotha, Liang, Hashimoto, `Pre-training under infinite compute
    <https://arxiv.org/abs/2509.14786>`_, 2025 (ensemble → student
    distillation).

    Hinton, Vinyals, Dean, `Distilling the Knowledge in a Neural Network
    <https://arxiv.org/abs/1503.02531>`_, 2015.

    Catalog: seed_002 #52.
  """
  checks.check_scalar(temperature, "temperature", positive=True)
  s, t = _check_teachers(student_logits, teacher_logits)
  div_fn = _kd._divergence_fn(divergence, alpha)  # pylint: disable=protected-access
  mask = checks.check_where(where, s.shape[:-1], "where")
  dtype = checks.compute_dtype(s, t)
  if mask is not None:
    t = jnp.where(mask[None, ..., None], t, 0.0)
  lt = ensemble_log_probs(t, temperature=temperature)
  ls = _kd._tempered_log_softmax(s, mask, temperature, dtype)  # pylint: disable=protected-access
  d = div_fn(lt, ls, None if mask is None else mask[..., None])
  return jnp.square(jnp.asarray(temperature, dtype)) * d


def multi_teacher_kd_loss(student_logits: ArrayLike,
                          teacher_logits: ArrayLike,
                          selector_scores: ArrayLike, *, top_k: int,
                          temperature: float = 1.0, divergence: str = "kl",
                          alpha: float | None = None,
                          where: ArrayLike | None = None) -> jax.Array:
  r"""Knowledge aggregation from several teachers through a top-k selector.

  A selector scores the :math:`M` teachers per example; the ``top_k`` best
  are fused with softmax weights over their scores, and the student is
  distilled towards the fused distribution:

  .. math::
    w = \operatorname{softmax}_{m \in \mathrm{top}_k(s)}(s_m), \qquad
    \bar p = \sum_{m \in \mathrm{top}_k(s)} w_m\,
      \operatorname{softmax}(z_m/\tau), \qquad
    \ell = \tau^2\, D_f(\bar p \,\|\, p_S).

  Gradients flow into the selector scores through :math:`w` (the selector is
  trained with the student, as in the paper); the top-k choice itself is not
  differentiable. The paper's selector feedback (anti-collapse) term is not
  part of this loss.

  Args:
    student_logits: ``[..., V]`` student logits.
    teacher_logits: ``[M, ..., V]`` teacher logits, teacher axis first.
    selector_scores: ``[..., M]`` selector scores per example and teacher.
    top_k: number of teachers fused per example, ``1 <= top_k <= M`` (static).
    temperature: softmax temperature :math:`\tau > 0` of the teachers and the
      student.
    divergence: a generator name, as in :func:`jaxkit.losses.kd_loss`.
    alpha: the α of ``'amari_alpha'``.
    where: optional ``[...]`` mask of the examples / tokens that count.

  Returns:
    ``[...]`` per-example losses; 0 where masked.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import multi_teacher_kd_loss
    >>> s = jnp.zeros((1, 2))
    >>> t = jnp.log(jnp.array([[[0.9, 0.1]], [[0.5, 0.5]], [[0.2, 0.8]]]))
    >>> scores = jnp.array([[0.0, 0.0, -5.0]])   # keeps teachers 0 and 1
    >>> print(jnp.round(multi_teacher_kd_loss(s, t, scores, top_k=2), 4))
    [0.0823]

  References:
    Kong, Zhang, Yang, Liu, Xu, Chen, Wang, `Flexible and Efficient Knowledge
    Aggregation of Multiple LLMs` (LLM_Integration), 2025.

    Catalog: seed_000 #25.
  """
  checks.check_scalar(temperature, "temperature", positive=True)
  s, t = _check_teachers(student_logits, teacher_logits)
  m = t.shape[0]
  g = checks.check_floating(selector_scores, "selector_scores")
  if g.shape != s.shape[:-1] + (m,):
    raise ValueError(
        f"`selector_scores` must have shape {s.shape[:-1] + (m,)} ([..., M]),"
        f" got {g.shape}.")
  if isinstance(top_k, bool) or not isinstance(top_k, int) or not (
      1 <= top_k <= m):
    raise ValueError(f"`top_k` must be an int in [1, {m}], got {top_k!r}.")
  div_fn = _kd._divergence_fn(divergence, alpha)  # pylint: disable=protected-access
  mask = checks.check_where(where, s.shape[:-1], "where")
  dtype = checks.compute_dtype(s, t, g)
  g = g.astype(dtype)
  if mask is not None:
    t = jnp.where(mask[None, ..., None], t, 0.0)
    g = jnp.where(mask[..., None], g, 0.0)
  _, idx = jax.lax.top_k(jax.lax.stop_gradient(g), top_k)
  keep = jnp.any(idx[..., None, :] == jnp.arange(m)[:, None], axis=-1)
  log_w = jax.nn.log_softmax(jnp.where(keep, g, -jnp.inf), axis=-1)
  log_w = jnp.where(keep, log_w, -jnp.inf)               # [..., M]
  logp_t = jax.nn.log_softmax(t.astype(dtype) / temperature, axis=-1)
  log_w_first = jnp.moveaxis(log_w, -1, 0)[..., None]    # [M, ..., 1]
  lt = jax.nn.logsumexp(
      jnp.where(jnp.isfinite(log_w_first), logp_t + log_w_first, -jnp.inf),
      axis=0)
  ls = _kd._tempered_log_softmax(s, mask, temperature, dtype)  # pylint: disable=protected-access
  d = div_fn(lt, ls, None if mask is None else mask[..., None])
  return jnp.square(jnp.asarray(temperature, dtype)) * d
