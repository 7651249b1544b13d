"""All kernel benchmarks of issue 8 in one run (``jaxkit.kernels``).

Run from the repository root (``--quick``: small shapes, about a minute)::

  PYTHONPATH=. .venv/bin/python -m benchmarks.kernels [--quick]

Calls, in one process and in this order, the ``main`` of
``benchmarks/kernels_quantized_matmul.py`` (W8A8 vs f32 / bf16 ``jnp.dot``
and qwix; W4 GEMV vs bf16; TPU v5e / H100 rooflines),
``benchmarks/kernels_sparse_attention.py`` (block-sparse XLA path vs dense
``jax.nn.dot_product_attention`` and tokamax ``xla_chunked`` at T = 4096)
and ``benchmarks/kernels_fused_linear_divergence.py`` (fused vs materialised
logits at V = 128k: compiled peak memory and value+grad time; tokamax). Each
prints a markdown table with peer / jaxkit ratios and the load average.
"""

from __future__ import annotations

import sys

from benchmarks import kernels_fused_linear_divergence
from benchmarks import kernels_quantized_matmul
from benchmarks import kernels_sparse_attention


def main(argv=None) -> None:
  argv = list(sys.argv[1:] if argv is None else argv)
  quick = ["--quick"] if "--quick" in argv else []
  kernels_quantized_matmul.main(quick)
  print()
  kernels_sparse_attention.main(quick)
  print()
  kernels_fused_linear_divergence.main(quick)


if __name__ == "__main__":
  main()
