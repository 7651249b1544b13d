"""Typing aliases used across jaxkit (no chex at run time)."""

from typing import Any, Sequence, Union

import jax
import numpy as np

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
DTypeLike = jax.typing.DTypeLike
# A pytree of arrays (params, optimiser or reweighting state).
ArrayTree = Any
# An axis argument: one int, a sequence of ints, or None for "all axes".
Axis = Union[int, Sequence[int], None]
Numeric = Union[ArrayLike, float, int, np.number]
