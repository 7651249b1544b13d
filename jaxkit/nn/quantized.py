"""``QuantDense``: a dense layer whose weight is stored as int8 / packed int4.

Format (self-contained, deliberately simple; :mod:`jaxkit.quantization` owns
the full family of formats and algorithms and plugs in here):

* ``codes``: signed integer codes :math:`q` of the ``[K, N]`` kernel
  (``K`` = input features). 8 bits: ``int8 [K, N]``. 4 bits: ``uint8
  [K/2, N]``, two's-complement nibbles packed along the input axis — byte
  ``[i, n]`` holds :math:`q_{2i,n}` in its low and :math:`q_{2i+1,n}` in its
  high nibble.
* ``scales``: ``[K/g, N]``, one scale per group of ``g`` consecutive input
  features per output (``g = group_size``; ``g = K`` is per-output-channel).
* ``zeros`` (asymmetric only): integer zero points ``int8 [K/g, N]`` in the
  same signed code domain.

.. math::
  W_{kn} = s_{\\lfloor k/g \\rfloor n}\\,(q_{kn} - z_{\\lfloor k/g \\rfloor n}),
  \\qquad y = x W + b.

Round-to-nearest quantization. Symmetric: :math:`s = \\max|W_g| /
(2^{b-1}-1)`, codes in :math:`[-(2^{b-1}-1), 2^{b-1}-1]`. Asymmetric (AWQ /
GPTQ style, with the range widened to contain zero as GPTQ does, so the zero
point never clips): :math:`s = (\\max(W_g, 0) - \\min(W_g, 0))/(2^b-1)`,
:math:`z = -\\mathrm{round}(\\min(W_g, 0) / s)`, codes
:math:`\\mathrm{clip}(\\mathrm{round}(W/s) + z, 0, 2^b-1)`; codes and
zero points are both shifted by :math:`-2^{b-1}` to be stored signed.

The forward pass is :func:`jaxkit.kernels.quantized_matmul` (fused
dequantize-matmul: the Pallas kernel on TPU / GPU, the XLA reference on CPU),
called in the private :func:`_quantized_matmul`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkit._src import checks
from jaxkit.kernels.quantized_matmul import from_quant_dense
from jaxkit.kernels.quantized_matmul import quantized_matmul
from jaxkit.nn import layers
from jaxkit.nn import partitioning as pt

_BITS = (4, 8)


class QuantizedWeight(nnx.Variable):
  """Non-trainable storage of quantized codes, scales and zero points.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import jaxkit
    >>> layer = jaxkit.nn.QuantDense(2, 2, bits=8,
    ...                              kernel=jnp.array([[1., -2.], [.5, 4.]]))
    >>> print(type(layer.codes).__name__, layer.codes[...].dtype)
    QuantizedWeight int8
    >>> print(sorted(nnx.state(layer, jaxkit.nn.QuantizedWeight)))  # not trained
    ['codes', 'scales']
  """


def _pack_int4(q: jax.Array) -> jax.Array:
  """Packs signed int4 codes ``[K, N]`` (``K`` even) into ``uint8 [K/2, N]``."""
  q = jnp.asarray(q).astype(jnp.int8)
  nib = jnp.bitwise_and(q.astype(jnp.uint8), jnp.uint8(0xF))
  return jnp.bitwise_or(nib[0::2], jnp.left_shift(nib[1::2], jnp.uint8(4)))


def _unpack_int4(packed: jax.Array) -> jax.Array:
  """Inverse of :func:`_pack_int4`: ``uint8 [K/2, N]`` → ``int8 [K, N]``."""
  packed = jnp.asarray(packed, jnp.uint8)
  lo = jnp.bitwise_and(packed, jnp.uint8(0xF)).astype(jnp.int8)
  hi = jnp.right_shift(packed, jnp.uint8(4)).astype(jnp.int8)
  lo = jnp.where(lo >= 8, lo - 16, lo)
  hi = jnp.where(hi >= 8, hi - 16, hi)
  return jnp.stack([lo, hi], axis=1).reshape(-1, packed.shape[-1])


def _rtn_quantize(kernel: jax.Array, bits: int, group_size: int,
                  symmetric: bool):
  """Round-to-nearest codes ``int8 [K, N]``, scales, zeros (or None)."""
  k, n = kernel.shape
  w = kernel.astype(jnp.float32).reshape(k // group_size, group_size, n)
  if symmetric:
    qmax = 2 ** (bits - 1) - 1
    s = jnp.max(jnp.abs(w), axis=1) / qmax
    s = jnp.where(s > 0, s, 1.0)
    q = jnp.clip(jnp.round(w / s[:, None]), -qmax, qmax)
    return q.reshape(k, n).astype(jnp.int8), s, None
  levels = 2 ** bits - 1
  # The range always contains 0 (GPTQ's convention), so the zero point is an
  # exact code and never clips (AWQ clamps it instead).
  lo = jnp.minimum(jnp.min(w, axis=1), 0.0)
  hi = jnp.maximum(jnp.max(w, axis=1), 0.0)
  s = (hi - lo) / levels
  s = jnp.where(s > 0, s, 1.0)
  z = jnp.clip(-jnp.round(lo / s), 0, levels)
  q = jnp.clip(jnp.round(w / s[:, None]) + z[:, None], 0, levels)
  shift = 2 ** (bits - 1)
  return ((q - shift).reshape(k, n).astype(jnp.int8), s,
          (z - shift).astype(jnp.int8))


def _dequantize(codes, scales, zeros, *, bits: int, dtype) -> jax.Array:
  q = _unpack_int4(codes) if bits == 4 else codes
  k, n = q.shape
  g = scales.shape[0]
  qf = q.astype(jnp.float32).reshape(g, k // g, n)
  if zeros is not None:
    qf = qf - zeros.astype(jnp.float32)[:, None]
  return (qf * scales.astype(jnp.float32)[:, None]).reshape(k, n).astype(dtype)


def _quantized_matmul(x, codes, scales, zeros, *, bits: int,
                      implementation: str | None = None,
                      interpret: bool | None = None) -> jax.Array:
  """``x @ dequantize(w)`` via :func:`jaxkit.kernels.quantized_matmul`.

  Inputs other than float32 / bfloat16 (e.g. float16) are computed in
  float32. Accumulation is at least float32; the result is in that dtype.
  """
  cdt = jnp.promote_types(x.dtype, jnp.float32)
  if jnp.dtype(x.dtype) not in (jnp.dtype(jnp.float32),
                                jnp.dtype(jnp.bfloat16)):
    x = x.astype(cdt)
  w = from_quant_dense(codes, scales, zeros, bits=bits)
  return quantized_matmul(x, w, preferred_element_type=cdt,
                          implementation=implementation, interpret=interpret)


class QuantDense(nnx.Module):
  """Dense layer with an int8 or packed-int4 group-quantized kernel.

  See the module docstring for the storage format. ``codes``, ``scales``
  and ``zeros`` are :class:`QuantizedWeight` variables (not ``nnx.Param``:
  an optimizer over ``nnx.Param`` never touches them); the optional bias is
  an ``nnx.Param``. All carry logical names: codes/scales/zeros
  ``names``, bias ``names[1]``.

  Args:
    in_features: ``K`` (even for 4 bits; divisible by ``group_size``).
    out_features: ``N``.
    bits: 8 or 4.
    group_size: input features per scale (default ``K``: per output
      channel).
    symmetric: symmetric codes (no zero points) or asymmetric (AWQ style).
    kernel: optional float kernel ``[K, N]`` to quantize (round to
      nearest); default a LeCun-normal random kernel drawn from ``rngs``.
    bias: optional bias ``[N]`` (implies ``use_bias``).
    use_bias: whether to hold a bias (zeros unless ``bias`` is given).
    names: logical names of the ``(in, out)`` dimensions.
    dtype: computation dtype (``None``: the input's).
    scale_dtype: dtype of the stored scales.
    implementation: backend of :func:`jaxkit.kernels.quantized_matmul`
      (``None``: the best for the device, ``"xla"`` on CPU).
    interpret: run the Pallas kernel with the Pallas interpreter (CPU
      testing).
    rngs: ``nnx.Rngs`` (only needed without ``kernel``).

  Raises:
    ValueError: unsupported ``bits``, a ``group_size`` that does not divide
      ``K``, odd ``K`` at 4 bits, or a kernel of the wrong shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxkit
    >>> w = jnp.array([[1.0, -2.0], [0.5, 4.0]])
    >>> layer = jaxkit.nn.QuantDense(2, 2, bits=8, kernel=w)
    >>> y = layer(jnp.array([[1.0, 1.0]]))
    >>> print(*[f"{v:.2f}" for v in y[0]])
    1.50 1.98

  References:
    Lin et al., "AWQ: Activation-aware Weight Quantization for LLM
    Compression and Acceleration", MLSys 2024, arXiv:2306.00978 (the
    asymmetric group format).
  """

  def __init__(self, in_features: int, out_features: int, *, bits: int = 8,
               group_size: int | None = None, symmetric: bool = True,
               kernel: jax.Array | None = None, bias: jax.Array | None = None,
               use_bias: bool = False,
               names: Sequence[str | None] = (pt.IN, pt.OUT), dtype=None,
               scale_dtype=jnp.float32, implementation: str | None = None,
               interpret: bool | None = None, rngs: nnx.Rngs | None = None):
    layers._check_positive_int(in_features, "in_features")  # pylint: disable=protected-access
    layers._check_positive_int(out_features, "out_features")  # pylint: disable=protected-access
    if bits not in _BITS:
      raise ValueError(f"`bits` must be one of {_BITS}, got {bits!r}.")
    group_size = in_features if group_size is None else group_size
    layers._check_positive_int(group_size, "group_size")  # pylint: disable=protected-access
    if in_features % group_size:
      raise ValueError(
          f"`group_size` ({group_size}) must divide `in_features` "
          f"({in_features}).")
    if bits == 4 and in_features % 2:
      raise ValueError(
          f"`in_features` must be even for packed 4-bit codes, got "
          f"{in_features}.")
    names = pt._check_names(names)  # pylint: disable=protected-access
    self.in_features, self.out_features = in_features, out_features
    self.bits, self.group_size, self.symmetric = bits, group_size, symmetric
    self.dtype = dtype
    self.implementation, self.interpret = implementation, interpret
    if kernel is None:
      if rngs is None:
        raise ValueError("`rngs` is required when no `kernel` is given.")
      kernel = nnx.initializers.lecun_normal()(
          rngs.params(), (in_features, out_features))
    kernel = checks.check_floating(kernel, "kernel")
    if kernel.shape != (in_features, out_features):
      raise ValueError(
          f"`kernel` must have shape {(in_features, out_features)}, got "
          f"{kernel.shape}.")
    if checks.is_concrete(kernel) and not np.all(np.isfinite(
        np.asarray(kernel, np.float32))):
      raise ValueError("`kernel` contains NaN or Inf.")
    q, s, z = _rtn_quantize(kernel, bits, group_size, symmetric)
    codes = _pack_int4(q) if bits == 4 else q

    def var(value):
      init = pt.partitioned(lambda *_: value, names)
      return QuantizedWeight(init(None, value.shape, value.dtype))
    self.codes = var(codes)
    self.scales = var(s.astype(scale_dtype))
    self.zeros = None if z is None else var(z)
    if bias is not None or use_bias:
      b = (jnp.zeros((out_features,), jnp.float32) if bias is None
           else checks.check_floating(bias, "bias"))
      if b.shape != (out_features,):
        raise ValueError(f"`bias` must have shape {(out_features,)}, got "
                         f"{b.shape}.")
      self.bias = nnx.Param(pt.partitioned(lambda *_: b, names[1:])(
          None, b.shape, b.dtype))
    else:
      self.bias = None

  @classmethod
  def from_dense(cls, layer: nnx.Linear, *, bits: int = 8,
                 group_size: int | None = None, symmetric: bool = True,
                 **kwargs) -> "QuantDense":
    """Round-to-nearest quantizes a ``Dense`` / ``nnx.Linear`` layer.

    Keeps its bias and logical names (and ``dtype`` unless overridden).

    Examples:
      >>> from flax import nnx
      >>> import jaxkit
      >>> dense = jaxkit.nn.Dense(4, 2, rngs=nnx.Rngs(0))
      >>> q = jaxkit.nn.QuantDense.from_dense(dense, bits=4, group_size=2)
      >>> q.codes.shape, q.scales.shape
      ((2, 2), (2, 2))
    """
    names = pt.logical_axes(layer.kernel) or (pt.IN, pt.OUT)
    bias = None if layer.bias is None else layer.bias[...]
    kwargs.setdefault("dtype", layer.dtype)
    return cls(layer.in_features, layer.out_features, bits=bits,
               group_size=group_size, symmetric=symmetric,
               kernel=layer.kernel[...], bias=bias, names=names, **kwargs)

  def dequantize(self, dtype=jnp.float32) -> jax.Array:
    """The dequantized kernel ``[K, N]``."""
    zeros = None if self.zeros is None else self.zeros[...]
    return _dequantize(self.codes[...], self.scales[...], zeros,
                       bits=self.bits, dtype=dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    """``x`` ``[..., K]`` → ``x @ dequantize(W) + b`` ``[..., N]``."""
    x = checks.check_floating(x, "x")
    if x.ndim < 1 or x.shape[-1] != self.in_features:
      raise ValueError(f"`x` must have last dimension {self.in_features}, got "
                       f"shape {x.shape}.")
    if self.dtype is not None:
      x = x.astype(self.dtype)
    zeros = None if self.zeros is None else self.zeros[...]
    y = _quantized_matmul(x, self.codes[...], self.scales[...], zeros,
                          bits=self.bits, implementation=self.implementation,
                          interpret=self.interpret)
    if self.bias is not None:
      y = y + self.bias[...]
    return y.astype(x.dtype)
