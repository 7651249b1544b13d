"""jaxkit: the training objectives and compression methods of recent ML papers in one functional JAX stack."""

from jaxkit._src import xla_workarounds as _xla_workarounds

_xla_workarounds.apply()  # before any jaxkit module touches a device


from jaxkit import divergences
from jaxkit import kernels
from jaxkit import losses
from jaxkit import nn
from jaxkit import quantization
from jaxkit import reweighting
from jaxkit import selection
from jaxkit import sparsity
from jaxkit import train
from jaxkit._src.reductions import masked_mean

__version__ = "0.1.0"

__all__ = [
    "divergences",
    "kernels",
    "losses",
    "masked_mean",
    "nn",
    "quantization",
    "reweighting",
    "selection",
    "sparsity",
    "train",
]
