"""Tests for jaxkit.masked_mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxkit


def test_matches_numpy_weighted_average():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 5)).astype(np.float32)
  m = rng.random((6, 5)) < 0.5
  w = rng.random((6, 1)).astype(np.float32)
  got = jax.jit(jaxkit.masked_mean)(x, m, w)
  want = np.sum(x * m * w) / np.sum(m * w)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  got_ax = jaxkit.masked_mean(x, where=m, axis=1)
  want_ax = np.array([x[i][m[i]].mean() if m[i].any() else 0.0 for i in range(6)])
  np.testing.assert_allclose(got_ax, want_ax, rtol=1e-6)


def test_masked_nan_and_empty_selection():
  x = jnp.array([1.0, jnp.nan, jnp.inf])
  m = jnp.array([True, False, False])
  assert float(jaxkit.masked_mean(x, where=m)) == 1.0
  val, g = jax.value_and_grad(lambda v: jaxkit.masked_mean(v, where=jnp.zeros(3, bool)))(
      jnp.array([1.0, 2.0, 3.0]))
  assert float(val) == 0.0 and np.all(np.asarray(g) == 0.0)
  g = jax.grad(lambda v: jaxkit.masked_mean(v, where=m))(jnp.array([1.0, jnp.nan, 2.0]))
  np.testing.assert_array_equal(g, [1.0, 0.0, 0.0])


def test_bf16_accumulates_in_f32():
  x = jnp.full((4096,), 1.0 + 2 ** -7, jnp.bfloat16)
  out = jaxkit.masked_mean(x)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, 1.0 + 2 ** -7, rtol=1e-7)


def test_sharded_mean_is_global():
  mesh = jax.make_mesh((8,), ("data",))
  rng = np.random.default_rng(1)
  x = rng.normal(size=(16, 3)).astype(np.float32)
  m = np.zeros((16, 3), bool)
  m[:3] = True  # all valid tokens live on the first two shards
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  got = jax.jit(jaxkit.masked_mean)(jax.device_put(x, sh), jax.device_put(m, sh))
  np.testing.assert_allclose(got, x[:3].mean(), rtol=1e-6)


def test_bad_inputs():
  with pytest.raises(TypeError, match="x"):
    jaxkit.masked_mean(jnp.ones(3, jnp.int32))
  with pytest.raises(ValueError, match="where"):
    jaxkit.masked_mean(jnp.ones((2, 3)), where=jnp.ones(2, bool))
  with pytest.raises(ValueError, match="weights"):
    jaxkit.masked_mean(jnp.ones((2, 3)), weights=jnp.ones(2))
  with pytest.raises(ValueError, match="axis"):
    jaxkit.masked_mean(jnp.ones((2, 3)), axis=3)
