r"""Quantization-aware training: STE fake quantization and LSQ.

:func:`fake_quant` is quantize-then-dequantize in the forward pass with the
straight-through estimator (identity) in the backward pass;
:func:`lsq_fake_quant` takes a learnable step size and gives it the LSQ
gradient.

References:
  Bengio, Léonard, Courville, `Estimating or Propagating Gradients Through
  Stochastic Neurons for Conditional Computation`, arXiv:1308.3432, 2013.

  Esser et al., `Learned Step Size Quantization`, ICLR 2020,
  arXiv:1902.08153.

  Nagel et al., `A White Paper on Neural Network Quantization`,
  arXiv:2106.08295, 2021 (§4: QAT with the STE).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.quantization import formats


def _ste(x, y):
  """``y`` in the forward pass, identity gradient to ``x``."""
  return x + jax.lax.stop_gradient(y - x)


def round_ste(x: ArrayLike) -> jax.Array:
  """Rounds to nearest with a straight-through (identity) gradient.

  Args:
    x: floating array.

  Returns:
    ``round(x)`` with :math:`\\partial/\\partial x = 1`.

  Examples:
    >>> import jax
    >>> from jaxkit.quantization import round_ste
    >>> float(jax.grad(lambda v: round_ste(v) * 3.0)(0.3))
    3.0
  """
  x = checks.check_floating(x, "x")
  return _ste(x, jnp.round(x))


def fake_quant(x: ArrayLike, *, bits: int, group_size: int | None = None,
               axis: int | None = -1, symmetric: bool = True) -> jax.Array:
  r"""Quantize-dequantize with a straight-through gradient.

  .. math::
    \tilde x = \hat x(x) \text{ (forward)}, \qquad
    \frac{\partial \tilde x}{\partial x} = 1 \text{ (backward)},

  where :math:`\hat x` is :func:`~jaxkit.quantization.quantize` followed by
  :func:`~jaxkit.quantization.dequantize` with min/max (or abs-max) scales
  computed from ``x`` itself. Because those scales cover the whole range no
  element is clipped, so the clipped-STE of the whitepaper reduces to the
  identity; the scales themselves receive no gradient (use
  :func:`lsq_fake_quant` for a learned step size).

  Args:
    x: floating array ``[...]``.
    bits: 2..8.
    group_size: see :func:`~jaxkit.quantization.quantize`.
    axis: see :func:`~jaxkit.quantization.quantize`.
    symmetric: see :func:`~jaxkit.quantization.quantize`.

  Returns:
    Array like ``x`` holding dequantized values.

  Raises:
    ValueError: as :func:`~jaxkit.quantization.quantize`.

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jaxkit.quantization import fake_quant
    >>> x = jnp.array([0.1, -0.33, 0.7])
    >>> print(np.round(np.asarray(fake_quant(x, bits=3), np.float64), 3))
    [ 0.    -0.233  0.7  ]
    >>> jax.grad(lambda v: fake_quant(v, bits=3).sum())(x)
    Array([1., 1., 1.], dtype=float32)

  References:
    Nagel et al., arXiv:2106.08295, 2021, §4.1.

    Catalog: seed_002 #65.
  """
  x = checks.check_floating(x, "x")
  q = formats.quantize(jax.lax.stop_gradient(x), bits=bits,
                       group_size=group_size, axis=axis, symmetric=symmetric)
  return _ste(x, formats.dequantize(q).astype(x.dtype))


def lsq_range(bits: int, signed: bool = True) -> tuple[int, int]:
  """LSQ's integer range ``(-Q_N, Q_P)``.

  Signed: :math:`(-2^{b-1}, 2^{b-1}-1)`; unsigned: :math:`(0, 2^b-1)`.

  Args:
    bits: 2..8.
    signed: signed (weights) or unsigned (post-ReLU activations).

  Returns:
    ``(lo, hi)`` Python ints.

  Examples:
    >>> from jaxkit.quantization import lsq_range
    >>> lsq_range(2), lsq_range(2, signed=False)
    ((-2, 1), (0, 3))
  """
  bits = formats._check_bits(bits)  # pylint: disable=protected-access
  if signed:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
  return 0, 2**bits - 1


def lsq_init_scale(x: ArrayLike, *, bits: int, signed: bool = True
                   ) -> jax.Array:
  r"""LSQ's step-size initialisation :math:`2\langle|x|\rangle/\sqrt{Q_P}`.

  Args:
    x: floating array (weights or a batch of activations).
    bits: 2..8.
    signed: see :func:`lsq_range`.

  Returns:
    Scalar step size.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import lsq_init_scale
    >>> print(jnp.round(lsq_init_scale(jnp.array([1.0, -3.0]), bits=3), 4))
    2.3094
  """
  x = checks.check_floating(x, "x")
  _, hi = lsq_range(bits, signed)
  return 2.0 * jnp.mean(jnp.abs(x)) / jnp.sqrt(float(hi))


def lsq_fake_quant(x: ArrayLike, scale: ArrayLike, *, bits: int,
                   signed: bool = True, grad_scale: float | None = None
                   ) -> jax.Array:
  r"""LSQ fake quantization with a learnable step size ``scale``.

  .. math::
    \hat v = \mathrm{round}(\mathrm{clip}(v / s, -Q_N, Q_P))\, s, \qquad
    \frac{\partial \hat v}{\partial s} = g \cdot
    \begin{cases} -v/s + \mathrm{round}(v/s) & -Q_N < v/s < Q_P \\
    -Q_N & v/s \le -Q_N \\ Q_P & v/s \ge Q_P \end{cases}

  and :math:`\partial \hat v / \partial v = 1` inside the range, 0 outside
  (STE). The gradient scale :math:`g` defaults to the paper's
  :math:`1/\sqrt{N Q_P}` with :math:`N` the number of elements of ``x`` per
  step size (``x.size / scale.size``). Implemented as in the paper's
  pseudo-code (``grad_scale`` + ``round_pass``), so the forward value is
  unchanged by :math:`g`.

  Args:
    x: floating array ``[...]`` (weights or activations).
    scale: positive step size, scalar or broadcastable to ``x`` (e.g.
      per-channel ``[1, out]``).
    bits: 2..8.
    signed: signed range (weights) or unsigned (post-ReLU activations).
    grad_scale: :math:`g`; ``None`` = :math:`1/\sqrt{N Q_P}`.

  Returns:
    Array like ``x``.

  Raises:
    ValueError: bad ``bits``; ``scale`` not broadcastable to ``x``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import lsq_fake_quant
    >>> x = jnp.array([0.3, -0.9, 2.0])
    >>> print(jnp.round(lsq_fake_quant(x, 0.5, bits=2), 3))
    [ 0.5 -1.   0.5]
    >>> g = jax.grad(lambda s: lsq_fake_quant(x, s, bits=2,
    ...                                      grad_scale=1.0).sum())(0.5)
    >>> print(round(float(g), 3))
    1.2

  References:
    Esser et al., `Learned Step Size Quantization`, ICLR 2020,
    arXiv:1902.08153 (Eq. 3 and Appendix pseudo-code).
  """
  x = checks.check_floating(x, "x")
  scale = checks.check_floating(scale, "scale")
  try:
    jnp.broadcast_shapes(scale.shape, x.shape)
  except ValueError as e:
    raise ValueError(f"`scale` of shape {scale.shape} must broadcast to `x` "
                     f"of shape {x.shape}.") from e
  lo, hi = lsq_range(bits, signed)
  if grad_scale is None:
    n = max(x.size // max(scale.size, 1), 1)
    grad_scale = 1.0 / jnp.sqrt(float(n) * hi)
  cdt = checks.compute_dtype(x, scale)
  s = scale.astype(cdt)
  s = s * grad_scale + jax.lax.stop_gradient(s - s * grad_scale)
  v = jnp.clip(x.astype(cdt) / s, lo, hi)
  return (round_ste(v) * s).astype(x.dtype)
