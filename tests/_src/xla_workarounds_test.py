"""The YNNPACK fusion miscompile must be disabled once jaxkit is imported."""

import os

import jax
import jax.numpy as jnp
import numpy as np

import jaxkit  # noqa: F401
from jaxkit._src import xla_workarounds


def test_flag_is_set():
  assert xla_workarounds.YNN_FLAG in os.environ["XLA_FLAGS"].split()


def test_large_jitted_reduction_of_g_x_and_g_cx_is_correct():
  x = np.full((8192,), 0.6931, np.float32)
  want = np.mean(np.expm1(x.astype(np.float64)) * np.expm1(-x.astype(np.float64)))
  got = jax.jit(lambda v: jnp.mean(jnp.expm1(v) * jnp.expm1(-v)))(x)
  np.testing.assert_allclose(got, want, rtol=1e-5)
