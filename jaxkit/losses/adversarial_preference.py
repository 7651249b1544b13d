r"""Adversarial preference training with continuous (embedding-space) attacks.

Xhonneux et al. (2024) make LLM alignment robust by attacking the *token
embeddings* of the prompt instead of its tokens: a few signed-gradient steps
inside a per-token :math:`\ell_2` ball make a harmful completion likely, and
the model is then trained on the perturbed prompt. C-AdvIPO trains with IPO,
the refusal as the chosen and the harmful completion as the rejected answer.

* :func:`embedding_pgd` — the attack: returns the perturbation of the prompt
  embeddings for a user-supplied attack loss (any function of the
  embeddings, e.g. the model's negative log-likelihood of the harmful
  target).
* :func:`c_adv_ipo_loss` — the IPO loss on per-token log-probabilities of the
  chosen / rejected completions (computed by the caller on the perturbed
  prompt), length-averaged as in the authors' code, with their optional floor
  on the rejected tokens. The IPO part is :func:`jaxkit.losses.ipo_loss`.
"""

from __future__ import annotations

import numbers
from typing import Callable

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.losses.preference import ipo_loss

_sg = jax.lax.stop_gradient


def _safe_norm(x):
  """Euclidean norm over the last axis with a finite gradient at 0."""
  sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def embedding_pgd(
    loss_fn: Callable[[jax.Array], jax.Array],
    embeddings: ArrayLike,
    *,
    eps: float,
    step_size: float,
    n_steps: int,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Continuous embedding attack: signed-gradient descent in per-token balls.

  Starting from :math:`\delta^0 = 0`, for :math:`k = 0, \dots, n-1`

  .. math::
    \tilde\delta = \delta^k - \eta\,\operatorname{sign}\nabla_\delta
      L(e + m \odot \delta^k),\qquad
    \delta^{k+1}_t = m_t\,\tilde\delta_t\,
      \min\!\Big(1, \frac{\epsilon}{\|\tilde\delta_t\|_2}\Big),

  where :math:`e` are the ``[..., T, D]`` input embeddings, :math:`m` the
  token mask (the prompt / instruction tokens that may be perturbed),
  :math:`L` = ``loss_fn`` the attack loss to *minimise* (e.g. the model's
  cross-entropy of the harmful target :math:`-\log p(y_{harm}|e + \delta)`,
  summed over the batch if it returns per-example values) and the norm is
  taken per token over the embedding axis. This is the authors'
  ``EmbeddingSpaceAttack`` with ``init_type='instruction'`` and the
  ``'sign'`` optimiser (checked against github.com/sophie-xhonneux/
  Continuous-AdvTrain, ``src/embedding_attack.py``): zero start, a
  sign-SGD step, then rescaling of every token perturbation that left the
  :math:`\epsilon`-ball; the last iterate is returned. The authors express
  :math:`\epsilon` relative to the mean :math:`\ell_2` norm of the rows of the
  embedding matrix — pass ``eps = eps_rel * mean_row_norm`` (their C-AdvIPO
  config: ``eps_rel = 0.05``, ``step_size = 1e-4``, 10 steps).

  Apply the result as ``embeddings + delta``; the same perturbation can be
  added to the chosen completion's prompt (the authors reuse it). The loop is
  a :func:`jax.lax.fori_loop` and jits; the returned perturbation is
  gradient-stopped (the outer training step does not differentiate through
  the attack).

  Args:
    loss_fn: ``embeddings [..., T, D] -> scalar or [...]`` attack loss to
      minimise (values are summed).
    embeddings: ``[..., T, D]`` clean input embeddings (floating).
    eps: radius :math:`\epsilon > 0` of every token's :math:`\ell_2` ball.
    step_size: sign-step size :math:`\eta > 0`.
    n_steps: number of steps (static int >= 0).
    where: optional ``[..., T]`` mask of the tokens that may be perturbed
      (bool / 0-1; dims equal or 1); default all.

  Returns:
    ``[..., T, D]`` perturbation :math:`\delta` (gradient-stopped; zero at
    masked tokens, per-token norm :math:`\le \epsilon`).

  Raises:
    TypeError: non-floating embeddings or a non-int ``n_steps``.
    ValueError: rank < 2, ``eps <= 0``, ``step_size <= 0``, ``n_steps < 0``
      or a badly shaped mask.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import embedding_pgd
    >>> w = jnp.array([1.0, -1.0, 2.0, -2.0])
    >>> e = jnp.zeros((1, 2, 4))                      # [B, T, D]
    >>> delta = embedding_pgd(lambda x: jnp.sum(x * w), e, eps=1.0,
    ...                       step_size=0.2, n_steps=10,
    ...                       where=jnp.array([[True, False]]))
    >>> print(delta[0])  # the prompt token moves against sign(w), norm eps
    [[-0.5  0.5 -0.5  0.5]
     [ 0.   0.   0.   0. ]]

  References:
    Xhonneux, Sordoni, Günnemann, Gidel, Schwinn, `Efficient Adversarial
    Training in LLMs with Continuous Attacks
    <https://arxiv.org/abs/2405.15589>`_, 2024.

    Catalog: seed_000 #44.
  """
  checks.check_scalar(eps, "eps", positive=True)
  checks.check_scalar(step_size, "step_size", positive=True)
  if (isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral)):
    raise TypeError(f"`n_steps` must be a Python int, got {n_steps!r}.")
  if n_steps < 0:
    raise ValueError(f"`n_steps` must be >= 0, got {n_steps}.")
  e = checks.check_floating(embeddings, "embeddings")
  if e.ndim < 2:
    raise ValueError(
        f"`embeddings` must have shape [..., T, D] (rank >= 2), got {e.shape}.")
  mask = checks.check_where(where, e.shape[:-1], "where")
  m = (jnp.ones(e.shape[:-1] + (1,), e.dtype) if mask is None
       else mask[..., None].astype(e.dtype))
  e = _sg(e)

  def total(delta):
    return jnp.sum(loss_fn(e + m * delta))

  grad_fn = jax.grad(total)

  def body(_, delta):
    step = delta - step_size * jnp.sign(grad_fn(delta))
    norm = _safe_norm(step)
    scale = jnp.where(norm > eps, eps / jnp.where(norm > eps, norm, 1.0), 1.0)
    return m * step * scale

  delta = jax.lax.fori_loop(0, n_steps, body, jnp.zeros_like(e))
  return _sg(delta)


def _token_logps(x, name, mask, dtype):
  x = checks.check_floating(x, name)
  checks.check_rank(x, 2, name)
  x = x.astype(dtype)
  if mask is not None:
    x = jnp.where(mask, x, 0.0)  # junk / NaN padding never reaches the loss
  return x


def _mean_tokens(x, mask):
  if mask is None:
    return jnp.mean(x, axis=-1)
  m = mask.astype(x.dtype)
  return jnp.sum(x * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)


def c_adv_ipo_loss(
    policy_chosen_token_logps: ArrayLike,
    policy_rejected_token_logps: ArrayLike,
    ref_chosen_token_logps: ArrayLike,
    ref_rejected_token_logps: ArrayLike,
    *,
    beta: float,
    chosen_where: ArrayLike | None = None,
    rejected_where: ArrayLike | None = None,
    rejected_floor: float | None = None,
) -> jax.Array:
  r"""C-AdvIPO: IPO on a refusal vs a harmful completion of an attacked prompt.

  With per-token log-probabilities of the chosen (refusal) completion
  :math:`y_c` and the rejected (harmful) completion :math:`y_r`, the policy's
  computed on the adversarially perturbed prompt (see
  :func:`embedding_pgd`),

  .. math::
    \bar\pi_c = \frac1{|y_c|}\sum_{t} \log\pi(y_{c,t}|\cdot),\quad
    \bar\pi_r = \frac1{|y_r|}\sum_{t} c\big(\log\pi(y_{r,t}|\cdot)\big),\quad
    c(x) = x\,[x \ge \phi],

  (likewise :math:`\bar\rho_c, \bar\rho_r` for the reference model, without
  the floor :math:`\phi`), the loss is IPO's squared regression of the
  length-averaged log-ratio margin,

  .. math::
    \ell = \Big((\bar\pi_c - \bar\rho_c) - (\bar\pi_r - \bar\rho_r)
      - \frac1{2\beta}\Big)^2,

  computed by :func:`jaxkit.losses.ipo_loss`. Length averaging and the floor
  follow the authors' trainer (checked against github.com/sophie-xhonneux/
  Continuous-AdvTrain, ``src/adversarial_training.py``: ``average_log_prob``
  for IPO; ``lower_cutoff = away_cutoff`` zeroes policy log-probabilities of
  rejected tokens below :math:`\phi`, so tokens that are already unlikely
  stop being pushed down; their config uses :math:`\phi = -5`,
  :math:`\beta = 0.25`). The floor keeps the token in the length
  :math:`|y_r|`. In the authors' code the reference log-probabilities are
  precomputed on the *clean* prompt; pass whichever the recipe uses. The
  utility SFT term and the C-AdvUL losses are not part of this function.

  Args:
    policy_chosen_token_logps: ``[B, Tc]`` policy log-probabilities of the
      chosen (refusal) tokens on the perturbed prompt.
    policy_rejected_token_logps: ``[B, Tr]`` same for the rejected (harmful)
      tokens.
    ref_chosen_token_logps: ``[B, Tc]`` reference log-probabilities, chosen.
    ref_rejected_token_logps: ``[B, Tr]`` reference log-probabilities,
      rejected.
    beta: IPO's :math:`\beta > 0` (may be traced).
    chosen_where: optional ``[B, Tc]`` mask of the chosen completion's
      tokens (padding excluded).
    rejected_where: optional ``[B, Tr]`` mask of the rejected tokens.
    rejected_floor: optional floor :math:`\phi` (e.g. ``-5.0``); ``None``
      (default) disables it.

  Returns:
    ``[B]`` per-pair losses. A fully masked completion averages to 0.

  Raises:
    TypeError: non-floating log-probabilities.
    ValueError: ranks other than 2, mismatched policy / reference shapes or
      batch sizes, ``beta <= 0``, a non-finite floor or a badly shaped mask.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import c_adv_ipo_loss
    >>> pc = jnp.array([[-1.0, -2.0]]); rc = jnp.array([[-2.0, -2.0]])
    >>> pr = jnp.array([[-3.0, -9.0, -3.0]]); rr = jnp.array([[-2.0, -2.0, -2.0]])
    >>> print(c_adv_ipo_loss(pc, pr, rc, rr, beta=0.5))  # (0.5 + 3 - 1)^2
    [6.25]
    >>> print(c_adv_ipo_loss(pc, pr, rc, rr, beta=0.5, rejected_floor=-5.0))
    [0.25]

  References:
    Xhonneux, Sordoni, Günnemann, Gidel, Schwinn, `Efficient Adversarial
    Training in LLMs with Continuous Attacks
    <https://arxiv.org/abs/2405.15589>`_, 2024.

    Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos, `A General
    Theoretical Paradigm to Understand Learning from Human Preferences
    <https://arxiv.org/abs/2310.12036>`_, 2023 (IPO).

    Catalog: seed_000 #44.
  """
  checks.check_scalar(beta, "beta", positive=True)
  if rejected_floor is not None:
    checks.check_scalar(rejected_floor, "rejected_floor")
  names = ("policy_chosen_token_logps", "policy_rejected_token_logps",
           "ref_chosen_token_logps", "ref_rejected_token_logps")
  arrs = [checks.check_floating(a, n) for a, n in zip(
      (policy_chosen_token_logps, policy_rejected_token_logps,
       ref_chosen_token_logps, ref_rejected_token_logps), names)]
  for a, n in zip(arrs, names):
    checks.check_rank(a, 2, n)
  checks.check_same_shape(arrs[0], arrs[2], names[0], names[2])
  checks.check_same_shape(arrs[1], arrs[3], names[1], names[3])
  if arrs[0].shape[0] != arrs[1].shape[0]:
    raise ValueError(
        f"chosen and rejected inputs must have the same batch size, got "
        f"{arrs[0].shape[0]} and {arrs[1].shape[0]}.")
  dtype = checks.compute_dtype(*arrs)
  cm = checks.check_where(chosen_where, arrs[0].shape, "chosen_where")
  rm = checks.check_where(rejected_where, arrs[1].shape, "rejected_where")
  pc = _token_logps(arrs[0], names[0], cm, dtype)
  pr = _token_logps(arrs[1], names[1], rm, dtype)
  rc = _token_logps(arrs[2], names[2], cm, dtype)
  rr = _token_logps(arrs[3], names[3], rm, dtype)
  if rejected_floor is not None:
    pr = jnp.where(pr < rejected_floor, 0.0, pr)
  return ipo_loss(_mean_tokens(pc, cm), _mean_tokens(pr, rm),
                  _mean_tokens(rc, cm), _mean_tokens(rr, rm), beta=beta)
