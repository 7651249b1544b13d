"""Quantized matmul ``x @ dequantize(w)``: XLA reference, Pallas TPU and Triton kernels."""

from jaxkit.kernels.quantized_matmul.api import (
    BACKENDS,
    IMPLEMENTATIONS,
    quantized_matmul,
)
from jaxkit.kernels.quantized_matmul.reference import (
    QMatmulWeight,
    as_qmatmul_weight,
    dequantize_weight,
    from_quant_dense,
)

__all__ = [
    "BACKENDS",
    "IMPLEMENTATIONS",
    "QMatmulWeight",
    "as_qmatmul_weight",
    "dequantize_weight",
    "from_quant_dense",
    "quantized_matmul",
]
