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


def test_log_and_log1p_pairs_are_correct():
  x = np.full((8192,), 0.6931, np.float32)
  x64 = x.astype(np.float64)
  got = jax.jit(lambda v: jnp.mean(jnp.log(v) * jnp.log(2 * v)))(x)
  np.testing.assert_allclose(got, np.mean(np.log(x64) * np.log(2 * x64)),
                             rtol=1e-5)
  got = jax.jit(lambda v: jnp.mean(jnp.log1p(v) - jnp.log1p(0.5 * v)))(x)
  np.testing.assert_allclose(
      got, np.mean(np.log1p(x64) - np.log1p(0.5 * x64)), rtol=1e-5)


def test_amari_shaped_reduction_is_correct():
  lr = np.linspace(-3, 3, 8192).astype(np.float32)
  a = 0.3
  l64 = lr.astype(np.float64)
  got = jax.jit(lambda l: jnp.mean(jnp.expm1(a * l) - a * jnp.expm1(l)))(lr)
  np.testing.assert_allclose(
      got, np.mean(np.expm1(a * l64) - a * np.expm1(l64)), rtol=1e-5)
