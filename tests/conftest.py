"""Test-session setup: 8 fake CPU devices, the `slow` marker, deterministic hypothesis.

The XLA flag must be set before jax is imported anywhere in the process, which is
why this lives in the top-level conftest that pytest loads first.
"""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
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
