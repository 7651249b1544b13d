"""``SparseDense``: a dense layer whose kernel is multiplied by a fixed mask.

The mask (N:M structured or unstructured) is a non-trainable
:class:`SparsityMask` variable; masked weights never reach the output and
receive zero gradient. Masks are *given* (computed by
:mod:`jaxkit.sparsity` criteria such as magnitude or Wanda, or by hand); this
layer only holds and applies them, and validates the N:M pattern when asked.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkit._src import checks
from jaxkit.nn import layers
from jaxkit.nn import partitioning as pt


class SparsityMask(nnx.Variable):
  """Non-trainable boolean keep-mask of a :class:`SparseDense` kernel.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> layer = jaxkit.nn.SparseDense(
    ...     2, 2, mask=jnp.array([[True, False], [False, True]]), use_bias=False,
    ...     rngs=nnx.Rngs(0))
    >>> print(type(layer.mask).__name__, layer.mask[...].astype(int).tolist())
    SparsityMask [[1, 0], [0, 1]]
    >>> print(sorted(nnx.state(layer, nnx.Param)))  # the mask is not a Param
    ['kernel']
  """


def _check_nm(mask: np.ndarray, n: int, m: int) -> None:
  k = mask.shape[0]
  if k % m:
    raise ValueError(
        f"`nm`=({n}, {m}): M must divide in_features ({k}).")
  per_group = mask.reshape(k // m, m, -1).sum(axis=1)
  if np.any(per_group > n):
    raise ValueError(
        f"`mask` is not {n}:{m} sparse along the input axis: a group of {m} "
        f"consecutive inputs keeps up to {int(per_group.max())} weights.")


class SparseDense(nnx.Module):
  """Dense layer ``y = x (W ⊙ M) + b`` with a fixed boolean mask ``M``.

  .. math::
    y = x\\,(W \\odot M) + b, \\qquad
    \\frac{\\partial y}{\\partial W_{kn}} = 0 \\text{ where } M_{kn} = 0.

  With ``nm=(n, m)`` the mask is checked (on concrete values) to keep at
  most ``n`` of every ``m`` consecutive input features per output — the
  N:M pattern of sparse tensor cores (2:4) along the contraction axis.

  Parameters: ``kernel [in, out]`` (``nnx.Param``), ``mask [in, out]``
  (:class:`SparsityMask`), ``bias [out]``; names ``names`` / ``names[1]``.

  Args:
    in_features: ``K``.
    out_features: ``N``.
    mask: boolean keep-mask ``[K, N]`` (default: keep everything).
    nm: optional ``(n, m)`` pattern the mask must satisfy.
    kernel: optional initial kernel ``[K, N]`` (default LeCun normal).
    use_bias: whether to add a bias.
    names: logical names of the ``(in, out)`` dimensions.
    dtype: computation dtype (``None``: promote).
    param_dtype: kernel / bias dtype.
    rngs: ``nnx.Rngs``.

  Raises:
    ValueError / TypeError: a mask of the wrong shape or dtype, or one that
      breaks ``nm``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> mask = jnp.array([[True, False], [False, True]])
    >>> layer = jaxkit.nn.SparseDense(2, 2, mask=mask, use_bias=False,
    ...     kernel=jnp.ones((2, 2)), rngs=nnx.Rngs(0))
    >>> layer(jnp.array([[1.0, 2.0]]))
    Array([[1., 2.]], dtype=float32)

  References:
    Mishra et al., "Accelerating Sparse Deep Neural Networks",
    arXiv:2104.08378, 2021 (2:4 structured sparsity).
  """

  def __init__(self, in_features: int, out_features: int, *,
               mask: jax.Array | None = None,
               nm: tuple[int, int] | None = None,
               kernel: jax.Array | None = None, use_bias: bool = True,
               names: Sequence[str | None] = (pt.IN, pt.OUT), dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    layers._check_positive_int(in_features, "in_features")  # pylint: disable=protected-access
    layers._check_positive_int(out_features, "out_features")  # pylint: disable=protected-access
    names = pt._check_names(names)  # pylint: disable=protected-access
    if nm is not None:
      n, m = nm
      layers._check_positive_int(n, "nm")  # pylint: disable=protected-access
      layers._check_positive_int(m, "nm")  # pylint: disable=protected-access
      if n > m:
        raise ValueError(f"`nm`=({n}, {m}) needs n <= m.")
      nm = (n, m)
    self.in_features, self.out_features, self.nm = in_features, out_features, nm
    self.dtype = dtype
    shape = (in_features, out_features)
    if kernel is None:
      kernel = nnx.initializers.lecun_normal()(rngs.params(), shape,
                                               param_dtype)
    kernel = checks.check_floating(kernel, "kernel")
    if kernel.shape != shape:
      raise ValueError(f"`kernel` must have shape {shape}, got {kernel.shape}.")
    self.kernel = nnx.Param(pt.partitioned(
        lambda *_: kernel.astype(param_dtype), names)(None, shape, param_dtype))
    self.mask = SparsityMask(pt.partitioned(
        lambda *_: self._validated(mask), names)(None, shape, jnp.bool_))
    if use_bias:
      self.bias = nnx.Param(pt.partitioned(nnx.initializers.zeros_init(),
                                           names[1:])(
                                               rngs.params(), (out_features,),
                                               param_dtype))
    else:
      self.bias = None

  @classmethod
  def from_dense(cls, layer: nnx.Linear, mask: jax.Array, *,
                 nm: tuple[int, int] | None = None,
                 rngs: nnx.Rngs | None = None) -> "SparseDense":
    """A ``SparseDense`` with a ``Dense`` / ``nnx.Linear`` layer's weights.

    Keeps its kernel, bias, logical names and ``dtype``; ``mask`` as in the
    constructor.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jaxkit
      >>> dense = jaxkit.nn.Dense(4, 2, rngs=nnx.Rngs(0))
      >>> mask = jnp.array([[1, 1], [0, 0], [1, 0], [0, 1]], bool)
      >>> sparse = jaxkit.nn.SparseDense.from_dense(dense, mask, nm=(1, 2))
      >>> float(sparse.density())
      0.5
    """
    names = pt.logical_axes(layer.kernel) or (pt.IN, pt.OUT)
    out = cls(layer.in_features, layer.out_features, mask=mask, nm=nm,
              kernel=layer.kernel[...], use_bias=layer.bias is not None,
              names=names, dtype=layer.dtype,
              param_dtype=layer.kernel[...].dtype,
              rngs=rngs or nnx.Rngs(0))
    if layer.bias is not None:
      out.bias[...] = layer.bias[...]
    return out

  def _validated(self, mask) -> jax.Array:
    shape = (self.in_features, self.out_features)
    if mask is None:
      return jnp.ones(shape, jnp.bool_)
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
      raise TypeError(f"`mask` must be boolean, got dtype {mask.dtype}.")
    if mask.shape != shape:
      raise ValueError(f"`mask` must have shape {shape}, got {mask.shape}.")
    if self.nm is not None and checks.is_concrete(mask):
      _check_nm(np.asarray(mask), *self.nm)
    return mask

  def set_mask(self, mask: jax.Array) -> None:
    """Replaces the mask (validated like the constructor's)."""
    self.mask[...] = self._validated(mask)

  def masked_kernel(self) -> jax.Array:
    """``W ⊙ M`` ``[K, N]``."""
    return jnp.where(self.mask[...], self.kernel[...], 0)

  def density(self) -> jax.Array:
    """Fraction of kept weights (a scalar)."""
    return jnp.mean(self.mask[...].astype(jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    """``x`` ``[..., K]`` → ``x (W ⊙ M) + b`` ``[..., N]``."""
    x = checks.check_floating(x, "x")
    if x.ndim < 1 or x.shape[-1] != self.in_features:
      raise ValueError(f"`x` must have last dimension {self.in_features}, got "
                       f"shape {x.shape}.")
    w = self.masked_kernel()
    b = None if self.bias is None else self.bias[...]
    dtype = self.dtype or jnp.result_type(x.dtype, w.dtype)
    y = jnp.matmul(x.astype(dtype), w.astype(dtype))
    if b is not None:
      y = y + b.astype(dtype)
    return y
