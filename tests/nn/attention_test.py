"""Tests for jaxkit.nn.attention: mask builders and GQA attention vs numpy."""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest
from flax import nnx

import jaxkit
from jaxkit.nn import partitioning as pt
from tests.nn import oracles


# --- mask builders vs explicit loops -----------------------------------------

def _loop_mask(t, s, ok):
  return np.array([[ok(i + s - t, j) for j in range(s)] for i in range(t)])


@pytest.mark.parametrize("t,s", [(5, 5), (3, 6)])
def test_causal_mask(t, s):
  np.testing.assert_array_equal(jaxkit.nn.causal_mask(t, s),
                                _loop_mask(t, s, lambda i, j: j <= i))


@pytest.mark.parametrize("causal", [True, False])
def test_local_mask(causal):
  want = _loop_mask(6, 6, lambda i, j: abs(i - j) < 3 and (j <= i or not causal))
  np.testing.assert_array_equal(
      jaxkit.nn.local_mask(6, window=3, causal=causal), want)


def test_global_local_mask():
  glob = {0, 4}
  want = _loop_mask(
      7, 7, lambda i, j: (abs(i - j) < 2 or i in glob or j in glob) and j <= i)
  np.testing.assert_array_equal(
      jaxkit.nn.global_local_mask(7, window=2, global_tokens=[0, 4]), want)
  np.testing.assert_array_equal(
      jaxkit.nn.global_local_mask(7, window=2, global_tokens=1),
      _loop_mask(7, 7, lambda i, j: (abs(i - j) < 2 or i == 0 or j == 0)
                 and j <= i))


def test_mask_bad_input():
  with pytest.raises(ValueError, match="window"):
    jaxkit.nn.local_mask(4, window=0)
  with pytest.raises(ValueError, match="kv_len"):
    jaxkit.nn.causal_mask(4, 2)
  with pytest.raises(ValueError, match="global_tokens"):
    jaxkit.nn.global_local_mask(4, window=1, global_tokens=[9])


# --- attention layer -----------------------------------------------------------

def _numpy_attention(attn, x, mask, positions, theta):
  q = np.einsum("btd,dnh->btnh", x, np.asarray(attn.q.kernel[...]))
  k = np.einsum("btd,dkh->btkh", x, np.asarray(attn.k.kernel[...]))
  v = np.einsum("btd,dkh->btkh", x, np.asarray(attn.v.kernel[...]))
  q = np.stack([oracles.rope(qi, positions, theta) for qi in q])
  k = np.stack([oracles.rope(ki, positions, theta) for ki in k])
  a = oracles.attention(q, k, v, mask)
  return np.einsum("btnh,nhd->btd", a, np.asarray(attn.o.kernel[...]))


@pytest.fixture(scope="module")
def gqa():
  return jaxkit.nn.Attention(16, 4, 2, rope_theta=500.0, rngs=nnx.Rngs(0))


def test_gqa_matches_numpy_oracle(gqa):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 16)).astype(np.float32)
  mask = np.asarray(jaxkit.nn.local_mask(6, window=3))
  pad = np.array([[True] * 6, [True] * 4 + [False] * 2])
  full = mask[None, None] & pad[:, None, None, :]
  got = nnx.jit(lambda m, v, mk: m(v, mask=mk))(gqa, x, jnp.asarray(full))
  want = _numpy_attention(gqa, x, full, np.arange(6), 500.0)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_gqa_equals_mha_with_repeated_kv(gqa):
  mha = jaxkit.nn.Attention(16, 4, 4, rope_theta=500.0, rngs=nnx.Rngs(1))
  mha.q.kernel[...] = gqa.q.kernel[...]
  mha.o.kernel[...] = gqa.o.kernel[...]
  mha.k.kernel[...] = jnp.repeat(gqa.k.kernel[...], 2, axis=1)
  mha.v.kernel[...] = jnp.repeat(gqa.v.kernel[...], 2, axis=1)
  x = jax.random.normal(jax.random.key(3), (2, 5, 16))
  m = jaxkit.nn.causal_mask(5)
  f = nnx.jit(lambda a, v: a(v, mask=m))
  np.testing.assert_allclose(f(gqa, x), f(mha, x), rtol=1e-5, atol=1e-6)


def test_fully_masked_rows_are_zero_with_finite_grads(gqa):
  x = jax.random.normal(jax.random.key(4), (1, 4, 16))
  mask = jnp.zeros((1, 1, 4, 4), bool).at[..., 2:, :].set(True)
  out = nnx.jit(lambda a, v: a(v, mask=mask))(gqa, x)
  np.testing.assert_array_equal(out[0, :2], 0.0)
  g = nnx.jit(nnx.grad(lambda v, a: jnp.sum(a(v, mask=mask) ** 2)))(x, gqa)
  assert np.all(np.isfinite(g))


def test_attention_partition_names(gqa):
  assert pt.logical_axes(gqa.q.kernel) == ("embed", "heads", "head_dim")
  assert pt.logical_axes(gqa.k.kernel) == ("embed", "kv_heads", "head_dim")
  assert pt.logical_axes(gqa.o.kernel) == ("heads", "head_dim", "embed")


def test_attention_bf16(gqa):
  x = jnp.ones((1, 3, 16), jnp.bfloat16)
  bf = jaxkit.nn.Attention(16, 4, 2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  y = nnx.jit(lambda a, v: a(v, mask=jaxkit.nn.causal_mask(3)))(bf, x)
  assert y.dtype == jnp.bfloat16 and np.all(np.isfinite(
      np.asarray(y, np.float32)))


def test_attention_bad_input(gqa):
  with pytest.raises(ValueError, match="num_heads"):
    jaxkit.nn.Attention(12, 4, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="width"):
    jaxkit.nn.Attention(10, 4, 2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="mask"):
    gqa(jnp.ones((1, 3, 16)), mask=jnp.ones((4, 4), bool))
  with pytest.raises(TypeError, match="mask"):
    gqa(jnp.ones((1, 3, 16)), mask=jnp.ones((3, 3)))
  with pytest.raises(ValueError, match="`x`"):
    gqa(jnp.ones((1, 3, 10)))


def test_attention_grad_matches_finite_differences():
  attn = jaxkit.nn.Attention(4, 2, 1, rngs=nnx.Rngs(5))
  x = jax.random.normal(jax.random.key(6), (1, 3, 4))
  m = jaxkit.nn.causal_mask(3)
  check_grads(jax.jit(lambda v: attn(v, mask=m)), (x,), order=1,
              modes=["rev"], eps=1e-3, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("mask_obj,dense", [
    (lambda: jaxkit.kernels.masks.CausalMask(), lambda t: jaxkit.nn.causal_mask(t)),
    (lambda: jaxkit.kernels.masks.LocalMask(2),
     lambda t: jaxkit.nn.local_mask(t, window=2)),
    (lambda: jaxkit.kernels.masks.GlobalLocalMask(1, 1),
     lambda t: jaxkit.nn.global_local_mask(t, window=1, global_tokens=1)),
])
def test_mask_object_runs_sparse_kernel_and_equals_dense(mask_obj, dense):
  attn = jaxkit.nn.Attention(16, 4, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 9, 16))
  pad = jnp.array([[True] * 9, [True] * 6 + [False] * 3])
  want = attn(x, mask=dense(9)[None, None] & pad[:, None, None, :])
  got = attn(x, mask=mask_obj(), padding_mask=pad)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_padding_mask_needs_a_mask_object():
  attn = jaxkit.nn.Attention(16, 4, 2, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 9, 16))
  with pytest.raises(ValueError, match="`padding_mask` is only taken"):
    attn(x, mask=jaxkit.nn.causal_mask(9), padding_mask=jnp.ones((2, 9), bool))
  with pytest.raises(ValueError, match="`padding_mask` must be bool"):
    attn(x, mask=jaxkit.kernels.masks.CausalMask(),
         padding_mask=jnp.ones((2, 8), bool))
