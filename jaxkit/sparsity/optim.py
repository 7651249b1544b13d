r"""Optax transforms for sparse training: fixed masks, CAST decay, prune-and-grow.

* :func:`masked` — wraps any optax optimizer so pruned weights stay exactly
  zero (the inner optimizer sees zero gradients there, and the emitted update
  cancels any non-zero pruned value on the first step).
* :func:`cast_l1_decay` — CAST's AdamS ingredient: an L1 decay applied only to
  the weights outside the current N:M mask, with the mask recomputed every
  ``every`` steps, so pruned weights shrink continuously but can come back.
* :func:`nm_prune` — applies hard N:M masks to every eligible leaf of a
  parameter tree (the end of CAST, or one-shot 2:4).
* :func:`prune_and_grow` — RigL/SET-style constant-budget mask update (the
  core of dynamic sparse learning, DSL).

Why not ``optax.masked``: it applies a transform to a *subset of leaves*
(leaf-level selection), whereas pruning needs *element-level* masks inside a
leaf. ``optax.masked`` is the right tool for "which leaves are sparsified"
and is what :func:`masked`'s ``None`` leaves amount to.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxkit._src import checks
from jaxkit._src.typing import ArrayTree
from jaxkit.sparsity import _common
from jaxkit.sparsity import nm as nm_lib


def _is_none(x):
  return x is None


def masked(optimizer: optax.GradientTransformation,
           masks: ArrayTree | Callable[[ArrayTree], ArrayTree], *,
           zero_pruned: bool = True) -> optax.GradientTransformation:
  r"""Keeps pruned weights at exactly zero through training.

  ``masks`` mirrors the parameter tree with a boolean array (``True`` = kept)
  or ``None`` (a dense leaf) at every leaf; it may also be a function of the
  params. Gradients are zeroed at pruned entries before the inner optimizer
  (so its moments stay zero there), and at pruned entries the emitted update
  is ``-params`` (``0`` when ``params`` is not passed), so after
  ``optax.apply_updates`` every pruned weight is exactly ``0`` — even if the
  initial params were not masked:

  .. math::
    u = M\odot \mathrm{opt}(M\odot g) - (1-M)\odot \theta .

  With ``zero_pruned=False`` the ``(1-M)`` entries are *frozen* at their
  current value instead (update 0): sparse fine-tuning of a dense model, as in
  LIFT (``masks`` = :func:`jaxkit.sparsity.lift_mask`) or WAGLE-style
  unlearning of attributed weights.

  Args:
    optimizer: any optax ``GradientTransformation``.
    masks: pytree (matching params, ``None`` for dense leaves) of boolean
      masks, or a callable ``params -> masks``.
    zero_pruned: ``True`` keeps masked-out weights at exactly 0; ``False``
      freezes them.

  Returns:
    An optax ``GradientTransformation`` (its state is the inner state).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from jaxkit.sparsity import masked
    >>> params = {'w': jnp.array([1.0, 2.0])}
    >>> opt = masked(optax.sgd(0.1), {'w': jnp.array([True, False])})
    >>> state = opt.init(params)
    >>> u, state = opt.update({'w': jnp.array([1.0, 1.0])}, state, params)
    >>> print(optax.apply_updates(params, u)['w'])
    [0.9 0. ]

  References:
    Zhu, Gupta, "To prune, or not to prune", 2017, arXiv:1710.01878 (masked
    training); optax.masked (leaf-level masking).
  """

  def get_masks(params):
    return masks(params) if callable(masks) else masks

  def apply(mask, x):
    if mask is None or x is None:
      return x
    return jnp.where(mask, x, jnp.zeros((), x.dtype))

  def init_fn(params):
    return optimizer.init(params)

  def update_fn(updates, state, params=None, **extra):
    if callable(masks) and params is None:
      raise ValueError("`masks` is a callable of the params: pass `params` to "
                       "update().")
    mk = get_masks(params)
    g = jax.tree.map(apply, mk, updates, is_leaf=_is_none)
    u, state = optimizer.update(g, state, params, **extra)
    if params is None or not zero_pruned:
      u = jax.tree.map(apply, mk, u, is_leaf=_is_none)
    else:
      u = jax.tree.map(
          lambda mask, x, p: x if mask is None else jnp.where(
              mask, x, -p.astype(x.dtype)), mk, u, params, is_leaf=_is_none)
    return u, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _default_eligible(m: int, axis: int):
  def eligible(x):
    return (jnp.ndim(x) == 2 and jnp.issubdtype(jnp.asarray(x).dtype,
                                                jnp.floating)
            and jnp.shape(x)[axis] % m == 0)
  return eligible


def _eligible_tree(params, where, m, axis):
  """Pytree of Python bools: which leaves get an N:M mask."""
  if where is None:
    return jax.tree.map(_default_eligible(m, axis), params)
  if callable(where):
    return jax.tree.map(bool, where(params))
  return jax.tree.map(bool, where)


def nm_prune(params: ArrayTree, *, n: int = 2, m: int = 4, axis: int = 0,
             where: Any = None) -> tuple[ArrayTree, ArrayTree]:
  r"""Applies a magnitude N:M mask to every eligible leaf of a param tree.

  Args:
    params: pytree of parameters.
    n: kept per group (static).
    m: group size (static).
    axis: grouping axis of each kernel (static; 0 = input axis of ``[in,
      out]``).
    where: which leaves to prune: ``None`` = every floating rank-2 leaf whose
      ``axis`` length is divisible by ``m`` (kernels; biases and norms stay
      dense); or a pytree / callable ``params -> pytree`` of Python bools.

  Returns:
    ``(pruned_params, masks)``; ``masks`` has ``None`` at dense leaves, so it
    plugs straight into :func:`masked`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import nm_prune
    >>> p, mk = nm_prune({'w': jnp.array([[1.0], [-4.0], [3.0], [2.0]]),
    ...                   'b': jnp.ones(1)})
    >>> print(p['w'][:, 0], mk['b'])
    [ 0. -4.  3.  0.] None

  References:
    Mishra et al., 2021, arXiv:2104.08378.
  """
  _common.check_nm(n, m)
  elig = _eligible_tree(params, where, m, axis)

  def one(e, p):
    if not e:
      return None
    return nm_lib.nm_mask(jnp.abs(p.astype(jnp.float32)), n=n, m=m, axis=axis)

  masks = jax.tree.map(one, elig, params)
  pruned = jax.tree.map(
      lambda mk, p: p if mk is None else jnp.where(mk, p, jnp.zeros((), p.dtype)),
      masks, params, is_leaf=_is_none)
  return pruned, masks


class CastL1DecayState(NamedTuple):
  """State of :func:`cast_l1_decay`: step count and the current masks.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import cast_l1_decay
    >>> params = {'w': jnp.array([[1.0], [-4.0], [3.0], [2.0]])}
    >>> state = cast_l1_decay(0.1).init(params)
    >>> print(int(state.count), state.masks['w'].ravel())
    0 [False  True  True False]
  """
  count: jax.Array
  masks: ArrayTree


def cast_l1_decay(strength: float | optax.Schedule, *, n: int = 2, m: int = 4,
                  axis: int = 0, every: int = 10,
                  where: Any = None) -> optax.GradientTransformation:
  r"""CAST's masked L1 decay: shrinks the weights outside the current N:M mask.

  Every ``every`` steps (and at step 0) the mask :math:`M_t` = top-``n``
  :math:`|w|` per group of ``m`` is recomputed from the params; at every step
  the update direction gets an L1 term on the *pruned* weights only:

  .. math::
    u_t \leftarrow u_t + \lambda_t\,\mathrm{sign}(w_t)\odot(1 - M_t).

  Chain it after the adaptive scaling and before the learning rate, as in
  CAST's AdamS: ``optax.chain(optax.scale_by_adam(), cast_l1_decay(lam),
  optax.scale(-lr))``. At the end apply the hard mask with :func:`nm_prune`.

  Deviations from the paper (no reference code is public): :math:`\lambda_t`
  is any optax schedule you pass (the paper's adaptive rule is not
  reproduced), and CAST's "weight scaling" step and dense-teacher KD are left
  to the caller (KD: :func:`jaxkit.losses.kd_loss`).

  Args:
    strength: :math:`\lambda` (float) or an optax schedule of the step.
    n: kept per group (static).
    m: group size (static).
    axis: grouping axis (static; 0 = the input axis of ``[in, out]``).
    every: re-masking period in steps (static int >= 1; CAST uses 10).
    where: leaves to sparsify, as in :func:`nm_prune`.

  Returns:
    An optax ``GradientTransformation`` with :class:`CastL1DecayState`; its
    ``update`` requires ``params``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from jaxkit.sparsity import cast_l1_decay
    >>> params = {'w': jnp.array([[4.0], [-1.0], [3.0], [-2.0]])}
    >>> tx = cast_l1_decay(0.5)
    >>> state = tx.init(params)
    >>> u, state = tx.update({'w': jnp.zeros((4, 1))}, state, params)
    >>> print(u['w'][:, 0])
    [ 0.  -0.5  0.  -0.5]

  References:
    Huang et al., "CAST: Continuous and Differentiable Semi-Structured
    Sparsity-Aware Training for Large Language Models", 2025,
    arXiv:2509.25996.

    Catalog: seed_002 #54.
  """
  _common.check_nm(n, m)
  if isinstance(every, bool) or not isinstance(every, int) or every < 1:
    raise ValueError(f"`every` must be an int >= 1, got {every!r}.")
  if not callable(strength):
    checks.check_scalar(strength, "strength", nonnegative=True)

  def init_fn(params):
    _, masks = nm_prune(params, n=n, m=m, axis=axis, where=where)
    return CastL1DecayState(jnp.zeros((), jnp.int32), masks)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("cast_l1_decay needs `params` in update().")
    _, fresh = nm_prune(params, n=n, m=m, axis=axis, where=where)
    refresh = state.count % every == 0
    masks = jax.tree.map(lambda new, old: jnp.where(refresh, new, old), fresh,
                         state.masks)
    lam = strength(state.count) if callable(strength) else strength

    def decay(mask, u, p):
      if mask is None:
        return u
      return u + jnp.asarray(lam, u.dtype) * jnp.sign(p).astype(u.dtype) * (
          ~mask).astype(u.dtype)

    updates = jax.tree.map(decay, masks, updates, params, is_leaf=_is_none)
    return updates, CastL1DecayState(state.count + 1, masks)

  return optax.GradientTransformation(init_fn, update_fn)


def prune_and_grow(w: jax.Array, mask: jax.Array, grad: jax.Array, *,
                   fraction: float, key: jax.Array | None = None) -> jax.Array:
  r"""Constant-budget mask update: drop the weakest kept, grow the strongest pruned.

  Drops ``k = round(fraction · #kept)`` kept weights with the smallest
  :math:`|w|` and grows ``k`` pruned ones with the largest :math:`|g|`
  (RigL) — or uniformly at random when ``key`` is given (SET). The number of
  kept weights is unchanged. Newly grown weights should be re-initialised to
  zero by the caller (their value under the old mask is zero anyway).

  Args:
    w: weights (any shape).
    mask: boolean mask of ``w``'s shape (``True`` = kept).
    grad: dense gradient of the loss w.r.t. ``w`` (RigL's growth signal).
    fraction: share of the kept weights to swap, in ``[0, 1)``.
    key: optional PRNG key: random growth (SET) instead of gradient growth.

  Returns:
    The new boolean mask (same number of ``True``).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import prune_and_grow
    >>> w = jnp.array([3.0, 0.1, 0.0, 0.0])
    >>> mask = jnp.array([True, True, False, False])
    >>> g = jnp.array([0.0, 0.0, 5.0, 1.0])
    >>> print(prune_and_grow(w, mask, g, fraction=0.5))
    [ True False  True False]

  References:
    Evci et al., "Rigging the Lottery", ICML 2020, arXiv:1911.11134; Mocanu
    et al. (SET), Nature Comm. 2018; DSL (dynamic sparse learning for
    recommendation), Wang et al., 2023, arXiv:2308.11345.

    Catalog: seed_002 #12.
  """
  w = checks.check_floating(w, "w")
  g = checks.check_floating(grad, "grad")
  mask = jnp.asarray(mask).astype(bool)
  checks.check_same_shape(w, g, "w", "grad")
  checks.check_same_shape(w, mask, "w", "mask")
  _common.check_sparsity(fraction, "fraction")
  flat_w = jnp.abs(w.reshape(-1).astype(jnp.float32))
  flat_m = mask.reshape(-1)
  kept = jnp.sum(flat_m)
  k = jnp.round(jnp.asarray(fraction, jnp.float32) * kept).astype(jnp.int32)
  k = jnp.minimum(k, flat_m.size - kept)
  # Drop: the k kept entries of smallest |w| (pruned entries rank last).
  drop_rank = _common.descending_rank(jnp.where(flat_m, -flat_w, -jnp.inf), 0)
  drop = flat_m & (drop_rank < k)
  if key is None:
    grow_score = jnp.abs(g.reshape(-1).astype(jnp.float32))
  else:
    grow_score = jax.random.uniform(key, flat_w.shape)
  # Grow among entries pruned *before* this update (never the just dropped).
  grow_rank = _common.descending_rank(
      jnp.where(flat_m, -jnp.inf, grow_score), 0)
  grow = (~flat_m) & (grow_rank < k)
  return ((flat_m & ~drop) | grow).reshape(mask.shape)
