"""Tests for quantize_model on a generic NNX model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxkit import quantization as Q
from tests.quantization._oracles import np_rtn


class _MLP(nnx.Module):

  def __init__(self):
    self.up = nnx.Linear(16, 32, rngs=nnx.Rngs(0))
    self.down = nnx.Linear(32, 8, rngs=nnx.Rngs(1))

  def __call__(self, x):
    return self.down(jax.nn.relu(self.up(x)))


def test_rules_rtn_and_awq():
  m = _MLP()
  w_up, w_down = np.asarray(m.up.kernel[...]), np.asarray(m.down.kernel[...])
  x = jax.random.normal(jax.random.key(0), (64, 16))
  out = Q.quantize_model(m, [Q.QuantRule("up", method="awq", bits=4,
                                         group_size=8),
                             Q.QuantRule(".*", bits=3, group_size=8)],
                         [x[:32], x[32:]])
  assert sorted(out) == ["down", "up"]
  np.testing.assert_allclose(m.down.kernel[...],
                             np_rtn(w_down, 3, 8, 0, False)[0], rtol=1e-5,
                             atol=1e-6)
  q, s = out["up"]
  np.testing.assert_allclose(m.up.kernel[...],
                             np.asarray(Q.dequantize(q)) / np.asarray(s)[:, None],
                             rtol=1e-5, atol=1e-6)
  # The AWQ scales are those of awq_scales on the captured inputs.
  np.testing.assert_allclose(s, Q.awq_scales(w_up, x, bits=4, group_size=8),
                             rtol=1e-6)
  assert Q.quantized_bytes(out["down"]) > 0


def test_unmatched_layers_untouched_and_bad():
  m = _MLP()
  before = np.asarray(m.up.kernel[...])
  Q.quantize_model(m, [Q.QuantRule("down", method="nf", bits=4, group_size=8)])
  np.testing.assert_array_equal(m.up.kernel[...], before)
  with pytest.raises(ValueError, match="method"):
    Q.quantize_model(_MLP(), [Q.QuantRule(".*", method="gptq")])
  with pytest.raises(ValueError, match="calibration_batches"):
    Q.quantize_model(_MLP(), [Q.QuantRule(".*", method="awq", group_size=8)])
  with pytest.raises(ValueError, match="empty"):
    Q.quantize_model(_MLP(), [Q.QuantRule(".*", method="awq", group_size=8)],
                     [])


class _Attn(nnx.Module):
  """Attention-style projections: q ``btd,dnh->btnh``, o ``btnh,nhd->btd``."""

  def __init__(self, d=16, n=2, h=8):
    self.q = nnx.Einsum("btd,dnh->btnh", (d, n, h), rngs=nnx.Rngs(0))
    self.o = nnx.Einsum("btnh,nhd->btd", (n, h, d), rngs=nnx.Rngs(1))

  def __call__(self, x):
    return self.o(jax.nn.gelu(self.q(x)))


class _AttnAsLinear(nnx.Module):
  """The same two maps as flat ``nnx.Linear`` layers (the oracle)."""

  def __init__(self, attn):
    d, n, h = attn.q.kernel[...].shape
    self.q = nnx.Linear(d, n * h, use_bias=False, rngs=nnx.Rngs(0))
    self.o = nnx.Linear(n * h, d, use_bias=False, rngs=nnx.Rngs(1))
    self.q.kernel[...] = attn.q.kernel[...].reshape(d, n * h)
    self.o.kernel[...] = attn.o.kernel[...].reshape(n * h, d)

  def __call__(self, x):
    return self.o(jax.nn.gelu(self.q(x)))


@pytest.mark.parametrize("method", ["rtn", "awq"])
def test_einsum_kernels_quantized_as_their_matrix_view(method):
  attn = _Attn()
  flat = _AttnAsLinear(attn)
  x = jax.random.normal(jax.random.key(2), (2, 5, 16))
  np.testing.assert_allclose(attn(x), flat(x), rtol=1e-5, atol=1e-5)
  rules = [Q.QuantRule(".*", method=method, bits=3, group_size=8)]
  out = Q.quantize_model(attn, rules, [x])
  ref = Q.quantize_model(flat, rules, [x])
  assert sorted(out) == ["o", "q"]          # nothing skipped
  for name in ("q", "o"):
    k = getattr(attn, name).kernel[...]
    assert k.shape == (16, 2, 8) if name == "q" else (2, 8, 16)
    np.testing.assert_allclose(
        k.reshape(getattr(flat, name).kernel[...].shape),
        getattr(flat, name).kernel[...], rtol=1e-6, atol=1e-7)
  if method == "rtn":   # RTN of the [in, out] view, by the numpy oracle.
    w_q = np.asarray(_Attn().q.kernel[...]).reshape(16, 16)
    np.testing.assert_allclose(attn.q.kernel[...].reshape(16, 16),
                               np_rtn(w_q, 3, 8, 0, False)[0], rtol=1e-5,
                               atol=1e-6)
  np.testing.assert_allclose(attn(x), flat(x), rtol=1e-4, atol=1e-5)


def test_max_rows_caps_calibration_inputs():
  m = _MLP()
  x = jax.random.normal(jax.random.key(0), (64, 16))
  out = Q.quantize_model(m, [Q.QuantRule("up", method="awq", bits=4,
                                         group_size=8)], [x[:20], x[20:]],
                         max_rows=24)
  w_up = np.asarray(_MLP().up.kernel[...])
  np.testing.assert_allclose(
      out["up"][1], Q.awq_scales(w_up, x[:24], bits=4, group_size=8),
      rtol=1e-6)
  with pytest.raises(ValueError, match="max_rows"):
    Q.quantize_model(_MLP(), [Q.QuantRule(".*")], max_rows=0)


def test_einsum_without_matrix_view_raises():
  class Batched(nnx.Module):
    def __init__(self):
      self.e = nnx.Einsum("bnd,nde->bne", (2, 4, 4), rngs=nnx.Rngs(0))

    def __call__(self, x):
      return self.e(x)

  with pytest.raises(ValueError, match=r"'e'.*no \[in, out\]"):
    Q.quantize_model(Batched(), [Q.QuantRule(".*", group_size=4)])
  # Unmatched, it is left alone.
  Q.quantize_model(Batched(), [Q.QuantRule("nothing", group_size=4)])
