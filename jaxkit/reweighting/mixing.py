r"""Group / domain mixture rules: Group DRO, DoReMi, Aioli.

All three keep a distribution :math:`q \in \Delta^{K}` over ``num_groups``
groups (domains) in their state and update it online from per-group mean
losses of the global batch. ``update`` returns **per-example** weights

.. math::
  w_i = \frac{\tilde q_{g_i}}{n_{g_i}}, \qquad \sum_i w_i\ell_i =
  \sum_g \tilde q_g\,L_g,

with :math:`n_g` the number of valid examples of group :math:`g` in the batch,
:math:`L_g` their mean loss and :math:`\tilde q` the mixture renormalised over
the groups present in the batch (so a stratified batch turns the mixture into
a reweighting; with a sampler that draws groups from :math:`q` use the state's
mixture directly). Masked examples get weight 0; no valid example → all 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.reweighting import base


class GroupDROState(NamedTuple):
  """State of :func:`group_dro`: log group weights ``[K]`` and a counter.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> state = rw.group_dro(num_groups=2, step_size=1.0).init()
    >>> print(jnp.exp(state.log_q), int(state.count))
    [0.5 0.5] 0
  """
  log_q: jax.Array
  count: jax.Array


def group_dro(num_groups: int, *, step_size: float,
              adjustments: ArrayLike | None = None,
              axis_name: str | None = None) -> base.ReweightingRule:
  r"""Online Group DRO: exponentiated-gradient ascent on group weights.

  .. math::
    q_g \leftarrow \frac{q_g \exp(\eta\,(L_g + C_g))}
                        {\sum_{g'} q_{g'} \exp(\eta\,(L_{g'} + C_{g'}))}

  with :math:`L_g` the mean loss of group :math:`g` in the (global) batch,
  :math:`\eta` = ``step_size`` and :math:`C_g` the optional generalisation
  adjustments (the paper's :math:`C/\sqrt{n_g}`). Groups absent from the batch
  keep their log weight. The weights returned are the *updated* :math:`q`
  spread over the batch (module docstring), as in Algorithm 1 of the paper.
  Computed in log space.

  Args:
    num_groups: number of groups :math:`K` (static int).
    step_size: :math:`\eta \ge 0` (0 freezes the uniform mixture).
    adjustments: optional ``[K]`` per-group additive loss adjustments.
    axis_name: optional ``shard_map`` axis for the per-group sums.

  Returns:
    A :class:`ReweightingRule`; ``update`` requires ``group_ids`` ``[B]``.

  Raises:
    ValueError: bad ``num_groups``/``step_size``, missing or out-of-range
      ``group_ids``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> rule = rw.group_dro(num_groups=2, step_size=1.0)
    >>> w, state = rule.update(jnp.array([0., 0., 1., 1.]), rule.init(),
    ...                        group_ids=jnp.array([0, 0, 1, 1]))
    >>> print(jnp.round(jnp.exp(state.log_q), 4))
    [0.2689 0.7311]
    >>> print(jnp.round(w, 4))
    [0.1345 0.1345 0.3655 0.3655]

  References:
    Sagawa, Koh, Hashimoto, Liang. "Distributionally Robust Neural Networks
    for Group Shifts", ICLR 2020, arXiv:1911.08731.
  """
  k = base._check_num_groups(num_groups)
  checks.check_scalar(step_size, "step_size", nonnegative=True)
  if adjustments is not None:
    adjustments = jnp.asarray(adjustments, jnp.float32)
    if adjustments.shape != (k,):
      raise ValueError(f"`adjustments` must have shape ({k},), got "
                       f"{adjustments.shape}.")

  def init():
    return GroupDROState(log_q=jnp.full((k,), -jnp.log(k), jnp.float32),
                         count=jnp.zeros((), jnp.int32))

  def update(losses, state, *, where=None, group_ids=None, step=None):
    del step
    x, mask, _ = base._prepare(losses, where)
    g = base._check_group_ids(group_ids, x.shape, k)
    x = jax.lax.stop_gradient(x)
    means, counts = base._group_means(x, mask, g, k, axis_name)
    if adjustments is not None:
      means = means + adjustments
    inc = jnp.where(counts > 0, step_size * means, 0.0)
    log_q = jax.nn.log_softmax(state.log_q + inc.astype(state.log_q.dtype))
    w = base._per_example_from_groups(jnp.exp(log_q).astype(x.dtype), mask,
                                      g, k, axis_name)
    return jax.lax.stop_gradient(w), GroupDROState(log_q, state.count + 1)

  return base.ReweightingRule(init, update)


class DoReMiState(NamedTuple):
  """State of :func:`doremi`: current domain weights, their running sum.

  Example:
    >>> from jaxkit import reweighting as rw
    >>> state = rw.doremi(num_groups=4).init()
    >>> print(state.alpha, int(state.count))
    [0.25 0.25 0.25 0.25] 0
  """
  alpha: jax.Array
  alpha_sum: jax.Array
  count: jax.Array


def doremi(num_groups: int, *, step_size: float = 1.0,
           smoothing: float = 1e-3,
           axis_name: str | None = None) -> base.ReweightingRule:
  r"""DoReMi's domain-weight update (Group DRO on clipped excess loss).

  ``losses`` passed to ``update`` are the **excess losses**
  :math:`\ell_\theta(x) - \ell_{\mathrm{ref}}(x)` of the proxy model over a
  fixed reference model (compute them as ``loss - ref_loss``; the reference
  losses are constants). Per domain

  .. math::
    \lambda_g = \frac{1}{n_g}\sum_{i\in g}\max(\ell_{\theta,i} -
      \ell_{\mathrm{ref},i},\,0),\qquad
    \alpha' \propto \alpha \odot \exp(\eta\lambda),\qquad
    \alpha \leftarrow (1-c)\,\alpha' + c\,u,

  with :math:`u` uniform and :math:`c` = ``smoothing``. The final DoReMi
  mixture is the average of :math:`\alpha` over all steps:
  ``state.alpha_sum / state.count`` (see :func:`doremi_mixture`). The paper
  normalises :math:`\lambda` by token counts; with per-sequence mean losses
  that is the per-example mean used here.

  Args:
    num_groups: number of domains :math:`K` (static int).
    step_size: :math:`\eta \ge 0`.
    smoothing: :math:`c \in [0, 1]`.
    axis_name: optional ``shard_map`` axis.

  Returns:
    A :class:`ReweightingRule`; ``update`` requires ``group_ids``. Weights
    spread the updated :math:`\alpha` over the batch (module docstring).

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> rule = rw.doremi(num_groups=2, step_size=1.0, smoothing=0.0)
    >>> excess = jnp.array([-1., 0., 2., 2.])
    >>> w, state = rule.update(excess, rule.init(),
    ...                        group_ids=jnp.array([0, 0, 1, 1]))
    >>> print(jnp.round(state.alpha, 4))
    [0.1192 0.8808]

  References:
    Xie et al. "DoReMi: Optimizing Data Mixtures Speeds Up Language Model
    Pretraining", NeurIPS 2023, arXiv:2305.10429.
  """
  k = base._check_num_groups(num_groups)
  checks.check_scalar(step_size, "step_size", nonnegative=True)
  checks.check_scalar(smoothing, "smoothing", lower=0.0, upper=1.0)

  def init():
    return DoReMiState(alpha=jnp.full((k,), 1.0 / k, jnp.float32),
                       alpha_sum=jnp.zeros((k,), jnp.float32),
                       count=jnp.zeros((), jnp.int32))

  def update(losses, state, *, where=None, group_ids=None, step=None):
    del step
    x, mask, _ = base._prepare(losses, where)
    g = base._check_group_ids(group_ids, x.shape, k)
    x = jax.lax.stop_gradient(x)
    lam, _ = base._group_means(jnp.maximum(x, 0.0), mask, g, k, axis_name)
    log_a = jnp.log(jnp.maximum(state.alpha, 1e-30)) + step_size * lam.astype(
        jnp.float32)
    alpha = (1.0 - smoothing) * jax.nn.softmax(log_a) + smoothing / k
    w = base._per_example_from_groups(alpha.astype(x.dtype), mask, g, k,
                                      axis_name)
    return jax.lax.stop_gradient(w), DoReMiState(
        alpha, state.alpha_sum + alpha, state.count + 1)

  return base.ReweightingRule(init, update)


def doremi_mixture(state: DoReMiState) -> jax.Array:
  """DoReMi's output: the average domain weights over all updates ``[K]``.

  Returns the current weights when no update happened yet.

  Examples:
    >>> from jaxkit import reweighting as rw
    >>> print(rw.doremi_mixture(rw.doremi(num_groups=4).init()))
    [0.25 0.25 0.25 0.25]
  """
  c = state.count.astype(state.alpha.dtype)
  return jnp.where(c > 0, state.alpha_sum / jnp.maximum(c, 1.0), state.alpha)


def fit_linear_mixing_law(loss_drops: ArrayLike,
                          mixtures: ArrayLike) -> jax.Array:
  r"""Least-squares fit of Aioli's linear dynamic mixing law.

  Fits :math:`A \in \mathbb{R}^{K\times K}` in

  .. math::
    L_i^{t} - L_i^{t+\delta} \approx \sum_j A_{ij}\,p_j

  from :math:`R \ge K` short runs with mixtures :math:`p^{(r)}` (rows of
  ``mixtures``) and measured loss drops on each domain (rows of
  ``loss_drops``): :math:`A^\top = \arg\min \|P A^\top - D\|_F`. With Aioli's
  :math:`K` smoothed one-hot sweeps (:math:`R = K`, :math:`P` invertible)
  this is exactly the reference's ``np.linalg.solve(weight_matrix, row)``.

  Args:
    loss_drops: ``[R, K]``, ``loss_drops[r, i]`` = decrease of domain ``i``'s
      loss during run ``r``.
    mixtures: ``[R, K]`` mixtures used in the runs.

  Returns:
    ``A`` ``[K, K]`` (row ``i``: how training on each domain lowers loss
    ``i``).

  Raises:
    ValueError: shapes differ, rank is not 2, or ``R < K``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> A = jnp.array([[1.0, 0.2], [0.0, 0.5]])
    >>> P = jnp.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]])
    >>> A_fit = rw.fit_linear_mixing_law(P @ A.T, P)
    >>> print(np.round(np.asarray(A_fit), 4) + 0.0)
    [[1.  0.2]
     [0.  0.5]]

  References:
    Chen et al. "Aioli: A Unified Optimization Framework for Language Model
    Data Mixing", ICLR 2025, arXiv:2411.05735.

    Catalog: seed_001 #22.
  """
  d = checks.check_floating(loss_drops, "loss_drops")
  p = checks.check_floating(mixtures, "mixtures")
  checks.check_rank(d, 2, "loss_drops")
  checks.check_same_shape(d, p, "loss_drops", "mixtures")
  if d.shape[0] < d.shape[1]:
    raise ValueError(
        f"`mixtures` needs at least K={d.shape[1]} runs (rows), got "
        f"{d.shape[0]}.")
  dtype = checks.compute_dtype(d, p)
  at, *_ = jnp.linalg.lstsq(p.astype(dtype), d.astype(dtype))
  return at.T


def aioli_mixture_update(log_p: ArrayLike, a: ArrayLike, *, eta: float,
                         normalize: bool = True) -> jax.Array:
  r"""One exponentiated-gradient step of Aioli on the mixture (log space).

  .. math::
    \log p \leftarrow \log p + \eta\,\textstyle\sum_i A_{ij}
    \quad\text{(then renormalised)},

  i.e. mixture weight moves towards the domains whose training lowers the
  *sum* of all domains' losses most. With ``normalize=True`` (the reference's
  ``aioli_normalize_A``) :math:`A` is first shifted to be non-negative (if its
  minimum is negative) and divided by its sum, which makes :math:`\eta`
  scale-free.

  Args:
    log_p: ``[K]`` current log mixture (need not be normalised).
    a: ``[K, K]`` mixing-law matrix from :func:`fit_linear_mixing_law`.
    eta: step size :math:`\eta \ge 0`.
    normalize: whether to normalise ``a`` as the reference does.

  Returns:
    ``[K]`` normalised log mixture.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> A = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    >>> lp = rw.aioli_mixture_update(jnp.log(jnp.array([0.5, 0.5])), A, eta=1.0)
    >>> print(np.round(np.exp(np.asarray(lp)), 4))
    [0.7311 0.2689]

  References:
    Chen et al. "Aioli: A Unified Optimization Framework for Language Model
    Data Mixing", ICLR 2025, arXiv:2411.05735.

    Catalog: seed_001 #22.
  """
  checks.check_scalar(eta, "eta", nonnegative=True)
  lp = checks.check_floating(log_p, "log_p")
  a = checks.check_floating(a, "a")
  checks.check_rank(lp, 1, "log_p")
  if a.shape != (lp.shape[0], lp.shape[0]):
    raise ValueError(f"`a` must have shape ({lp.shape[0]}, {lp.shape[0]}), "
                     f"got {a.shape}.")
  if normalize:
    a = a - jnp.minimum(jnp.min(a), 0.0)
    total = jnp.sum(a)
    a = jnp.where(total > 0, a / jnp.where(total > 0, total, 1.0), 0.0)
  return jax.nn.log_softmax(lp + eta * jnp.sum(a, axis=0))


class AioliState(NamedTuple):
  """State of :func:`aioli` (all arrays; ``count`` is the step counter).

  Example:
    >>> from jaxkit import reweighting as rw
    >>> state = rw.aioli(num_groups=3, eta=1.0, round_steps=6, lp_steps=1).init()
    >>> print(state.log_p.shape, state.drops.shape, int(state.count))
    (3,) (3, 3) 0
  """
  log_p: jax.Array       # [K] the mixture used outside LearnParams
  drops: jax.Array       # [K, K] accumulated loss drops, column j = sweep j
  prev_loss: jax.Array   # [K] group losses at the start of the current block
  ema_a: jax.Array       # [K, K] EMA of the fitted A
  count: jax.Array       # int32 step counter


def aioli(num_groups: int, *, eta: float, round_steps: int, lp_steps: int,
          lp_rounds: int = 1, one_hot_factor: float = 0.9,
          normalize: bool = True, ema: float | None = None,
          axis_name: str | None = None) -> base.ReweightingRule:
  r"""Aioli as an online rule: LearnParams sweeps, law fit, EG mixture step.

  Training time is cut into rounds of ``round_steps`` steps. The first
  :math:`\delta` = ``lp_rounds * num_groups * lp_steps`` steps of a round are
  *LearnParams*: blocks of ``lp_steps`` steps that train on the smoothed
  one-hot mixture of domain :math:`j` (``one_hot_factor`` on :math:`j`, the
  rest spread evenly), cycling :math:`j = 0 … K-1` ``lp_rounds`` times. The
  drop of every domain's loss over a block is accumulated in column
  :math:`j`; at the end of the sweeps :math:`A` is solved from them
  (:func:`fit_linear_mixing_law`), optionally EMA-smoothed, and the mixture
  takes one step of :func:`aioli_mixture_update`. The remaining steps of the
  round train on that mixture. Weights spread the mixture in use over the
  batch (module docstring), so with stratified batches the "sampling" is a
  reweighting.

  The loss drops are measured on ``eval_group_losses`` (``[K]``, e.g. the
  per-domain losses on a validation set at the current parameters, as in the
  reference) when ``update`` receives them; otherwise on the group mean
  losses of the incoming batch (data the model has not trained on yet —
  cheaper but much noisier). Deviations from the reference
  (HazyResearch/aioli ``AioliTrainer``, read for this port): the sweep
  order is the fixed cycle
  :math:`0…K-1` instead of a random permutation; the mixture update is
  cumulative without EMA; with ``ema`` it is recomputed from the uniform
  mixture with the smoothed :math:`A` every round (both as in the
  reference). The mixture starts uniform.

  Args:
    num_groups: :math:`K` (static int).
    eta: EG step size (>= 0).
    round_steps: steps per round, LearnParams included (static int,
      > LearnParams length).
    lp_steps: steps per LearnParams block (static int >= 1).
    lp_rounds: sweeps over the K domains per round (static int >= 1).
    one_hot_factor: mixture weight on the swept domain, in (1/K, 1].
    normalize: normalise :math:`A` before the EG step (reference default).
    ema: optional EMA factor for :math:`A` (``None``: no EMA).
    axis_name: optional ``shard_map`` axis.

  Returns:
    A :class:`ReweightingRule`; ``update`` requires ``group_ids`` and
    accepts the extra keyword ``eval_group_losses``; the state's ``log_p``
    is the learned mixture (use it for a sampler).

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> rule = rw.aioli(num_groups=2, eta=1.0, round_steps=6, lp_steps=1)
    >>> state = rule.init()
    >>> ids = jnp.array([0, 1])
    >>> w, state = rule.update(jnp.array([1., 1.]), state, group_ids=ids)
    >>> print(w)   # sweep of domain 0
    [0.9 0.1]

  References:
    Chen et al. "Aioli: A Unified Optimization Framework for Language Model
    Data Mixing", ICLR 2025, arXiv:2411.05735.

    Catalog: seed_001 #22.
  """
  k = base._check_num_groups(num_groups)
  checks.check_scalar(eta, "eta", nonnegative=True)
  for name, v, lo in (("round_steps", round_steps, 1),
                      ("lp_steps", lp_steps, 1), ("lp_rounds", lp_rounds, 1)):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
      raise ValueError(f"`{name}` must be an int >= {lo}, got {v!r}.")
  lp_len = lp_rounds * k * lp_steps
  if round_steps <= lp_len:
    raise ValueError(
        f"`round_steps` ({round_steps}) must exceed the LearnParams length "
        f"lp_rounds * num_groups * lp_steps = {lp_len}.")
  if k > 1:
    checks.check_scalar(one_hot_factor, "one_hot_factor", upper=1.0)
    if one_hot_factor <= 1.0 / k:
      raise ValueError(
          f"`one_hot_factor` must exceed 1/num_groups = {1.0 / k:.4g}, got "
          f"{one_hot_factor}.")
  if ema is not None:
    checks.check_scalar(ema, "ema", lower=0.0, upper=1.0)
  off = (1.0 - one_hot_factor) / max(k - 1, 1)
  sweep = jnp.full((k, k), off, jnp.float32)
  sweep = sweep.at[jnp.arange(k), jnp.arange(k)].set(
      one_hot_factor if k > 1 else 1.0)

  def init():
    return AioliState(log_p=jnp.full((k,), -jnp.log(k), jnp.float32),
                      drops=jnp.zeros((k, k), jnp.float32),
                      prev_loss=jnp.zeros((k,), jnp.float32),
                      ema_a=jnp.zeros((k, k), jnp.float32),
                      count=jnp.zeros((), jnp.int32))

  def update(losses, state, *, where=None, group_ids=None, step=None,
             eval_group_losses=None):
    x, mask, _ = base._prepare(losses, where)
    g = base._check_group_ids(group_ids, x.shape, k)
    x = jax.lax.stop_gradient(x)
    t = base._resolve_step(step, state.count)
    s = t % round_steps
    means, counts = base._group_means(x, mask, g, k, axis_name)
    means = means.astype(jnp.float32)
    if eval_group_losses is not None:
      ev = checks.check_floating(eval_group_losses, "eval_group_losses")
      if ev.shape != (k,):
        raise ValueError(f"`eval_group_losses` must have shape ({k},), got "
                         f"{ev.shape}.")
      means = jax.lax.stop_gradient(ev.astype(jnp.float32))
      counts = jnp.ones((k,), jnp.float32)
    # Keep the last known loss for groups absent from this batch.
    cur = jnp.where(counts > 0, means, state.prev_loss)
    block = s // lp_steps
    at_boundary = (s % lp_steps == 0) & (s <= lp_len)
    prev_j = (block - 1) % k
    record = at_boundary & (s > 0)
    drop_col = jnp.where(record, state.prev_loss - cur, 0.0)
    drops = state.drops.at[:, prev_j].add(drop_col)
    prev_loss = jnp.where(at_boundary, cur, state.prev_loss)
    # End of LearnParams: fit A, EG step, reset the accumulator.
    finish = s == lp_len
    a = fit_linear_mixing_law((drops / lp_rounds).T, sweep)
    first = t < round_steps
    ema_a = jnp.where(first | (ema is None), a,
                      (1.0 - (ema or 0.0)) * a + (ema or 0.0) * state.ema_a)
    # Without EMA the EG steps accumulate; with EMA the reference restarts
    # from the uniform mixture with the smoothed A every round.
    start = state.log_p if ema is None else jnp.full((k,), -jnp.log(k),
                                                      jnp.float32)
    log_p_new = aioli_mixture_update(start, ema_a, eta=eta,
                                     normalize=normalize)
    log_p = jnp.where(finish, log_p_new, state.log_p)
    ema_a = jnp.where(finish, ema_a, state.ema_a)
    drops = jnp.where(finish, jnp.zeros_like(drops), drops)
    in_lp = s < lp_len
    mix = jnp.where(in_lp, sweep[block % k], jnp.exp(log_p))
    w = base._per_example_from_groups(mix.astype(x.dtype), mask, g, k,
                                      axis_name)
    return jax.lax.stop_gradient(w), AioliState(log_p, drops, prev_loss,
                                                ema_a, state.count + 1)

  return base.ReweightingRule(init, update)
