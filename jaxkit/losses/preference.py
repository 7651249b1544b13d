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


def _exp_cap(dtype) -> float:
  # TRL's get_exp_cap: log(finfo.max) rounded down to 4 decimals.
  return math.floor(math.log(float(jnp.finfo(dtype).max)) * 1e4) / 1e4


def _scaled_exp_difference(xc, xr, log_scale, cap):
  """``sign(xc - xr) * scale * |e^xc - e^xr|`` without overflow.

  With ``xc, xr`` already capped at ``cap``, ``m = max``, ``d = min - max``:
  ``scale * e^m * (-expm1(d))``, the factor ``scale * e^m`` computed as
  ``exp(min(m + log_scale, cap))``. Equals the plain formula whenever that
  factor is below ``e^cap``; ``expm1`` keeps full precision when
  ``xc ~ xr`` (e.g. ``alpha`` near 1).
  """
  m = jnp.maximum(xc, xr)
  d = jnp.minimum(xc, xr) - m
  mag = jnp.exp(jnp.minimum(m + log_scale, cap)) * (-jnp.expm1(d))
  return jnp.where(xc >= xr, mag, -mag)


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
  As TRL's ``cap_exp`` does, each exponent :math:`x = (\alpha-1)\lambda`
  (:math:`-\lambda` for forward KL) is clipped at ``cap = log(finfo.max)``
  rounded down to 4 decimals (88.7228 in float32), with zero gradient above
  it. The scaled score difference is then computed as

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
    # exponents capped as TRL's cap_exp; the scaled factor is capped at
    # e^cap / max(1, |a1|) so that the gradient (which carries a1) stays
    # below finfo.max too.
    cap = _exp_cap(dtype)
    log_scale = jnp.log(jnp.asarray(beta, dtype)) - math.log(abs(a1))
    xc = jnp.minimum(a1 * lc, cap)
    xr = jnp.minimum(a1 * lr, cap)
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
