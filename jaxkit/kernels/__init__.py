"""Pallas kernels beside XLA references, one folder per op (tokamax style).

* :func:`quantized_matmul` — ``x @ dequantize(w)`` for int8 / packed int4 /
  fp8 / look-up-table weights with group scales, W8A8, low-rank and sparse
  outlier side terms.
* :func:`sparse_attention` with the mask objects of :mod:`jaxkit.kernels.masks`
  — flash-style attention that skips the tiles a mask leaves empty.
* :func:`fused_linear_divergence` / :func:`fused_linear_cross_entropy` —
  token-level KD (any f-divergence generator) and cross-entropy from hidden
  states and unembedding matrices without materialising the logits.
* :func:`cross_entropy` — per-row ``logsumexp(z) - z_y`` of materialised
  logits, with a native CPU kernel (C++ through the XLA FFI, built at first
  use) beside the XLA reference.

Every op takes ``implementation=None | "pallas_tpu" | "pallas_gpu" | "xla"
(| "chunked_xla")`` and ``interpret=``: ``None`` picks the best backend for
the device and falls back to the XLA reference (see
``jaxkit/kernels/_registry.py``). Sub-packages hold ``api.py``,
``reference.py``, ``pallas_tpu.py``, ``pallas_gpu.py`` and ``arg_specs.py``
(the workloads ``make aot-check`` compiles for TPU v5e / v6e and H100).
Import sub-modules by their full path (``from
jaxkit.kernels.sparse_attention import masks``): the attributes
``jaxkit.kernels.quantized_matmul`` etc. are the functions.
"""

from jaxkit.kernels._registry import BackendUnsupportedError
from jaxkit.kernels.cross_entropy import cross_entropy
from jaxkit.kernels.fused_linear_divergence import fused_linear_cross_entropy
from jaxkit.kernels.fused_linear_divergence import fused_linear_divergence
from jaxkit.kernels.quantized_matmul import QMatmulWeight
from jaxkit.kernels.quantized_matmul import as_qmatmul_weight
from jaxkit.kernels.quantized_matmul import from_quant_dense
from jaxkit.kernels.quantized_matmul import quantized_matmul
from jaxkit.kernels.sparse_attention import masks
from jaxkit.kernels.sparse_attention import sparse_attention

__all__ = [
    "BackendUnsupportedError",
    "QMatmulWeight",
    "as_qmatmul_weight",
    "cross_entropy",
    "from_quant_dense",
    "fused_linear_cross_entropy",
    "fused_linear_divergence",
    "masks",
    "quantized_matmul",
    "sparse_attention",
]
