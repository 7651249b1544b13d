r"""Non-uniform and floating-point formats: FP8/FP4, NF4, NUPES, codebooks.

Every function returns a :class:`~jaxkit.quantization.QuantizedArray`:
``format='fp'`` (codes are ``ml_dtypes`` float8 / float4 values times a
scale) or ``format='lut'`` (codes index a table of levels times a scale).

References:
  Wu et al., `ZeroQuant-FP: A Leap Forward in LLMs Post-Training W4A8
  Quantization Using Floating-Point Formats`, arXiv:2307.09782, 2023.

  Dettmers et al., `QLoRA: Efficient Finetuning of Quantized LLMs`,
  arXiv:2305.14314, 2023.

  Yvinec et al., `NUPES: Non-Uniform Post-Training Quantization via Power
  Exponent Search`, arXiv:2308.05600, 2023.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike, DTypeLike
from jaxkit.quantization import formats as F

FP_FORMATS = {
    "e4m3": jnp.float8_e4m3fn,
    "e5m2": jnp.float8_e5m2,
    "e2m1": jnp.float4_e2m1fn,
}


def _check_format(fmt):
  if fmt not in FP_FORMATS:
    raise ValueError(f"`format` must be one of {tuple(FP_FORMATS)}, got "
                     f"{fmt!r}.")
  return FP_FORMATS[fmt]


def fp_quantize(x: ArrayLike, *, format: str = "e4m3",  # pylint: disable=redefined-builtin
                group_size: int | None = None, axis: int | None = -1,
                pow2_scale: bool = False,
                dtype: DTypeLike | None = None) -> F.QuantizedArray:
  r"""Floating-point quantization (ZeroQuant-FP): FP8 E4M3 / E5M2, FP4 E2M1.

  Each group is scaled so its abs-max lands on the format's largest finite
  value, then cast to the format with round-to-nearest-even:

  .. math::
    s = \max|x| / F_{\max}, \qquad q = \mathrm{cast}_{\mathrm{fmt}}(x / s),
    \qquad \hat x = q\,s,

  with :math:`F_{\max}` = 448 (E4M3), 57344 (E5M2), 6 (E2M1). With
  ``pow2_scale=True`` the scale is rounded **up** to a power of two,
  :math:`s = 2^{\lceil \log_2 s \rceil}` (ZeroQuant-FP's scale constraint
  that turns the FP4→FP8 weight cast into an exponent shift; rounding up
  keeps every value in range).

  Args:
    x: floating array, finite.
    format: ``'e4m3'`` (``float8_e4m3fn``), ``'e5m2'`` (``float8_e5m2``) or
      ``'e2m1'`` (``float4_e2m1fn``).
    group_size: see :func:`~jaxkit.quantization.quantize`.
    axis: see :func:`~jaxkit.quantization.quantize`.
    pow2_scale: restrict scales to powers of two.
    dtype: scale dtype; ``None`` = ``x.dtype``.

  Returns:
    :class:`~jaxkit.quantization.QuantizedArray` with ``format='fp'``.

  Raises:
    ValueError: unknown ``format``, bad ``group_size``, NaN/Inf.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxkit.quantization import fp_quantize, dequantize
    >>> q = fp_quantize(jnp.array([0.1, -0.5, 2.9, 6.0]), format='e2m1')
    >>> q.codes.dtype, q.scales
    (dtype(float4_e2m1fn), Array([1.], dtype=float32))
    >>> print(np.asarray(dequantize(q)))
    [ 0.  -0.5  3.   6. ]

  References:
    Wu et al., arXiv:2307.09782, 2023 (§3: FP8/FP4 formats, power-of-two
    scales for FP4 weights).

    Catalog: seed_002 #32.
  """
  x = F._check_float_input(x)  # pylint: disable=protected-access
  fdt = _check_format(format)
  ax, g = F._resolve_groups(x.shape, axis, group_size)  # pylint: disable=protected-access
  sdt = F._scale_dtype(x, dtype)  # pylint: disable=protected-access
  cdt = checks.compute_dtype(x)
  xg = F._to_groups(x.astype(cdt), ax, g)  # pylint: disable=protected-access
  fmax = float(jnp.finfo(fdt).max)
  amax = jnp.max(jnp.abs(xg), axis=-1)
  scale = jnp.where(amax > 0, amax / fmax, 1.0)
  if pow2_scale:
    scale = jnp.exp2(jnp.ceil(jnp.log2(scale)))
  scale = scale.astype(sdt).astype(cdt)
  codes = jnp.clip(xg / scale[..., None], -fmax, fmax).astype(fdt)
  return F.QuantizedArray(
      codes=F._from_groups(codes, x.shape, ax),  # pylint: disable=protected-access
      scales=F._group_stat_shape(scale, x.shape, ax).astype(sdt),  # pylint: disable=protected-access
      bits=jnp.finfo(fdt).bits, group_size=group_size, axis=ax, format="fp",
      dtype=x.dtype)


def normal_float_levels(bits: int = 4, *, offset: float = 0.9677083
                        ) -> jax.Array:
  r"""NormalFloat levels (QLoRA): quantiles of :math:`\mathcal N(0, 1)`.

  Asymmetric construction with an exact zero: :math:`2^{b-1}` positive
  levels :math:`\Phi^{-1}(p_i)` for :math:`p` evenly spaced from ``offset``
  down to 0.5 (excluded), :math:`2^{b-1}-1` negative levels the same way,
  and 0; normalised to :math:`[-1, 1]`. ``bits=4`` gives NF4 (QLoRA
  Appendix E, ``create_normal_map(offset=0.9677083)`` in bitsandbytes).

  Args:
    bits: 2..8.
    offset: the outermost quantile.

  Returns:
    ``[2**bits]`` sorted float32 levels.

  Examples:
    >>> from jaxkit.quantization import normal_float_levels
    >>> import numpy as np
    >>> print(np.round(np.asarray(normal_float_levels(4)[:3], np.float64), 4))
    [-1.     -0.6962 -0.5251]

  References:
    Dettmers et al., arXiv:2305.14314, 2023 (§3, Appendix E).
  """
  bits = F._check_bits(bits)  # pylint: disable=protected-access
  n_pos, n_neg = 2 ** (bits - 1), 2 ** (bits - 1) - 1
  pos = jsp.ndtri(jnp.linspace(offset, 0.5, n_pos + 1)[:-1])
  neg = -jsp.ndtri(jnp.linspace(offset, 0.5, n_neg + 1)[:-1])
  v = jnp.sort(jnp.concatenate([pos, jnp.zeros(1), neg]))
  return (v / jnp.max(jnp.abs(v))).astype(jnp.float32)


def nf4_levels() -> jax.Array:
  """The 16 NF4 levels (:func:`normal_float_levels` with ``bits=4``).

  Returns:
    ``[16]`` float32.

  Examples:
    >>> from jaxkit.quantization import nf4_levels
    >>> nf4_levels().shape
    (16,)
  """
  return normal_float_levels(4)


def _lut_codes(xg, levels):
  """Nearest level index of every element (``[..., g]`` normalised values)."""
  mids = (levels[1:] + levels[:-1]) / 2
  return jnp.searchsorted(mids, xg, side="left").astype(jnp.uint8)


def lut_quantize(x: ArrayLike, levels: ArrayLike, *,
                 group_size: int | None = None, axis: int | None = -1,
                 dtype: DTypeLike | None = None) -> F.QuantizedArray:
  r"""Abs-max-scaled nearest-level quantization onto a table of levels.

  .. math::
    s = \max|x| / \max|\ell|, \qquad q = \arg\min_k |x/s - \ell_k|,
    \qquad \hat x = \ell_q\, s.

  Args:
    x: floating array, finite.
    levels: ``[K]`` sorted levels (K <= 256).
    group_size: see :func:`~jaxkit.quantization.quantize`.
    axis: see :func:`~jaxkit.quantization.quantize`.
    dtype: scale dtype.

  Returns:
    :class:`~jaxkit.quantization.QuantizedArray` with ``format='lut'``.

  Raises:
    ValueError: unsorted / too many levels, bad groups, NaN/Inf.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import lut_quantize
    >>> lut_quantize(jnp.array([0.2, -1.0, 0.6]), jnp.array([-1., 0., .5, 1.])
    ...              ).codes
    Array([1, 0, 2], dtype=uint8)
  """
  x = F._check_float_input(x)  # pylint: disable=protected-access
  levels = checks.check_floating(levels, "levels")
  checks.check_rank(levels, 1, "levels")
  k = levels.shape[0]
  if k > 256 or k < 2:
    raise ValueError(f"`levels` must hold 2..256 values, got {k}.")
  if checks.is_concrete(levels) and np.any(np.diff(np.asarray(levels)) < 0):
    raise ValueError("`levels` must be sorted ascending.")
  ax, g = F._resolve_groups(x.shape, axis, group_size)  # pylint: disable=protected-access
  sdt = F._scale_dtype(x, dtype)  # pylint: disable=protected-access
  cdt = checks.compute_dtype(x)
  xg = F._to_groups(x.astype(cdt), ax, g)  # pylint: disable=protected-access
  lv = levels.astype(cdt)
  amax = jnp.max(jnp.abs(xg), axis=-1)
  scale = jnp.where(amax > 0, amax / jnp.max(jnp.abs(lv)), 1.0)
  scale = scale.astype(sdt).astype(cdt)
  codes = _lut_codes(xg / scale[..., None], lv)
  return F.QuantizedArray(
      codes=F._from_groups(codes, x.shape, ax),  # pylint: disable=protected-access
      scales=F._group_stat_shape(scale, x.shape, ax).astype(sdt),  # pylint: disable=protected-access
      levels=levels, bits=int(np.ceil(np.log2(k))), group_size=group_size,
      axis=ax, format="lut", dtype=x.dtype)


def nf_quantize(x: ArrayLike, *, bits: int = 4, group_size: int | None = 64,
                axis: int | None = -1, dtype: DTypeLike | None = None
                ) -> F.QuantizedArray:
  r"""NormalFloat quantization (QLoRA's NF4 for ``bits=4``).

  Block-wise abs-max scaling onto :func:`normal_float_levels`:
  :math:`\hat x = \ell_{q}\,\max_{\text{block}}|x|` with the nearest level.
  QLoRA uses blocks of 64 (``group_size=64``) and double-quantizes the
  scales; the double quantization is not done here (``dtype`` can store
  the scales in float16/bfloat16 instead).

  Args:
    x: floating array, finite.
    bits: 2..8 (4 = NF4).
    group_size: block size along ``axis`` (QLoRA: 64); ``None`` = whole axis.
    axis: see :func:`~jaxkit.quantization.quantize`.
    dtype: scale dtype.

  Returns:
    :class:`~jaxkit.quantization.QuantizedArray` with ``format='lut'``.

  Raises:
    ValueError: bad ``bits`` / groups, NaN/Inf.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import nf_quantize
    >>> nf_quantize(jnp.array([1.0, -0.5, 0.0, 0.3]), group_size=None).codes
    Array([15,  2,  7, 11], dtype=uint8)

  References:
    Dettmers et al., arXiv:2305.14314, 2023.
  """
  return lut_quantize(x, normal_float_levels(bits), group_size=group_size,
                      axis=axis, dtype=dtype)


def power_levels(bits: int, exponent: float) -> jax.Array:
  r"""NUPES's power-exponent grid: :math:`\mathrm{sign}(u)|u|^{a}`.

  The uniform symmetric grid :math:`u_k = k / (2^{b-1}-1)`,
  :math:`k \in [-(2^{b-1}-1), 2^{b-1}-1]`, is mapped through
  :math:`u \mapsto \mathrm{sign}(u)|u|^{a}`. :math:`a = 1` is uniform;
  :math:`a > 1` puts more levels near 0 (heavy-tailed, bell-shaped weights).

  Args:
    bits: 2..8.
    exponent: :math:`a > 0`.

  Returns:
    ``[2**bits - 1]`` sorted levels in ``[-1, 1]``.

  Raises:
    ValueError: ``exponent <= 0``.

  Examples:
    >>> from jaxkit.quantization import power_levels
    >>> print(power_levels(2, 2.0))
    [-1.  0.  1.]
    >>> print(power_levels(3, 2.0))
    [-1.         -0.44444448 -0.11111112  0.          0.11111112  0.44444448
      1.        ]

  References:
    Yvinec et al., `NUPES: Non-Uniform Post-Training Quantization via
    Power Exponent Search`, arXiv:2308.05600, 2023.

    Catalog: seed_002 #28.
  """
  bits = F._check_bits(bits)  # pylint: disable=protected-access
  checks.check_scalar(exponent, "exponent", positive=True)
  return _plev(bits, exponent)


def nupes_quantize(x: ArrayLike, *, bits: int, group_size: int | None = None,
                   axis: int | None = -1, exponents: ArrayLike | None = None,
                   activations: ArrayLike | None = None,
                   dtype: DTypeLike | None = None
                   ) -> tuple[F.QuantizedArray, jax.Array]:
  r"""NUPES: non-uniform quantization on a searched power-exponent grid.

  For each candidate exponent :math:`a` the weights are quantized onto
  :func:`power_levels` (abs-max scaled per group) and the candidate with the
  lowest error is kept:

  .. math::
    a^\star = \arg\min_a \| X W - X \hat W_a \|^2 \text{ (with activations)}
    \quad\text{or}\quad \arg\min_a \|W - \hat W_a\|^2.

  This is NUPES's PTQ exponent search over a grid (the paper also learns
  :math:`a` by gradient descent in QAT and applies the power to activations;
  neither is done here). The exponent is shared by the whole tensor.

  Args:
    x: weights ``[...]`` (``[in, out]`` when ``activations`` is given).
    bits: 2..8.
    group_size: see :func:`~jaxkit.quantization.quantize`.
    axis: see :func:`~jaxkit.quantization.quantize`.
    exponents: candidate exponents ``[A]``; ``None`` = 1.0, 1.25, …, 3.0.
    activations: optional calibration inputs ``[N, in]`` (output-error
      criterion); ``None`` uses the weight MSE.
    dtype: scale dtype.

  Returns:
    ``(q, a)``: the :class:`~jaxkit.quantization.QuantizedArray` and the
    chosen exponent (scalar).

  Raises:
    ValueError: bad bits/groups, NaN/Inf, empty exponent set.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import nupes_quantize
    >>> w = jax.random.t(jax.random.key(0), 2.0, (64, 8))
    >>> q, a = nupes_quantize(w, bits=3, axis=0)
    >>> float(a) > 1.0
    True

  References:
    Yvinec et al., arXiv:2308.05600, 2023.

    Catalog: seed_002 #28.
  """
  x = F._check_float_input(x)  # pylint: disable=protected-access
  if exponents is None:
    exponents = jnp.linspace(1.0, 3.0, 9)
  exponents = checks.check_floating(exponents, "exponents")
  if exponents.ndim != 1 or exponents.shape[0] == 0:
    raise ValueError(f"`exponents` must be a non-empty 1-D array, got shape "
                     f"{exponents.shape}.")
  if activations is not None:
    activations = F._check_calibration(activations, x)  # pylint: disable=protected-access
  bits = F._check_bits(bits)  # pylint: disable=protected-access
  F._resolve_groups(x.shape, axis, group_size)  # pylint: disable=protected-access
  idx = _nupes_search(x, activations, exponents, bits=bits,
                      group_size=group_size, axis=axis)
  best = exponents[idx]
  q = lut_quantize(x, _plev(bits, best), group_size=group_size, axis=axis,
                   dtype=dtype)
  return q, best


@functools.partial(jax.jit, static_argnames=("bits", "group_size", "axis"))
def _nupes_search(x, activations, exponents, *, bits, group_size, axis):
  """Index of the exponent with the lowest (output) error; one jitted scan."""
  ax, g = F._resolve_groups(x.shape, axis, group_size)  # pylint: disable=protected-access
  xf = x.astype(jnp.float32)
  xg = F._to_groups(xf, ax, g)  # pylint: disable=protected-access
  amax = jnp.max(jnp.abs(xg), axis=-1, keepdims=True)
  scale = jnp.where(amax > 0, amax, 1.0)

  def err(a):
    lv = _plev(bits, a)
    d = F._from_groups(lv[_lut_codes(xg / scale, lv)] * scale, x.shape, ax)  # pylint: disable=protected-access
    d = d - xf
    if activations is not None:
      d = activations.astype(jnp.float32) @ d
    return jnp.mean(d * d)

  return jnp.argmin(jax.lax.map(err, exponents))


def _plev(bits, a):
  qmax = 2 ** (bits - 1) - 1
  u = jnp.arange(-qmax, qmax + 1, dtype=jnp.float32) / qmax
  return jnp.sign(u) * jnp.abs(u) ** a
