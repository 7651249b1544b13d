r"""Codebook (look-up-table) weight quantization: k-means and learnable codebooks.

References:
  Han, Mao, Dally, `Deep Compression`, ICLR 2016, arXiv:1510.00149
  (k-means weight sharing).

  JLCM — jointly learnable codebooks and mappings (seed_002 #33): codebook
  values and assignments learned together with an STE-derived gradient.
  There is no public reference code; :func:`codebook_fake_quant` gives the
  differentiable forward (STE to the weights, exact gradient to the
  codewords), the neuron grouping / permutation and the "proximal" mapping
  gradient are not implemented.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.quantization import formats as F


def _nearest(x, codebook):
  return jnp.argmin(jnp.abs(x[..., None] - codebook), axis=-1)


def codebook_quantize(weight: ArrayLike, *, bits: int, n_iter: int = 25,
                      activations: ArrayLike | None = None
                      ) -> F.QuantizedArray:
  r"""k-means (Lloyd) codebook quantization with :math:`2^b` shared values.

  .. math::
    \min_{c, a} \sum_j h_j (w_j - c_{a_j})^2,

  alternating nearest-codeword assignment and (weighted) centroid updates,
  initialised at the :math:`2^b` evenly spaced quantiles of the weights.
  With ``activations`` (``[N, in]``, weight ``[in, out]``) each weight is
  weighted by :math:`h_j = \mathrm{mean}_n x_{n,i}^2` of its input channel
  (the diagonal of the output-error Hessian, as in SqueezeLLM-style
  sensitivity-weighted k-means). Empty clusters keep their previous value.

  Args:
    weight: weights ``[...]`` (``[in, out]`` with ``activations``).
    bits: 2..8 (codebook size :math:`2^b`).
    n_iter: Lloyd iterations.
    activations: optional calibration inputs ``[N, in]``.

  Returns:
    :class:`~jaxkit.quantization.QuantizedArray` with ``format='lut'``
    (``levels`` = the sorted codebook, ``scales`` = 1, ``axis=None``).

  Raises:
    ValueError: bad bits, NaN/Inf, bad activations.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import codebook_quantize, dequantize
    >>> w = jnp.array([0.0, 0.1, 1.0, 1.1, 5.0, 5.2, -3.0, -3.1])
    >>> q = codebook_quantize(w, bits=2)
    >>> [round(float(v), 2) for v in q.levels]
    [-3.05, 0.05, 1.05, 5.1]
  """
  w = F._check_float_input(weight, "weight")  # pylint: disable=protected-access
  bits = F._check_bits(bits)  # pylint: disable=protected-access
  wf = w.astype(jnp.float32)
  if activations is not None:
    checks.check_rank(w, 2, "weight")
    x = F._check_calibration(activations, w).astype(jnp.float32)  # pylint: disable=protected-access
    h = jnp.broadcast_to(jnp.mean(x * x, axis=0)[:, None], w.shape)
  else:
    h = jnp.ones_like(wf)
  flat, hf = wf.reshape(-1), h.reshape(-1)
  k = 2**bits
  cb = jnp.quantile(flat, (jnp.arange(k) + 0.5) / k)

  def lloyd(cb, _):
    a = _nearest(flat, cb)
    one_hot = jax.nn.one_hot(a, k, dtype=jnp.float32) * hf[:, None]
    mass = one_hot.sum(0)
    new = (one_hot * flat[:, None]).sum(0) / jnp.maximum(mass, 1e-30)
    return jnp.sort(jnp.where(mass > 0, new, cb)), None

  cb, _ = jax.lax.scan(lloyd, cb, None, length=int(n_iter))
  codes = _nearest(wf, cb).astype(jnp.uint8)
  return F.QuantizedArray(codes=codes, scales=jnp.ones((1,) * w.ndim,
                                                       jnp.float32),
                          levels=cb, bits=bits, group_size=None, axis=None,
                          format="lut", dtype=w.dtype)


def codebook_fake_quant(weight: ArrayLike, codebook: ArrayLike) -> jax.Array:
  r"""Differentiable codebook quantization (learnable codewords).

  Forward: :math:`\hat w_j = c_{a_j}` with :math:`a_j = \arg\min_m |w_j -
  c_m|`. Backward: straight-through to the weights
  (:math:`\partial \hat w / \partial w = 1`) plus the exact gradient to the
  codewords (:math:`\partial \hat w_j / \partial c_m = [a_j = m]`), so
  ``jax.grad`` trains weights and codebook jointly (the JLCM setting).

  Args:
    weight: weights ``[...]``.
    codebook: ``[K]`` codewords.

  Returns:
    Quantized weights, shape of ``weight``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import codebook_fake_quant
    >>> cb = jnp.array([-1.0, 0.5])
    >>> codebook_fake_quant(jnp.array([0.2, -2.0, 0.9]), cb)
    Array([ 0.5, -1. ,  0.5], dtype=float32)
    >>> jax.grad(lambda c: codebook_fake_quant(jnp.array([0.2, -2.0, 0.9]),
    ...                                        c).sum())(cb)
    Array([1., 2.], dtype=float32)

  References:
    JLCM — jointly learnable codebooks and mappings (no public reference
    code; see the module docstring for what is implemented).

    Catalog: seed_002 #33.
  """
  w = checks.check_floating(weight, "weight")
  cb = checks.check_floating(codebook, "codebook")
  checks.check_rank(cb, 1, "codebook")
  a = _nearest(jax.lax.stop_gradient(w), jax.lax.stop_gradient(cb))
  picked = jnp.take(cb, a)
  return picked + (w - jax.lax.stop_gradient(w))
