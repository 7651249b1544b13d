r"""AWQ: activation-aware weight quantization (scale search + clip search).

For a linear layer :math:`y = x W` with a Flax kernel :math:`W` ``[in, out]``
and calibration inputs :math:`X` ``[N, in]``, AWQ scales input channel
:math:`i` of the weight by :math:`s_i` before quantizing with groups along
the input axis and folds :math:`1/s` into the preceding op:

.. math::
  y \approx (X\,\mathrm{diag}(s)^{-1})\; Q(\mathrm{diag}(s)\, W).

Checked against the reference code (``mit-han-lab/llm-awq``,
``awq/quantize/auto_scale.py``, ``auto_clip.py``, ``quantizer.py``):

* scale candidates :math:`s = \bar{|x|}^{\alpha}` with
  :math:`\bar{|x|}_i = \mathrm{mean}_n |X_{ni}|`, clamped at 1e-4 and
  normalised by :math:`\sqrt{\max s \cdot \min s}`, for
  :math:`\alpha = k / 20`, :math:`k = 0..19`;
* each candidate is scored by the MSE of the layer output
  :math:`\|X W - (X/s)\,Q(sW)\|^2`; the quantizer is asymmetric with zero
  points (``zero_point=True``) and groups along the input axis;
* the clip search then shrinks each group's range to
  :math:`m (1 - k/20)`, :math:`k = 0..9`, clamping the (scaled) weights to
  :math:`[-m, m]` and keeping, per group and output column, the shrink with
  the lowest output error of that group's partial dot product.

Deviations (stated): the output errors are evaluated exactly through the
Gram matrix :math:`G = X^\top X` (``[in, in]``, computed once), i.e.
:math:`\|X D\|_F^2 = \mathrm{tr}(D^\top G D)`, instead of re-running the
layer on the tokens for every candidate; the clip search uses all calibration
rows (llm-awq subsamples 512 tokens); llm-awq scores the scales of ``q/k/v``
and ``gate/up`` on the attention / MLP block output, here the criterion is
the output of the given layer (pass the concatenation ``[in, out_q + out_k +
out_v]`` to search one shared scale for several layers that read the same
input). By default the asymmetric range is widened to contain 0 (see
:func:`~jaxkit.quantization.quantize`); ``zero_in_range=False`` selects
llm-awq's / AutoAWQ's quantizer (the group's own ``[min, max]``,
:func:`awq_minmax_quantize`). A precomputed Gram matrix can be passed
(``gram_matrix=``) to share it between layers that read the same input and,
as :math:`G / (s s^\top)`, with the clip search on the scaled inputs.

References:
  Lin et al., `AWQ: Activation-aware Weight Quantization for LLM Compression
  and Acceleration`, MLSys 2024, arXiv:2306.00978.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike, DTypeLike
from jaxkit.quantization import formats as F


def _check_layer(weight, activations, bits, group_size):
  weight = F._check_float_input(weight, "weight")  # pylint: disable=protected-access
  checks.check_rank(weight, 2, "weight")
  activations = F._check_calibration(activations, weight)  # pylint: disable=protected-access
  bits = F._check_bits(bits)  # pylint: disable=protected-access
  F._resolve_groups(weight.shape, 0, group_size)  # pylint: disable=protected-access
  return weight, activations, bits


def gram(activations: ArrayLike) -> jax.Array:
  r"""Second-moment matrix :math:`X^\top X` of calibration inputs, in float32.

  Args:
    activations: ``[N, in]``.

  Returns:
    ``[in, in]`` float32 (``HIGHEST`` matmul precision).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization.awq import gram
    >>> gram(jnp.array([[1.0, 2.0], [0.0, 1.0]]))
    Array([[1., 2.],
           [2., 5.]], dtype=float32)
  """
  x = checks.check_floating(activations, "activations").astype(jnp.float32)
  return jnp.matmul(x.T, x, precision=jax.lax.Precision.HIGHEST)


def _minmax_nozero(xg, bits):
  """AutoAWQ's zero-point scales of ``[..., G, g]`` groups (range not widened).

  ``scale = max(max - min, 1e-5) / (2^b - 1)``, ``zero = clip(-round(min /
  scale), 0, 2^b - 1)``: the group's own ``[min, max]``, 0 need not lie in it.
  """
  hi = 2**bits - 1
  mn = jnp.min(xg, axis=-1)
  mx = jnp.max(xg, axis=-1)
  scale = jnp.maximum(mx - mn, 1e-5) / hi
  zero = jnp.clip(-jnp.round(mn / scale), 0, hi)
  return scale, zero


def _check_gram(gram_matrix, activations):
  """``gram(activations)``, or the given ``[in, in]`` Gram matrix (checked)."""
  if gram_matrix is None:
    return gram(activations)
  g = checks.check_floating(gram_matrix, "gram_matrix").astype(jnp.float32)
  n = activations.shape[1]
  if g.shape != (n, n):
    raise ValueError(f"`gram_matrix` must be [{n}, {n}] (the activations' "
                     f"width), got {g.shape}.")
  return g


def _fq(w, bits, group_size, symmetric, zero_in_range=True, scale_dtype=None):
  """Fake quantization with groups along the input axis 0 (no validation).

  ``scale_dtype``: round the scales to it first and derive the zero points
  from the rounded scales, as the stored quantizers do
  (:func:`awq_minmax_quantize` / :func:`~jaxkit.quantization.quantize` with
  ``dtype=``); ``None`` keeps float32 scales.
  """
  xg = F._to_groups(w, 0, group_size)  # pylint: disable=protected-access
  rnd = ((lambda a: a) if scale_dtype is None else
         (lambda a: a.astype(scale_dtype).astype(jnp.float32)))
  if not symmetric and not zero_in_range:
    scale, _ = _minmax_nozero(xg, bits)
    scale = rnd(scale)
    hi = 2**bits - 1
    zero = jnp.clip(-jnp.round(jnp.min(xg, -1) / scale), 0, hi)
    codes = jnp.clip(jnp.round(xg / scale[..., None]) + zero[..., None], 0, hi)
    return F._from_groups((codes - zero[..., None]) * scale[..., None],  # pylint: disable=protected-access
                          w.shape, 0)
  scale, zero = F._minmax_scales(xg, bits, symmetric)  # pylint: disable=protected-access
  if scale_dtype is not None:
    scale = rnd(scale)
    if zero is not None:
      lo, hi = F._int_range(bits, symmetric)  # pylint: disable=protected-access
      zero = jnp.clip(-jnp.round(jnp.minimum(jnp.min(xg, -1), 0.0) / scale),
                      lo, hi)
  codes = F._round_codes(xg, scale, zero, bits, symmetric)  # pylint: disable=protected-access
  if zero is not None:
    codes = codes - zero[..., None]
  return F._from_groups(codes * scale[..., None], w.shape, 0)  # pylint: disable=protected-access


def _opt_dtype(dtype):
  """``None`` or the canonical (hashable, static) dtype."""
  return None if dtype is None else jnp.dtype(dtype)


def _quad(g, d):
  """``tr(D^T G D)`` (sum of squared output errors)."""
  return jnp.sum(d * jnp.matmul(g, d, precision=jax.lax.Precision.HIGHEST))


def awq_candidate_scales(activations: ArrayLike, *, grid: int = 20,
                         weight: ArrayLike | None = None,
                         group_size: int | None = None) -> jax.Array:
  r"""AWQ's scale candidates, :math:`\bar{|x|}^{\alpha}` or AutoAWQ's duo form.

  Without ``weight`` (llm-awq):

  .. math:: s_\alpha = \max(\bar{|x|}^{\alpha}, 10^{-4});

  with ``weight`` (AutoAWQ's default ``duo_scaling=True``):

  .. math::
    s_\alpha = \max\Big(\frac{\bar{|x|}^{\alpha}}
    {\bar{w}^{1-\alpha} + 10^{-4}}, 10^{-4}\Big),\quad
    \bar w_i = \mathrm{mean}_o \frac{|W_{io}|}{\max_{j \in g(i)}
    |W_{jo}| + 10^{-6}},

  where :math:`\bar{|x|}_i = \mathrm{mean}_n |X_{ni}|`, :math:`g(i)` is the
  quantization group of input channel :math:`i` and :math:`\alpha = k /
  \text{grid}`, :math:`k = 0..\text{grid}-1`. Each row is then normalised by
  :math:`\sqrt{\max s \cdot \min s}`.

  Args:
    activations: ``[N, in]``.
    grid: number of candidates.
    weight: optional ``[in, out]`` kernel (the concatenation along ``out`` of
      all layers that share the scale); selects the duo form.
    group_size: group size along ``in`` for :math:`\bar w` (``None`` = the
      whole axis); only with ``weight``.

  Returns:
    ``[grid, in]``; row ``k`` is for :math:`\alpha = k/\text{grid}`.

  Raises:
    ValueError: ``weight`` of the wrong shape, or ``group_size`` not dividing
      ``in``.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxkit.quantization.awq import awq_candidate_scales
    >>> s = awq_candidate_scales(jnp.array([[1.0, 4.0]]), grid=2)
    >>> print(np.round(np.asarray(s, np.float64), 4))
    [[1.     1.    ]
     [0.7071 1.4142]]
    >>> s = awq_candidate_scales(jnp.array([[1.0, 4.0]]), grid=2,
    ...                          weight=jnp.array([[1.0], [0.5]]))
    >>> print(np.round(np.asarray(s, np.float64), 4))
    [[0.7071 1.4141]
     [0.5946 1.6818]]

  References:
    Lin et al., `AWQ: Activation-aware Weight Quantization for LLM
    Compression and Acceleration`, MLSys 2024, arXiv:2306.00978 (§3.2: the
    grid search over :math:`\alpha`); llm-awq ``auto_scale.py``; the duo
    form as in AutoAWQ ``awq/quantize/quantizer.py``
    (``_search_best_scale`` / ``_compute_best_scale``).

    Catalog: seed_000 #52, seed_002 #7.
  """
  x = checks.check_floating(activations, "activations").astype(jnp.float32)
  checks.check_rank(x, 2, "activations")
  x_mean = jnp.mean(jnp.abs(x), axis=0)
  alphas = jnp.arange(grid, dtype=jnp.float32)[:, None] / grid
  if weight is None:
    s = jnp.maximum(x_mean[None, :] ** alphas, 1e-4)
  else:
    w = checks.check_floating(weight, "weight")
    checks.check_rank(w, 2, "weight")
    if w.shape[0] != x.shape[1]:
      raise ValueError(f"`weight` must be [{x.shape[1]}, out] (the "
                       f"activations' width), got {w.shape}.")
    F._resolve_groups(w.shape, 0, group_size)  # pylint: disable=protected-access
    gsz = w.shape[0] if group_size is None else int(group_size)
    w = jnp.abs(w.astype(jnp.float32))
    wg = w.reshape(w.shape[0] // gsz, gsz, w.shape[1])
    wn = wg / (jnp.max(wg, axis=1, keepdims=True) + 1e-6)
    w_mean = wn.reshape(w.shape).mean(1)
    s = jnp.maximum(x_mean[None, :] ** alphas /
                    (w_mean[None, :] ** (1 - alphas) + 1e-4), 1e-4)
  return s / jnp.sqrt(jnp.max(s, -1, keepdims=True) *
                      jnp.min(s, -1, keepdims=True))


@functools.partial(jax.jit, static_argnames=("bits", "group_size", "grid",
                                             "symmetric", "duo_scaling",
                                             "zero_in_range", "scale_dtype"))
def _search_scales(weight, activations, g, *, bits, group_size, grid,
                   symmetric, duo_scaling=False, zero_in_range=True,
                   scale_dtype=None):
  w = weight.astype(jnp.float32)
  cands = awq_candidate_scales(
      activations, grid=grid, weight=w if duo_scaling else None,
      group_size=group_size)

  def loss(s):
    d = _fq(w * s[:, None], bits, group_size, symmetric,
            zero_in_range, scale_dtype) / s[:, None] - w
    return _quad(g, d)

  losses = jax.lax.map(loss, cands)
  return cands[jnp.argmin(losses)], losses


def awq_scales(weight: ArrayLike, activations: ArrayLike, *, bits: int,
               group_size: int | None, grid: int = 20,
               symmetric: bool = False, duo_scaling: bool = False,
               return_losses: bool = False, zero_in_range: bool = True,
               gram_matrix: ArrayLike | None = None,
               dtype: DTypeLike | None = None):
  r"""AWQ's activation-aware per-input-channel scale search.

  .. math::
    s^\star = \arg\min_{s \in \{\bar{|x|}^{k/20}\}}
    \big\| X W - (X\,\mathrm{diag}(s)^{-1})\,Q(\mathrm{diag}(s) W)\big\|^2,

  with candidates from :func:`awq_candidate_scales` and :math:`Q` the
  group-wise RTN quantizer (groups of ``group_size`` along the input axis,
  zero points unless ``symmetric``). The error is computed exactly via the
  Gram matrix (see the module docstring).

  Args:
    weight: ``[in, out]`` Flax kernel, finite.
    activations: calibration inputs ``[N, in]`` (N >= 1), finite.
    bits: 2..8.
    group_size: elements per group along ``in`` (must divide it); ``None``
      = one group per output column.
    grid: number of :math:`\alpha` candidates (llm-awq: 20).
    symmetric: quantizer without zero points (llm-awq uses zero points).
    duo_scaling: AutoAWQ's candidates :math:`\bar{|x|}^{\alpha} /
      \bar w^{1-\alpha}` (see :func:`awq_candidate_scales`) instead of
      llm-awq's :math:`\bar{|x|}^{\alpha}`.
    return_losses: also return the ``[grid]`` losses (sum of squared output
      errors).
    gram_matrix: optional precomputed :func:`gram` of ``activations``
      (``[in, in]``), e.g. shared by the layers that read the same input;
      it is trusted (not recomputed or compared with ``activations``).
    zero_in_range: with zero points, widen each group's range to contain 0
      (:func:`~jaxkit.quantization.quantize`'s quantizer, the default);
      ``False`` = AutoAWQ's / llm-awq's ``pseudo_quantize_tensor``, which
      uses the group's own ``[min, max]`` (see :func:`awq_minmax_quantize`).
    dtype: the dtype the scales will be stored in: candidates are scored
      with the quantizer rounding its scales to it (see :func:`awq_clip`);
      ``None`` (AutoAWQ) scores with float32 scales.

  Returns:
    ``s`` ``[in]`` (float32), or ``(s, losses)``.

  Raises:
    ValueError: bad bits / group size, NaN/Inf in weight or activations,
      empty calibration set, mismatched shapes.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import awq_scales
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> w = jax.random.normal(k1, (16, 8))
    >>> x = jax.random.normal(k2, (64, 16)) * jnp.linspace(0.1, 10.0, 16)
    >>> awq_scales(w, x, bits=3, group_size=8).shape
    (16,)

  References:
    Lin et al., arXiv:2306.00978 (§3.2, Eq. 4–5); llm-awq ``auto_scale.py``.

    Catalog: seed_000 #52, seed_002 #7.
  """
  weight, activations, bits = _check_layer(weight, activations, bits,
                                           group_size)
  gsz = weight.shape[0] if group_size is None else int(group_size)
  g = _check_gram(gram_matrix, activations)
  s, losses = _search_scales(weight, activations, g,
                             bits=bits, group_size=gsz, grid=int(grid),
                             symmetric=bool(symmetric),
                             duo_scaling=bool(duo_scaling),
                             zero_in_range=bool(zero_in_range),
                             scale_dtype=_opt_dtype(dtype))
  return (s, losses) if return_losses else s


def awq_block_scales(block_fn: Callable[..., jax.Array],
                     weights: Sequence[ArrayLike], activations: ArrayLike, *,
                     bits: int, group_size: int | None, grid: int = 20,
                     duo_scaling: bool = True, symmetric: bool = False,
                     return_losses: bool = False, zero_in_range: bool = True,
                     dtype: DTypeLike | None = None):
  r"""AWQ's scale search scored on the output of a whole block (AutoAWQ).

  Several linear layers that read the same input (``q/k/v`` after the
  attention norm, ``gate/up`` after the MLP norm) share one scale
  :math:`s` ``[in]``; each candidate is scored on the output of the block
  that contains them (the whole self-attention, the whole MLP), with all
  other weights of the block left in float:

  .. math::
    s^\star = \arg\min_{s \in \mathcal{S}}
    \mathrm{mean}\big(f(W_1, \dots, W_L) -
    f(\hat W_1(s), \dots, \hat W_L(s))\big)^2,
    \quad \hat W_l(s) = \mathrm{diag}(s)^{-1} Q(\mathrm{diag}(s) W_l),

  where :math:`f` is ``block_fn`` and :math:`\mathcal{S}` are the
  candidates of :func:`awq_candidate_scales` (duo form on the concatenated
  kernels when ``duo_scaling``). The candidate loop is a ``lax.map``; the
  function is traceable, so wrap the caller in ``jax.jit`` to reuse one
  compilation for many blocks of the same shapes.

  Args:
    block_fn: ``block_fn(*kernels) -> output`` with kernels of the shapes of
      ``weights``; the fake-quantized kernels are passed in the same order.
    weights: sequence of ``L >= 1`` kernels ``[in, out_l]`` (Flax
      convention) that read the same input.
    activations: ``[N, in]`` inputs of those layers (for
      :math:`\bar{|x|}`; the block's own inputs are closed over by
      ``block_fn`` and may be a subset of these tokens).
    bits: 2..8.
    group_size: group size along ``in`` (must divide it); ``None`` = whole
      axis.
    grid: number of :math:`\alpha` candidates (AutoAWQ: 20).
    duo_scaling: AutoAWQ's default candidates (else llm-awq's).
    symmetric: quantizer without zero points (AWQ uses zero points).
    return_losses: also return the ``[grid]`` mean squared output errors.
    zero_in_range: with zero points, widen each group's range to contain 0
      (:func:`~jaxkit.quantization.quantize`'s quantizer, the default);
      ``False`` = AutoAWQ's / llm-awq's ``pseudo_quantize_tensor``, which
      uses the group's own ``[min, max]`` (see :func:`awq_minmax_quantize`).
    dtype: the dtype the scales will be stored in: candidates are scored
      with the quantizer rounding its scales to it (see :func:`awq_clip`);
      ``None`` (AutoAWQ) scores with float32 scales.

  Returns:
    ``s`` ``[in]`` float32, or ``(s, losses)``.

  Raises:
    ValueError: empty ``weights``, kernels of different input sizes, bad
      bits / group size, mismatched activations.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import awq_block_scales
    >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    >>> x = jax.random.normal(k1, (64, 16)) * jnp.linspace(0.1, 10.0, 16)
    >>> wg = jax.random.normal(k2, (16, 8))
    >>> wu = jax.random.normal(k3, (16, 8))
    >>> mlp = lambda g, u: jax.nn.silu(x @ g) * (x @ u)
    >>> s = awq_block_scales(mlp, [wg, wu], x, bits=3, group_size=8)
    >>> s.shape
    (16,)

  References:
    Lin et al., `AWQ: Activation-aware Weight Quantization for LLM
    Compression and Acceleration`, MLSys 2024, arXiv:2306.00978 (§3.2);
    checked against AutoAWQ ``awq/quantize/quantizer.py``
    (``_search_best_scale``: shared scale for the layers of one
    ``prev_op``, scored on ``module2inspect``'s output by the mean squared
    error; ``_compute_best_scale``: 20 ratios, duo scaling, first minimum
    kept). With ``zero_in_range=True`` (default) the quantizer's asymmetric
    range is widened to contain 0; AutoAWQ's is not
    (``zero_in_range=False``).

    Catalog: seed_000 #52, seed_002 #7.
  """
  if not callable(block_fn):
    raise TypeError(f"`block_fn` must be callable, got {type(block_fn)}.")
  if isinstance(weights, (jax.Array,)) or not isinstance(weights,
                                                         (list, tuple)):
    raise TypeError("`weights` must be a list/tuple of [in, out] kernels, got "
                    f"{type(weights)}.")
  if not weights:
    raise ValueError("`weights` must hold at least one kernel, got none.")
  ws = []
  for i, w in enumerate(weights):
    w = F._check_float_input(w, f"weights[{i}]")  # pylint: disable=protected-access
    checks.check_rank(w, 2, f"weights[{i}]")
    if w.shape[0] != weights[0].shape[0]:
      raise ValueError(f"all `weights` must have the same input size "
                       f"{weights[0].shape[0]}, got weights[{i}] {w.shape}.")
    ws.append(w)
  cat = jnp.concatenate([w.astype(jnp.float32) for w in ws], axis=1)
  _, activations, bits = _check_layer(cat, activations, bits, group_size)
  gsz = cat.shape[0] if group_size is None else int(group_size)
  cands = awq_candidate_scales(activations, grid=int(grid),
                               weight=cat if duo_scaling else None,
                               group_size=gsz)
  ref = jax.lax.stop_gradient(
      block_fn(*ws).astype(jnp.float32))

  def loss(sc):
    qs = [(_fq(w.astype(jnp.float32) * sc[:, None], bits, gsz,
               bool(symmetric), bool(zero_in_range),
               _opt_dtype(dtype)) / sc[:, None]
           ).astype(w.dtype) for w in ws]
    return jnp.mean((block_fn(*qs).astype(jnp.float32) - ref) ** 2)

  losses = jax.lax.map(loss, cands)
  s = cands[jnp.argmin(losses)]
  return (s, losses) if return_losses else s


@functools.partial(jax.jit, static_argnames=("bits", "group_size", "n_grid",
                                             "max_shrink", "symmetric",
                                             "zero_in_range", "scale_dtype"))
def _search_clip(w, g, *, bits, group_size, n_grid, max_shrink, symmetric,
                 zero_in_range=True, scale_dtype=None):
  n_in, n_out = w.shape
  ng = n_in // group_size
  gb = g.reshape(ng, group_size, ng, group_size)
  gb = gb[jnp.arange(ng), :, jnp.arange(ng), :]  # [ng, gs, gs] diag blocks
  wg = w.reshape(ng, group_size, n_out)
  org_max = jnp.max(jnp.abs(wg), axis=1, keepdims=True)  # [ng, 1, out]

  def err(k):
    m = org_max * (1.0 - k / n_grid)
    cw = jnp.clip(wg, -m, m).reshape(n_in, n_out)
    d = (_fq(cw, bits, group_size, symmetric, zero_in_range, scale_dtype)
         - w).reshape(
        ng, group_size, n_out)
    gd = jnp.einsum("kij,kjo->kio", gb, d,
                    precision=jax.lax.Precision.HIGHEST)
    return jnp.sum(d * gd, axis=1)  # [ng, out]

  ks = jnp.arange(int(max_shrink * n_grid), dtype=jnp.float32)
  errs = jax.lax.map(err, ks)  # [K, ng, out]
  best = jnp.argmin(errs, axis=0)  # first minimum, as llm-awq's strict <
  return org_max[:, 0, :] * (1.0 - ks[best] / n_grid)  # [ng, out]


def awq_clip(weight: ArrayLike, activations: ArrayLike, *, bits: int,
             group_size: int | None, n_grid: int = 20,
             max_shrink: float = 0.5, symmetric: bool = False,
             zero_in_range: bool = True,
             gram_matrix: ArrayLike | None = None,
             dtype: DTypeLike | None = None) -> jax.Array:
  r"""AWQ's clip search: per-group clipping thresholds minimising output error.

  .. math::
    m^\star_{g,o} = \arg\min_{m \in \{m_0 (1 - k/20)\}_{k<10}}
    \big\| X_g (Q(\mathrm{clip}(W_{g,o}, -m, m)) - W_{g,o}) \big\|^2,

  where :math:`m_0 = \max|W_{g,o}|` and :math:`X_g` are the calibration
  inputs of group :math:`g`. Pass the already-scaled weight and inputs
  (:math:`sW` and :math:`X/s`), as llm-awq does after ``apply_scale``.
  With zero points, a clip to :math:`[-m, m]` puts the zero point
  :math:`m/s = (2^b-1)/2` on an exact rounding tie, resolved by the last
  float bit (as in llm-awq); thresholds can therefore differ from a float64
  re-implementation by one grid step where two errors are close.

  Args:
    weight: ``[in, out]``.
    activations: ``[N, in]``.
    bits: 2..8.
    group_size: group size along ``in``; ``None`` = whole axis.
    n_grid: shrink grid (llm-awq: 20).
    max_shrink: largest shrink fraction (llm-awq: 0.5).
    symmetric: quantizer without zero points.
    gram_matrix: optional precomputed :func:`gram` of ``activations``
      (``[in, in]``), e.g. shared by the layers that read the same input;
      it is trusted (not recomputed or compared with ``activations``).
    zero_in_range: with zero points, widen each group's range to contain 0
      (:func:`~jaxkit.quantization.quantize`'s quantizer, the default);
      ``False`` = AutoAWQ's / llm-awq's ``pseudo_quantize_tensor``, which
      uses the group's own ``[min, max]`` (see :func:`awq_minmax_quantize`).
    dtype: the dtype the scales will be stored in (e.g. ``jnp.float16``):
      each candidate is scored with its scales rounded to it and the zero
      points derived from the rounded scales, i.e. with the quantizer that
      is applied afterwards. ``None`` (AutoAWQ / llm-awq) scores with
      float32 scales. A clipped group puts its zero point near a rounding
      tie, so the choice made for float32 scales can be undone by the
      rounding to float16 (SmolLM2 W3-g64: +0.6–0.9 perplexity).

  Returns:
    ``[in // group_size, out]`` clip thresholds :math:`m^\star`.

  Raises:
    ValueError: as :func:`awq_scales`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import awq_clip
    >>> w = jax.random.normal(jax.random.key(0), (16, 4))
    >>> x = jax.random.normal(jax.random.key(1), (32, 16))
    >>> awq_clip(w, x, bits=3, group_size=8).shape
    (2, 4)

  References:
    Lin et al., arXiv:2306.00978; llm-awq ``auto_clip.py``.

    Catalog: seed_000 #52, seed_002 #7.
  """
  weight, activations, bits = _check_layer(weight, activations, bits,
                                           group_size)
  checks.check_scalar(max_shrink, "max_shrink", lower=0.0, upper=1.0)
  gsz = weight.shape[0] if group_size is None else int(group_size)
  return _search_clip(weight.astype(jnp.float32),
                      _check_gram(gram_matrix, activations),
                      bits=bits, group_size=gsz, n_grid=int(n_grid),
                      max_shrink=float(max_shrink), symmetric=bool(symmetric),
                      zero_in_range=bool(zero_in_range),
                      scale_dtype=_opt_dtype(dtype))


def awq_quantize(weight: ArrayLike, activations: ArrayLike, *, bits: int,
                 group_size: int | None, grid: int = 20, clip: bool = True,
                 symmetric: bool = False, dtype: DTypeLike | None = None,
                 duo_scaling: bool = False, zero_in_range: bool = True
                 ) -> tuple[F.QuantizedArray, jax.Array]:
  r"""AWQ end to end: scale search, clip search, group-wise quantization.

  Returns :math:`q = Q(\mathrm{clip}(\mathrm{diag}(s) W))` (groups along the
  input axis) and :math:`s`, such that

  .. math:: (X / s)\, \mathrm{dequantize}(q) \approx X W;

  the :math:`1/s` is what gets folded into the preceding op (RMSNorm gain,
  previous linear layer).

  Args:
    weight: ``[in, out]`` Flax kernel.
    activations: calibration inputs ``[N, in]``.
    bits: 2..8.
    group_size: group size along ``in``.
    grid: scale-search grid (20).
    clip: run the clip search.
    symmetric: quantizer without zero points (AWQ: zero points).
    dtype: dtype of the stored scales / zero points (e.g. ``jnp.float16``).
    duo_scaling: AutoAWQ's scale candidates (see :func:`awq_scales`).
    zero_in_range: with zero points, widen each group's range to contain 0
      (:func:`~jaxkit.quantization.quantize`'s quantizer, the default);
      ``False`` = AutoAWQ's / llm-awq's ``pseudo_quantize_tensor``, which
      uses the group's own ``[min, max]`` (see :func:`awq_minmax_quantize`).

  Returns:
    ``(q, s)``: a :class:`~jaxkit.quantization.QuantizedArray` of shape
    ``[in, out]`` (``axis=0``) and the ``[in]`` scales.

  Raises:
    ValueError: as :func:`awq_scales`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import awq_quantize, dequantize
    >>> k1, k2 = jax.random.split(jax.random.key(0))
    >>> w = jax.random.normal(k1, (32, 8))
    >>> x = jax.random.normal(k2, (128, 32)) * jnp.linspace(0.1, 5.0, 32)
    >>> q, s = awq_quantize(w, x, bits=4, group_size=16)
    >>> y = (x / s) @ dequantize(q)
    >>> bool(jnp.linalg.norm(y - x @ w) < 0.2 * jnp.linalg.norm(x @ w))
    True

  References:
    Lin et al., arXiv:2306.00978.

    Catalog: seed_000 #52, seed_002 #7.
  """
  weight, activations, bits = _check_layer(weight, activations, bits,
                                           group_size)
  s = awq_scales(weight, activations, bits=bits, group_size=group_size,
                 grid=grid, symmetric=symmetric, duo_scaling=duo_scaling,
                 zero_in_range=zero_in_range)
  ws = weight.astype(jnp.float32) * s[:, None]
  if clip:
    xs = activations.astype(jnp.float32) / s
    m = awq_clip(ws, xs, bits=bits, group_size=group_size,
                 symmetric=symmetric, zero_in_range=zero_in_range)
    gsz = weight.shape[0] if group_size is None else group_size
    mb = jnp.repeat(m, gsz, axis=0)
    ws = jnp.clip(ws, -mb, mb)
  if symmetric or zero_in_range:
    q = F.quantize(ws.astype(weight.dtype), bits=bits, group_size=group_size,
                   axis=0, symmetric=symmetric, dtype=dtype)
  else:
    q = awq_minmax_quantize(ws.astype(weight.dtype), bits=bits,
                            group_size=group_size, dtype=dtype)
  return q, s


def awq_minmax_quantize(weight: ArrayLike, *, bits: int,
                        group_size: int | None,
                        dtype: DTypeLike | None = None) -> F.QuantizedArray:
  r"""AutoAWQ's zero-point quantizer, groups along the input axis.

  For each group :math:`g` (``group_size`` consecutive input channels of one
  output column) with :math:`m = \min g`, :math:`M = \max g`:

  .. math::
    \Delta = \frac{\max(M - m, 10^{-5})}{2^b - 1},\quad
    z = \mathrm{clip}(-\mathrm{round}(m / \Delta), 0, 2^b - 1),\quad
    q = \mathrm{clip}(\mathrm{round}(w / \Delta) + z, 0, 2^b - 1),

  dequantized as :math:`(q - z)\Delta`. Unlike
  :func:`~jaxkit.quantization.quantize` (``symmetric=False``), the range is
  the group's own :math:`[m, M]`, not widened to contain 0: a one-signed
  group gets all :math:`2^b` levels over its span (and, as in AutoAWQ,
  :math:`z` is clipped at 0, so a group with :math:`m > 0` is represented
  on :math:`[0, M - m]`).

  Args:
    weight: ``[in, out]`` Flax kernel, finite.
    bits: 2..8.
    group_size: elements per group along ``in`` (must divide it); ``None`` =
      one group per output column.
    dtype: dtype of the stored scales / zero points (``None`` = the
      weight's); the codes are rounded with the stored scale.

  Returns:
    A :class:`~jaxkit.quantization.QuantizedArray` (``format='int'``,
    ``axis=0``, uint8 codes in :math:`[0, 2^b - 1]`, zero points).

  Raises:
    ValueError: bad bits / group size, NaN/Inf or wrong rank of ``weight``.

  Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxkit.quantization import dequantize
    >>> from jaxkit.quantization.awq import awq_minmax_quantize
    >>> w = jnp.array([[-2.0], [0.5], [2.0], [4.0]])
    >>> q = awq_minmax_quantize(w, bits=2, group_size=4)
    >>> print(np.asarray(q.codes).ravel(), np.asarray(q.zero_points).ravel())
    [0 1 2 3] [1.]
    >>> print(np.asarray(dequantize(q)).ravel())
    [-2.  0.  2.  4.]

  References:
    AutoAWQ ``awq/quantize/quantizer.py`` (``pseudo_quantize_tensor``,
    ``zero_point=True``); llm-awq ``awq/quantize/quantizer.py``; Lin et al.,
    arXiv:2306.00978.

    Catalog: seed_000 #52, seed_002 #7.
  """
  weight = F._check_float_input(weight, "weight")  # pylint: disable=protected-access
  checks.check_rank(weight, 2, "weight")
  bits = F._check_bits(bits)  # pylint: disable=protected-access
  F._resolve_groups(weight.shape, 0, group_size)  # pylint: disable=protected-access
  gsz = weight.shape[0] if group_size is None else int(group_size)
  sdt = jnp.dtype(weight.dtype if dtype is None else dtype)
  hi = 2**bits - 1
  xg = F._to_groups(weight.astype(jnp.float32), 0, gsz)  # pylint: disable=protected-access
  scale, _ = _minmax_nozero(xg, bits)
  scale = scale.astype(sdt).astype(jnp.float32)  # round with stored scale
  zero = jnp.clip(-jnp.round(jnp.min(xg, -1) / scale), 0, hi)
  codes = jnp.clip(jnp.round(xg / scale[..., None]) + zero[..., None], 0, hi)
  codes = F._from_groups(codes, weight.shape, 0).astype(jnp.uint8)  # pylint: disable=protected-access
  stat = lambda a: F._group_stat_shape(a, weight.shape, 0).astype(sdt)  # pylint: disable=protected-access
  return F.QuantizedArray(
      codes=codes, scales=stat(scale), zero_points=stat(zero), bits=bits,
      group_size=group_size if group_size is None else gsz, axis=0,
      format="int", dtype=weight.dtype)
