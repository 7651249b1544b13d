"""Masked reductions: the caller's side of jaxkit's per-example convention."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike, Axis


def masked_mean(x: ArrayLike, where: ArrayLike | None = None,
                weights: ArrayLike | None = None,
                axis: Axis = None) -> jax.Array:
  r"""Weighted mean of ``x`` over the entries selected by ``where``.

  jaxkit's losses and divergences return per-example values; this is the one
  helper that reduces them the way a training loop should:

  .. math::
    \operatorname{masked\_mean}(x) = \frac{\sum_i w_i m_i x_i}{\sum_i w_i m_i},

  with :math:`m = ` ``where`` (1 when omitted) and :math:`w = ` ``weights``
  (1 when omitted). Masked entries never contribute, even if they hold ``nan``
  or ``inf``. When nothing is selected (or all weights are zero) the result is
  ``0`` with zero, finite gradients. Under ``jax.jit`` with sharded inputs the
  sums are global, so the mean is over the whole batch, not per shard.

  Args:
    x: values, any shape ``[...]``; floating point.
    where: optional boolean mask broadcastable to ``x`` with the same rank
      (each dimension equal or 1).
    weights: optional non-negative weights with the same rank rules as
      ``where``.
    axis: axes to reduce; ``None`` (default) reduces everything.

  Returns:
    The masked mean, with ``axis`` removed (a scalar for ``axis=None``), in
    float32 or wider.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxkit
    >>> x = jnp.array([[1., 2., jnp.nan], [4., 5., 6.]])
    >>> m = jnp.array([[True, True, False], [True, False, False]])
    >>> print(jaxkit.masked_mean(x, where=m))
    2.3333333
    >>> print(jaxkit.masked_mean(x, where=m, axis=1))
    [1.5 4. ]
  """
  x = checks.check_floating(x, "x")
  shape = x.shape
  axes = checks.normalize_axis(axis, x.ndim)
  dtype = checks.compute_dtype(x)
  x = x.astype(dtype)
  mask = checks.check_where(where, shape, "where")
  if mask is None:
    mask = jnp.ones(shape, bool)
  if weights is not None:
    w = checks.check_floating(weights, "weights")
    if w.ndim != x.ndim or any(a not in (1, b) for a, b in zip(w.shape, shape)):
      raise ValueError(
          f"`weights` must have the rank of `x` with each dimension equal or "
          f"1; got shape {w.shape} for `x` of shape {shape}.")
    w = jnp.broadcast_to(w.astype(dtype), shape)
    w = jnp.where(mask, w, 0.0)
  else:
    w = mask.astype(dtype)
  num = jnp.sum(w * jnp.where(mask, x, 0.0), axis=axes)
  den = jnp.sum(w, axis=axes)
  safe_den = jnp.where(den > 0, den, 1.0)
  return jnp.where(den > 0, num / safe_den, 0.0)
