"""Work-arounds for XLA bugs that silently change jaxkit's numbers.

**YNNPACK fusion on CPU (jaxlib 0.10.2).** Reductions over >= 4096 elements are
routed through XLA:CPU's experimental YNNPACK fusion, which evaluates an
expression holding both ``g(x)`` and ``g(c·x)`` (``g`` in ``log``, ``expm1``,
``log1p``; ``c`` a constant such as -1, 0.5, 2) as if both were ``g(x)``::

    x = jnp.full((4096,), 0.6931, jnp.float32)
    jax.jit(lambda x: jnp.sum(jnp.expm1(x) * jnp.expm1(-x)))(x) / 4096
    # 0.9998 with the fusion, -0.4999 (correct) without it

Generators such as Neyman's ``-expm1(lr)·expm1(-lr)`` and Amari's
``expm1(a·lr) - a·expm1(lr)`` have exactly that shape, so jitted estimators
built on them were wrong by several percent on large inputs. Importing jaxkit
therefore takes reductions out of the YNNPACK fusions
(``--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_REDUCE``, a
CPU-only flag with no effect on GPU/TPU) **if no JAX backend has been
initialised yet**, since XLA reads its flags when the backend starts. Set
``JAXKIT_KEEP_XLA_FLAGS=1`` to opt out. If a backend is already running when
jaxkit is imported, nothing can be changed; a warning says so once when that
backend is CPU.
"""

from __future__ import annotations

import os
import warnings

# Only the reduction fusion is disabled: the library fusions for dots stay on,
# which keeps XLA:CPU's fast int8 x int8 -> int32 matmul (about 5x faster than
# with every YNNPACK fusion off; W8A8 in jaxkit.kernels.quantized_matmul
# depends on it). Measured on jaxlib 0.10.2: with this flag the probes in the
# module docstring and in tests/_src/xla_workarounds_test.py are correct.
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_REDUCE"


def apply() -> bool:
  """Adds the flag to ``XLA_FLAGS`` when still possible; returns whether it is set."""
  flags = os.environ.get("XLA_FLAGS", "")
  if YNN_FLAG in flags.split():
    return True
  if any(f.startswith(YNN_FLAG.split("=")[0] + "=") for f in flags.split()):
    return True  # the user chose a YNNPACK fusion setting themselves
  if os.environ.get("JAXKIT_KEEP_XLA_FLAGS"):
    return False
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if xla_bridge.backends_are_initialized():
    import jax  # pylint: disable=g-import-not-at-top
    if jax.default_backend() == "cpu":
      warnings.warn(
          "jaxkit was imported after JAX's CPU backend started, so XLA's "
          "YNNPACK fusion (which miscomputes some large reductions in "
          "jaxlib 0.10.x) stays enabled. Import jaxkit before running JAX "
          f"code, or set XLA_FLAGS='{YNN_FLAG}'.", RuntimeWarning, stacklevel=3)
    return False
  os.environ["XLA_FLAGS"] = (flags + " " + YNN_FLAG).strip()
  return True
