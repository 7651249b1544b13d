"""Per-row cross-entropy ``logsumexp(z) - z_y`` with a native CPU kernel.

:func:`cross_entropy` takes materialised logits ``[..., V]`` and integer
labels. Backends: ``cpu_native`` (a C++ kernel through the XLA FFI, built at
first use; the CPU default) and ``xla`` (the reference).
"""

from jaxkit.kernels.cross_entropy.api import BACKENDS
from jaxkit.kernels.cross_entropy.api import cross_entropy

__all__ = ["BACKENDS", "cross_entropy"]
