r"""DPO-family preference losses on summed sequence log-probabilities.

Every loss here takes per-pair sequence log-probabilities (from
:func:`jaxkit.losses.sequence.sequence_log_probs`) and returns the per-pair
loss ``[B]``; reduce it with :func:`jaxkit.masked_mean`. With the policy
log-ratios :math:`\lambda_c = \log\pi(y_c) - \log\pi_{\text{ref}}(y_c)` and
:math:`\lambda_r = \log\pi(y_r) - \log\pi_{\text{ref}}(y_r)` the DPO margin is
:math:`h = \lambda_c - \lambda_r`.

The formulas follow TRL's ``DPOTrainer.dpo_loss`` (loss types ``sigmoid``,
``ipo``, ``hinge``, ``robust``, the f-DPO divergences) and ``CPOTrainer`` /
``ORPOTrainer`` (``simpo``, ``odds_ratio_loss``), written with ``softplus`` /
``log_sigmoid`` so that no value or gradient overflows. Computations run in
float32 or wider (bf16 inputs accumulate in float32).
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike

_LOG2 = math.log(2.0)
_POLICY_NAMES = ("policy_chosen_logps", "policy_rejected_logps",
                 "ref_chosen_logps", "ref_rejected_logps")
FDPO_DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")


def _prepare(arrays, names):
  """Checks floating dtype and equal shapes; casts to the compute dtype."""
  arrays = [checks.check_floating(a, n) for a, n in zip(arrays, names)]
  for a, n in zip(arrays[1:], names[1:]):
    checks.check_same_shape(arrays[0], a, names[0], n)
  dtype = checks.compute_dtype(*arrays)
  return [a.astype(dtype) for a in arrays], dtype


def _check_beta(beta):
  checks.check_scalar(beta, "beta", positive=True)


def _check_smoothing(label_smoothing, upper=1.0):
  checks.check_scalar(label_smoothing, "label_smoothing", nonnegative=True,
                      upper=upper)


def _lengths(lengths, name, like, dtype):
  """Validates completion lengths (float or int, same shape as ``like``)."""
  if isinstance(lengths, (bool, np.bool_)):
    raise TypeError(f"`{name}` must be a numeric array, got a bool.")
  arr = jnp.asarray(lengths)
  if not (jnp.issubdtype(arr.dtype, jnp.integer)
          or jnp.issubdtype(arr.dtype, jnp.floating)):
    raise TypeError(f"`{name}` must be numeric, got dtype {arr.dtype}.")
  if arr.shape != like.shape:
    raise ValueError(
        f"`{name}` must have the log-probabilities' shape {like.shape}, got "
        f"{arr.shape}.")
  if checks.is_concrete(arr) and np.any(np.asarray(arr) <= 0):
    raise ValueError(f"`{name}` must be > 0 (token counts), got {arr}.")
  return arr.astype(dtype)


def _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
            ref_rejected_logps):
  (pc, pr, rc, rr), dtype = _prepare(
      (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
       ref_rejected_logps), _POLICY_NAMES)
  return (pc - rc) - (pr - rr), dtype


def _smoothed_sigmoid_loss(z, label_smoothing):
  # -(1-eps) log sigma(z) - eps log sigma(-z), via softplus (never overflows).
  return ((1.0 - label_smoothing) * jax.nn.softplus(-z)
          + label_smoothing * jax.nn.softplus(z))


def implicit_rewards(policy_chosen_logps: ArrayLike,
                     policy_rejected_logps: ArrayLike,
                     ref_chosen_logps: ArrayLike,
                     ref_rejected_logps: ArrayLike, *,
                     beta: float = 0.1) -> tuple[jax.Array, jax.Array]:
  r"""DPO's implicit rewards of the chosen and rejected completions.

  .. math::
    r_c = \beta\,(\log\pi(y_c) - \log\pi_{\text{ref}}(y_c)), \qquad
    r_r = \beta\,(\log\pi(y_r) - \log\pi_{\text{ref}}(y_r)),

  TRL's ``chosen_rewards`` / ``rejected_rewards`` metrics; like TRL they are
  gradient-stopped (``jax.lax.stop_gradient``), for logging.

  Args:
    policy_chosen_logps: ``[B]`` policy log-probabilities of chosen answers.
    policy_rejected_logps: ``[B]`` policy log-probabilities of rejected ones.
    ref_chosen_logps: ``[B]`` reference log-probabilities of chosen answers.
    ref_rejected_logps: ``[B]`` reference log-probabilities of rejected ones.
    beta: positive inverse temperature :math:`\beta`.

  Returns:
    ``(chosen_rewards, rejected_rewards)``, each ``[B]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import implicit_rewards
    >>> rc, rr = implicit_rewards(jnp.array([-1.]), jnp.array([-3.]),
    ...                           jnp.array([-2.]), jnp.array([-2.]), beta=0.5)
    >>> print(f"{float(rc[0]):.2f} {float(rr[0]):.2f}")
    0.50 -0.50

  References:
    Rafailov, Sharma, Mitchell, Ermon, Manning, Finn, `Direct Preference
    Optimization: Your Language Model is Secretly a Reward Model
    <https://arxiv.org/abs/2305.18290>`_, 2023.

    Catalog: seed_003 #31.
  """
  _check_beta(beta)
  (pc, pr, rc, rr), _ = _prepare(
      (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
       ref_rejected_logps), _POLICY_NAMES)
  return (jax.lax.stop_gradient(beta * (pc - rc)),
          jax.lax.stop_gradient(beta * (pr - rr)))


def dpo_loss(policy_chosen_logps: ArrayLike, policy_rejected_logps: ArrayLike,
             ref_chosen_logps: ArrayLike, ref_rejected_logps: ArrayLike, *,
             beta: float = 0.1, label_smoothing: float = 0.0) -> jax.Array:
  r"""Direct Preference Optimization loss (with conservative label smoothing).

  The Bradley-Terry log-likelihood of the preference under the implicit reward
  :math:`\beta\log(\pi/\pi_{\text{ref}})`. With ``label_smoothing`` :math:`
  \varepsilon > 0` the label is flipped with probability :math:`\varepsilon`
  (conservative DPO, cDPO). Equals TRL's ``loss_type="sigmoid"``:

  .. math::
    h = (\log\pi(y_c) - \log\pi_{\text{ref}}(y_c))
      - (\log\pi(y_r) - \log\pi_{\text{ref}}(y_r)), \\
    \ell = -(1-\varepsilon)\log\sigma(\beta h) - \varepsilon\log\sigma(-\beta h).

  Computed as :math:`(1-\varepsilon)\,\mathrm{softplus}(-\beta h) +
  \varepsilon\,\mathrm{softplus}(\beta h)`, finite for any finite input.

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities of the chosen
      completions (any shape, all four equal).
    policy_rejected_logps: ``[B]`` same for the rejected completions.
    ref_chosen_logps: ``[B]`` reference-model log-probabilities, chosen.
    ref_rejected_logps: ``[B]`` reference-model log-probabilities, rejected.
    beta: positive inverse temperature :math:`\beta` (default 0.1).
    label_smoothing: :math:`\varepsilon \in [0, 1]`, default 0 (plain DPO).

  Returns:
    ``[B]`` per-pair losses (float32 or wider).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import dpo_loss
    >>> loss = dpo_loss(jnp.array([-10.]), jnp.array([-12.]),
    ...                 jnp.array([-11.]), jnp.array([-11.]), beta=0.5)
    >>> print(f"{float(loss[0]):.4f}")  # softplus(-1)
    0.3133

  References:
    Rafailov, Sharma, Mitchell, Ermon, Manning, Finn, `Direct Preference
    Optimization: Your Language Model is Secretly a Reward Model
    <https://arxiv.org/abs/2305.18290>`_, 2023.

    Mitchell, `A note on DPO with noisy preferences & relationship to IPO
    <https://ericmitchell.ai/cdpo.pdf>`_, 2023 (cDPO).
  """
  _check_beta(beta)
  _check_smoothing(label_smoothing)
  h, _ = _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                 ref_rejected_logps)
  return _smoothed_sigmoid_loss(beta * h, label_smoothing)


def ipo_loss(policy_chosen_logps: ArrayLike, policy_rejected_logps: ArrayLike,
             ref_chosen_logps: ArrayLike, ref_rejected_logps: ArrayLike, *,
             beta: float, chosen_lengths: ArrayLike | None = None,
             rejected_lengths: ArrayLike | None = None) -> jax.Array:
  r"""Identity Preference Optimisation (IPO) loss.

  A squared regression of the log-ratio margin onto :math:`1/(2\beta)`
  (eq. 17 of Azar et al., :math:`\beta` is their :math:`\tau`):

  .. math::
    \ell = \Bigl(h - \frac{1}{2\beta}\Bigr)^2.

  On the log-probabilities as given, this is the paper's loss. TRL's
  ``loss_type="ipo"`` first divides every sequence log-probability (policy
  and reference) by its completion length; pass ``chosen_lengths`` and
  ``rejected_lengths`` (token counts, both or neither) to get that
  length-normalised form, i.e. :math:`h` built from
  :math:`\log\pi(y)/|y|`.

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities, chosen.
    policy_rejected_logps: ``[B]`` summed policy log-probabilities, rejected.
    ref_chosen_logps: ``[B]`` summed reference log-probabilities, chosen.
    ref_rejected_logps: ``[B]`` summed reference log-probabilities, rejected.
    beta: positive regularisation :math:`\beta` (the paper's :math:`\tau`).
    chosen_lengths: optional ``[B]`` positive completion lengths of the chosen
      answers (TRL's normalisation).
    rejected_lengths: optional ``[B]`` same for the rejected answers.

  Returns:
    ``[B]`` per-pair losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import ipo_loss
    >>> loss = ipo_loss(jnp.array([-10.]), jnp.array([-12.]),
    ...                 jnp.array([-11.]), jnp.array([-11.]), beta=0.5)
    >>> print(f"{float(loss[0]):.4f}")  # (2 - 1)^2
    1.0000

  References:
    Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos, `A General
    Theoretical Paradigm to Understand Learning from Human Preferences
    <https://arxiv.org/abs/2310.12036>`_, 2023.
  """
  _check_beta(beta)
  (pc, pr, rc, rr), dtype = _prepare(
      (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
       ref_rejected_logps), _POLICY_NAMES)
  if (chosen_lengths is None) != (rejected_lengths is None):
    raise ValueError(
        "`chosen_lengths` and `rejected_lengths` must be given together, got "
        f"chosen_lengths={'None' if chosen_lengths is None else 'array'} and "
        f"rejected_lengths={'None' if rejected_lengths is None else 'array'}.")
  if chosen_lengths is not None:
    lc = _lengths(chosen_lengths, "chosen_lengths", pc, dtype)
    lr = _lengths(rejected_lengths, "rejected_lengths", pc, dtype)
    pc, rc, pr, rr = pc / lc, rc / lc, pr / lr, rr / lr
  h = (pc - rc) - (pr - rr)
  return (h - 1.0 / (2.0 * beta)) ** 2


def hinge_dpo_loss(policy_chosen_logps: ArrayLike,
                   policy_rejected_logps: ArrayLike,
                   ref_chosen_logps: ArrayLike, ref_rejected_logps: ArrayLike,
                   *, beta: float) -> jax.Array:
  r"""Hinge (SLiC-style) preference loss on the DPO margin.

  TRL's ``loss_type="hinge"``:

  .. math::
    \ell = \max(0,\; 1 - \beta h).

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities, chosen.
    policy_rejected_logps: ``[B]`` summed policy log-probabilities, rejected.
    ref_chosen_logps: ``[B]`` summed reference log-probabilities, chosen.
    ref_rejected_logps: ``[B]`` summed reference log-probabilities, rejected.
    beta: positive scale :math:`\beta` (the margin is :math:`1/\beta` in
      log-ratio units).

  Returns:
    ``[B]`` per-pair losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import hinge_dpo_loss
    >>> loss = hinge_dpo_loss(jnp.array([-10., -9.]), jnp.array([-12., -12.]),
    ...                       jnp.array([-11., -11.]), jnp.array([-11., -11.]),
    ...                       beta=0.25)
    >>> print(jnp.round(loss, 4))
    [0.5  0.25]

  References:
    Zhao, Joshi, Liu, Khalman, Saleh, Liu, `SLiC-HF: Sequence Likelihood
    Calibration with Human Feedback <https://arxiv.org/abs/2305.10425>`_,
    2023.
  """
  _check_beta(beta)
  h, _ = _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                 ref_rejected_logps)
  return jax.nn.relu(1.0 - beta * h)


def robust_dpo_loss(policy_chosen_logps: ArrayLike,
                    policy_rejected_logps: ArrayLike,
                    ref_chosen_logps: ArrayLike,
                    ref_rejected_logps: ArrayLike, *, beta: float,
                    label_smoothing: float) -> jax.Array:
  r"""Robust DPO (rDPO): an unbiased loss under preference-flip noise.

  With flip rate :math:`\varepsilon < 1/2` (TRL's ``loss_type="robust"``):

  .. math::
    \ell = \frac{-(1-\varepsilon)\log\sigma(\beta h)
                 + \varepsilon\log\sigma(-\beta h)}{1 - 2\varepsilon}.

  Unlike cDPO the second term enters with a plus sign, so the loss is
  unbounded below for large margins (as in the paper). Computed with
  ``softplus``; finite for any finite input.

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities, chosen.
    policy_rejected_logps: ``[B]`` summed policy log-probabilities, rejected.
    ref_chosen_logps: ``[B]`` summed reference log-probabilities, chosen.
    ref_rejected_logps: ``[B]`` summed reference log-probabilities, rejected.
    beta: positive inverse temperature :math:`\beta`.
    label_smoothing: flip rate :math:`\varepsilon \in [0, 1/2)`; a value
      ``>= 0.5`` raises ``ValueError``.

  Returns:
    ``[B]`` per-pair losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import robust_dpo_loss
    >>> loss = robust_dpo_loss(jnp.array([-10.]), jnp.array([-12.]),
    ...                        jnp.array([-11.]), jnp.array([-11.]), beta=0.5,
    ...                        label_smoothing=0.1)
    >>> print(f"{float(loss[0]):.4f}")  # (0.9 sp(-1) - 0.1 sp(1)) / 0.8
    0.1883

  References:
    Chowdhury, Kini, Natarajan, `Provably Robust DPO: Aligning Language Models
    with Noisy Feedback <https://arxiv.org/abs/2403.00409>`_, 2024.
  """
  _check_beta(beta)
  _check_smoothing(label_smoothing)
  if checks.is_concrete(label_smoothing) and float(label_smoothing) >= 0.5:
    raise ValueError(
        "`label_smoothing` must be < 0.5 for robust DPO (it divides by "
        f"1 - 2*label_smoothing), got {float(label_smoothing)}.")
  h, _ = _margin(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                 ref_rejected_logps)
  z = beta * h
  return (((1.0 - label_smoothing) * jax.nn.softplus(-z)
           - label_smoothing * jax.nn.softplus(z))
          / (1.0 - 2.0 * label_smoothing))


# TRL 1.16 clamps the alpha-divergence exponent at 80 (float32 / bfloat16).
_TRL_ALPHA_CLAMP = 80.0


def _exp_cap(dtype) -> float:
  # TRL's get_exp_cap: log(finfo.max) rounded down to 4 decimals.
  return math.floor(math.log(float(jnp.finfo(dtype).max)) * 1e4) / 1e4


def _scaled_exp_difference(xc, xr, log_scale, cap):
  """``scale * (e^xc - e^xr)`` without overflow, smooth at ``xc == xr``.

  With ``xc, xr`` already capped at ``cap`` and ``m = sg(max(xc, xr))``:
  ``scale * e^m * (expm1(xc - m) - expm1(xr - m))``, the factor
  ``scale * e^m`` computed as ``exp(min(m + log_scale, cap))``. Equals the
  plain formula whenever that factor is below ``e^cap``; ``expm1`` keeps
  full precision when ``xc ~ xr`` (e.g. ``alpha`` near 1). ``m`` is a
  stop-gradient constant: the identity holds for any ``m``, so the gradient
  is the plain formula's — including at ties ``xc == xr`` (the start of
  training, ``pi = pi_ref``), where differentiating through ``max`` / ``min``
  would give exactly zero.
  """
  m = jax.lax.stop_gradient(jnp.maximum(xc, xr))
  factor = jnp.exp(jnp.minimum(m + log_scale, cap))
  return factor * (jnp.expm1(xc - m) - jnp.expm1(xr - m))


def fdpo_loss(policy_chosen_logps: ArrayLike, policy_rejected_logps: ArrayLike,
              ref_chosen_logps: ArrayLike, ref_rejected_logps: ArrayLike, *,
              beta: float, divergence: str = "reverse_kl",
              alpha: float = 1.0) -> jax.Array:
  r"""f-DPO: DPO with a general f-divergence regulariser.

  Replacing DPO's reverse-KL constraint by an f-divergence turns the implicit
  reward into :math:`\beta f'(\pi/\pi_{\text{ref}})`. With the log-ratios
  :math:`\lambda = \log\pi(y) - \log\pi_{\text{ref}}(y)` and TRL 1.16's
  scores :math:`s(\lambda)`

  =============== ==================================================
  ``reverse_kl``  :math:`s = \lambda` (plain DPO)
  ``forward_kl``  :math:`s = 1 - e^{-\lambda}`
  ``js``          :math:`s = \log 2 + \log\sigma(\lambda)`
  ``alpha``       :math:`s = (e^{(\alpha-1)\lambda} - 1)/(\alpha - 1)`
  =============== ==================================================

  .. math::
    \ell = -\log\sigma\bigl(\beta\,(s(\lambda_c) - s(\lambda_r))\bigr).

  ``alpha=1`` falls back to reverse KL and ``alpha=0`` is forward KL.
  Convention: ``alpha`` here is TRL's ``f_alpha_divergence_coef``; the
  paper's repository scores :math:`-e^{-a\lambda}/a`, i.e. :math:`a = 1 -
  \alpha` (the two differ by a constant that cancels in the difference).

  Stability (a deviation from the paper, and from TRL only where TRL
  overflows): the exponentials are never formed from unbounded exponents.
  Each exponent :math:`x = (\alpha-1)\lambda` is clipped at 80, as TRL
  1.16's ``alpha_divergence`` clamps it (float64 inputs: at
  ``log(finfo.max)``), and the forward-KL exponent :math:`-\lambda`, which
  TRL leaves unclamped, at ``cap = log(finfo.max)`` rounded down to 4
  decimals (88.7228 in float32; TRL's former ``cap_exp``), with zero gradient
  above the clip. With ``cap = log(finfo.max)`` as above, the scaled score
  difference is then computed as

  .. math::
    \frac{\beta}{|\alpha-1|}\bigl(e^{x_c} - e^{x_r}\bigr)
      = \pm\exp\Bigl(\min\bigl(m + \log\tfrac{\beta}{|\alpha-1|},\,
        \mathrm{cap} - \log\max(1, |\alpha-1|)\bigr)\Bigr)
        \cdot\bigl(-\operatorname{expm1}(-|x_c - x_r|)\bigr),

  :math:`m = \max(x_c, x_r)`, and the loss as
  :math:`\mathrm{softplus}(-\beta\Delta s)`. The second cap keeps the value
  and the gradient (which carries a factor :math:`\alpha - 1`) below
  ``finfo.max``; ``expm1`` keeps full precision for :math:`\alpha` near 1.
  ``js`` uses :math:`\log\sigma(\lambda) = -\mathrm{softplus}(-\lambda)`
  instead of TRL's :math:`\lambda - \log(1 + e^{\lambda})`. Hence value and
  gradient are finite for all finite inputs (e.g. :math:`|\lambda| = 1000`
  in float32). The value equals TRL's wherever TRL's float32 value is finite
  and :math:`|\beta\Delta s| < \mathrm{finfo.max}/\max(1, |\alpha-1|)`
  (i.e. everywhere TRL is finite for forward KL, JS and
  :math:`0 \le \alpha \le 2`; beyond that the loss is astronomically large,
  :math:`\gtrsim 10^{38}/|\alpha-1|`, and jaxkit's is capped lower).

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities, chosen.
    policy_rejected_logps: ``[B]`` summed policy log-probabilities, rejected.
    ref_chosen_logps: ``[B]`` summed reference log-probabilities, chosen.
    ref_rejected_logps: ``[B]`` summed reference log-probabilities, rejected.
    beta: positive inverse temperature :math:`\beta`.
    divergence: one of ``'reverse_kl'``, ``'forward_kl'``, ``'js'``,
      ``'alpha'``.
    alpha: the :math:`\alpha` of ``'alpha'`` (a Python number; TRL's
      ``f_alpha_divergence_coef``, default 1.0 = reverse KL).

  Returns:
    ``[B]`` per-pair losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import fdpo_loss
    >>> args = (jnp.array([-10.]), jnp.array([-12.]), jnp.array([-11.]),
    ...         jnp.array([-11.]))
    >>> for d in ("reverse_kl", "forward_kl", "js"):
    ...   print(d, f"{float(fdpo_loss(*args, beta=0.5, divergence=d)[0]):.4f}")
    reverse_kl 0.3133
    forward_kl 0.2691
    js 0.4741

  References:
    Wang, Jiang, Yang, Liu, Chen, `Beyond Reverse KL: Generalizing Direct
    Preference Optimization with Diverse Divergence Constraints
    <https://arxiv.org/abs/2309.16240>`_, 2023.

    Catalog: seed_003 #10.
  """
  _check_beta(beta)
  if divergence not in FDPO_DIVERGENCES:
    raise ValueError(
        f"`divergence` must be one of {FDPO_DIVERGENCES}, got {divergence!r}.")
  if isinstance(alpha, (bool, np.bool_)) or not isinstance(
      alpha, numbers.Real):
    raise TypeError(
        f"`alpha` must be a Python number (it selects a branch), got {alpha!r}.")
  checks.check_scalar(alpha, "alpha")
  (pc, pr, rc, rr), dtype = _prepare(
      (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
       ref_rejected_logps), _POLICY_NAMES)
  lc, lr = pc - rc, pr - rr
  trl_alpha_branch = divergence == "alpha"  # α = 0 included (TRL clamps it)
  if divergence == "alpha" and float(alpha) == 1.0:
    divergence = "reverse_kl"
  if divergence == "alpha" and float(alpha) == 0.0:
    divergence = "forward_kl"
  if divergence == "reverse_kl":
    z = beta * (lc - lr)
  elif divergence == "js":
    z = beta * (jax.nn.log_sigmoid(lc) - jax.nn.log_sigmoid(lr))
  else:
    a1 = -1.0 if divergence == "forward_kl" else float(alpha) - 1.0
    # beta * (s_c - s_r) = sign(a1) * beta/|a1| * (e^{a1 lc} - e^{a1 lr}),
    # exponents clipped as TRL does; the scaled factor is capped at
    # e^cap / max(1, |a1|) so that the gradient (which carries a1) stays
    # below finfo.max too.
    cap = _exp_cap(dtype)
    clip = cap
    if trl_alpha_branch and dtype != jnp.float64:
      clip = _TRL_ALPHA_CLAMP  # TRL 1.16's alpha_divergence clamp
    log_scale = jnp.log(jnp.asarray(beta, dtype)) - math.log(abs(a1))
    xc = jnp.minimum(a1 * lc, clip)
    xr = jnp.minimum(a1 * lr, clip)
    diff = _scaled_exp_difference(xc, xr, log_scale,
                                  cap - math.log(max(1.0, abs(a1))))
    z = diff if a1 > 0 else -diff
  return jax.nn.softplus(-z)


def simpo_loss(policy_chosen_logps: ArrayLike,
               policy_rejected_logps: ArrayLike, *, chosen_lengths: ArrayLike,
               rejected_lengths: ArrayLike, beta: float = 2.0,
               gamma: float = 0.5, label_smoothing: float = 0.0) -> jax.Array:
  r"""SimPO: reference-free, length-normalised preference loss with a margin.

  With average log-probabilities :math:`a = \log\pi(y)/|y|`, TRL's
  ``CPOTrainer`` (``loss_type="simpo"``, ``simpo_gamma`` :math:`=\gamma`)
  computes ``logits`` :math:`= (a_c - a_r) - \gamma/\beta` and

  .. math::
    \ell = -(1-\varepsilon)\log\sigma\bigl(\beta(a_c - a_r) - \gamma\bigr)
           - \varepsilon\log\sigma\bigl(-\beta(a_c - a_r) + \gamma\bigr),

  i.e. :math:`\gamma` is the margin on the reward scale (the paper's
  :math:`\gamma`), :math:`\gamma/\beta` on the log-probability scale.
  ``label_smoothing=0`` is the paper's loss.

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities, chosen.
    policy_rejected_logps: ``[B]`` summed policy log-probabilities, rejected.
    chosen_lengths: ``[B]`` positive completion lengths (token counts), chosen.
    rejected_lengths: ``[B]`` positive completion lengths, rejected.
    beta: positive reward scale :math:`\beta` (default 2.0).
    gamma: target reward margin :math:`\gamma` (default 0.5, TRL's default).
    label_smoothing: :math:`\varepsilon \in [0, 1]` (default 0).

  Returns:
    ``[B]`` per-pair losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import simpo_loss
    >>> loss = simpo_loss(jnp.array([-10.]), jnp.array([-20.]),
    ...                   chosen_lengths=jnp.array([10]),
    ...                   rejected_lengths=jnp.array([10]))
    >>> print(f"{float(loss[0]):.4f}")  # softplus(-(2 * 1 - 0.5))
    0.2014

  References:
    Meng, Xia, Chen, `SimPO: Simple Preference Optimization with a
    Reference-Free Reward <https://arxiv.org/abs/2405.14734>`_, 2024.
  """
  _check_beta(beta)
  checks.check_scalar(gamma, "gamma")
  _check_smoothing(label_smoothing)
  (pc, pr), dtype = _prepare((policy_chosen_logps, policy_rejected_logps),
                             _POLICY_NAMES[:2])
  lc = _lengths(chosen_lengths, "chosen_lengths", pc, dtype)
  lr = _lengths(rejected_lengths, "rejected_lengths", pc, dtype)
  logits = (pc / lc - pr / lr) - gamma / beta
  return _smoothed_sigmoid_loss(beta * logits, label_smoothing)


def _log1mexp(a):
  """``log(1 - e^a)`` for ``a < 0``, accurate near 0 and far below it."""
  near = a > -_LOG2
  a_near = jnp.where(near, a, -1.0)
  a_far = jnp.where(near, -1.0, a)
  return jnp.where(near, jnp.log(-jnp.expm1(a_near)),
                   jnp.log1p(-jnp.exp(a_far)))


def orpo_loss(policy_chosen_logps: ArrayLike,
              policy_rejected_logps: ArrayLike, *, chosen_lengths: ArrayLike,
              rejected_lengths: ArrayLike, beta: float = 0.1) -> jax.Array:
  r"""Odds-ratio term of ORPO (without the SFT negative log-likelihood).

  With average log-probabilities :math:`a = \log\pi(y)/|y|` and
  :math:`\operatorname{odds}(y) = p/(1-p)`, :math:`p = e^{a}`:

  .. math::
    \log\frac{\operatorname{odds}(y_c)}{\operatorname{odds}(y_r)}
      = (a_c - a_r) - \bigl(\log(1 - e^{a_c}) - \log(1 - e^{a_r})\bigr), \\
    \ell = -\beta\,\log\sigma\Bigl(\log\frac{\operatorname{odds}(y_c)}
      {\operatorname{odds}(y_r)}\Bigr).

  This is :math:`\beta` times TRL's ``odds_ratio_loss`` term
  (:math:`\lambda` = ``beta`` in the paper). ORPO's full objective adds the
  SFT loss :math:`-a_c` (TRL adds the model's NLL separately); it is *not*
  included here — add it yourself. :math:`\log(1-e^a)` is computed as
  ``log(-expm1(a))`` near 0 and ``log1p(-exp(a))`` below :math:`-\log 2`;
  :math:`a` is clipped at ``-finfo.tiny`` (a probability of exactly 1 would
  make the odds infinite), which keeps value and gradient finite.

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities, chosen.
    policy_rejected_logps: ``[B]`` summed policy log-probabilities, rejected.
    chosen_lengths: ``[B]`` positive completion lengths, chosen.
    rejected_lengths: ``[B]`` positive completion lengths, rejected.
    beta: positive weight :math:`\beta` of the odds-ratio term (default 0.1).

  Returns:
    ``[B]`` per-pair odds-ratio losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import orpo_loss
    >>> loss = orpo_loss(jnp.array([-2.]), jnp.array([-4.]),
    ...                  chosen_lengths=jnp.array([2]),
    ...                  rejected_lengths=jnp.array([2]), beta=1.0)
    >>> print(f"{float(loss[0]):.4f}")
    0.2382

  References:
    Hong, Lee, Thorne, `ORPO: Monolithic Preference Optimization without
    Reference Model <https://arxiv.org/abs/2403.07691>`_, 2024.
  """
  _check_beta(beta)
  (pc, pr), dtype = _prepare((policy_chosen_logps, policy_rejected_logps),
                             _POLICY_NAMES[:2])
  lc = _lengths(chosen_lengths, "chosen_lengths", pc, dtype)
  lr = _lengths(rejected_lengths, "rejected_lengths", pc, dtype)
  tiny = float(jnp.finfo(dtype).tiny)
  ac = jnp.minimum(pc / lc, -tiny)
  ar = jnp.minimum(pr / lr, -tiny)
  log_odds = (ac - ar) - (_log1mexp(ac) - _log1mexp(ar))
  return -beta * jax.nn.log_sigmoid(log_odds)


def npo_loss(policy_logps: ArrayLike, ref_logps: ArrayLike, *,
             beta: float = 0.1) -> jax.Array:
  r"""Negative Preference Optimization (NPO) loss for unlearning.

  DPO with only a rejected answer: every forget sample is a negative, and the
  loss pushes its policy log-ratio down, but with a bounded, vanishing push
  (unlike gradient ascent on the NLL, which diverges):

  .. math::
    \ell = \frac{2}{\beta}\log\Bigl(1 + \Bigl(\frac{\pi_\theta(y)}
      {\pi_{\text{ref}}(y)}\Bigr)^{\beta}\Bigr)
      = -\frac{2}{\beta}\log\sigma\bigl(-\beta\lambda\bigr)
      = \frac{2}{\beta}\,\mathrm{softplus}(\beta\lambda),

  :math:`\lambda = \log\pi_\theta(y) - \log\pi_{\text{ref}}(y)`. Computed in
  log space with ``softplus``: finite value and gradient for any finite
  input (the ratio :math:`(\pi_\theta/\pi_{\text{ref}})^\beta` is never
  formed). As :math:`\beta \to 0` the loss tends to
  :math:`\lambda + 2\log 2/\beta`, i.e. gradient ascent on the forget NLL up
  to a constant. Returned per example; average it over the forget set with
  :func:`jaxkit.masked_mean` (the paper's :math:`\mathbb{E}`).

  Args:
    policy_logps: ``[B]`` summed policy log-probabilities of the forget
      samples (any shape, both equal).
    ref_logps: ``[B]`` summed reference-model log-probabilities of the same
      samples.
    beta: positive inverse temperature :math:`\beta` (default 0.1).

  Returns:
    ``[B]`` per-example losses (float32 or wider).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import npo_loss
    >>> loss = npo_loss(jnp.array([-10., -12.]), jnp.array([-10., -10.]),
    ...                 beta=0.5)
    >>> print([f"{float(v):.4f}" for v in loss])  # 4 softplus(0), 4 softplus(-1)
    ['2.7726', '1.2530']

  References:
    Zhang, Lin, Bai, Mei, `Negative Preference Optimization: From
    Catastrophic Collapse to Effective Unlearning
    <https://arxiv.org/abs/2404.05868>`_, 2024.

    Catalog: seed_001 #30.
  """
  _check_beta(beta)
  (p, r), _ = _prepare((policy_logps, ref_logps),
                       ("policy_logps", "ref_logps"))
  return (2.0 / beta) * jax.nn.softplus(beta * (p - r))


def madpo_default_weight(rm_margin: ArrayLike) -> jax.Array:
  r"""The default MADPO instance weight :math:`w(\hat m) = 2\sigma(-\max(\hat m, 0))`.

  Continuous, in :math:`(0, 1]`, non-increasing: 1 (plain DPO) for hard pairs
  — margins at or below 0 — and decaying towards 0 for easy pairs (large
  positive margin), so hard pairs are amplified *relative* to easy ones.
  Negative margins (pairs the reward model thinks are mislabelled) are capped
  at the weight of a zero margin, as the MADPO paper's stability mechanism
  caps the weights of negative margins; without the cap (``2σ(−m̂)``, up to 2)
  flipped labels get the largest weights, which hurt in jaxkit's
  ``madpo_margins`` experiment. This is jaxkit's choice, *not* the exact
  piecewise weight of the paper (its formula is not in jaxkit's sources);
  pass ``weight_fn`` to :func:`madpo_loss` to use another one.

  Args:
    rm_margin: ``[B]`` reward-model margins :math:`r_\phi(y_c) - r_\phi(y_r)`.

  Returns:
    ``[B]`` weights in :math:`(0, 1]`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import madpo_default_weight
    >>> w = madpo_default_weight(jnp.array([-2., 0., 2.]))
    >>> print([f"{float(v):.4f}" for v in w])
    ['1.0000', '1.0000', '0.2384']

  References:
    MADPO: Margin-Adaptive Direct Preference Optimization, 2025 (reference
    implementation:
    https://github.com/sitano1004/Margin-Apative-Direct-Preference-Optimization).

    Catalog: seed_000 #29.
  """
  m = checks.check_floating(rm_margin, "rm_margin")
  m = m.astype(checks.compute_dtype(m))
  return 2.0 * jax.nn.sigmoid(-jnp.maximum(m, 0.0))


def madpo_loss(policy_chosen_logps: ArrayLike, policy_rejected_logps: ArrayLike,
               ref_chosen_logps: ArrayLike, ref_rejected_logps: ArrayLike,
               rm_margin: ArrayLike, *, beta: float = 0.1,
               weight_fn: Callable[[jax.Array], jax.Array] | None = None
               ) -> jax.Array:
  r"""MADPO: DPO with reward-model-margin-adaptive instance weights.

  Each pair's DPO loss is scaled by a weight of the margin
  :math:`\hat m = r_\phi(x, y_c) - r_\phi(x, y_r)` estimated by a separately
  trained reward model; the weight amplifies hard (small-margin) pairs and
  dampens easy (large-margin) ones:

  .. math::
    \ell = w(\hat m)\cdot\bigl(-\log\sigma(\beta h)\bigr)
         = w(\hat m)\,\mathrm{softplus}(-\beta h),

  with the DPO margin :math:`h` (see :func:`dpo_loss`). The weight is
  treated as data: ``jax.lax.stop_gradient`` is applied to it, so no
  gradient flows into ``rm_margin``.

  Assumption (the paper's exact :math:`w` is not in jaxkit's catalog, which
  defers it to the authors' repository): the default ``weight_fn`` is
  :func:`madpo_default_weight`, :math:`w(\hat m) = 2\sigma(-\max(\hat m,
  0))` — continuous, positive, non-increasing, equal to 1 (plain DPO) for
  :math:`\hat m \le 0`. Pass the paper's weight (or any other) as
  ``weight_fn``; it must map the ``[B]`` margins to ``[B]`` non-negative
  weights.

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities, chosen.
    policy_rejected_logps: ``[B]`` summed policy log-probabilities, rejected.
    ref_chosen_logps: ``[B]`` summed reference log-probabilities, chosen.
    ref_rejected_logps: ``[B]`` summed reference log-probabilities, rejected.
    rm_margin: ``[B]`` reward-model margins :math:`\hat m` (chosen minus
      rejected reward).
    beta: positive inverse temperature :math:`\beta` (default 0.1).
    weight_fn: callable ``[B] -> [B]`` giving the instance weights
      (default :func:`madpo_default_weight`).

  Returns:
    ``[B]`` per-pair weighted losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import madpo_loss
    >>> loss = madpo_loss(jnp.array([-10., -10.]), jnp.array([-12., -12.]),
    ...                   jnp.array([-11., -11.]), jnp.array([-11., -11.]),
    ...                   jnp.array([0., 3.]), beta=0.5)
    >>> print([f"{float(v):.4f}" for v in loss])  # softplus(-1) * (1, 2 sigmoid(-3))
    ['0.3133', '0.0297']

  References:
    MADPO: Margin-Adaptive Direct Preference Optimization, 2025 (reference
    implementation:
    https://github.com/sitano1004/Margin-Apative-Direct-Preference-Optimization).

    Rafailov et al., `Direct Preference Optimization: Your Language Model is
    Secretly a Reward Model <https://arxiv.org/abs/2305.18290>`_, 2023.

    Catalog: seed_000 #29.
  """
  _check_beta(beta)
  if weight_fn is not None and not callable(weight_fn):
    raise TypeError(
        f"`weight_fn` must be a callable [B] -> [B] or None, got {weight_fn!r}.")
  (pc, pr, rc, rr, m), dtype = _prepare(
      (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
       ref_rejected_logps, rm_margin), _POLICY_NAMES + ("rm_margin",))
  fn = madpo_default_weight if weight_fn is None else weight_fn
  w = jnp.asarray(fn(m))
  if w.shape != m.shape:
    raise ValueError(
        f"`weight_fn` must return the margins' shape {m.shape}, got "
        f"{w.shape}.")
  if not jnp.issubdtype(w.dtype, jnp.floating):
    w = w.astype(dtype)
  if checks.is_concrete(w) and np.any(np.asarray(w, np.float64) < 0):
    raise ValueError(
        f"`weight_fn` must return non-negative weights, got {np.asarray(w)}.")
  w = jax.lax.stop_gradient(w.astype(dtype))
  h = (pc - rc) - (pr - rr)
  return w * jax.nn.softplus(-beta * h)


def _soft_mask(mask, name, like):
  """A [0, 1] token mask of exactly ``like``'s shape, or ones for ``None``."""
  if mask is None:
    return jnp.ones(like.shape, like.dtype)
  if isinstance(mask, (bool, np.bool_)):
    raise TypeError(f"`{name}` must be an array of weights in [0, 1], got a "
                    "bool.")
  arr = jnp.asarray(mask)
  if not (jnp.issubdtype(arr.dtype, jnp.floating)
          or jnp.issubdtype(arr.dtype, jnp.integer)
          or jnp.issubdtype(arr.dtype, jnp.bool_)):
    raise TypeError(f"`{name}` must be numeric, got dtype {arr.dtype}.")
  checks.check_same_shape(like, arr, "token log-probabilities", name)
  if checks.is_concrete(arr):
    a = np.asarray(arr, np.float64)
    if np.any(~np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
      raise ValueError(
          f"`{name}` must hold weights in [0, 1], got values in "
          f"[{a.min()}, {a.max()}].")
  return arr.astype(like.dtype)


def _token_weighted_sum(values, weights, where):
  # sum_t where * weights * values with masked entries never touching NaN/inf.
  safe = jnp.where(where, values, 0.0)
  return jnp.sum(jnp.where(where, weights * safe, 0.0), axis=-1)


def sparse_po_loss(policy_chosen_token_logps: ArrayLike,
                   policy_rejected_token_logps: ArrayLike,
                   ref_chosen_token_logps: ArrayLike,
                   ref_rejected_token_logps: ArrayLike, *,
                   beta: float = 0.1,
                   chosen_where: ArrayLike | None = None,
                   rejected_where: ArrayLike | None = None,
                   chosen_reward_mask: ArrayLike | None = None,
                   rejected_reward_mask: ArrayLike | None = None,
                   chosen_token_kl: ArrayLike | None = None,
                   rejected_token_kl: ArrayLike | None = None,
                   chosen_kl_mask: ArrayLike | None = None,
                   rejected_kl_mask: ArrayLike | None = None) -> jax.Array:
  r"""SparsePO: token-masked preference optimisation (TDPO-style).

  Each token's reward (its log-ratio) and its KL contribution are weighted by
  masks :math:`m_u, m_d \in [0, 1]`, so that only some tokens carry the
  preference signal. With per-token log-ratios
  :math:`\lambda_t = \log\pi(y_t\mid\cdot) - \log\pi_{\text{ref}}(y_t\mid\cdot)`
  over the valid (``where``) tokens:

  .. math::
    u(y) = \beta\sum_t m_u(y, t)\,\lambda_t, \qquad
    \delta = \beta\sum_t m_d(y_r, t)\,\mathrm{KL}_t(y_r)
           - \beta\sum_t m_d(y_c, t)\,\mathrm{KL}_t(y_c), \\
    \ell = -\log\sigma\bigl(u(y_c) - u(y_r) - \delta\bigr),

  where :math:`\mathrm{KL}_t(y) = \mathrm{KL}(\pi_{\text{ref}}(\cdot\mid x,
  y_{<t})\,\|\,\pi(\cdot\mid x, y_{<t}))` is TDPO's per-token sequential KL,
  supplied by the caller (e.g. from full-vocabulary logits).

  Assumptions (the catalog defers the exact objective and the mask model to
  the paper): this is the TDPO-1 form with masks multiplying each token's
  reward and KL terms; the masks are inputs (from reference-model
  activations or a learned sparse head — neither is computed here, and no
  sparsity penalty is added). Without ``*_token_kl`` the KL term is dropped
  (:math:`\delta = 0`), and with all masks equal to 1 the loss is then
  exactly :func:`dpo_loss` on the summed log-probabilities. The KL masks
  default to the reward masks (the paper's "common mask" variant).

  Padded tokens (``where`` false) never change the value or produce NaN
  (double ``jnp.where``), and a pair with no valid token gets
  :math:`\log 2`. bf16 inputs accumulate in float32.

  Args:
    policy_chosen_token_logps: ``[B, T_c]`` policy log-probabilities of the
      chosen completion's tokens.
    policy_rejected_token_logps: ``[B, T_r]`` same for the rejected one.
    ref_chosen_token_logps: ``[B, T_c]`` reference log-probabilities, chosen.
    ref_rejected_token_logps: ``[B, T_r]`` reference log-probabilities,
      rejected.
    beta: positive inverse temperature :math:`\beta` (default 0.1).
    chosen_where: optional ``[B, T_c]`` (or ``[B, 1]``) boolean mask of
      valid chosen tokens (default all).
    rejected_where: optional ``[B, T_r]`` mask of valid rejected tokens.
    chosen_reward_mask: optional ``[B, T_c]`` weights :math:`m_u \in [0, 1]`
      (default ones).
    rejected_reward_mask: optional ``[B, T_r]`` weights :math:`m_u`.
    chosen_token_kl: optional ``[B, T_c]`` per-token KL of the chosen
      completion; give both KL arrays or neither.
    rejected_token_kl: optional ``[B, T_r]`` per-token KL, rejected.
    chosen_kl_mask: optional ``[B, T_c]`` weights :math:`m_d \in [0, 1]`
      (default: ``chosen_reward_mask``).
    rejected_kl_mask: optional ``[B, T_r]`` weights :math:`m_d` (default:
      ``rejected_reward_mask``).

  Returns:
    ``[B]`` per-pair losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import sparse_po_loss
    >>> pc = jnp.array([[-1., -2., -3.]]); rc = jnp.array([[-2., -2., -2.]])
    >>> pr = jnp.array([[-3., -1., -9.]]); rr = jnp.array([[-2., -2., -2.]])
    >>> loss = sparse_po_loss(pc, pr, rc, rr, beta=1.0,
    ...                       chosen_reward_mask=jnp.array([[1., 0., 0.]]),
    ...                       rejected_reward_mask=jnp.array([[1., 0., 0.]]),
    ...                       rejected_where=jnp.array([[1, 1, 0]]))
    >>> print(f"{float(loss[0]):.4f}")  # softplus(-(1 - (-1)))
    0.1269

  References:
    Christopoulou, Cardenas, Lampouras, Bou-Ammar, Wang, `SparsePO:
    Controlling Preference Alignment of LLMs via Sparse Token Masks
    <https://arxiv.org/abs/2410.05102>`_, 2024.

    Zeng, Liu, Ma, Yang, Zhang, Wang, `Token-level Direct Preference
    Optimization <https://arxiv.org/abs/2404.11999>`_, 2024 (TDPO).

    Catalog: seed_003 #24.
  """
  _check_beta(beta)
  (pc, rc), dtc = _prepare((policy_chosen_token_logps, ref_chosen_token_logps),
                           ("policy_chosen_token_logps",
                            "ref_chosen_token_logps"))
  (pr, rr), dtr = _prepare(
      (policy_rejected_token_logps, ref_rejected_token_logps),
      ("policy_rejected_token_logps", "ref_rejected_token_logps"))
  checks.check_rank(pc, 2, "policy_chosen_token_logps")
  checks.check_rank(pr, 2, "policy_rejected_token_logps")
  if pc.shape[0] != pr.shape[0]:
    raise ValueError(
        "`policy_chosen_token_logps` and `policy_rejected_token_logps` must "
        f"have the same batch size, got {pc.shape} and {pr.shape}.")
  dtype = jnp.promote_types(dtc, dtr)
  pc, rc, pr, rr = (a.astype(dtype) for a in (pc, rc, pr, rr))
  if (chosen_token_kl is None) != (rejected_token_kl is None):
    raise ValueError(
        "`chosen_token_kl` and `rejected_token_kl` must be given together, "
        f"got chosen_token_kl={'None' if chosen_token_kl is None else 'array'}"
        " and rejected_token_kl="
        f"{'None' if rejected_token_kl is None else 'array'}.")
  wc = checks.check_where(chosen_where, pc.shape, "chosen_where")
  wr = checks.check_where(rejected_where, pr.shape, "rejected_where")
  wc = jnp.ones(pc.shape, bool) if wc is None else wc
  wr = jnp.ones(pr.shape, bool) if wr is None else wr
  muc = _soft_mask(chosen_reward_mask, "chosen_reward_mask", pc)
  mur = _soft_mask(rejected_reward_mask, "rejected_reward_mask", pr)
  lam_c = jnp.where(wc, pc, 0.0) - jnp.where(wc, rc, 0.0)
  lam_r = jnp.where(wr, pr, 0.0) - jnp.where(wr, rr, 0.0)
  z = beta * (_token_weighted_sum(lam_c, muc, wc)
              - _token_weighted_sum(lam_r, mur, wr))
  if chosen_token_kl is not None:
    klc = checks.check_floating(chosen_token_kl, "chosen_token_kl")
    klr = checks.check_floating(rejected_token_kl, "rejected_token_kl")
    checks.check_same_shape(pc, klc, "policy_chosen_token_logps",
                            "chosen_token_kl")
    checks.check_same_shape(pr, klr, "policy_rejected_token_logps",
                            "rejected_token_kl")
    mdc = (muc if chosen_kl_mask is None
           else _soft_mask(chosen_kl_mask, "chosen_kl_mask", pc))
    mdr = (mur if rejected_kl_mask is None
           else _soft_mask(rejected_kl_mask, "rejected_kl_mask", pr))
    delta = beta * (_token_weighted_sum(klr.astype(dtype), mdr, wr)
                    - _token_weighted_sum(klc.astype(dtype), mdc, wc))
    z = z - delta
  elif chosen_kl_mask is not None or rejected_kl_mask is not None:
    raise ValueError(
        "`chosen_kl_mask` / `rejected_kl_mask` need `chosen_token_kl` and "
        "`rejected_token_kl`, got None.")
  return jax.nn.softplus(-z)


def gradient_entanglement(chosen_grads, rejected_grads) -> dict[str, jax.Array]:
  r"""Gradient-entanglement diagnostic for margin-based preference losses.

  For a margin loss :math:`\ell(m)`, :math:`m = \beta(\log\pi_c -
  \log\pi_r)`, decreasing in :math:`m`, a gradient step moves the parameters
  by :math:`\eta c\,(g_c - g_r)` with :math:`c = -\ell'(m)\beta > 0` and
  :math:`g = \nabla_\theta\log\pi`. To first order

  .. math::
    \Delta\log\pi_c \approx \eta c\,(\|g_c\|^2 - \langle g_c, g_r\rangle),
    \qquad
    \Delta\log\pi_r \approx \eta c\,(\langle g_c, g_r\rangle - \|g_r\|^2),

  so the chosen log-probability *falls* when
  :math:`\langle g_c, g_r\rangle > \|g_c\|^2` and the rejected one *rises*
  when :math:`\langle g_c, g_r\rangle > \|g_r\|^2`. Only the plain-margin
  conditions are reported; the paper's general conditions for weighted
  margin objectives are not implemented.

  Inputs are two gradients of the same structure: pytrees (e.g. from
  ``jax.grad`` of the chosen and of the rejected sequence log-probability)
  or flat arrays. Sums accumulate in float32 or wider. For per-example
  statistics, ``jax.vmap`` over a leading batch axis.

  Args:
    chosen_grads: gradient pytree (or array) :math:`g_c` of
      :math:`\log\pi(y_c)`.
    rejected_grads: gradient pytree :math:`g_r` of :math:`\log\pi(y_r)`,
      same structure and leaf shapes.

  Returns:
    A dict of scalars: ``inner_product`` :math:`\langle g_c, g_r\rangle`,
    ``chosen_sq_norm`` :math:`\|g_c\|^2`, ``rejected_sq_norm``
    :math:`\|g_r\|^2`, ``chosen_norm``, ``rejected_norm``, ``cosine``
    (0 when either gradient is zero), and the booleans ``chosen_decreases``
    and ``rejected_increases``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import gradient_entanglement
    >>> s = gradient_entanglement({"w": jnp.array([1., 0.])},
    ...                           {"w": jnp.array([2., 1.])})
    >>> print(f"{float(s['inner_product']):.1f} {float(s['cosine']):.4f}")
    2.0 0.8944
    >>> print(bool(s["chosen_decreases"]), bool(s["rejected_increases"]))
    True False

  References:
    Yuan, Jin, Zhang, Zhang, Liu, Zhong, `A Common Pitfall of Margin-based
    Language Model Alignment: Gradient Entanglement
    <https://arxiv.org/abs/2410.13828>`_, 2024.

    Catalog: seed_000 #8.
  """
  tc = jax.tree.structure(chosen_grads)
  tr = jax.tree.structure(rejected_grads)
  if tc != tr:
    raise ValueError(
        "`chosen_grads` and `rejected_grads` must have the same pytree "
        f"structure, got {tc} and {tr}.")
  lc = [checks.check_floating(x, "chosen_grads")
        for x in jax.tree.leaves(chosen_grads)]
  lr = [checks.check_floating(x, "rejected_grads")
        for x in jax.tree.leaves(rejected_grads)]
  if not lc:
    raise ValueError("`chosen_grads` must hold at least one array, got an "
                     "empty pytree.")
  for a, b in zip(lc, lr):
    checks.check_same_shape(a, b, "chosen_grads", "rejected_grads")
  dtype = checks.compute_dtype(*lc, *lr)
  lc = [a.astype(dtype) for a in lc]
  lr = [b.astype(dtype) for b in lr]
  inner = sum(jnp.vdot(a, b) for a, b in zip(lc, lr))
  nc = sum(jnp.vdot(a, a) for a in lc)
  nr = sum(jnp.vdot(b, b) for b in lr)
  ok = (nc > 0) & (nr > 0)
  cosine = jnp.where(
      ok, inner / (jnp.sqrt(jnp.where(ok, nc, 1.0))
                   * jnp.sqrt(jnp.where(ok, nr, 1.0))), 0.0)
  return {
      "inner_product": inner,
      "chosen_sq_norm": nc,
      "rejected_sq_norm": nr,
      "chosen_norm": jnp.sqrt(nc),
      "rejected_norm": jnp.sqrt(nr),
      "cosine": jnp.clip(cosine, -1.0, 1.0),
      "chosen_decreases": inner > nc,
      "rejected_increases": inner > nr,
  }


_REFERENCE_KINDS = ("dpo", "cdpo", "robust", "ipo", "hinge", "fdpo")
_REFERENCE_FREE_KINDS = ("cpo", "simpo", "orpo")
PREFERENCE_KINDS = _REFERENCE_KINDS + _REFERENCE_FREE_KINDS


def preference_loss(policy_chosen_logps: ArrayLike,
                    policy_rejected_logps: ArrayLike,
                    ref_chosen_logps: ArrayLike | None = None,
                    ref_rejected_logps: ArrayLike | None = None, *,
                    kind: str = "dpo", beta: float = 0.1,
                    **kwargs) -> jax.Array:
  r"""The direct-preference-alignment (DPA) losses as one parameterised family.

  Richardson et al. show that the DPA losses differ in two places only: the
  *core* log-probability statistic they compare between the chosen and the
  rejected answer (a log-ratio to a reference, a reference-free
  log-probability, a length-normalised log-probability, a log-odds) and the
  *link* that turns the comparison :math:`z` into a loss (log-sigmoid,
  squared, hinge, smoothed). This function names each member by ``kind``
  and dispatches to the loss that implements it, so a sweep over the family is
  a sweep over one string:

  * ``dpo``: :math:`-\log\sigma(\beta h)` on the reference log-ratio margin
    :math:`h`;
  * ``cdpo``: :math:`-(1-\varepsilon)\log\sigma(\beta h)
    -\varepsilon\log\sigma(-\beta h)` (conservative, label-smoothed);
  * ``robust``: rDPO, the unbiased flip-noise loss (divides by
    :math:`1-2\varepsilon`);
  * ``ipo``: :math:`(h - 1/(2\beta))^2`;
  * ``hinge``: :math:`\max(0, 1-\beta h)` (SLiC);
  * ``fdpo``: :math:`-\log\sigma(\beta(s(\lambda_c)-s(\lambda_r)))` with the
    f-DPO scores :math:`s` of the chosen divergence;
  * ``cpo``: :math:`-\log\sigma(\beta(\log\pi(y_c)-\log\pi(y_r)))`, no
    reference;
  * ``simpo``: :math:`-\log\sigma(\beta(a_c-a_r)-\gamma)` on
    length-normalised log-probabilities :math:`a`;
  * ``orpo``: :math:`-\beta\log\sigma(\text{log-odds ratio})`;

  with :math:`h = (\log\pi(y_c)-\log\pi_{\text{ref}}(y_c)) -
  (\log\pi(y_r)-\log\pi_{\text{ref}}(y_r))`. ``kind='cpo'`` is DPO against a
  uniform reference (the reference log-probabilities are zero), which is the
  preference term of CPO (Xu et al. 2024) without its NLL term.

  Extra keyword arguments go to the member loss: ``label_smoothing``
  (``cdpo``, ``robust``), ``divergence`` / ``alpha`` (``fdpo``),
  ``chosen_lengths`` / ``rejected_lengths`` (required by ``simpo`` and
  ``orpo``, optional for ``ipo``), ``gamma`` (``simpo``). An argument the
  member does not take raises ``TypeError``.

  Args:
    policy_chosen_logps: ``[B]`` summed policy log-probabilities, chosen.
    policy_rejected_logps: ``[B]`` summed policy log-probabilities, rejected.
    ref_chosen_logps: ``[B]`` summed reference log-probabilities, chosen;
      required by the reference-based kinds, must be ``None`` for
      ``cpo`` / ``simpo`` / ``orpo``.
    ref_rejected_logps: ``[B]`` the same for the rejected answers.
    kind: one of :data:`PREFERENCE_KINDS` (static).
    beta: positive inverse temperature :math:`\beta`.
    **kwargs: the member loss's own hyper-parameters (see above).

  Returns:
    ``[B]`` per-pair losses.

  Raises:
    ValueError: unknown ``kind``, or reference log-probabilities missing for a
      reference-based kind (or given to a reference-free one).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import preference_loss
    >>> pc, pr = jnp.array([-10.]), jnp.array([-12.])
    >>> rc, rr = jnp.array([-11.]), jnp.array([-11.])
    >>> for kind in ("dpo", "ipo", "hinge"):
    ...   loss = preference_loss(pc, pr, rc, rr, kind=kind, beta=0.5)
    ...   print(kind, f"{float(loss[0]):.4f}")
    dpo 0.3133
    ipo 1.0000
    hinge 0.0000
    >>> loss = preference_loss(pc, pr, kind="cpo", beta=0.5)
    >>> print(f"{float(loss[0]):.4f}")  # softplus(-0.5 * 2)
    0.3133

  References:
    Richardson, Srikumar, Sabharwal, `Understanding the Logic of Direct
    Preference Alignment through Logic <https://arxiv.org/abs/2412.17696>`_,
    2024.

    Xu, Sharaf, Chen, Tan, Shen, Van Durme, Murray, Kim, `Contrastive
    Preference Optimization: Pushing the Boundaries of LLM Performance in
    Machine Translation <https://arxiv.org/abs/2401.08417>`_, 2024.

    Catalog: seed_000 #56.
  """
  if kind not in PREFERENCE_KINDS:
    raise ValueError(
        f"`kind` must be one of {PREFERENCE_KINDS}, got {kind!r}.")
  has_ref = (ref_chosen_logps is not None, ref_rejected_logps is not None)
  if kind in _REFERENCE_KINDS and not all(has_ref):
    raise ValueError(
        f"kind={kind!r} compares log-ratios to a reference: pass both "
        "`ref_chosen_logps` and `ref_rejected_logps` (use kind='cpo' for the "
        "reference-free DPO).")
  if kind in _REFERENCE_FREE_KINDS and any(has_ref):
    raise ValueError(
        f"kind={kind!r} is reference-free: `ref_chosen_logps` and "
        "`ref_rejected_logps` must be None.")
  refs = (ref_chosen_logps, ref_rejected_logps)
  if kind == "dpo":
    return dpo_loss(policy_chosen_logps, policy_rejected_logps, *refs,
                    beta=beta, **kwargs)
  if kind == "cdpo":
    kwargs.setdefault("label_smoothing", 0.1)
    return dpo_loss(policy_chosen_logps, policy_rejected_logps, *refs,
                    beta=beta, **kwargs)
  if kind == "robust":
    kwargs.setdefault("label_smoothing", 0.1)
    return robust_dpo_loss(policy_chosen_logps, policy_rejected_logps, *refs,
                           beta=beta, **kwargs)
  if kind == "ipo":
    return ipo_loss(policy_chosen_logps, policy_rejected_logps, *refs,
                    beta=beta, **kwargs)
  if kind == "hinge":
    return hinge_dpo_loss(policy_chosen_logps, policy_rejected_logps, *refs,
                          beta=beta, **kwargs)
  if kind == "fdpo":
    return fdpo_loss(policy_chosen_logps, policy_rejected_logps, *refs,
                     beta=beta, **kwargs)
  if kind == "cpo":
    zeros = jnp.zeros_like(jnp.asarray(policy_chosen_logps))
    return dpo_loss(policy_chosen_logps, policy_rejected_logps, zeros, zeros,
                    beta=beta, **kwargs)
  if kind == "simpo":
    return simpo_loss(policy_chosen_logps, policy_rejected_logps, beta=beta,
                      **kwargs)
  return orpo_loss(policy_chosen_logps, policy_rejected_logps, beta=beta,
                   **kwargs)
