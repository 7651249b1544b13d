r"""RL-style alignment losses, as thin compositions of :mod:`jaxkit.divergences`.

Every loss here is "a divergence times an estimator" (design notes of seed
page 003, §2.5): the divergence is a generator from
:mod:`jaxkit.divergences.generators`, the estimator one of
:mod:`jaxkit.divergences.sampled` / :mod:`jaxkit.divergences.gradients`.
Nothing re-derives KL privately. The convention is the library's: target
first, :math:`D_f(P\|Q)` with :math:`P` the target and :math:`Q` the model;
papers that put the model first are used through the Csiszár dual.

* :func:`fdpg_pseudo_reward` and :func:`fdpg_loss` — f-DPG (Go et al. 2023):
  the score-function surrogate whose gradient is an unbiased estimate of
  :math:`\nabla_\theta D_f(p\|\pi_\theta)` for an unnormalised target
  :math:`\tilde P = Z p` (:func:`~jaxkit.divergences.score_function_surrogate`).
* :func:`dph_rl_penalty` — DPH-RL (Li et al. 2025): the mass-covering penalty
  :math:`D_f(\pi_0\|\pi_\theta)` from offline samples of the initial policy
  (:func:`~jaxkit.divergences.mc_under_p`).
* :func:`d2o_loss` — D2O (Duan et al. 2024): distributional dispreference
  optimisation from self-generated samples and human negatives.
* :func:`kl_k3` — the k3 estimator of :math:`\mathrm{KL}(\pi_\theta\|
  \pi_{\text{ref}})` that GRPO-style RL penalties use (APO, DPH-RL's
  baseline).
* :func:`group_normalize` — grouped reward normalisation (GRPO,
  DiDi-Instruct).
* :func:`flat_loss` — FLAT (Wang et al. 2024): unlearning from forget data
  only, by maximising the f-GAN bound between template and forget responses
  (:func:`~jaxkit.divergences.variational_bound`).

Inputs are sequence log-probabilities (sums of token log-probabilities) of
samples. bf16 inputs are computed in float32; masked samples never contribute
and never produce ``nan`` values or gradients.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.reductions import masked_mean
from jaxkit._src.typing import Array, ArrayLike, Axis
from jaxkit.divergences.generators import FGenerator
from jaxkit.divergences.generators import get_generator
from jaxkit.divergences.gradients import score_function_surrogate
from jaxkit.divergences.sampled import mc_under_p
from jaxkit.divergences.variational import variational_bound

__all__ = ["fdpg_pseudo_reward", "fdpg_loss", "dph_rl_penalty", "d2o_loss",
           "kl_k3", "group_normalize", "flat_loss"]

_sg = jax.lax.stop_gradient

# Names accepted in addition to the generator names of jaxkit.divergences.
_ALIASES = {"forward_kl": "kl"}


def _generator(divergence, alpha) -> FGenerator:
  """Resolves ``divergence`` (+ ``alpha``) to a generator; errors name it."""
  if isinstance(divergence, FGenerator):
    if alpha is not None:
      raise ValueError(
          "`alpha` must be None when `divergence` is an FGenerator (it "
          f"carries its own alpha), got alpha={alpha!r}.")
    return divergence
  if not isinstance(divergence, str):
    raise TypeError(
        "`divergence` must be a generator name or an FGenerator, got "
        f"{type(divergence).__name__}.")
  name = _ALIASES.get(divergence, divergence)
  try:
    if alpha is None:
      return get_generator(name)
    return get_generator(name, alpha=alpha)
  except ValueError as e:
    raise ValueError(f"`divergence`: {e}") from None


def _check_log_z(log_z, shape) -> Array:
  """A scalar, or an array of the inputs' rank with dims equal or 1."""
  if isinstance(log_z, bool) or (hasattr(log_z, "dtype")
                                 and jnp.asarray(log_z).dtype == bool):
    raise TypeError("`log_z` must be a number or a floating array, got a bool.")
  if isinstance(log_z, numbers.Number):
    checks.check_scalar(log_z, "log_z")
    return jnp.asarray(log_z, jnp.float32)
  z = checks.check_floating(log_z, "log_z")
  if z.ndim != 0 and (z.ndim != len(shape) or any(
      d not in (1, s) for d, s in zip(z.shape, shape))):
    raise ValueError(
        "`log_z` must be a scalar or have the rank of the log-probabilities "
        f"with each dimension equal or 1; got shape {z.shape} for inputs of "
        f"shape {shape}. For a per-row estimate add the sample axis, e.g. "
        "`log_z[..., None]`.")
  return z


def _check_floor(log_r_floor):
  if log_r_floor is None:
    return None
  if isinstance(log_r_floor, bool):
    raise TypeError(f"`log_r_floor` must be a number, got {log_r_floor!r}.")
  checks.check_scalar(log_r_floor, "log_r_floor")
  return log_r_floor


def _fdpg_log_r(log_target_unnorm, log_policy, log_z, log_r_floor, where):
  """Checked, stop-gradient :math:`\\log r` (float32+), mask and dtype."""
  lt = checks.check_floating(log_target_unnorm, "log_target_unnorm")
  lpi = checks.check_floating(log_policy, "log_policy")
  checks.check_same_shape(lt, lpi, "log_target_unnorm", "log_policy")
  if lt.ndim == 0:
    raise ValueError(
        "`log_target_unnorm` must have at least one (sample) axis, got a "
        "scalar (shape ()).")
  z = _check_log_z(log_z, lt.shape)
  floor = _check_floor(log_r_floor)
  mask = checks.check_where(where, lt.shape, "where")
  dtype = jnp.promote_types(checks.compute_dtype(lt, lpi),
                            checks.compute_dtype(z))
  lt, lpi, z = lt.astype(dtype), lpi.astype(dtype), z.astype(dtype)
  if mask is not None:  # first `where` of two: masked entries are harmless.
    lt, lpi = jnp.where(mask, lt, 0.0), jnp.where(mask, lpi, 0.0)
  log_r = _sg(lt - z - lpi)
  if floor is not None:
    log_r = jnp.maximum(log_r, floor)
  return log_r, mask, dtype


def fdpg_pseudo_reward(log_target_unnorm: ArrayLike, log_policy: ArrayLike, *,
                       log_z: ArrayLike, divergence: str | FGenerator,
                       alpha: float | None = None,
                       log_r_floor: float | None = None,
                       where: ArrayLike | None = None) -> Array:
  r"""f-DPG pseudo-reward :math:`R_f = f^*(f'(r))` of sampled sequences.

  For a target :math:`p = \tilde P / Z` known up to its normaliser (e.g.
  :math:`\tilde P = a(x)\,b(x)` with a hard constraint :math:`b`, or
  :math:`a(x)\exp(R(x)/\beta)` for RLHF with a KL penalty) and a policy
  :math:`\pi_\theta`, the gradient of :math:`D_f(p\|\pi_\theta)` is a policy
  gradient with this per-sample reward:

  .. math::
    \log r = \log\tilde P(x) - \log Z - \log\pi_\theta(x), \qquad
    R_f(x) = f^*(f'(r)) = r f'(r) - f(r),

  :math:`\nabla_\theta D_f(p\|\pi_\theta) = -\mathbb{E}_{\pi_\theta}[R_f\,
  \nabla_\theta\log\pi_\theta]`. Forward KL gives :math:`R = r` (the DPG
  reward), reverse KL :math:`\log r - 1` (RL with a KL penalty), JS
  :math:`\tfrac12\log\tfrac{1+r}2`, TV :math:`\tfrac12\operatorname{sign}(r
  - 1)`. The value comes from the generator's
  :meth:`~jaxkit.divergences.FGenerator.pseudo_reward`. The paper writes the
  model first, :math:`D_g(\pi_\theta\|p)`; here it is :math:`D_f(p\|
  \pi_\theta)` with :math:`f = g^\diamond`
  (:func:`~jaxkit.divergences.csiszar_dual`), so e.g. the paper's "KL" (
  :math:`\mathrm{KL}(\pi\|p)`) is ``divergence='reverse_kl'`` here.

  Hard constraints (:math:`\tilde P(x) = 0`, ``log_target_unnorm = -inf``)
  give :math:`\log r = -\infty`: the reward is then finite for forward KL,
  JS and TV, but :math:`-\infty` for reverse KL (and other zero-forcing
  generators). ``log_r_floor`` clips :math:`\log r` from below before the
  reward is formed, as f-DPG does; this biases the gradient towards the
  divergence to a floored target (an approximation, not the exact gradient).
  No gradient flows through the reward.

  Args:
    log_target_unnorm: :math:`\log\tilde P(x_i)`, ``[..., N]`` (may be
      ``-inf``).
    log_policy: :math:`\log\pi_\theta(x_i)`, the normalised sequence
      log-probabilities, same shape.
    log_z: :math:`\log Z`, a scalar or an array of the inputs' rank with each
      dimension equal or 1 (e.g. from
      :func:`~jaxkit.divergences.log_partition_estimate`).
    divergence: a generator name (``'kl'``/``'forward_kl'``, ``'reverse_kl'``,
      ``'js'``, ``'tv'``, … any of :data:`~jaxkit.divergences.GENERATOR_NAMES`)
      or an :class:`~jaxkit.divergences.FGenerator`.
    alpha: the order for ``divergence='amari_alpha'``; ``None`` otherwise.
    log_r_floor: optional lower clip of :math:`\log r` (see above).
    where: optional boolean mask of valid samples (same rank, dims equal or
      1); masked entries give 0.

  Returns:
    The pseudo-rewards, shape ``[..., N]``, float32 or wider.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import fdpg_pseudo_reward
    >>> log_pt = jnp.log(jnp.array([3.0, 1.0]))   # unnormalised target, Z = 4
    >>> log_pi = jnp.log(jnp.array([0.5, 0.5]))
    >>> r = fdpg_pseudo_reward(log_pt, log_pi, log_z=jnp.log(4.0),
    ...                        divergence='kl')   # r = p / pi
    >>> print(" ".join(f"{float(v):.4f}" for v in r))
    1.5000 0.5000
    >>> r = fdpg_pseudo_reward(log_pt, log_pi, log_z=jnp.log(4.0),
    ...                        divergence='tv')
    >>> print(" ".join(f"{float(v):.4f}" for v in r))
    0.5000 -0.5000

  References:
    Go, Korbak, Kruszewski, Rozen, Ryu, Dymetman, `Aligning Language Models
    with Preferences through f-divergence Minimization
    <https://arxiv.org/abs/2302.08215>`_, 2023.

    Catalog: seed_003 #1.
  """
  gen = _generator(divergence, alpha)
  log_r, mask, _ = _fdpg_log_r(log_target_unnorm, log_policy, log_z,
                               log_r_floor, where)
  reward = gen.pseudo_reward(log_r)
  if mask is not None:
    reward = jnp.where(mask, reward, 0.0)
  return reward


def fdpg_loss(log_policy: ArrayLike, log_target_unnorm: ArrayLike, *,
              log_z: ArrayLike, divergence: str | FGenerator = "js",
              alpha: float | None = None,
              log_proposal: ArrayLike | None = None,
              baseline: ArrayLike = 0.0, where: ArrayLike | None = None,
              log_r_floor: float | None = None, axis: Axis = -1) -> Array:
  r"""f-DPG surrogate loss: its gradient estimates :math:`\nabla_\theta D_f(p\|\pi_\theta)`.

  A thin wrapper over :func:`~jaxkit.divergences.score_function_surrogate`
  with the target normalised by ``log_z``:

  .. math::
    L(\theta) = -\frac1N\sum_{i=1}^N \operatorname{sg}\!\big[w_i\,
      (R_f(x_i) - b_i)\big]\,\log\pi_\theta(x_i), \qquad
    w_i = \frac{\pi_\theta(x_i)}{q(x_i)},

  with :math:`R_f` the pseudo-reward of :func:`fdpg_pseudo_reward`
  (:math:`\log r = \log\tilde P - \log Z - \log\pi_\theta`, stop-gradient),
  :math:`w \equiv 1` on-policy (``log_proposal=None``) and :math:`q` the
  proposal otherwise (off-policy f-DPG; the weights are not self-normalised).
  With exact :math:`\log Z`, samples from :math:`\pi_\theta` (or from
  :math:`q`) and a baseline independent of the sample it multiplies,
  :math:`\mathbb{E}[\nabla_\theta L] = \nabla_\theta D_f(p\|\pi_\theta)`
  exactly. With an estimated :math:`\log Z` (f-DPG uses a running
  importance-sampled estimate, :func:`~jaxkit.divergences.log_partition_estimate`)
  the estimate is consistent, not unbiased; ``log_r_floor`` (see
  :func:`fdpg_pseudo_reward`) also trades bias for finiteness. The value of
  the surrogate is not the divergence — differentiate it.

  The default ``divergence='js'`` is the paper's recommended trade-off between
  alignment and diversity (JS is self-dual, so the paper's and this library's
  argument orders agree). ``'reverse_kl'`` is RLHF with a KL penalty (the
  paper's "KL", :math:`\mathrm{KL}(\pi\|p)`), ``'kl'`` is DPG.

  Args:
    log_policy: :math:`\log\pi_\theta(x_i)` of the samples, differentiable,
      normalised (e.g. summed token log-probabilities), ``[..., N]``.
    log_target_unnorm: :math:`\log\tilde P(x_i)`, same shape (may be
      ``-inf``); no gradient flows into it.
    log_z: :math:`\log Z`, a scalar or an array of the inputs' rank with each
      dimension equal or 1; no gradient flows into it.
    divergence: a generator name or an :class:`~jaxkit.divergences.FGenerator`
      (see :func:`fdpg_pseudo_reward`).
    alpha: the order for ``divergence='amari_alpha'``.
    log_proposal: log-probabilities of the proposal the samples were drawn
      from (same shape), or ``None`` for on-policy samples.
    baseline: a scalar or per-sample array (same rank, dims equal or 1), e.g.
      a batch mean of the pseudo-rewards computed by the caller.
    where: optional boolean mask of valid samples (same rank, dims equal or
      1).
    log_r_floor: optional lower clip of :math:`\log r`.
    axis: the sample axis (or axes) averaged over (masked mean); default
      ``-1``.

  Returns:
    The surrogate, shape of ``log_policy`` with ``axis`` removed (``[...]``),
    float32 or wider; fully masked rows give 0.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.losses import fdpg_loss
    >>> log_pt = jnp.log(jnp.array([4.0, 3.0, 2.0, 1.0]))  # Z = 10
    >>> logits = jnp.zeros(4)                               # the policy
    >>> x = jax.random.categorical(jax.random.key(0), logits, shape=(100_000,))
    >>> def loss(logits):
    ...   log_pi = jax.nn.log_softmax(logits)[x]
    ...   return fdpg_loss(log_pi, log_pt[x], log_z=jnp.log(10.0),
    ...                    divergence='kl')
    >>> g = jax.grad(loss)(logits)
    >>> # Exact gradient of KL(p || softmax(logits)) is softmax(logits) - p.
    >>> print(" ".join(f"{float(v):.2f}" for v in g))
    -0.15 -0.05 0.05 0.15

  References:
    Go, Korbak, Kruszewski, Rozen, Ryu, Dymetman, `Aligning Language Models
    with Preferences through f-divergence Minimization
    <https://arxiv.org/abs/2302.08215>`_, 2023.

    Catalog: seed_003 #1.
  """
  gen = _generator(divergence, alpha)
  lpi = checks.check_floating(log_policy, "log_policy")
  log_r, mask, dtype = _fdpg_log_r(log_target_unnorm, lpi, log_z, log_r_floor,
                                   where)
  # score_function_surrogate forms log r = log_p - sg(log_q); hand it the
  # (normalised, possibly floored) log r through log_p. Without a floor this
  # is exactly log_target_unnorm - log_z.
  lq = lpi.astype(dtype)
  if log_r_floor is None:
    log_p = jnp.asarray(log_target_unnorm).astype(dtype) - _sg(
        _check_log_z(log_z, lq.shape).astype(dtype))
  else:
    lq_safe = lq if mask is None else jnp.where(mask, lq, 0.0)
    log_p = _sg(lq_safe) + log_r
  return score_function_surrogate(lq, _sg(log_p), gen,
                                  log_proposal=log_proposal,
                                  baseline=baseline, axis=axis, where=where)


def dph_rl_penalty(policy_logps: ArrayLike, ref_logps: ArrayLike, *,
                   divergence: str | FGenerator = "kl",
                   alpha: float | None = None, where: ArrayLike | None = None,
                   axis: Axis = -1) -> Array:
  r"""DPH-RL mass-covering penalty :math:`D_f(\pi_0\|\pi_\theta)` from offline samples.

  DPH-RL replaces RLVR's reverse-KL penalty :math:`\mathrm{KL}(\pi_\theta\|
  \pi_{\mathrm{ref}})` (mode-seeking, it lets the policy collapse) by a
  mass-covering divergence from the *initial* policy :math:`\pi_0`, estimated
  on samples :math:`y_i \sim \pi_0` generated once, offline, with their
  log-probabilities stored (:func:`~jaxkit.divergences.mc_under_p` with
  :math:`P = \pi_0`, :math:`Q = \pi_\theta`):

  .. math::
    \hat D_f(\pi_0\|\pi_\theta) = \frac1N\sum_{i=1}^N
      \frac{f(r_i)}{r_i}, \qquad
    \log r_i = \log\pi_0(y_i) - \log\pi_\theta(y_i), \quad y_i\sim\pi_0.

  Forward KL gives :math:`\tfrac1N\sum_i \log\pi_0 - \log\pi_\theta` (SFT on
  :math:`\pi_0`'s own samples, "rehearsal"); JS gives
  :math:`\tfrac1N\sum_i\tfrac12[\log r_i - (1 + e^{-\log r_i})(\operatorname{
  softplus}(\log r_i) - \log 2)]`, evaluated through the Csiszár dual so
  sequence-level :math:`|\log r|` beyond 88 does not overflow in float32.
  Because the samples come from the fixed :math:`\pi_0`, the autodiff
  gradient w.r.t. ``policy_logps`` is an unbiased estimate of
  :math:`\nabla_\theta D_f(\pi_0\|\pi_\theta)`; no online reference model and
  no samples of :math:`\pi_\theta` are needed. The full DPH-RL objective (an
  RL loss such as GRPO on "exploration" prompts plus :math:`\beta` times this
  penalty on "near-perfect" prompts) is the caller's to assemble. The paper
  uses forward KL and JS; any generator is accepted. This penalty is
  sequence-level (one log-probability per sample); for a token-level variant
  pass per-token log-probabilities with the token axis as ``axis`` and a
  padding mask.

  Args:
    policy_logps: :math:`\log\pi_\theta(y_i)` of the offline samples,
      differentiable, ``[..., N]``.
    ref_logps: stored :math:`\log\pi_0(y_i)`, same shape (no gradient is
      needed through it).
    divergence: ``'kl'`` (forward KL, alias ``'forward_kl'``; default),
      ``'js'``, or any other generator name / :class:`~jaxkit.divergences.FGenerator`.
    alpha: the order for ``divergence='amari_alpha'``.
    where: optional boolean mask of valid samples (same rank, dims equal or
      1).
    axis: the sample axis (or axes) averaged over; default ``-1``.

  Returns:
    The penalty, shape of the inputs with ``axis`` removed, float32 or wider;
    fully masked rows give 0.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.losses import dph_rl_penalty
    >>> log_p0 = jnp.log(jnp.array([0.5, 0.3, 0.2]))        # initial policy
    >>> log_pt = jnp.log(jnp.array([0.8, 0.1, 0.1]))        # current policy
    >>> y = jax.random.categorical(jax.random.key(0), log_p0, shape=(200_000,))
    >>> v = dph_rl_penalty(log_pt[y], log_p0[y], divergence='kl')
    >>> exact = jnp.sum(jnp.exp(log_p0) * (log_p0 - log_pt))
    >>> print(f"{float(v):.3f} {float(exact):.3f}")
    0.233 0.233

  References:
    Li, Zhou, Hao, Liu, Miao, Pang, Tan, Chu, Wang, Pan, Qu, Qi, `The Choice
    of Divergence: A Neglected Key to Mitigating Diversity Collapse in
    Reinforcement Learning with Verifiable Reward
    <https://arxiv.org/abs/2509.07430>`_, 2025 (DPH-RL).

    Catalog: seed_003 #25.
  """
  gen = _generator(divergence, alpha)
  lq = checks.check_floating(policy_logps, "policy_logps")
  lp = checks.check_floating(ref_logps, "ref_logps")
  checks.check_same_shape(lq, lp, "policy_logps", "ref_logps")
  try:
    return mc_under_p(lp, lq, gen, axis=axis, where=where)
  except (ValueError, TypeError) as e:
    # mc_under_p names its own arguments (log_p / log_q); say which is which.
    raise type(e)(f"{e} (log_p = ref_logps, log_q = policy_logps)") from None


def d2o_loss(policy_sample_logps: ArrayLike, ref_sample_logps: ArrayLike,
             policy_negative_logps: ArrayLike, ref_negative_logps: ArrayLike,
             *, beta: float, alpha: float,
             where: ArrayLike | None = None) -> Array:
  r"""D2O: distributional dispreference optimisation (negatives only).

  Alignment from human-annotated *negative* responses :math:`y_l` alone: the
  policy's log-ratio on :math:`K` self-generated responses :math:`y_i` is
  pushed above its log-ratio on the negative,

  .. math::
    \ell = -\log\sigma\!\Big(\frac{\beta}{K}\sum_{i=1}^K
      \log\frac{\pi_\theta(y_i|x)}{\pi_r^-(y_i|x)}
      - \alpha\,\log\frac{\pi_\theta(y_l|x)}{\pi_r^+(y_l|x)}\Big),

  computed as :math:`\operatorname{softplus}(-z)`, finite for any finite
  log-ratios. :math:`\pi_r^-` (the reference for the self-generated samples)
  and :math:`\pi_r^+` (the reference for the negative) are the paper's two
  reference policies; which checkpoint plays which role is the caller's
  choice (simplest: both the SFT model). The formula is taken as stated in
  the jaxkit paper catalog (seed_000 #28 / seed_003 #15, matching a
  third-party implementation's README; the official code was not
  consulted); ``beta`` and ``alpha`` have no defaults because the catalog
  pins none. With ``where`` the :math:`\tfrac1K\sum_i` is a masked mean over
  the valid samples (a fully masked row has sample term 0). The paper's
  analysis shows an implicit Jeffreys-divergence regulariser; it is not
  computed here.

  Args:
    policy_sample_logps: :math:`\log\pi_\theta(y_i|x)` of the :math:`K`
      self-generated responses, ``[B, K]``.
    ref_sample_logps: :math:`\log\pi_r^-(y_i|x)`, ``[B, K]``.
    policy_negative_logps: :math:`\log\pi_\theta(y_l|x)`, ``[B]``.
    ref_negative_logps: :math:`\log\pi_r^+(y_l|x)`, ``[B]``.
    beta: weight of the samples' mean log-ratio.
    alpha: weight of the negative's log-ratio.
    where: optional boolean mask of valid samples, ``[B, K]`` (dims equal or
      1).

  Returns:
    The per-prompt loss, ``[B]``, float32 or wider.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import d2o_loss
    >>> pol_s = jnp.array([[-3.0, -4.0]]); ref_s = jnp.array([[-3.5, -4.5]])
    >>> pol_n = jnp.array([-5.0]); ref_n = jnp.array([-4.0])
    >>> l = d2o_loss(pol_s, ref_s, pol_n, ref_n, beta=1.0, alpha=1.0)
    >>> print(f"{float(l[0]):.4f}")  # -log sigmoid(0.5 + 1.0)
    0.2014

  References:
    Duan, Yi, Zhang, Lu, Xie, Gu, `Negating Negatives: Alignment with Human
    Negative Samples via Distributional Dispreference Optimization
    <https://arxiv.org/abs/2403.03419>`_, 2024 (D2O).

    Catalog: seed_000 #28, seed_003 #15.
  """
  ps = checks.check_floating(policy_sample_logps, "policy_sample_logps")
  rs = checks.check_floating(ref_sample_logps, "ref_sample_logps")
  pn = checks.check_floating(policy_negative_logps, "policy_negative_logps")
  rn = checks.check_floating(ref_negative_logps, "ref_negative_logps")
  checks.check_rank(ps, 2, "policy_sample_logps")
  checks.check_same_shape(ps, rs, "policy_sample_logps", "ref_sample_logps")
  checks.check_rank(pn, 1, "policy_negative_logps")
  checks.check_same_shape(pn, rn, "policy_negative_logps",
                          "ref_negative_logps")
  if pn.shape[0] != ps.shape[0]:
    raise ValueError(
        "`policy_negative_logps` must have shape [B] with B = "
        f"policy_sample_logps.shape[0] = {ps.shape[0]}, got {pn.shape}.")
  for name, v in (("beta", beta), ("alpha", alpha)):
    if isinstance(v, bool):
      raise TypeError(f"`{name}` must be a number, got {v!r}.")
    checks.check_scalar(v, name)
  mask = checks.check_where(where, ps.shape, "where")
  dtype = checks.compute_dtype(ps, rs, pn, rn)
  lr_s = ps.astype(dtype) - rs.astype(dtype)
  if mask is not None:
    lr_s = jnp.where(mask, lr_s, 0.0)
  mean_s = masked_mean(lr_s, where=mask, axis=-1)
  lr_n = pn.astype(dtype) - rn.astype(dtype)
  z = beta * mean_s - alpha * lr_n
  return jax.nn.softplus(-z)


def kl_k3(policy_logps: ArrayLike, ref_logps: ArrayLike, *,
          where: ArrayLike | None = None) -> Array:
  r"""Per-token k3 estimate of :math:`\mathrm{KL}(\pi_\theta\|\pi_{\text{ref}})`.

  On tokens sampled from the policy, with :math:`\delta = \log\pi_{\text{ref}}
  - \log\pi_\theta`,

  .. math::
    k_3 = e^{\delta} - \delta - 1 \;\ge 0,

  an unbiased, always non-negative, low-variance estimator of
  :math:`\mathrm{KL}(\pi_\theta\|\pi_{\text{ref}})` (Schulman's "k3"): it is
  the Monte Carlo estimate under :math:`Q = \pi_\theta` of the f-divergence
  with :math:`f(r) = r - 1 - \log r` at :math:`r = \pi_{\text{ref}}/\pi_\theta`,
  i.e. :func:`jaxkit.divergences.mc_under_q` of ``'reverse_kl'`` plus the
  zero-mean control variate :math:`r - 1`. It is the KL penalty of GRPO and
  of APO / View-R1. :math:`\delta` is clipped at 80 in float32 before the
  exponential so the estimate stays finite.

  Args:
    policy_logps: ``[..., T]`` per-token log-probabilities under the policy
      (of tokens the policy sampled).
    ref_logps: ``[..., T]`` the same tokens under the reference.
    where: optional ``[..., T]`` mask; masked tokens give 0.

  Returns:
    ``[..., T]`` per-token estimates (reduce with :func:`jaxkit.masked_mean`).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import kl_k3
    >>> print(jnp.round(kl_k3(jnp.array([-1.0, -2.0]), jnp.array([-1.0, -1.0])), 4))
    [0.     0.7183]

  References:
    Schulman, `Approximating KL Divergence
    <http://joschu.net/blog/kl-approx.html>`_, 2020.

    Shao et al., `DeepSeekMath: Pushing the Limits of Mathematical Reasoning
    in Open Language Models <https://arxiv.org/abs/2402.03300>`_, 2024 (GRPO).
  """
  lp = checks.check_floating(policy_logps, "policy_logps")
  lr = checks.check_floating(ref_logps, "ref_logps")
  checks.check_same_shape(lp, lr, "policy_logps", "ref_logps")
  mask = checks.check_where(where, lp.shape, "where")
  dtype = checks.compute_dtype(lp, lr)
  delta = lr.astype(dtype) - lp.astype(dtype)
  if mask is not None:
    delta = jnp.where(mask, delta, 0.0)
  delta = jnp.minimum(delta, 80.0)
  k3 = jnp.expm1(delta) - delta
  return k3 if mask is None else jnp.where(mask, k3, 0.0)


def group_normalize(rewards: ArrayLike, *, where: ArrayLike | None = None,
                    scale: bool = True, ddof: int = 1,
                    epsilon: float = 1e-4) -> Array:
  r"""Grouped reward normalisation: advantages relative to a prompt's group.

  For the :math:`G` completions of one prompt (the last axis),

  .. math::
    A_i = \frac{R_i - \operatorname{mean}_g R}{\operatorname{std}_g R +
      \varepsilon}
    \quad(\text{or } R_i - \operatorname{mean}_g R \text{ if not scale}),

  the GRPO advantage (TRL's ``GRPOTrainer``: unbiased std, ``ddof=1``,
  :math:`\varepsilon = 10^{-4}`) that DiDi-Instruct uses as its "grouped
  reward normalisation". The result is gradient-stopped. Masked completions
  take no part in the statistics and get 0; a group with one valid
  completion gets 0 (no relative information).

  Args:
    rewards: ``[..., G]`` rewards, one group per leading index.
    where: optional ``[..., G]`` mask of the valid completions.
    scale: divide by the group's standard deviation (default) or only
      centre (Dr. GRPO).
    ddof: delta degrees of freedom of the std (1 = unbiased, as torch).
    epsilon: added to the std.

  Returns:
    ``[..., G]`` advantages.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import group_normalize
    >>> print(jnp.round(group_normalize(jnp.array([[1.0, 0.0, 0.0, 1.0]]),
    ...                                 epsilon=0.0), 4))
    [[ 0.866 -0.866 -0.866  0.866]]

  References:
    Shao et al., `DeepSeekMath <https://arxiv.org/abs/2402.03300>`_, 2024.

    Zheng et al., `Ultra-Fast Language Generation via Discrete Diffusion
    Divergence Instruct <https://arxiv.org/abs/2509.25035>`_, 2025
    (DiDi-Instruct).

    Catalog: seed_003 #2.
  """
  r = checks.check_floating(rewards, "rewards")
  if r.ndim < 1:
    raise ValueError(f"`rewards` must have rank >= 1 ([..., G]), got {r.shape}.")
  if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
    raise ValueError(f"`ddof` must be an int >= 0, got {ddof!r}.")
  checks.check_scalar(epsilon, "epsilon", nonnegative=True)
  mask = checks.check_where(where, r.shape, "where")
  dtype = checks.compute_dtype(r)
  r = _sg(r.astype(dtype))
  m = jnp.ones(r.shape, dtype) if mask is None else mask.astype(dtype)
  n = jnp.sum(m, axis=-1, keepdims=True)
  r = jnp.where(m > 0, r, 0.0)
  mean = jnp.sum(r * m, axis=-1, keepdims=True) / jnp.maximum(n, 1.0)
  centred = (r - mean) * m
  if not scale:
    out = centred
  else:
    var = jnp.sum(centred ** 2, axis=-1, keepdims=True) / jnp.maximum(
        n - ddof, 1.0)
    out = centred / (jnp.sqrt(var) + epsilon)
  return jnp.where((m > 0) & (n > 1), out, 0.0)


def flat_loss(template_scores: ArrayLike, forget_scores: ArrayLike, *,
              divergence: str | FGenerator = "kl",
              template_where: ArrayLike | None = None,
              forget_where: ArrayLike | None = None,
              axis: int = -1) -> Array:
  r"""FLAT: unlearning with only forget data, by loss adjustment.

  For each forget prompt the model scores a *template* response
  :math:`y_e` (e.g. a refusal) and the *forget* response :math:`y_f`; the
  scores :math:`s` (the paper uses the model's length-normalised probability
  of the response) act as the critic of an f-GAN bound between the two
  response distributions, which FLAT maximises, i.e. it minimises

  .. math::
    \ell = -\Big(\frac1N\sum_i g_f(s(y_e^i))
      - \frac1N\sum_i f^*\big(g_f(s(y_f^i))\big)\Big)
      = -\text{variational\_bound}(s_e, s_f),

  raising the template's score and lowering the forget answer's, with the
  divergence-specific activation :math:`g_f` and conjugate :math:`f^*` of
  :func:`jaxkit.divergences.variational_bound` (the paper's Table 2 pairs).
  No retain data and no reference model are used.

  Args:
    template_scores: ``[..., N]`` scores of the template responses.
    forget_scores: ``[..., M]`` scores of the forget responses.
    divergence: a generator name or :class:`~jaxkit.divergences.FGenerator`
      (``'kl'``, ``'js'``, ``'pearson_chi2'``, ``'tv'``, ...).
    template_where: optional mask of valid template scores.
    forget_where: optional mask of valid forget scores.
    axis: the sample axis.

  Returns:
    ``[...]`` the loss (the negated bound); a scalar for 1-D inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import flat_loss
    >>> # KL: activation identity, f*(u) = exp(u - 1)
    >>> print(f"{float(flat_loss(jnp.array([1.0]), jnp.array([0.0]))):.4f}")
    -0.6321

  References:
    Wang, Wei, Liu, Pang, Liu, Shah, Bao, Liu, Wei, `LLM Unlearning via Loss
    Adjustment with Only Forget Data <https://arxiv.org/abs/2410.11143>`_,
    ICLR 2025.

    Catalog: seed_003 #26.
  """
  gen = _generator(divergence, None)
  return -variational_bound(template_scores, forget_scores, gen, axis=axis,
                            where_p=template_where, where_q=forget_where)
