"""Fused linear divergence: token-level KD / cross-entropy from hidden states.

:func:`fused_linear_divergence` (any f-divergence generator of
:mod:`jaxkit.divergences`, teacher first, :math:`\\tau^2` scaling, like
:func:`jaxkit.losses.kd_loss`) and :func:`fused_linear_cross_entropy` (its
one-hot special case) never materialise the ``[tokens, V]`` logits.
Backends: ``pallas_tpu``, ``pallas_gpu``, ``chunked_xla`` (CPU default),
``xla`` (materialised reference).
"""

from jaxkit.kernels.fused_linear_divergence.api import BACKENDS
from jaxkit.kernels.fused_linear_divergence.api import fused_linear_cross_entropy
from jaxkit.kernels.fused_linear_divergence.api import fused_linear_divergence

__all__ = ["BACKENDS", "fused_linear_cross_entropy", "fused_linear_divergence"]
