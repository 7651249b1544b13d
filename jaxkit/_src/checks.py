"""Argument checks that raise clear errors at trace time.

Every check names the argument, what was expected and what was received. The
checks only look at static information (shapes, dtypes, Python numbers) unless
stated otherwise, so they cost nothing under :func:`jax.jit`. Value checks on
arrays (e.g. "log-probabilities are normalised") only run when the array is
concrete, i.e. when the function is called eagerly; under ``jit`` they are
skipped because the values do not exist yet.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src.typing import ArrayLike, Axis


def is_concrete(x) -> bool:
  """True when ``x`` holds values now (not a tracer inside jit/grad/vmap)."""
  return not isinstance(x, jax.core.Tracer)


def check_floating(x: ArrayLike, name: str) -> jax.Array:
  """Returns ``x`` as an array; raises ``TypeError`` unless it is floating."""
  if isinstance(x, (bool, np.bool_)):
    raise TypeError(f"`{name}` must be a floating-point array, got a bool.")
  arr = jnp.asarray(x)
  if not jnp.issubdtype(arr.dtype, jnp.floating):
    raise TypeError(
        f"`{name}` must be a floating-point array (log-probabilities, "
        f"samples, ...), got dtype {arr.dtype}. Cast it explicitly, e.g. "
        f"`{name}.astype(jnp.float32)`.")
  return arr


def compute_dtype(*arrays: jax.Array) -> jnp.dtype:
  """The dtype jaxkit computes in: the promoted input dtype, at least float32.

  bf16 / f16 inputs are accumulated in float32 (house rule); float64 stays
  float64 when x64 is enabled.
  """
  dtype = jnp.result_type(*arrays)
  return jnp.promote_types(dtype, jnp.float32)


def check_same_shape(a: jax.Array, b: jax.Array, name_a: str,
                     name_b: str) -> None:
  """Raises ``ValueError`` unless ``a`` and ``b`` have identical shapes."""
  if jnp.shape(a) != jnp.shape(b):
    raise ValueError(
        f"`{name_a}` and `{name_b}` must have the same shape, got "
        f"{jnp.shape(a)} and {jnp.shape(b)}. jaxkit never broadcasts "
        "the two distributions against each other; broadcast explicitly.")


def check_rank(x: jax.Array, rank: int | Sequence[int], name: str) -> None:
  """Raises ``ValueError`` unless ``x.ndim`` is ``rank`` (or one of them)."""
  ranks = (rank,) if isinstance(rank, int) else tuple(rank)
  if jnp.ndim(x) not in ranks:
    raise ValueError(
        f"`{name}` must have rank {' or '.join(map(str, ranks))}, got shape "
        f"{jnp.shape(x)} (rank {jnp.ndim(x)}).")


def normalize_axis(axis: Axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
  """Returns ``axis`` as a sorted tuple of non-negative ints; validates range."""
  if axis is None:
    return tuple(range(ndim))
  if isinstance(axis, numbers.Integral):
    axes = (axis,)
  elif isinstance(axis, (tuple, list)):
    axes = tuple(axis)
  else:
    raise TypeError(f"`{name}` must be an int or a tuple of ints, got {axis!r}.")
  out = []
  for ax in axes:
    if not isinstance(ax, numbers.Integral):
      raise TypeError(f"`{name}` must be an int or a tuple of ints, got {axis!r}.")
    if not -ndim <= ax < ndim:
      raise ValueError(
          f"`{name}`={axis!r} is out of range for an input of rank {ndim}.")
    out.append(int(ax) % ndim)
  if len(set(out)) != len(out):
    raise ValueError(f"`{name}`={axis!r} repeats an axis.")
  return tuple(sorted(out))


def check_where(where, shape: tuple[int, ...], name: str = "where"):
  """Validates a mask and returns it as a bool array broadcast to ``shape``.

  The mask must have the same rank as the input and each of its dimensions
  must equal the input's or be 1 (so a per-row mask is written ``[B, 1]``,
  never ``[B]`` — a ``[B]`` mask would silently broadcast along the wrong
  axis). Returns ``None`` for ``None``.
  """
  if where is None:
    return None
  where = jnp.asarray(where)
  if not (jnp.issubdtype(where.dtype, jnp.bool_)
          or jnp.issubdtype(where.dtype, jnp.integer)
          or jnp.issubdtype(where.dtype, jnp.floating)):
    raise TypeError(f"`{name}` must be a boolean mask, got dtype {where.dtype}.")
  if where.ndim != len(shape) or any(
      w not in (1, s) for w, s in zip(where.shape, shape)):
    raise ValueError(
        f"`{name}` must have the input's rank with each dimension equal to the "
        f"input's or 1; got shape {where.shape} for an input of shape {shape}. "
        f"For a per-row mask add a trailing axis, e.g. `{name}[..., None]`.")
  return jnp.broadcast_to(where.astype(bool), shape)


def check_scalar(value, name: str, *, positive: bool = False,
                 nonnegative: bool = False, excluded: Sequence[float] = (),
                 lower: float | None = None,
                 upper: float | None = None) -> None:
  """Checks a float hyperparameter when it is concrete.

  Traced values (a scheduled ``beta``) pass through unchecked: the check runs
  whenever the number is known at trace time, which is the common case.
  """
  if not is_concrete(value):
    return
  arr = np.asarray(value)
  if arr.dtype == bool:
    raise TypeError(f"`{name}` must be a number, got a bool.")
  if arr.ndim != 0:
    raise ValueError(f"`{name}` must be a scalar, got shape {arr.shape}.")
  v = float(arr)
  if not np.isfinite(v):
    raise ValueError(f"`{name}` must be finite, got {v}.")
  if positive and not v > 0:
    raise ValueError(f"`{name}` must be > 0, got {v}.")
  if nonnegative and not v >= 0:
    raise ValueError(f"`{name}` must be >= 0, got {v}.")
  if lower is not None and v < lower:
    raise ValueError(f"`{name}` must be >= {lower}, got {v}.")
  if upper is not None and v > upper:
    raise ValueError(f"`{name}` must be <= {upper}, got {v}.")
  for e in excluded:
    if v == e:
      raise ValueError(
          f"`{name}`={v} is not allowed here (the formula is undefined at "
          f"{name} in {tuple(excluded)}; use the limiting divergence instead).")


def check_log_normalized(log_p: jax.Array, name: str, *, axis: Axis = -1,
                         where: jax.Array | None = None,
                         atol: float | None = None) -> None:
  """Raises ``ValueError`` if concrete log-probabilities do not sum to one.

  Skipped for traced inputs (inside ``jit``). Rows that are fully masked by
  ``where`` are not checked. The tolerance defaults to 1e-3 for float32 and
  larger dtypes and 2e-2 for 16-bit floats.
  """
  if not is_concrete(log_p) or (where is not None and not is_concrete(where)):
    return
  arr = np.asarray(log_p, dtype=np.float64)
  if atol is None:
    atol = 2e-2 if jnp.finfo(log_p.dtype).bits <= 16 else 1e-3
  if np.any(np.isnan(arr) & (True if where is None else np.asarray(where))):
    raise ValueError(f"`{name}` contains NaN.")
  axes = normalize_axis(axis, arr.ndim)
  mask = np.ones(arr.shape, bool) if where is None else np.asarray(where, bool)
  probs = np.where(mask, np.exp(np.where(mask, arr, -np.inf)), 0.0)
  total = probs.sum(axis=axes)
  any_valid = mask.any(axis=axes)
  bad = any_valid & (np.abs(total - 1.0) > atol)
  if np.any(bad):
    worst = float(np.max(np.abs(total - 1.0)[bad]))
    raise ValueError(
        f"`{name}` must hold normalised log-probabilities along axis {axis} "
        f"(exp sums to 1 over the unmasked entries); the worst row is off by "
        f"{worst:.3g}. Apply `jax.nn.log_softmax` first, or use the "
        "`*_from_logits` variant.")
