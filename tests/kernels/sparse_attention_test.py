"""Tests of block-sparse attention: kernels vs reference vs independent oracles."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxkit.kernels import _registry
from jaxkit.kernels.sparse_attention import masks
from jaxkit.kernels.sparse_attention import reference
from jaxkit.kernels.sparse_attention import sparse_attention

MASKS = {
    "full": masks.FullMask(),
    "causal": masks.CausalMask(),
    "local": masks.LocalMask(20),
    "shifted_local": masks.LocalMask(16, causal=False, shift=8),
    "swin": masks.ShiftedWindowMask(24, shift=12),
    "global_local": masks.GlobalLocalMask(12, (0, 1, 33)),
    "dilated": masks.DilatedMask(6, 3),
    "random_block": masks.RandomBlockMask(16, 16, 0.35, seed=2),
    "chunked": masks.ChunkedMask(24),
    "union": masks.LocalMask(8) | masks.GlobalLocalMask(1, 3),
    "intersection": masks.CausalMask() & masks.RandomBlockMask(8, 8, 0.5, 1),
    "numpy": masks.NumpyMask(
        np.random.default_rng(7).random((40, 72)) < 0.3),
}

PALLAS = ("pallas_tpu", "pallas_gpu")


def _inputs(b, t, s, n, kh, h, dtype=jnp.float32, seed=0):
  rng = np.random.default_rng(seed)
  q = jnp.asarray(rng.normal(size=(b, t, n, h)), dtype)
  k = jnp.asarray(rng.normal(size=(b, s, kh, h)), dtype)
  v = jnp.asarray(rng.normal(size=(b, s, kh, h)), dtype)
  return q, k, v


def _padding(b, s):
  pad = np.ones((b, s), bool)
  pad[-1, : s // 3] = False  # last row: first third of keys padded
  return jnp.asarray(pad)


def numpy_attention(q, k, v, dense, pad=None, scale=None):
  """float64 softmax attention; rows with no visible key are 0."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  b, t, n, h = q.shape
  g = n // k.shape[2]
  k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)
  scale = h**-0.5 if scale is None else scale
  s = np.einsum("btnh,bsnh->bnts", q, k) * scale
  keep = np.broadcast_to(dense[None, None], s.shape)
  if pad is not None:
    keep = keep & np.asarray(pad)[:, None, None, :]
  s = np.where(keep, s, -np.inf)
  m = np.max(s, axis=-1, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  p = np.exp(s - m) * keep
  l = p.sum(-1, keepdims=True)
  o = np.einsum("bnts,bsnh->btnh", p / np.where(l > 0, l, 1.0), v)
  return o


def jax_oracle(q, k, v, dense, pad=None):
  """jax.nn.dot_product_attention with the dense mask, empty rows zeroed."""
  full = jnp.asarray(dense)[None, None]
  if pad is not None:
    full = full & pad[:, None, None, :]
  out = jax.nn.dot_product_attention(q, k, v, mask=full, implementation="xla")
  any_key = jnp.swapaxes(jnp.any(full, axis=-1), 1, 2)[..., None]
  return jnp.where(any_key, out, 0.0)


def _grads(fn, q, k, v, seed=1):
  w = jnp.asarray(np.random.default_rng(seed).normal(size=q.shape),
                  jnp.float32)
  loss = lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32) * w)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(q, k, v)


def _close(a, b, tol):
  np.testing.assert_allclose(np.asarray(a, np.float32),
                             np.asarray(b, np.float32), atol=tol, rtol=tol)


# ----- reference vs independent oracles -------------------------------------


@pytest.mark.parametrize("name", sorted(MASKS))
def test_reference_matches_numpy_and_jax(name):
  b, t, s, n, kh, h = 2, 40, 72, 4, 2, 16
  q, k, v = _inputs(b, t, s, n, kh, h)
  pad = _padding(b, s)
  mask = MASKS[name]
  dense = mask.materialize(t, s)
  out = jax.jit(functools.partial(sparse_attention, mask=mask, block_q=16,
                                  block_kv=16))(q, k, v, padding_mask=pad)
  _close(out, numpy_attention(q, k, v, dense, pad), 2e-5)
  if name in ("causal", "global_local", "numpy"):  # second oracle, a subset
    _close(out, jax_oracle(q, k, v, dense, pad), 2e-5)


def test_reference_grads_match_dense_jax():
  b, t, s, n, kh, h = 2, 40, 72, 4, 2, 16
  q, k, v = _inputs(b, t, s, n, kh, h)
  pad = _padding(b, s)
  mask = MASKS["global_local"]
  dense = mask.materialize(t, s)
  got = _grads(lambda q, k, v: sparse_attention(
      q, k, v, mask=mask, padding_mask=pad, block_q=16, block_kv=16), q, k, v)
  want = _grads(lambda q, k, v: jax_oracle(q, k, v, dense, pad), q, k, v)
  jax.tree.map(lambda a, b: _close(a, b, 5e-5), got, want)


def test_reference_default_blocks_and_scale():
  q, k, v = _inputs(1, 200, 200, 2, 1, 8)
  dense = masks.CausalMask().materialize(200, 200)
  out = jax.jit(functools.partial(sparse_attention, mask=masks.CausalMask(),
                                  scale=0.3))(q, k, v)
  _close(out, numpy_attention(q, k, v, dense, scale=0.3), 2e-5)


# ----- kernels (interpret mode) vs reference ---------------------------------


def _kernel_cases():
  """Every mask on one Pallas backend (round robin) by default; all slow."""
  cases = []
  for i, name in enumerate(sorted(MASKS)):
    for j, impl in enumerate(PALLAS):
      marks = () if i % 2 == j else (pytest.mark.slow,)
      cases.append(pytest.param(impl, name, marks=marks))
  return cases


def _value_and_grads(**kw):
  """Jitted (out, loss, grads) of sparse_attention with static ``kw``."""
  fn = functools.partial(sparse_attention, **kw)

  @jax.jit
  def run(q, k, v, w):
    def loss(q, k, v):
      out = fn(q, k, v)
      return jnp.sum(out.astype(jnp.float32) * w), out
    (l, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2),
                                         has_aux=True)(q, k, v)
    return out, l, grads

  return run


@pytest.mark.parametrize("impl,name", _kernel_cases())
def test_kernel_matches_reference_unaligned_gqa_padding(impl, name):
  b, t, s, n, kh, h = 2, 40, 72, 4, 2, 16
  q, k, v = _inputs(b, t, s, n, kh, h)
  w = jnp.asarray(np.random.default_rng(1).normal(size=q.shape), jnp.float32)
  pad = _padding(b, s)
  kw = dict(mask=MASKS[name], padding_mask=pad, block_q=16, block_kv=32)
  ok, lk, gk = _value_and_grads(implementation=impl, interpret=True, **kw)(
      q, k, v, w)
  orf, lr, gr = _value_and_grads(implementation="xla", **kw)(q, k, v, w)
  _close(ok, orf, 2e-5)
  _close(lk, lr, 1e-4)
  jax.tree.map(lambda a, b: _close(a, b, 1e-5), gk, gr)


_DEFAULT_DTYPE_CASES = {("pallas_tpu", "bfloat16", "causal"),
                        ("pallas_gpu", "bfloat16", "random_block"),
                        ("pallas_tpu", "float32", "local")}


def _dtype_cases():
  cases = []
  for impl in PALLAS:
    for dtype in ("float32", "bfloat16"):
      for name in ("causal", "local", "random_block"):
        marks = (() if (impl, dtype, name) in _DEFAULT_DTYPE_CASES
                 else (pytest.mark.slow,))
        cases.append(pytest.param(impl, dtype, name, marks=marks))
  return cases


@pytest.mark.parametrize("impl,dtype,name", _dtype_cases())
def test_kernel_aligned_dtypes(impl, dtype, name):
  tol = {"float32": 2e-5, "bfloat16": 3e-2}[dtype]
  dtype = jnp.dtype(dtype)
  b, t, s, n, kh, h = 1, 64, 64, 2, 2, 32
  q, k, v = _inputs(b, t, s, n, kh, h, dtype)
  w = jnp.asarray(np.random.default_rng(1).normal(size=q.shape), jnp.float32)
  kw = dict(mask=MASKS[name], block_q=32, block_kv=32)
  out, _, gk = _value_and_grads(implementation=impl, interpret=True, **kw)(
      q, k, v, w)
  ref, _, gr = _value_and_grads(implementation="xla", **kw)(q, k, v, w)
  assert out.dtype == dtype
  _close(out, ref, tol)
  _close(out, numpy_attention(q, k, v, MASKS[name].materialize(t, s)), tol)
  for a, r in zip(gk, gr):
    assert a.dtype == dtype
    _close(a, r, tol)


@pytest.mark.parametrize("impl", ("xla",) + PALLAS)
def test_fully_masked_rows_are_zero_with_finite_grads(impl):
  b, t, s, n, kh, h = 2, 32, 32, 2, 1, 8
  q, k, v = _inputs(b, t, s, n, kh, h)
  user = np.ones((t, s), bool)
  user[3] = False  # query 3 sees nothing
  user[20:, :] = False  # a whole q-block sees nothing (all tiles empty)
  pad = np.ones((b, s), bool)
  pad[1] = False  # batch row 1: every key padded
  kw = dict(mask=user, padding_mask=jnp.asarray(pad), block_q=16,
            block_kv=16, implementation=impl)
  if impl != "xla":
    kw["interpret"] = True
  fn = functools.partial(sparse_attention, **kw)
  out = jax.jit(fn)(q, k, v)
  np.testing.assert_array_equal(np.asarray(out[:, 3]), 0.0)
  np.testing.assert_array_equal(np.asarray(out[:, 20:]), 0.0)
  np.testing.assert_array_equal(np.asarray(out[1]), 0.0)
  _close(out, numpy_attention(q, k, v, user, pad), 2e-5)
  _, grads = _grads(fn, q, k, v)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  np.testing.assert_array_equal(np.asarray(grads[0][1]), 0.0)  # dq row 1


def test_empty_mask_gives_zeros():
  q, k, v = _inputs(1, 16, 16, 2, 1, 8)
  none = np.zeros((16, 16), bool)
  for impl, kw in (("xla", {}), ("pallas_tpu", {"interpret": True})):
    out, grads = jax.value_and_grad(
        lambda q: jnp.sum(sparse_attention(q, k, v, mask=none,
                                           implementation=impl, **kw)))(q)
    assert float(out) == 0.0 and np.all(np.asarray(grads) == 0.0)


# ----- empty tiles are skipped -------------------------------------------------


def _dot_batch_sizes(fn, *args):
  """Leading (tile) dims of every dot_general in fn's jaxpr."""
  sizes = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        sizes.append(eqn.invars[0].aval.shape[0])
      if "jaxpr" in eqn.params:
        inner = eqn.params["jaxpr"]
        walk(getattr(inner, "jaxpr", inner))

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return sizes


def test_reference_computes_only_active_tiles():
  t = s = 256
  q, k, v = _inputs(1, t, s, 2, 2, 8)
  mask = masks.RandomBlockMask(32, 32, 0.2, seed=5)
  info = masks.block_mask_info(mask, t, s, 32, 32)
  assert 0 < info.num_active_blocks < 0.35 * 64
  fn = lambda q, k, v: reference.attention_tiles(q, k, v, None, info, 0.3)
  sizes = _dot_batch_sizes(fn, q, k, v)
  # Two matmuls (q k^T and p v) over exactly the active tiles, no more.
  assert sorted(sizes) == [info.num_active_blocks] * 2
  causal = masks.block_mask_info(masks.CausalMask(), t, s, 32, 32)
  fn = lambda q, k, v: reference.attention_tiles(q, k, v, None, causal, 0.3)
  # Full tiles (28) and diagonal partial tiles (8) as two groups.
  assert sorted(_dot_batch_sizes(fn, q, k, v)) == [8, 8, 28, 28]


def test_tpu_kernel_grid_walks_only_active_tiles():
  t = s = 256
  q, k, v = _inputs(1, t, s, 2, 1, 8)
  jaxpr = jax.make_jaxpr(functools.partial(
      sparse_attention, mask=masks.LocalMask(32), block_q=32, block_kv=32,
      implementation="pallas_tpu", interpret=True))(q, k, v)
  grids = []

  def walk(jp):
    for eqn in jp.eqns:
      if eqn.primitive.name == "pallas_call":
        grids.append(tuple(eqn.params["grid_mapping"].grid))
      for val in eqn.params.values():
        inner = getattr(val, "jaxpr", None)
        if inner is not None:
          walk(getattr(inner, "jaxpr", inner))

  walk(jaxpr.jaxpr)
  # grid (B, N, nq, A): A = 2 active kv-blocks per q-block, not nk = 8.
  assert grids == [(1, 2, 8, 2)]


# ----- dispatch --------------------------------------------------------------


def test_dispatch_default_is_xla_on_cpu_and_interpret_picks_pallas():
  q, k, v = _inputs(1, 32, 32, 2, 1, 8)
  kw = dict(mask=masks.CausalMask(), block_q=16, block_kv=16)
  assert "pallas_call" not in str(jax.make_jaxpr(
      functools.partial(sparse_attention, **kw))(q, k, v))
  assert "pallas_call" in str(jax.make_jaxpr(
      functools.partial(sparse_attention, interpret=True, **kw))(q, k, v))
  with pytest.raises(_registry.BackendUnsupportedError, match="interpret"):
    sparse_attention(q, k, v, implementation="pallas_tpu", **kw)
  with pytest.raises(_registry.BackendUnsupportedError, match="power-of-two"):
    sparse_attention(q, k, v, mask=masks.CausalMask(), block_q=24,
                     implementation="pallas_gpu", interpret=True)


# ----- sharding --------------------------------------------------------------


@pytest.mark.parametrize(
    "impl", ["xla", pytest.param("pallas_tpu", marks=pytest.mark.slow)])
def test_shard_map_batch_and_heads_matches_unsharded(impl):
  mesh = jax.make_mesh((2, 4), ("data", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  b, t, s, n, kh, h = 2, 48, 48, 8, 4, 8
  q, k, v = _inputs(b, t, s, n, kh, h)
  pad = _padding(b, s)
  kw = dict(mask=masks.GlobalLocalMask(8, 2), block_q=16, block_kv=16,
            implementation=impl)
  if impl != "xla":
    kw["interpret"] = True
  heads = P("data", None, "model", None)
  sharded = jax.jit(jax.shard_map(
      lambda q, k, v, pad: sparse_attention(q, k, v, padding_mask=pad, **kw),
      mesh=mesh, in_specs=(heads, heads, heads, P("data", None)),
      out_specs=heads, check_vma=False))
  want = sparse_attention(q, k, v, padding_mask=pad, mask=kw["mask"],
                          block_q=16, block_kv=16, implementation="xla")
  _close(sharded(q, k, v, pad), want, 1e-6)


# ----- bad input -------------------------------------------------------------


def test_bad_inputs_raise_before_any_kernel():
  q, k, v = _inputs(1, 16, 24, 4, 2, 8)
  m = masks.CausalMask()
  q3, k3, _ = _inputs(1, 16, 24, 4, 3, 8)
  with pytest.raises(ValueError, match="multiple of the number of key/value"):
    sparse_attention(q3, k3, k3, mask=m)
  with pytest.raises(ValueError, match="head dim mismatch"):
    sparse_attention(q[..., :4], k, v, mask=m)
  with pytest.raises(ValueError, match="expected \\(16, 24\\)"):
    sparse_attention(q, k, v, mask=np.ones((16, 16), bool))
  with pytest.raises(ValueError, match="same shape"):
    sparse_attention(q, k, v[:, :20], mask=m)
  with pytest.raises(ValueError, match="rank 4"):
    sparse_attention(q[0], k, v, mask=m)
  with pytest.raises(ValueError, match="padding_mask"):
    sparse_attention(q, k, v, mask=m, padding_mask=jnp.ones((1, 16), bool))
  with pytest.raises(TypeError, match="padding_mask"):
    sparse_attention(q, k, v, mask=m, padding_mask=jnp.ones((1, 24)))
  with pytest.raises(TypeError, match="required"):
    sparse_attention(q, k, v, mask=None)
  with pytest.raises(TypeError, match="floating"):
    sparse_attention(q.astype(jnp.int32), k, v, mask=m)
  with pytest.raises(ValueError, match="implementation"):
    sparse_attention(q, k, v, mask=m, implementation="cuda")
  with pytest.raises(TypeError, match="static"):
    jax.jit(lambda q, mk: sparse_attention(q, k, v, mask=mk))(
        q, jnp.ones((16, 24), bool))
