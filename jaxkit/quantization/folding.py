r"""Batch-norm folding (quantization whitepaper, §2.3 / §3.2).

A dense (or 1×1 conv) layer followed by batch normalisation in inference
mode,

.. math::
  y = \gamma \frac{x W + b - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,

equals one dense layer with the folded kernel and bias

.. math::
  W' = W \,\mathrm{diag}\Big(\frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\Big),
  \qquad b' = \frac{\gamma (b - \mu)}{\sqrt{\sigma^2+\epsilon}} + \beta,

which is what gets quantized. Folding multiplies each output column by its
own factor, which is why per-channel weight scales matter after folding.

References:
  Krishnamoorthi, `Quantizing deep convolutional networks for efficient
  inference: A whitepaper`, arXiv:1806.08342, 2018 (§3.2).

  Jacob et al., `Quantization and Training of Neural Networks for Efficient
  Integer-Arithmetic-Only Inference`, CVPR 2018 (§3.2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


def fold_batch_norm(kernel: ArrayLike, bias: ArrayLike | None, *,
                    mean: ArrayLike, var: ArrayLike,
                    scale: ArrayLike | None = None,
                    offset: ArrayLike | None = None, epsilon: float = 1e-5
                    ) -> tuple[jax.Array, jax.Array]:
  r"""Folds inference-mode batch norm into the preceding dense layer.

  Args:
    kernel: ``[..., out]`` kernel (Flax ``[in, out]`` dense, or ``[h, w, in,
      out]`` conv); the output channel is the last axis.
    bias: ``[out]`` or ``None`` (no bias).
    mean: ``[out]`` running mean :math:`\mu`.
    var: ``[out]`` running variance :math:`\sigma^2` (>= 0).
    scale: ``[out]`` :math:`\gamma` (``None`` = 1, Flax ``use_scale=False``).
    offset: ``[out]`` :math:`\beta` (``None`` = 0).
    epsilon: :math:`\epsilon` (Flax ``BatchNorm`` default 1e-5).

  Returns:
    ``(kernel', bias')`` with the shapes of ``kernel`` and ``[out]``.

  Raises:
    ValueError: statistics whose shape is not ``[out]``; negative concrete
      variances.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.quantization import fold_batch_norm
    >>> k, b = fold_batch_norm(jnp.ones((2, 2)), jnp.zeros(2),
    ...                        mean=jnp.array([1.0, 0.0]),
    ...                        var=jnp.array([4.0, 1.0]),
    ...                        scale=jnp.array([2.0, 1.0]), epsilon=0.0)
    >>> k, b
    (Array([[1., 1.],
           [1., 1.]], dtype=float32), Array([-1.,  0.], dtype=float32))

  References:
    Krishnamoorthi, `Quantizing deep convolutional networks for efficient
    inference: A whitepaper`, arXiv:1806.08342, 2018.

    Catalog: seed_002 #65.
  """
  kernel = checks.check_floating(kernel, "kernel")
  n_out = kernel.shape[-1]
  stats = {"mean": mean, "var": var, "scale": scale, "offset": offset,
           "bias": bias}
  for name, v in stats.items():
    if v is not None and jnp.shape(v) != (n_out,):
      raise ValueError(f"`{name}` must have shape ({n_out},) (the kernel's "
                       f"output channels), got {jnp.shape(v)}.")
  var = checks.check_floating(var, "var")
  if checks.is_concrete(var) and bool(jnp.any(var < 0)):
    raise ValueError("`var` must be >= 0.")
  checks.check_scalar(epsilon, "epsilon", nonnegative=True)
  cdt = checks.compute_dtype(kernel, var)
  gamma = jnp.ones(n_out, cdt) if scale is None else jnp.asarray(scale, cdt)
  beta = jnp.zeros(n_out, cdt) if offset is None else jnp.asarray(offset, cdt)
  b = jnp.zeros(n_out, cdt) if bias is None else jnp.asarray(bias, cdt)
  factor = gamma * jax.lax.rsqrt(var.astype(cdt) + epsilon)
  new_k = kernel.astype(cdt) * factor
  new_b = (b - jnp.asarray(mean, cdt)) * factor + beta
  return new_k.astype(kernel.dtype), new_b.astype(kernel.dtype)
