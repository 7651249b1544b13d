r"""The ``[in, out]`` matrix view of a layer's kernel, for model-level passes.

Model-level quantization (:func:`jaxkit.quantization.quantize_model`) and
pruning (:func:`jaxkit.sparsity.prune_model`) work on a kernel as a matrix
``W[K, N]`` with ``y = x W`` (Flax layout). ``nnx.Linear`` kernels are that
matrix already. An ``nnx.Einsum`` projection such as the attention layers'
``'btd,dnh->btnh'`` (kernel ``[d, n, h]``) or ``'btnh,nhd->btd'`` (kernel
``[n, h, d]``) is the same linear map once its contracted axes are flattened
into ``K`` and its output axes into ``N``:

.. math::
  W_{[K, N]} = \mathrm{reshape}(W, (\textstyle\prod_{\text{contracted}},
  \prod_{\text{output}})), \qquad x_{[\cdot, K]} = \mathrm{reshape}(x,
  (-1, K)).

That view exists when the kernel's contracted axes come first and equal the
input's trailing axes, in order, and no axis is a batch axis (shared by the
input, the kernel and the output). Anything else has no matrix view and
:func:`matrix_view` raises, naming the layer, rather than skipping it.
"""

from __future__ import annotations

import dataclasses
import math

from flax import nnx


@dataclasses.dataclass(frozen=True)
class MatrixView:
  """How to see a kernel of ``shape`` as ``[K, N]`` (first ``n_in`` axes → K)."""

  shape: tuple[int, ...]
  n_in: int

  @property
  def in_features(self) -> int:
    return math.prod(self.shape[:self.n_in])

  def to_matrix(self, w):
    return w.reshape(self.in_features, -1)

  def from_matrix(self, m):
    return m.reshape(self.shape)

  def flatten_inputs(self, x):
    """``x[..., *contracted]`` → ``[rows, K]``."""
    if tuple(x.shape[x.ndim - self.n_in:]) != self.shape[:self.n_in]:
      raise ValueError(
          f"layer input has trailing shape {tuple(x.shape)}, the kernel "
          f"contracts over {self.shape[:self.n_in]}.")
    return x.reshape(-1, self.in_features)


def _einsum_view(spec: str, shape: tuple[int, ...], path: str) -> MatrixView:
  spec = spec.replace(" ", "")
  try:
    lhs, rest = spec.split(",")
    rhs, out = rest.split("->")
  except ValueError:
    raise ValueError(f"layer {path!r}: einsum {spec!r} is not of the form "
                     "'input,kernel->output'; it has no [in, out] view.")
  lhs = lhs.replace("...", "")
  out = out.replace("...", "")
  batch = [c for c in rhs if c in lhs and c in out]
  contracted = [c for c in rhs if c in lhs and c not in out]
  n_in = len(contracted)
  ok = (not batch and n_in >= 1 and len(rhs) > n_in
        and list(rhs[:n_in]) == contracted
        and lhs.endswith("".join(contracted))
        and len(rhs) == len(shape))
  if not ok:
    raise ValueError(
        f"layer {path!r}: einsum {spec!r} (kernel {shape}) has no [in, out] "
        "matrix view: the kernel's contracted axes must come first and match "
        "the input's trailing axes, with no batch axes. Exclude it from the "
        "rules or quantize / prune it yourself.")
  return MatrixView(tuple(shape), n_in)


def matrix_view(module: nnx.Module, path: str = "") -> MatrixView | None:
  """The :class:`MatrixView` of ``module.kernel``, or ``None`` if no kernel.

  ``nnx.Einsum`` is parsed from its ``einsum_str``; any other module with a
  rank-2 ``kernel`` variable is ``[in, out]``; a rank ≥ 3 kernel of another
  module raises (its contraction is unknown).
  """
  kernel = getattr(module, "kernel", None)
  if not isinstance(kernel, nnx.Variable):
    return None
  shape = tuple(kernel.get_value().shape)
  if isinstance(module, nnx.Einsum):
    return _einsum_view(module.einsum_str, shape, path)
  if len(shape) == 2:
    return MatrixView(shape, 1)
  if len(shape) < 2:
    return None
  raise ValueError(
      f"layer {path!r} ({type(module).__name__}) has a rank-{len(shape)} "
      "kernel whose contraction is unknown; only nnx.Linear-like [in, out] "
      "and nnx.Einsum kernels have a matrix view.")
