r"""Saliency-aware partial retraining for ultra-low-bit weights (ApiQ extension).

ApiQ quantizes a layer and trains *only* its LoRA adapter :math:`AB` and the
quantizer's clipping factors (the weights stay frozen: "partial training") so
that the quantized layer reproduces the full-precision activations. Cao &
Aref add a saliency-weighted weight-preservation term:

.. math::
  \mathcal L = \lambda_{act}\,\frac{1}{N d}\,\|XW - X(Q(W) + sAB)\|_F^2
    + \lambda_{reg} \sum_{ij} F_{ij}\,(\tilde W_{ij} - W_{ij})^2,

with the saliency :math:`F` the squared gradient of the language-model loss
(SqueezeLLM's diagonal Fisher) and :math:`\tilde W = Q(W)` ("before LoRA",
the default) or :math:`Q(W) + sAB` ("after LoRA"). Training runs in stages:
weight preservation (``'wpt'``: regulariser only), output preservation
(``'opt'``: ApiQ's loss only) and mixed (``'mixed'``: both).

* :func:`lwc_fake_quant` — ApiQ's (OmniQuant's) learnable-weight-clipping
  quantizer :math:`Q(W)`, differentiable in the clipping logits.
* :func:`squared_gradient_saliency` — :math:`F` from per-sample gradients.
* :func:`saliency_quant_reg` — the regulariser.
* :func:`activation_preservation_loss` — ApiQ's per-token output error.
* :func:`saliency_retraining_loss` — the staged objective above.

Checked against the authors' code (``TokuyuSou/ULB-SAPR``:
``apiq/utils.py::calculate_regularization_term`` — ``sum(grad_squared ·
(W_eff - W_orig)^2)``, "the gradient dict already contains the squared
gradient"; ``get_coefficients`` for the stages; ``apiq/quant_linear.py``
for the quantizer; ``apiq/calibrate.py`` for the MSE objective and the
per-layer :math:`\lambda_{reg}\mu^{i}` of ``--lambda_reg_multiplier``).
Deviations: the authors load SqueezeLLM's precomputed squared-gradient
chunks; :func:`squared_gradient_saliency` averages instead of summing over
samples (a constant factor, absorbed by :math:`\lambda_{reg}`). The
activation term is the per-linear (ApiQ-lw) form; ApiQ-bw and the authors'
code use the MSE of a whole transformer block's output — compute that with
your block and add :func:`saliency_quant_reg` for each of its linears.

Not implemented: a saliency-based *selection* of weights or rows to retrain.
Neither the paper nor its code selects a subset by saliency — "partial"
means that only the adapter and the clipping factors are trainable (freeze
the rest with ``optax.masked`` / :func:`jaxkit.sparsity.masked`); the
saliency only weights the regulariser.

Layout: Flax ``[in, out]`` kernels, activations ``[..., in]``; quantization
groups run along the input axis (axis 0), as the torch code's groups along
the last axis of its ``[out, in]`` weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.quantization import formats as F
from jaxkit.quantization import qat

_STAGES = {"wpt": (0.0, 1.0), "opt": (1.0, 0.0), "mixed": (1.0, 1.0)}
_CLIPMIN = 1e-5


def _check_kernel(w, name):
  w = checks.check_floating(w, name)
  checks.check_rank(w, 2, name)
  return w


def lwc_fake_quant(w: ArrayLike, up_logit: ArrayLike, low_logit: ArrayLike, *,
                   bits: int, group_size: int | None = None,
                   symmetric: bool = False) -> jax.Array:
  r"""ApiQ / OmniQuant learnable-weight-clipping (LWC) fake quantization.

  Per group :math:`g` (``group_size`` consecutive input rows of one output
  column), the range is shrunk by learned sigmoid gates:

  .. math::
    \bar w = \sigma(\gamma_g)\max_g w,\quad \underline w =
    \sigma(\beta_g)\min_g w,\quad
    h = \mathrm{clip}\Big(\frac{\bar w - \underline w}{2^b - 1},
      10^{-5}, 10^4\Big),\quad
    z = \mathrm{round}(-\underline w / h),

  .. math::
    Q(w) = h\,\big(\mathrm{clip}(\lfloor w/h\rceil + z, 0, 2^b - 1) - z\big),

  with :math:`\lfloor\cdot\rceil` the straight-through rounding and no
  gradient through :math:`z` (torch ``round``). ``symmetric=True`` uses
  :math:`h = \max(|\bar w|, |\underline w|)/(2^{b-1} - 1)` and
  :math:`z = 2^{b-1} - 1`, as ``UniformAffineQuantizer`` of the authors'
  code. The authors initialise both logits to 4 (:math:`\sigma(4) \approx
  0.982`). Gradients reach both logits (through :math:`h`) and ``w`` (STE).

  Args:
    w: ``[in, out]`` kernel.
    up_logit: ``[in // group_size, out]`` logits :math:`\gamma` of the upper
      bound (``[1, out]`` when ``group_size`` is None: per output channel).
    low_logit: same shape, logits :math:`\beta` of the lower bound.
    bits: 2..8 (static).
    group_size: rows per group along the input axis; must divide ``in``.
    symmetric: static; see above.

  Returns:
    ``[in, out]`` dequantized kernel in float32 (or wider).

  Raises:
    ValueError / TypeError: bad rank, shapes, ``bits`` or ``group_size``,
      NaN/Inf in a concrete ``w``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import lwc_fake_quant
    >>> w = jnp.array([[-1.0], [0.1], [0.5], [1.0]])
    >>> big = jnp.full((1, 1), 20.0)  # sigma(20) = 1: no clipping
    >>> # h = 2/3, z = round(1.5) = 2: the grid is {-4/3, -2/3, 0, 2/3}
    >>> print(lwc_fake_quant(w, big, big, bits=2).ravel().round(4))
    [-1.3333  0.      0.6667  0.6667]

  References:
    Liao, Herold, Khadivi, Monz, "ApiQ: Finetuning of 2-Bit Quantized Large
    Language Model", EMNLP 2024, arXiv:2402.05147; Shao et al.,
    "OmniQuant", ICLR 2024, arXiv:2308.13137; Cao, Aref, arXiv:2504.13932
    (code ``TokuyuSou/ULB-SAPR``, ``apiq/quant_linear.py``).

    Catalog: seed_002 #6.
  """
  bits = F._check_bits(bits, range(2, 9))  # pylint: disable=protected-access
  if not isinstance(symmetric, bool):
    raise TypeError(f"`symmetric` must be a Python bool, got {symmetric!r}.")
  w = F._check_float_input(w, "w")  # pylint: disable=protected-access
  checks.check_rank(w, 2, "w")
  ax, gs = F._resolve_groups(w.shape, 0, group_size)  # pylint: disable=protected-access
  n_groups = w.shape[0] // gs
  up = checks.check_floating(up_logit, "up_logit")
  low = checks.check_floating(low_logit, "low_logit")
  want = (n_groups, w.shape[1])
  for arr, name in ((up, "up_logit"), (low, "low_logit")):
    if arr.shape != want:
      raise ValueError(
          f"`{name}` must have shape {want} ([in // group_size, out]), got "
          f"{arr.shape}.")
  dt = checks.compute_dtype(w, up, low)
  wg = F._to_groups(w.astype(dt), ax, gs)  # [out, G, gs] pylint: disable=protected-access
  up_t = up.astype(dt).T[..., None]        # [out, G, 1]
  low_t = low.astype(dt).T[..., None]
  xmax = jax.nn.sigmoid(up_t) * jnp.max(wg, axis=-1, keepdims=True)
  xmin = jax.nn.sigmoid(low_t) * jnp.min(wg, axis=-1, keepdims=True)
  if symmetric:
    qmax_half = 2 ** (bits - 1) - 1
    amax = jnp.maximum(jnp.abs(xmax), jnp.abs(xmin))
    scale = jnp.clip(amax / qmax_half, _CLIPMIN, 1e4)
    zero = jnp.full_like(scale, float(qmax_half))
  else:
    scale = jnp.clip((xmax - xmin) / (2**bits - 1), _CLIPMIN, 1e4)
    zero = jax.lax.stop_gradient(jnp.round(jnp.clip(-xmin / scale, -1e4, 1e4)))
  codes = jnp.clip(qat.round_ste(wg / scale) + zero, 0, 2**bits - 1)
  deq = (codes - zero) * scale
  return F._from_groups(deq, w.shape, ax)  # pylint: disable=protected-access


def squared_gradient_saliency(grads: ArrayLike, *,
                              where: ArrayLike | None = None) -> jax.Array:
  r"""Saliency :math:`F = \frac1N\sum_n g_n^2`: the diagonal empirical Fisher.

  ``grads`` stacks per-sample gradients of the language-model loss with
  respect to one kernel along axis 0. The authors use SqueezeLLM's
  squared-gradient chunks (summed over the calibration set): the same up to
  the constant :math:`N`, which :math:`\lambda_{reg}` absorbs.

  .. math::
    F_{ij} = \frac{\sum_n m_n\, g_{n,ij}^2}{\sum_n m_n}.

  Args:
    grads: ``[N, ...]`` per-sample gradients (any trailing shape).
    where: optional ``[N]`` boolean mask of valid samples (padding).

  Returns:
    ``[...]`` float32 (or wider) saliency, :math:`\ge 0`; all zeros when
    every sample is masked.

  Raises:
    ValueError: rank-0 ``grads`` or a ``where`` not of shape ``[N]``;
      TypeError: non-floating ``grads``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import squared_gradient_saliency
    >>> g = jnp.array([[1.0, -2.0], [3.0, 0.0], [9.0, 9.0]])
    >>> print(squared_gradient_saliency(g, where=jnp.array([True, True, False])))
    [5. 2.]

  References:
    Cao, Aref, "Enhancing Ultra-Low-Bit Quantization of Large Language
    Models Through Saliency-Aware Partial Retraining", MDAI 2025,
    arXiv:2504.13932; Kim et al., "SqueezeLLM: Dense-and-Sparse
    Quantization", ICML 2024, arXiv:2306.07629 (the Fisher saliency).

    Catalog: seed_002 #6.
  """
  g = checks.check_floating(grads, "grads")
  if g.ndim < 1:
    raise ValueError("`grads` must have a leading sample axis [N, ...].")
  g = g.astype(checks.compute_dtype(g))
  sq = jnp.square(g)
  if where is None:
    return jnp.mean(sq, axis=0)
  m = jnp.asarray(where)
  if m.shape != g.shape[:1]:
    raise ValueError(f"`where` must have shape ({g.shape[0]},) (one flag per "
                     f"sample), got {m.shape}.")
  m = m.astype(bool).reshape((-1,) + (1,) * (g.ndim - 1))
  cnt = jnp.sum(m)
  return jnp.sum(jnp.where(m, sq, 0.0), axis=0) / jnp.maximum(cnt, 1).astype(
      sq.dtype)


def _effective_kernel(w_deq, lora_a, lora_b, lora_scale, shape):
  """``Q(W) + s A B`` (or ``Q(W)`` without an adapter)."""
  if (lora_a is None) != (lora_b is None):
    raise ValueError("Pass both `lora_a` and `lora_b`, or neither.")
  if lora_a is None:
    return w_deq
  a = checks.check_floating(lora_a, "lora_a")
  b = checks.check_floating(lora_b, "lora_b")
  checks.check_rank(a, 2, "lora_a")
  checks.check_rank(b, 2, "lora_b")
  if a.shape[0] != shape[0] or b.shape[1] != shape[1] or a.shape[1] != (
      b.shape[0]):
    raise ValueError(
        f"`lora_a` @ `lora_b` must have the kernel's shape {tuple(shape)} "
        f"([in, r] @ [r, out]), got {a.shape} and {b.shape}.")
  checks.check_scalar(lora_scale, "lora_scale")
  dt = checks.compute_dtype(w_deq, a, b)
  return w_deq.astype(dt) + lora_scale * (a.astype(dt) @ b.astype(dt))


def saliency_quant_reg(w: ArrayLike, w_deq: ArrayLike,
                       saliency: ArrayLike | None, *,
                       lora_a: ArrayLike | None = None,
                       lora_b: ArrayLike | None = None,
                       lora_scale: float = 1.0) -> jax.Array:
  r"""Saliency-weighted weight-preservation regulariser of Cao & Aref.

  .. math::
    R = \sum_{ij} F_{ij}\,(\tilde W_{ij} - W_{ij})^2, \qquad
    \tilde W = Q(W)\ \text{or}\ Q(W) + s\,AB.

  Without ``lora_a``/``lora_b`` it is the authors' ``before_lora`` variant
  (their default), with them ``after_lora``. ``saliency=None`` gives the
  unweighted regulariser (their ``--weighted_reg`` off). ``w`` and
  ``saliency`` are constants (``stop_gradient``); gradients reach
  ``w_deq`` (hence the clipping logits) and the adapter.

  Args:
    w: ``[in, out]`` full-precision kernel.
    w_deq: ``[in, out]`` fake-quantized kernel, e.g. :func:`lwc_fake_quant`.
    saliency: ``[in, out]`` non-negative saliency
      (:func:`squared_gradient_saliency`) or None.
    lora_a: optional ``[in, r]`` adapter factor.
    lora_b: optional ``[r, out]`` adapter factor.
    lora_scale: :math:`s` (LoRA ``alpha / r``).

  Returns:
    float32 (or wider) scalar; sum over the layer's weights (the authors
    add it over the linears of a block).

  Raises:
    ValueError: shape mismatches, only one adapter factor, negative concrete
      saliency; TypeError: non-floating inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import saliency_quant_reg
    >>> w = jnp.array([[1.0, 2.0]])
    >>> q = jnp.array([[0.5, 2.5]])
    >>> print(saliency_quant_reg(w, q, jnp.array([[4.0, 0.0]])))
    1.0

  References:
    Cao, Aref, "Enhancing Ultra-Low-Bit Quantization of Large Language
    Models Through Saliency-Aware Partial Retraining", MDAI 2025,
    arXiv:2504.13932 (code ``TokuyuSou/ULB-SAPR``).

    Catalog: seed_002 #6.
  """
  w = _check_kernel(w, "w")
  q = checks.check_floating(w_deq, "w_deq")
  checks.check_same_shape(w, q, "w", "w_deq")
  eff = _effective_kernel(q, lora_a, lora_b, lora_scale, w.shape)
  dt = checks.compute_dtype(w, eff)
  diff2 = jnp.square(eff.astype(dt) - jax.lax.stop_gradient(w.astype(dt)))
  if saliency is None:
    return jnp.sum(diff2)
  s = checks.check_floating(saliency, "saliency")
  checks.check_same_shape(w, s, "w", "saliency")
  if checks.is_concrete(s) and bool(jnp.any(s < 0)):
    raise ValueError("`saliency` must be >= 0 (e.g. squared gradients).")
  return jnp.sum(jax.lax.stop_gradient(s.astype(dt)) * diff2)


def activation_preservation_loss(x: ArrayLike, w: ArrayLike, w_deq: ArrayLike,
                                 *, lora_a: ArrayLike | None = None,
                                 lora_b: ArrayLike | None = None,
                                 lora_scale: float = 1.0,
                                 where: ArrayLike | None = None) -> jax.Array:
  r"""ApiQ's output-preservation error of one linear layer, per token.

  .. math::
    e_t = \frac{1}{d_{out}}\,\big\|x_t W - x_t\,(Q(W) + s AB)\big\|_2^2 .

  Reduce with :func:`jaxkit.masked_mean` over tokens: the mean over the
  unmasked tokens is the ``MSELoss`` of the authors' code for one linear.
  ``x`` and ``w`` are constants (``stop_gradient``).

  Args:
    x: ``[..., in]`` calibration inputs of the layer.
    w: ``[in, out]`` full-precision kernel.
    w_deq: ``[in, out]`` fake-quantized kernel.
    lora_a: optional ``[in, r]`` adapter factor.
    lora_b: optional ``[r, out]`` adapter factor.
    lora_scale: :math:`s`.
    where: optional ``[...]`` token mask (``x``'s leading shape); masked
      tokens give 0 (value and gradient).

  Returns:
    ``[...]`` per-token errors (float32 or wider).

  Raises:
    ValueError: shape mismatches; TypeError: non-floating inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import activation_preservation_loss
    >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    >>> w = jnp.eye(2)
    >>> print(activation_preservation_loss(x, w, 0.5 * w))  # (0.25+0)/2, (1+0)/2
    [0.125 0.5  ]

  References:
    Liao et al., "ApiQ: Finetuning of 2-Bit Quantized Large Language
    Model", EMNLP 2024, arXiv:2402.05147; Cao, Aref, arXiv:2504.13932.

    Catalog: seed_002 #6.
  """
  w = _check_kernel(w, "w")
  q = checks.check_floating(w_deq, "w_deq")
  checks.check_same_shape(w, q, "w", "w_deq")
  x = checks.check_floating(x, "x")
  if x.ndim < 1 or x.shape[-1] != w.shape[0]:
    raise ValueError(f"`x` must have shape [..., {w.shape[0]}] (the kernel's "
                     f"input width), got {x.shape}.")
  eff = _effective_kernel(q, lora_a, lora_b, lora_scale, w.shape)
  dt = checks.compute_dtype(x, w, eff)
  xs = jax.lax.stop_gradient(x.astype(dt))
  mask = None
  if where is not None:
    mask = jnp.asarray(where)
    if mask.shape != x.shape[:-1]:
      raise ValueError(f"`where` must have `x`'s leading shape "
                       f"{x.shape[:-1]}, got {mask.shape}.")
    mask = mask.astype(bool)
    xs = jnp.where(mask[..., None], xs, 0.0)
  diff = xs @ (jax.lax.stop_gradient(w.astype(dt)) - eff.astype(dt))
  err = jnp.mean(jnp.square(diff), axis=-1)
  return err if mask is None else jnp.where(mask, err, 0.0)


def saliency_retraining_loss(x: ArrayLike, w: ArrayLike, w_deq: ArrayLike,
                             saliency: ArrayLike | None, *,
                             lambda_reg: float,
                             lora_a: ArrayLike | None = None,
                             lora_b: ArrayLike | None = None,
                             lora_scale: float = 1.0, stage: str = "mixed",
                             reg_after_lora: bool = False,
                             where: ArrayLike | None = None) -> jax.Array:
  r"""Cao & Aref's staged objective for one linear layer.

  .. math::
    \mathcal L = c_{act}\,\overline{e}
      + c_{reg}\,\lambda_{reg}\,R(\tilde W),

  where :math:`\overline e` is the mean of
  :func:`activation_preservation_loss` over the unmasked tokens, :math:`R`
  is :func:`saliency_quant_reg` and :math:`(c_{act}, c_{reg})` is
  ``(0, 1)`` for ``stage='wpt'`` (weight preservation), ``(1, 0)`` for
  ``'opt'`` (ApiQ's output preservation) and ``(1, 1)`` for ``'mixed'``,
  as ``get_coefficients`` of the authors' code. The authors scale
  :math:`\lambda_{reg}` by :math:`\mu^{i}` for layer :math:`i`
  (``--lambda_reg_multiplier``); pass the scaled value. Differentiate with
  respect to the adapter and the clipping logits only (partial training).

  Args:
    x: ``[..., in]`` calibration inputs.
    w: ``[in, out]`` full-precision kernel.
    w_deq: ``[in, out]`` fake-quantized kernel.
    saliency: ``[in, out]`` saliency or None (unweighted).
    lambda_reg: :math:`\lambda_{reg} \ge 0` (may be traced).
    lora_a: optional ``[in, r]`` adapter factor.
    lora_b: optional ``[r, out]`` adapter factor.
    lora_scale: :math:`s`.
    stage: ``'wpt'``, ``'opt'`` or ``'mixed'`` (static).
    reg_after_lora: static; regularise :math:`Q(W) + sAB` (``after_lora``)
      instead of :math:`Q(W)` (``before_lora``, the authors' default).
    where: optional ``[...]`` token mask; all-masked gives an activation
      term of 0.

  Returns:
    float32 (or wider) scalar.

  Raises:
    ValueError: unknown ``stage``, negative ``lambda_reg``, shapes as in
      the parts.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import saliency_retraining_loss
    >>> x, w = jnp.ones((3, 2)), jnp.eye(2)
    >>> q = w.at[0, 0].set(0.5)
    >>> f = lambda stage: float(saliency_retraining_loss(
    ...     x, w, q, jnp.full((2, 2), 2.0), lambda_reg=0.1, stage=stage))
    >>> print(f"{f('opt'):.3f} {f('wpt'):.3f} {f('mixed'):.3f}")
    0.125 0.050 0.175

  References:
    Cao, Aref, "Enhancing Ultra-Low-Bit Quantization of Large Language
    Models Through Saliency-Aware Partial Retraining", MDAI 2025,
    arXiv:2504.13932 (code ``TokuyuSou/ULB-SAPR``); Liao et al., ApiQ,
    arXiv:2402.05147.

    Catalog: seed_002 #6.
  """
  if stage not in _STAGES:
    raise ValueError(f"`stage` must be one of {tuple(_STAGES)}, got "
                     f"{stage!r}.")
  if not isinstance(reg_after_lora, bool):
    raise TypeError(f"`reg_after_lora` must be a Python bool, got "
                    f"{reg_after_lora!r}.")
  checks.check_scalar(lambda_reg, "lambda_reg", nonnegative=True)
  c_act, c_reg = _STAGES[stage]
  total = jnp.zeros((), jnp.float32)
  if c_act:
    err = activation_preservation_loss(x, w, w_deq, lora_a=lora_a,
                                       lora_b=lora_b, lora_scale=lora_scale,
                                       where=where)
    if where is None:
      act = jnp.mean(err)
    else:
      m = jnp.asarray(where).astype(err.dtype)
      act = jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0)
    total = total + act
  if c_reg:
    kw = dict(lora_a=lora_a, lora_b=lora_b, lora_scale=lora_scale)
    if not reg_after_lora:
      kw = {}
      if (lora_a is None) != (lora_b is None):
        raise ValueError("Pass both `lora_a` and `lora_b`, or neither.")
    total = total + lambda_reg * saliency_quant_reg(w, w_deq, saliency, **kw)
  return total
