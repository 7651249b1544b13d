"""Test-session setup: 8 fake CPU devices, the `slow` marker, deterministic hypothesis.

The XLA flag must be set before jax is imported anywhere in the process, which is
why this lives in the top-level conftest that pytest loads first.
"""

import os

# 8 fake CPU devices; and the unoptimised XLA:CPU backend: test programs are
# tiny, so compiling dominates and -O0 cuts the suite's CPU time by ~15 %
# (numerics are the same ops; set JAXKIT_TEST_XLA_OPT=1 to test optimised code).
_flags = ["--xla_force_host_platform_device_count=8"]
if not os.environ.get("JAXKIT_TEST_XLA_OPT"):
  _flags.append("--xla_backend_optimization_level=0")
for _flag in _flags:
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Importing jaxkit first applies its XLA work-arounds (jaxkit/_src/xla_workarounds.py)
# before any test starts a backend, exactly as a user's program would.
import jaxkit  # noqa: E402,F401

import hypothesis  # noqa: E402

hypothesis.settings.register_profile(
    "jaxkit", derandomize=True, deadline=None, max_examples=25,
    print_blob=True)
hypothesis.settings.load_profile("jaxkit")
