"""Private helpers shared by the modules of :mod:`jaxkit.sparsity`."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks


def check_real(x, name: str) -> jax.Array:
  """Returns ``x`` as an array; raises ``TypeError`` unless it is real-valued."""
  if isinstance(x, (bool, np.bool_)):
    raise TypeError(f"`{name}` must be a real-valued array, got a bool.")
  arr = jnp.asarray(x)
  if not (jnp.issubdtype(arr.dtype, jnp.floating)
          or jnp.issubdtype(arr.dtype, jnp.integer)):
    raise TypeError(
        f"`{name}` must be a real-valued (float or int) array, got dtype "
        f"{arr.dtype}.")
  return arr


def check_nm(n, m) -> tuple[int, int]:
  """Validates a static N:M pattern: ints with ``1 <= n < m``."""
  for v, name in ((n, "n"), (m, "m")):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
      raise TypeError(f"`{name}` must be a Python int, got {v!r}.")
  n, m = int(n), int(m)
  if m < 2:
    raise ValueError(f"`m` must be >= 2, got m={m}.")
  if not 1 <= n < m:
    raise ValueError(
        f"`n` must satisfy 1 <= n < m for an N:M pattern, got n={n}, m={m}.")
  return n, m


def check_axis_divisible(shape, axis: int, m: int, name: str) -> int:
  """Normalises ``axis`` and checks that ``shape[axis]`` is divisible by m."""
  (ax,) = checks.normalize_axis(axis, len(shape), "axis")
  if shape[ax] % m:
    raise ValueError(
        f"`{name}` has length {shape[ax]} along axis={axis}, which is not "
        f"divisible by m={m}; pad it or choose another axis.")
  return ax


def check_sparsity(sparsity, name: str = "sparsity") -> None:
  """Raises unless a concrete ``sparsity`` lies in [0, 1)."""
  checks.check_scalar(sparsity, name)
  if checks.is_concrete(sparsity):
    v = float(np.asarray(sparsity))
    if not 0.0 <= v < 1.0:
      raise ValueError(f"`{name}` must lie in [0, 1), got {v}.")


def descending_rank(scores: jax.Array, axis: int) -> jax.Array:
  """Rank of each entry along ``axis`` in descending order (0 = largest).

  Ties are broken deterministically: the lower index gets the lower rank
  (a stable sort of ``-scores``). NaN scores rank last.
  """
  s = jnp.moveaxis(scores, axis, -1)
  s = jnp.where(jnp.isnan(s), -jnp.inf, s)
  order = jnp.argsort(-s, axis=-1, stable=True)
  # The inverse permutation by one scatter (a second argsort costs as much
  # again: XLA:CPU sorts are slow).
  positions = jnp.broadcast_to(
      jnp.arange(s.shape[-1], dtype=order.dtype), order.shape)
  rank = jnp.put_along_axis(jnp.zeros_like(order), order, positions, axis=-1,
                            inplace=False)
  return jnp.moveaxis(rank, -1, axis)


def keep_top_fraction(scores: jax.Array, sparsity, axis) -> jax.Array:
  """Boolean mask keeping ``len - floor(sparsity * len)`` largest along axis.

  ``axis=None`` ranks over the flattened array. ``sparsity`` may be traced.
  """
  if axis is None:
    flat = scores.reshape(-1)
    return keep_top_fraction(flat, sparsity, 0).reshape(scores.shape)
  length = scores.shape[axis]
  if checks.is_concrete(sparsity):
    # A static count: lax.top_k (ties to the lower index, as the stable sort
    # below) is 5-6x faster than ranking everything on XLA:CPU.
    num_prune = int(np.floor(np.float32(sparsity) * np.float32(length)
                             + np.float32(1e-6)))
    s = jnp.moveaxis(scores, axis, -1)
    s = jnp.where(jnp.isnan(s), -jnp.inf, s)
    _, idx = jax.lax.top_k(s, length - num_prune)
    keep_mask = jnp.put_along_axis(jnp.zeros(s.shape, bool), idx, True,
                                   axis=-1, inplace=False)
    return jnp.moveaxis(keep_mask, -1, axis)
  num_prune = jnp.floor(jnp.asarray(sparsity, jnp.float32) * length + 1e-6)
  keep = length - num_prune.astype(jnp.int32)
  return descending_rank(scores, axis) < keep
