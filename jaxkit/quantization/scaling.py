r"""QAT scaling-law fit and bit-width allocation (per expert / per matrix).

References:
  Chen et al., `Scaling Law for Quantization-Aware Training`,
  arXiv:2505.14302, 2025 (W4A4 QAT error law).

  Yi et al., `EdgeMoE: Fast On-Device Inference of MoE-based Large Language
  Models`, arXiv:2308.14352, 2023 (expert-wise bit widths).

  Guo et al., `LQ-LoRA: Low-rank Plus Quantized Matrix Decomposition for
  Efficient Language Model Finetuning`, ICLR 2024, arXiv:2311.12023 (ILP
  bit allocation).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


class QATScalingLaw(NamedTuple):
  r"""Fitted :math:`\delta(N, D, G) = k\, D^{\gamma_D} (\log_2 G)^{\gamma_G} / N^{\gamma_N}`.

  Example:
    >>> from jaxkit.quantization import QATScalingLaw
    >>> law = QATScalingLaw(k=2.0, gamma_d=0.0, gamma_g=1.0, gamma_n=1.0)
    >>> print(float(law(n=4.0, d=10.0, g=16)))   # 2 * log2(16) / 4
    2.0
  """

  k: float
  gamma_d: float
  gamma_g: float
  gamma_n: float

  def __call__(self, n, d, g):
    """Evaluates the law."""
    return (self.k * np.asarray(d, float) ** self.gamma_d
            * np.log2(np.asarray(g, float)) ** self.gamma_g
            / np.asarray(n, float) ** self.gamma_n)


def fit_qat_scaling_law(n: ArrayLike, d: ArrayLike, g: ArrayLike,
                        delta: ArrayLike) -> QATScalingLaw:
  r"""Least-squares fit of the QAT quantization-error law in log space.

  .. math::
    \log \delta = \log k + \gamma_D \log D + \gamma_G \log\log_2 G
    - \gamma_N \log N,

  solved by ordinary least squares (float64, numpy). The paper's law adds
  :math:`\delta` to a Chinchilla loss; :math:`\delta` is measured as the gap
  between the QAT and the full-precision loss of the same run.

  Args:
    n: ``[R]`` parameter counts (> 0).
    d: ``[R]`` training tokens / examples (> 0).
    g: ``[R]`` quantization group sizes (> 1).
    delta: ``[R]`` quantization error (> 0).

  Returns:
    :class:`QATScalingLaw` ``(k, gamma_d, gamma_g, gamma_n)``.

  Raises:
    ValueError: mismatched lengths, fewer than 4 runs, non-positive values,
      ``g <= 1``.

  Examples:
    >>> import numpy as np
    >>> from jaxkit.quantization import fit_qat_scaling_law
    >>> n, d, g = np.meshgrid([1e3, 1e4], [1e5, 1e6], [32, 128])
    >>> delta = 2.0 * d**0.1 * np.log2(g)**0.5 / n**0.3
    >>> law = fit_qat_scaling_law(n.ravel(), d.ravel(), g.ravel(),
    ...                           delta.ravel())
    >>> print(np.round(law, 4))
    [2.  0.1 0.5 0.3]

  References:
    Chen et al., arXiv:2505.14302, 2025.

    Catalog: seed_002 #73.
  """
  arrs = {}
  for name, v in (("n", n), ("d", d), ("g", g), ("delta", delta)):
    a = np.asarray(v, np.float64).reshape(-1)
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
      raise ValueError(f"`{name}` must be finite and > 0.")
    arrs[name] = a
  r = arrs["n"].size
  if any(a.size != r for a in arrs.values()):
    raise ValueError("`n`, `d`, `g` and `delta` must have the same length, "
                     f"got {[a.size for a in arrs.values()]}.")
  if r < 4:
    raise ValueError(f"need at least 4 runs to fit 4 parameters, got {r}.")
  if np.any(arrs["g"] <= 1):
    raise ValueError("`g` (group sizes) must be > 1 (log2 G > 0).")
  a = np.stack([np.ones(r), np.log(arrs["d"]), np.log(np.log2(arrs["g"])),
                -np.log(arrs["n"])], axis=1)
  coef, *_ = np.linalg.lstsq(a, np.log(arrs["delta"]), rcond=None)
  return QATScalingLaw(float(np.exp(coef[0])), float(coef[1]),
                       float(coef[2]), float(coef[3]))


def allocate_bits(errors: ArrayLike, bits: ArrayLike, sizes: ArrayLike, *,
                  budget_bits: float) -> np.ndarray:
  r"""Bit-width allocation under a memory budget (exact ILP).

  Chooses one configuration :math:`c_i` per item (expert, matrix):

  .. math::
    \min_{x} \sum_{i,c} e_{ic} x_{ic} \ \text{s.t.}\
    \sum_c x_{ic} = 1,\ \sum_{i,c} b_c\, n_i\, x_{ic} \le B \sum_i n_i,\
    x \in \{0, 1\},

  with :math:`B` the average bits per parameter; solved with
  ``scipy.optimize.milp`` (HiGHS), as LQ-LoRA's ILP and EdgeMoE's expert-wise
  bit widths (whose profiling of the accuracy drop gives ``errors``).

  Args:
    errors: ``[I, C]`` error (or accuracy drop) of item ``i`` at config ``c``.
    bits: ``[C]`` bits per parameter of each config.
    sizes: ``[I]`` parameter counts.
    budget_bits: average bits per parameter allowed.

  Returns:
    ``[I]`` int array of chosen config indices.

  Raises:
    ValueError: shape mismatch, or a budget below the cheapest config.

  Examples:
    >>> import numpy as np
    >>> from jaxkit.quantization import allocate_bits
    >>> err = np.array([[9.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    >>> allocate_bits(err, [2, 4, 8], [100, 100], budget_bits=3.0).tolist()
    [1, 0]

  References:
    Guo et al., `LQ-LoRA: Low-rank Plus Quantized Matrix Decomposition for
    Efficient Language Model Finetuning`, arXiv:2311.12023 (the ILP); Yi
    et al., `EdgeMoE`, arXiv:2308.14352 (expert-wise bit-widths).

    Catalog: seed_002 #9, seed_002 #76.
  """
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  e = np.asarray(errors, np.float64)
  b = np.asarray(bits, np.float64).reshape(-1)
  n = np.asarray(sizes, np.float64).reshape(-1)
  if e.ndim != 2 or e.shape != (n.size, b.size):
    raise ValueError(f"`errors` must be [{n.size}, {b.size}] (items x "
                     f"configs), got {e.shape}.")
  checks.check_scalar(budget_bits, "budget_bits", positive=True)
  if b.min() * n.sum() > budget_bits * n.sum() + 1e-9:
    raise ValueError(f"`budget_bits`={budget_bits} is below the cheapest "
                     f"config ({b.min()} bits).")
  i, c = e.shape
  one_hot = np.kron(np.eye(i), np.ones((1, c)))
  mem = (n[:, None] * b[None, :]).reshape(1, -1)
  cons = [optimize.LinearConstraint(one_hot, 1, 1),
          optimize.LinearConstraint(mem, -np.inf, budget_bits * n.sum())]
  res = optimize.milp(e.reshape(-1), constraints=cons,
                      integrality=np.ones(i * c), bounds=optimize.Bounds(0, 1))
  if not res.success:
    raise ValueError(f"bit allocation failed: {res.message}")
  return np.argmax(res.x.reshape(i, c), axis=1)


def per_expert_bit_widths(sensitivity: ArrayLike, bits: ArrayLike,
                          expert_sizes: ArrayLike, *, budget_bits: float
                          ) -> np.ndarray:
  """EdgeMoE's expert-wise bit widths: bits per expert under a budget.

  :func:`allocate_bits` with ``errors = sensitivity`` (the profiled accuracy
  drop of expert ``e`` at each bit width) and returns the bit widths.

  Args:
    sensitivity: ``[E, C]`` accuracy drop (or loss increase) per expert and
      bit width.
    bits: ``[C]`` candidate bit widths (e.g. 2, 3, 4, 8).
    expert_sizes: ``[E]`` parameters per expert.
    budget_bits: average bits per expert parameter.

  Returns:
    ``[E]`` chosen bit widths.

  Raises:
    ValueError: as :func:`allocate_bits`.

  Examples:
    >>> import numpy as np
    >>> from jaxkit.quantization import per_expert_bit_widths
    >>> s = np.array([[0.5, 0.1, 0.0], [0.05, 0.01, 0.0]])
    >>> per_expert_bit_widths(s, [2, 4, 8], [10, 10], budget_bits=5).tolist()
    [8, 2]

  References:
    Yi et al., arXiv:2308.14352, 2023.

    Catalog: seed_002 #76.
  """
  idx = allocate_bits(sensitivity, bits, expert_sizes, budget_bits=budget_bits)
  return np.asarray(bits)[idx]
