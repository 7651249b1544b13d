r"""The reweighting-rule interface: ``NamedTuple(init, update)``, ``chain``.

A reweighting rule turns a vector of per-example losses into per-example
weights, the way an optax ``GradientTransformation`` turns gradients into
updates:

.. code-block:: python

  rule = jaxkit.reweighting.loss_based(strategy="linupper")
  state = rule.init()
  ...
  losses = per_example_loss(params, batch)                 # [B]
  weights, state = rule.update(losses, state, where=mask)  # [B], stop-gradient
  objective = jnp.sum(weights * losses)                    # scalar for jax.grad

**Weight scale convention (every rule in** :mod:`jaxkit.reweighting` **).**
Per-example weights are non-negative, exactly ``0`` on masked examples, and
sum to ``1`` over the valid examples of the **global** batch, so the training
objective is :math:`\sum_i w_i \ell_i` (uniform weights give the plain mean).
When there is no valid example (all masked, empty batch, or a rule that
rejects every example) the weights are all ``0`` and the objective is ``0``
with zero, finite gradients — the same convention as
:func:`jaxkit.masked_mean`. Weights are ``jax.lax.stop_gradient``-ed.
Per-class / per-domain vectors (``class_balanced_weights``,
``temperature_sampling_probs`` …) state their own scale.

**State.** The state is a pytree (NamedTuple) of arrays only — step counters
are int32 arrays, never Python ints — so it shards, jits, and checkpoints
with orbax like an optax state (restore with an abstract target to get the
NamedTuples back).

**Global reductions.** Rules that normalise over the batch use plain
``jnp`` reductions, which are global under ``jax.jit`` with a sharded batch.
Inside ``jax.shard_map`` pass ``axis_name=`` (the mesh axis the batch is
split over) when constructing the rule / calling the function: the
reductions then also run over that axis (``lax.pmax`` / ``lax.psum``).

**Chaining.** :func:`chain` runs several rules on the same losses and
multiplies their weights, then renormalises (see its docstring).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


class ReweightingRule(NamedTuple):
  """A stateful reweighting rule, optax style.

  Attributes:
    init: ``init() -> state``; the state is a pytree of arrays.
    update: ``update(losses, state, *, where=None, group_ids=None,
      step=None) -> (weights, new_state)`` with ``losses`` ``[B]``,
      ``weights`` ``[B]`` (stop-gradient, sum 1 over valid examples).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> uniform = rw.ReweightingRule(
    ...     init=rw.EmptyState,
    ...     update=lambda losses, state, **kw: (
    ...         jnp.full_like(losses, 1 / losses.size), state))
    >>> w, _ = uniform.update(jnp.array([1., 2., 3., 4.]), uniform.init())
    >>> print(w)
    [0.25 0.25 0.25 0.25]
  """
  init: Callable[[], Any]
  update: Callable[..., tuple[jax.Array, Any]]


class EmptyState(NamedTuple):
  """State of a stateless rule (an empty pytree).

  Example:
    >>> import jax
    >>> from jaxkit import reweighting as rw
    >>> state = rw.stateless(rw.loss_based_weights).init()
    >>> print(state == rw.EmptyState(), jax.tree_util.tree_leaves(state))
    True []
  """


# ----------------------------------------------------------------------------
# Shared private helpers (used by every module of the package).
# ----------------------------------------------------------------------------


def _prepare(losses: ArrayLike, where, name: str = "losses"):
  """Validates a ``[B]`` loss vector and mask; returns (losses, mask, dtype).

  Losses are cast to the compute dtype (>= float32); masked entries are set
  to 0 so that NaN / inf there never propagate.
  """
  x = checks.check_floating(losses, name)
  checks.check_rank(x, 1, name)
  mask = checks.check_where(where, x.shape, "where")
  if mask is None:
    mask = jnp.ones(x.shape, bool)
  dtype = checks.compute_dtype(x)
  x = jnp.where(mask, x.astype(dtype), 0.0)
  return x, mask, dtype


def _psum(x, axis_name):
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def _pmax(x, axis_name):
  return x if axis_name is None else jax.lax.pmax(x, axis_name)


def _pmin(x, axis_name):
  return x if axis_name is None else jax.lax.pmin(x, axis_name)


def _masked_max(x, mask, axis_name=None):
  """Max over the valid entries; ``-inf`` when none is valid."""
  return _pmax(jnp.max(jnp.where(mask, x, -jnp.inf), initial=-jnp.inf),
               axis_name)


def _masked_min(x, mask, axis_name=None):
  """Min over the valid entries; ``+inf`` when none is valid."""
  return _pmin(jnp.min(jnp.where(mask, x, jnp.inf), initial=jnp.inf),
               axis_name)


def _normalize(w, mask, axis_name=None):
  """``w`` zeroed outside ``mask`` and scaled to sum 1 (all 0 if sum is 0)."""
  w = jnp.where(mask, w, 0.0)
  total = _psum(jnp.sum(w), axis_name)
  safe = jnp.where(total > 0, total, 1.0)
  return jnp.where(total > 0, w / safe, 0.0)


def _masked_softmax(z, mask, axis_name=None):
  """Softmax of ``z`` over the valid entries of the (global) batch."""
  m = jax.lax.stop_gradient(_masked_max(z, mask, axis_name))
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  e = jnp.where(mask, jnp.exp(jnp.where(mask, z, m) - m), 0.0)
  return _normalize(e, mask, axis_name)


def _check_group_ids(group_ids, shape, num_groups: int):
  """Validates ``group_ids`` (ints in [0, num_groups)) of shape ``shape``."""
  if group_ids is None:
    raise ValueError(
        "`group_ids` is required by this rule: pass an int array [B] with the "
        "group / domain of every example.")
  g = jnp.asarray(group_ids)
  if not jnp.issubdtype(g.dtype, jnp.integer):
    raise TypeError(f"`group_ids` must be an integer array, got {g.dtype}.")
  if g.shape != tuple(shape):
    raise ValueError(
        f"`group_ids` must have the shape of `losses` {tuple(shape)}, got "
        f"{g.shape}.")
  if checks.is_concrete(g) and g.size:
    gn = np.asarray(g)
    if gn.min() < 0 or gn.max() >= num_groups:
      raise ValueError(
          f"`group_ids` must lie in [0, num_groups={num_groups}), got values "
          f"in [{gn.min()}, {gn.max()}].")
  return g


def _group_sums(x, mask, group_ids, num_groups: int, axis_name=None):
  """Per-group (sum of x, count) over valid examples: two ``[K]`` vectors."""
  onehot = (group_ids[:, None] == jnp.arange(num_groups)[None, :]) & mask[:, None]
  onehot = onehot.astype(x.dtype)
  sums = _psum(jnp.sum(onehot * x[:, None], axis=0), axis_name)
  counts = _psum(jnp.sum(onehot, axis=0), axis_name)
  return sums, counts


def _group_means(x, mask, group_ids, num_groups: int, axis_name=None):
  """Per-group mean over valid examples (0 for absent groups) and counts."""
  sums, counts = _group_sums(x, mask, group_ids, num_groups, axis_name)
  return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), 0.0), counts


def _per_example_from_groups(group_weights, mask, group_ids, num_groups: int,
                             axis_name=None):
  r"""Per-example weights :math:`q_{g_i}/n_{g_i}`, renormalised to sum 1.

  With these weights :math:`\sum_i w_i\ell_i = \sum_g \tilde q_g L_g`, the
  group-weighted mean of per-group mean losses, where :math:`\tilde q` is
  ``group_weights`` renormalised over the groups present in the batch.
  """
  ones = jnp.ones(mask.shape, group_weights.dtype)
  _, counts = _group_sums(ones, mask, group_ids, num_groups, axis_name)
  per_group = jnp.where(counts > 0, group_weights / jnp.maximum(counts, 1.0),
                        0.0)
  # A one-hot select instead of a gather: works on explicitly sharded batches.
  onehot = group_ids[:, None] == jnp.arange(num_groups)[None, :]
  w = jnp.sum(jnp.where(onehot, per_group[None, :], 0.0), axis=1)
  return _normalize(w, mask, axis_name)


def _check_num_groups(num_groups) -> int:
  if isinstance(num_groups, bool) or not isinstance(num_groups,
                                                    (int, np.integer)):
    raise TypeError(f"`num_groups` must be an int, got {num_groups!r}.")
  if num_groups < 1:
    raise ValueError(f"`num_groups` must be >= 1, got {num_groups}.")
  return int(num_groups)


def _resolve_step(step, count):
  """The step used by a schedule: the caller's ``step`` or the state's."""
  return count if step is None else jnp.asarray(step, jnp.int32)


# ----------------------------------------------------------------------------
# Public: chain and stateless adapters.
# ----------------------------------------------------------------------------


def stateless(weight_fn: Callable[..., jax.Array], *,
              axis_name: str | None = None, **kwargs) -> ReweightingRule:
  r"""Wraps a pure weight function ``fn(losses, *, where, **kwargs)`` as a rule.

  The rule has an empty state; its ``update`` ignores ``group_ids`` and
  ``step`` and returns ``stop_gradient(fn(losses, where=where, **kwargs))``,
  renormalised to the house scale (sum 1 over valid examples).

  Args:
    weight_fn: a function of ``(losses, *, where=None, **kwargs)`` returning
      non-negative ``[B]`` weights, e.g. :func:`loss_based_weights`.
    axis_name: optional ``shard_map`` axis for the renormalisation.
    **kwargs: fixed keyword arguments of ``weight_fn``.

  Returns:
    A :class:`ReweightingRule`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> rule = rw.stateless(rw.loss_based_weights, strategy="uniform")
    >>> w, _ = rule.update(jnp.array([1., 2., 3., 4.]), rule.init())
    >>> print(w)
    [0.25 0.25 0.25 0.25]
  """

  def init():
    return EmptyState()

  def update(losses, state, *, where=None, group_ids=None, step=None):
    del group_ids, step
    x, mask, _ = _prepare(losses, where)
    w = weight_fn(losses, where=where, **kwargs)
    w = _normalize(jnp.asarray(w, x.dtype), mask, axis_name)
    return jax.lax.stop_gradient(w), state

  return ReweightingRule(init, update)


def chain(*rules: ReweightingRule,
          axis_name: str | None = None) -> ReweightingRule:
  r"""Composes rules: the product of their weights, renormalised.

  Every rule sees the same ``losses``, ``where``, ``group_ids`` and ``step``
  (rules do not see each other's weights). The chained weights are

  .. math::
    w_i = \frac{\prod_r w^{(r)}_i}{\sum_j \prod_r w^{(r)}_j}

  over the valid examples — e.g. ``chain(group_dro(...), loss_based(...))``
  first splits the mass across groups, then favours informative examples
  inside every group. If the product vanishes on every valid example (the
  rules disagree completely) the weights are all ``0`` (objective ``0``).
  The state is the tuple of the rules' states.

  Args:
    *rules: :class:`ReweightingRule` objects (at least one).
    axis_name: optional ``shard_map`` axis for the renormalisation.

  Returns:
    A :class:`ReweightingRule` whose state is a tuple of states.

  Raises:
    ValueError: if no rule is given.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> rule = rw.chain(rw.loss_based(strategy="uniform"),
    ...                 rw.group_dro(num_groups=2, step_size=0.0))
    >>> w, state = rule.update(jnp.array([1., 2., 3.]), rule.init(),
    ...                        group_ids=jnp.array([0, 0, 1]))
    >>> print(jnp.round(w, 4))
    [0.25 0.25 0.5 ]
  """
  if not rules:
    raise ValueError("`chain` needs at least one rule.")
  for r in rules:
    if not isinstance(r, ReweightingRule):
      raise TypeError(
          f"`chain` takes ReweightingRule objects, got {type(r).__name__}.")

  def init():
    return tuple(r.init() for r in rules)

  def update(losses, state, *, where=None, group_ids=None, step=None):
    x, mask, _ = _prepare(losses, where)
    if len(state) != len(rules):
      raise ValueError(
          f"`state` must hold {len(rules)} rule states, got {len(state)}.")
    w = jnp.ones(x.shape, x.dtype)
    new_states = []
    for r, s in zip(rules, state):
      wi, si = r.update(losses, s, where=where, group_ids=group_ids,
                        step=step)
      w = w * wi
      new_states.append(si)
    return jax.lax.stop_gradient(_normalize(w, mask, axis_name)), tuple(
        new_states)

  return ReweightingRule(init, update)
