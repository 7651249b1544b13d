r"""MaskLLM: learnable N:M masks via Gumbel-softmax over candidate patterns.

Every group of ``m`` consecutive weights (along the input axis of an ``[in,
out]`` kernel by default) gets logits over its :math:`\binom{m}{n}` candidate
patterns (:func:`jaxkit.sparsity.nm_candidate_masks`). Training samples a
differentiable soft mask

.. math::
  y = \mathrm{softmax}\big((\kappa\,\ell + g)/\tau\big),\quad g\sim
  \mathrm{Gumbel}(0, 1),\qquad \tilde M = \textstyle\sum_c y_c\,m_c ,

with the weights frozen and only the logits :math:`\ell` trained on the task
loss (:func:`maskllm_loss` adds the paper's weight-magnitude regulariser).
The temperature :math:`\tau` anneals from 4 to 0.1 and the logit scale
:math:`\kappa` from 100 to 500 in the paper (the reference code defaults to
``scale_multiplier=[1e3, 1e4]`` with logits initialised at std 0.01);
:func:`maskllm_schedule` gives the linear schedule. The exported mask is the
argmax candidate (:func:`maskllm_hard_mask`); a mask learned on one model /
task can be transferred by using its logits (or hard mask) as the prior of
another run (:func:`maskllm_init` ``prior=``).

Checked against the authors' code (NVlabs/MaskLLM,
``learnable_sparsity/differentiable_mask.py``): candidate order, the linear
temperature / scale schedules, the ``N(0, 0.01)`` logit init and the prior
init ``logits += (overlap - 1) · std · strength`` (``overlap`` = number of
positions a candidate shares with the prior mask).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike, ArrayTree
from jaxkit.sparsity import _common
from jaxkit.sparsity import nm as nm_lib


def _grouped_shape(shape, ax, m):
  moved = list(shape[:ax]) + list(shape[ax + 1:])
  return (*moved, shape[ax] // m)


def maskllm_init(w: ArrayLike, *, n: int = 2, m: int = 4, axis: int = 0,
                 prior: ArrayLike | None = None, prior_strength: float = 3.0,
                 init_std: float = 0.01,
                 key: jax.Array | None = None) -> jax.Array:
  r"""Mask logits for a weight: one row of :math:`\binom{m}{n}` logits per group.

  .. math::
    \ell_{g,c} = \epsilon_{g,c} + \sigma\,\lambda\,(|m_c \cap P_g| - 1),
    \qquad \epsilon\sim\mathcal N(0, \sigma^2)

  where :math:`P_g` is the prior mask of the group (e.g. magnitude or Wanda
  2:4, or a mask learned elsewhere — mask transfer), :math:`\lambda` =
  ``prior_strength`` and :math:`\sigma` = ``init_std``. (The reference code
  scales by the empirical std of :math:`\epsilon`; we use its nominal value
  so that ``key=None`` — no noise — still honours the prior.)

  Args:
    w: the weight (only its shape is used), ``shape[axis]`` divisible by m.
    n: kept per group (static).
    m: group size (static).
    axis: grouping axis (static; 0 = input axis of ``[in, out]``).
    prior: optional boolean N:M mask of ``w``'s shape.
    prior_strength: :math:`\lambda` (0 = no prior).
    init_std: :math:`\sigma`.
    key: PRNG key for the noise :math:`\epsilon` (``None``: no noise).

  Returns:
    float32 logits ``[*w.shape without axis, w.shape[axis] / m, C]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import maskllm_init, nm_mask
    >>> w = jnp.array([[0.1], [3.0], [0.2], [2.0]])
    >>> logits = maskllm_init(w, prior=nm_mask(jnp.abs(w)), prior_strength=1.0)
    >>> print(logits.shape, int(logits[0, 0].argmax()))   # candidate 0101
    (1, 1, 6) 4

  References:
    Fang et al., "MaskLLM: Learnable Semi-Structured Sparsity for Large
    Language Models", NeurIPS 2024, arXiv:2409.17481.

    Catalog: seed_000 #38.
  """
  shape = jnp.shape(w)
  n, m = _common.check_nm(n, m)
  if len(shape) == 0:
    raise ValueError("`w` must have rank >= 1.")
  ax = _common.check_axis_divisible(shape, axis, m, "w")
  checks.check_scalar(prior_strength, "prior_strength")
  checks.check_scalar(init_std, "init_std", nonnegative=True)
  cands = nm_lib.nm_candidate_masks(n, m)
  gshape = (*_grouped_shape(shape, ax, m), cands.shape[0])
  if key is None:
    logits = jnp.zeros(gshape, jnp.float32)
  else:
    logits = init_std * jax.random.normal(key, gshape, jnp.float32)
  if prior is not None:
    prior = jnp.asarray(prior)
    if prior.shape != tuple(shape):
      raise ValueError(
          f"`prior` must have `w`'s shape {tuple(shape)}, got {prior.shape}.")
    p = nm_lib._grouped(prior.astype(jnp.float32), ax, m)  # [..., G, m]
    overlap = p @ cands.T                                    # [..., G, C]
    logits = logits + (overlap - 1.0) * init_std * prior_strength
  return logits


def maskllm_schedule(step, total_steps: int, *,
                     temperature: tuple[float, float] = (4.0, 0.1),
                     scale: tuple[float, float] = (1e2, 5e2)
                     ) -> tuple[jax.Array, jax.Array]:
  r"""Linear annealing of (temperature :math:`\tau`, logit scale :math:`\kappa`).

  .. math::
    \tau_t = \tau_0 + (\tau_1 - \tau_0)\,t/T,\qquad
    \kappa_t = \kappa_0 + (\kappa_1 - \kappa_0)\,t/T

  (``t`` clipped to ``[0, T]``). As :math:`\tau \to 0` and
  :math:`\kappa` grows, samples of :func:`maskllm_sample` become one-hot, i.e.
  hard N:M masks.

  Args:
    step: current step (may be traced).
    total_steps: :math:`T` (> 0).
    temperature: ``(start, end)``.
    scale: ``(start, end)`` of :math:`\kappa` (paper: 100 → 500; reference
      code default 1e3 → 1e4).

  Returns:
    ``(tau, kappa)`` float32 scalars.

  Examples:
    >>> from jaxkit.sparsity import maskllm_schedule
    >>> tau, kappa = maskllm_schedule(50, 100)
    >>> print(f"{float(tau):.2f} {float(kappa):.0f}")
    2.05 300

  References:
    Fang et al., "MaskLLM: Learnable Semi-Structured Sparsity for Large
    Language Models", NeurIPS 2024, arXiv:2409.17481.

    Catalog: seed_000 #38.
  """
  if total_steps <= 0:
    raise ValueError(f"`total_steps` must be > 0, got {total_steps}.")
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / total_steps, 0.0, 1.0)
  tau = temperature[0] + (temperature[1] - temperature[0]) * frac
  kappa = scale[0] + (scale[1] - scale[0]) * frac
  return tau, kappa


def maskllm_sample(logits: ArrayLike, key: jax.Array | None, *,
                   temperature: float, scale: float = 1.0, n: int = 2,
                   m: int = 4, axis: int = 0,
                   hard: bool = False) -> jax.Array:
  r"""Differentiable (soft) N:M mask sampled with Gumbel-softmax.

  .. math::
    y = \mathrm{softmax}\big((\kappa\,\ell + g)/\tau\big),\qquad
    \tilde M_g = \textstyle\sum_c y_{g,c}\, m_c .

  Each soft group is a convex combination of valid N:M patterns, so it sums
  to exactly ``n`` and lies in ``[0, 1]``; ``hard=True`` returns the one-hot
  (exact N:M) sample in the forward pass with the soft gradient
  (straight-through). ``key=None`` omits the Gumbel noise (deterministic
  relaxation).

  Args:
    logits: ``[..., G, C]`` from :func:`maskllm_init`.
    key: PRNG key, or ``None``.
    temperature: :math:`\tau > 0` (may be traced).
    scale: :math:`\kappa` (may be traced).
    n: kept per group (static; as in init).
    m: group size (static).
    axis: where the grouped axis goes back in the weight (static; as in init).
    hard: straight-through one-hot samples.

  Returns:
    float32 mask of the weight's shape.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.sparsity import maskllm_sample
    >>> logits = jnp.zeros((3, 2, 6))           # weight [8, 3]
    >>> mk = maskllm_sample(logits, jax.random.key(0), temperature=0.5)
    >>> print(mk.shape, jnp.round(mk.reshape(2, 4, 3).sum(1), 4))
    (8, 3) [[2. 2. 2.]
     [2. 2. 2.]]

  References:
    Fang et al., MaskLLM, NeurIPS 2024, arXiv:2409.17481; Jang et al.,
    "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017.

    Catalog: seed_000 #38.
  """
  logits = checks.check_floating(logits, "logits")
  n, m = _common.check_nm(n, m)
  cands = nm_lib.nm_candidate_masks(n, m)
  if logits.ndim < 2 or logits.shape[-1] != cands.shape[0]:
    raise ValueError(
        f"`logits` must be [..., G, {cands.shape[0]}] for {n}:{m}, got shape "
        f"{logits.shape}.")
  checks.check_scalar(temperature, "temperature", positive=True)
  z = jnp.asarray(scale, jnp.float32) * logits.astype(jnp.float32)
  if key is not None:
    z = z + jax.random.gumbel(key, z.shape, jnp.float32)
  y = jax.nn.softmax(z / temperature, axis=-1)
  if hard:
    one_hot = jax.nn.one_hot(jnp.argmax(y, -1), y.shape[-1], dtype=y.dtype)
    y = y + jax.lax.stop_gradient(one_hot - y)
  soft = y @ cands                                        # [..., G, m]
  return nm_lib._ungrouped(soft, axis % (logits.ndim - 1))  # weight rank


def maskllm_hard_mask(logits: ArrayLike, *, n: int = 2, m: int = 4,
                      axis: int = 0) -> jax.Array:
  r"""Exported mask: the argmax candidate of every group (exact N:M, boolean).

  Args:
    logits: ``[..., G, C]``.
    n: kept per group (static).
    m: group size (static).
    axis: grouping axis of the weight (static).

  Returns:
    ``bool`` mask of the weight's shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import maskllm_hard_mask
    >>> logits = jnp.array([[[0., 0., 0., 0., 0., 1.]]])    # weight [4, 1]
    >>> print(maskllm_hard_mask(logits)[:, 0])
    [False False  True  True]

  References:
    Fang et al., "MaskLLM: Learnable Semi-Structured Sparsity for Large
    Language Models", NeurIPS 2024, arXiv:2409.17481.

    Catalog: seed_000 #38.
  """
  logits = checks.check_floating(logits, "logits")
  n, m = _common.check_nm(n, m)
  cands = nm_lib.nm_candidate_masks(n, m)
  if logits.ndim < 2 or logits.shape[-1] != cands.shape[0]:
    raise ValueError(
        f"`logits` must be [..., G, {cands.shape[0]}] for {n}:{m}, got shape "
        f"{logits.shape}.")
  hard = cands[jnp.argmax(logits, axis=-1)] > 0.5
  return nm_lib._ungrouped(hard, axis % (logits.ndim - 1))


def maskllm_loss(task_loss: ArrayLike, weights: ArrayTree, masks: ArrayTree,
                 *, weight_reg: float = 0.0) -> jax.Array:
  r"""MaskLLM objective: task loss minus the kept-weight magnitude regulariser.

  .. math::
    \mathcal L = \mathcal L_{\text{task}} - \lambda \sum_\ell
      \|\,\mathrm{sg}(W_\ell)\odot \tilde M_\ell\|_2^2 .

  The regulariser rewards masks that keep large weights (it prevents the
  vanishing-gradient regime of masks that prune everything important, and
  helps transfer). Weights are frozen (``stop_gradient``); only the masks
  receive its gradient. ``weights`` / ``masks`` are matching pytrees
  (``None`` mask leaves are skipped).

  Args:
    task_loss: scalar task loss computed with the masked weights.
    weights: pytree of weights.
    masks: pytree of soft masks (from :func:`maskllm_sample`) or ``None``.
    weight_reg: :math:`\lambda \ge 0`.

  Returns:
    Scalar loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import maskllm_loss
    >>> w, mk = {'w': jnp.array([1.0, 2.0])}, {'w': jnp.array([1.0, 0.5])}
    >>> print(maskllm_loss(jnp.array(3.0), w, mk, weight_reg=0.1))
    2.8

  References:
    Fang et al., MaskLLM, NeurIPS 2024, arXiv:2409.17481 (sparse weight
    regularisation).

    Catalog: seed_000 #38.
  """
  task_loss = checks.check_floating(task_loss, "task_loss")
  if task_loss.ndim != 0:
    raise ValueError(f"`task_loss` must be a scalar, got shape {task_loss.shape}.")
  checks.check_scalar(weight_reg, "weight_reg", nonnegative=True)
  total = jnp.zeros((), jnp.float32)

  def add(mk, w):
    if mk is None:
      return jnp.zeros((), jnp.float32)
    w = jax.lax.stop_gradient(jnp.asarray(w, jnp.float32))
    return jnp.sum(jnp.square(w * mk.astype(jnp.float32)))

  terms = jax.tree.map(add, masks, weights, is_leaf=lambda x: x is None)
  total = sum(jax.tree.leaves(terms), total)
  return task_loss.astype(jnp.float32) - weight_reg * total
