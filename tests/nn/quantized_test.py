"""Tests for jaxkit.nn.quantized.QuantDense against numpy dequantization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxkit
from jaxkit.nn import partitioning as pt


def _np_codes(layer):
  """Signed codes [K, N] decoded byte by byte (textbook two's complement)."""
  raw = np.asarray(layer.codes[...])
  if layer.bits == 8:
    return raw.astype(np.int64)
  out = np.zeros((raw.shape[0] * 2, raw.shape[1]), np.int64)
  for i in range(raw.shape[0]):
    for n in range(raw.shape[1]):
      byte = int(raw[i, n])
      lo, hi = byte & 0xF, byte >> 4
      out[2 * i, n] = lo - 16 if lo >= 8 else lo
      out[2 * i + 1, n] = hi - 16 if hi >= 8 else hi
  return out


def _np_dequant(layer):
  q = _np_codes(layer).astype(np.float64)
  g = layer.group_size
  s = np.repeat(np.asarray(layer.scales[...], np.float64), g, axis=0)
  z = 0.0
  if layer.zeros is not None:
    z = np.repeat(np.asarray(layer.zeros[...], np.float64), g, axis=0)
  return s * (q - z)


@pytest.mark.parametrize("bits,group,sym", [(8, None, True), (8, 4, False),
                                            (4, 4, True), (4, 8, False)])
def test_quantdense_equals_numpy_dequantized_matmul(bits, group, sym):
  rng = np.random.default_rng(bits + (group or 0))
  w = rng.normal(size=(8, 5)).astype(np.float32)
  b = rng.normal(size=(5,)).astype(np.float32)
  layer = jaxkit.nn.QuantDense(8, 5, bits=bits, group_size=group,
                               symmetric=sym, kernel=w, bias=b)
  x = rng.normal(size=(3, 8)).astype(np.float32)
  w_hat = _np_dequant(layer)
  got = nnx.jit(lambda m, v: m(v))(layer, x)
  np.testing.assert_allclose(got, x @ w_hat + b, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(layer.dequantize(), w_hat, rtol=1e-6, atol=1e-7)
  # Round to nearest: error at most half a step per element.
  step = np.repeat(np.asarray(layer.scales[...]), group or 8, axis=0)
  assert np.all(np.abs(w_hat - w) <= step / 2 + 1e-6)
  qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
  codes = _np_codes(layer)
  assert codes.min() >= qmin and codes.max() <= qmax
  if bits == 4:
    assert layer.codes[...].shape == (4, 5)
    assert layer.codes[...].dtype == jnp.uint8


@pytest.mark.parametrize("bits,group,sym", [(8, 32, True), (4, 64, False)])
def test_quantdense_pallas_kernel_equals_numpy(bits, group, sym):
  """The layer's forward through the Pallas TPU kernel (interpret mode)."""
  rng = np.random.default_rng(7 + bits)
  w = rng.normal(size=(128, 128)).astype(np.float32)
  layer = jaxkit.nn.QuantDense(128, 128, bits=bits, group_size=group,
                               symmetric=sym, kernel=w,
                               implementation="pallas_tpu", interpret=True)
  x = rng.normal(size=(4, 128)).astype(np.float32)
  got = layer(x)
  want = x.astype(np.float64) @ _np_dequant(layer)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # dx flows through the dequantized weight (no gradient to the codes).
  gx = jax.grad(lambda v: jnp.sum(layer(v) ** 2))(x)
  np.testing.assert_allclose(gx, 2 * want @ _np_dequant(layer).T, rtol=1e-3,
                             atol=1e-3)


def test_quantdense_variables_and_names():
  layer = jaxkit.nn.QuantDense(8, 4, bits=4, group_size=4, symmetric=False,
                               use_bias=True, names=("embed", "mlp"),
                               rngs=nnx.Rngs(0))
  assert not nnx.state(layer, nnx.Param)["bias"] is None
  assert "codes" not in nnx.state(layer, nnx.Param)
  qstate = nnx.state(layer, jaxkit.nn.QuantizedWeight)
  assert set(qstate.keys()) == {"codes", "scales", "zeros"}
  assert pt.logical_axes(layer.codes) == ("embed", "mlp")
  assert pt.logical_axes(layer.bias) == ("mlp",)
  # Gradient reaches the input, not the codes.
  g = jax.grad(lambda v: jnp.sum(layer(v)))(jnp.ones((2, 8)))
  np.testing.assert_allclose(g[0], np.asarray(layer.dequantize()).sum(1),
                             rtol=1e-5)


def test_quantdense_bf16_input():
  layer = jaxkit.nn.QuantDense(4, 2, kernel=jnp.eye(4)[:, :2])
  y = layer(jnp.ones((1, 4), jnp.bfloat16))
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), [[1.0, 1.0]])


def test_quantdense_bad_input():
  with pytest.raises(ValueError, match="bits"):
    jaxkit.nn.QuantDense(8, 2, bits=3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="group_size"):
    jaxkit.nn.QuantDense(8, 2, group_size=3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="in_features"):
    jaxkit.nn.QuantDense(7, 2, bits=4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="kernel"):
    jaxkit.nn.QuantDense(2, 2, kernel=jnp.array([[jnp.nan, 0], [0, 0]]))
  with pytest.raises(ValueError, match="kernel"):
    jaxkit.nn.QuantDense(2, 3, kernel=jnp.ones((2, 2)))
  with pytest.raises(ValueError, match="`x`"):
    jaxkit.nn.QuantDense(2, 2, kernel=jnp.ones((2, 2)))(jnp.ones((1, 3)))


def test_from_dense_keeps_bias_and_names():
  dense = jaxkit.nn.Dense(8, 3, names=("mlp", "embed"), rngs=nnx.Rngs(0))
  dense.bias[...] = jnp.arange(3.0)
  q = jaxkit.nn.QuantDense.from_dense(dense, bits=8, group_size=4)
  assert pt.logical_axes(q.codes) == ("mlp", "embed")
  x = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
  np.testing.assert_allclose(q(x), x @ _np_dequant(q) + np.arange(3.0),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(q(x), dense(x), atol=0.05)
