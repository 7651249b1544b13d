"""Tests for jaxkit.kernels.quantized_matmul (Pallas kernels in interpret mode).

The oracle dequantizes in numpy float64 from the raw codes / scales / zero
points / levels (not through jaxkit.quantization.dequantize).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxkit import quantization as Q
from jaxkit.kernels._registry import BackendUnsupportedError
from jaxkit.kernels.quantized_matmul import (as_qmatmul_weight,
                                             from_quant_dense,
                                             quantized_matmul)
from jaxkit.nn import quantized as nnq

# ----------------------------------------------------------------------------
# Independent numpy oracle.
# ----------------------------------------------------------------------------


def _np_expand(a, shape):
  for ax, (d, s) in enumerate(zip(shape, a.shape)):
    if s != d:
      a = np.repeat(a, d // s, axis=ax)
  return a


def np_dequant(q) -> np.ndarray:
  """float64 [K, N] from a QuantizedArray's raw fields."""
  codes = np.asarray(q.codes)
  if q.format == "fp":
    vals = codes.astype(np.float64)
  elif q.format == "lut":
    vals = np.asarray(q.levels, np.float64)[codes.astype(np.int64)]
  else:
    vals = codes.astype(np.float64)
  s = _np_expand(np.asarray(q.scales, np.float64), codes.shape)
  z = (None if q.zero_points is None else
       _np_expand(np.asarray(q.zero_points, np.float64), codes.shape))
  if q.format == "lut":
    return vals * s + (0 if z is None else z)
  return (vals - (0 if z is None else z)) * s


def np_unpack_qd(packed):
  """QuantDense nibbles (row 2i low, 2i+1 high, two's complement)."""
  p = np.asarray(packed).astype(np.int64)
  lo, hi = p & 15, p >> 4
  lo = np.where(lo >= 8, lo - 16, lo)
  hi = np.where(hi >= 8, hi - 16, hi)
  out = np.empty((2 * p.shape[0], p.shape[1]), np.int64)
  out[0::2], out[1::2] = lo, hi
  return out


def _w(key, k, n):
  return jax.random.normal(jax.random.key(key), (k, n), jnp.float32)


# name -> (builder(k, n) -> (weight for the op, oracle [K, N] float64),
#          group sizes the format needs K to be divisible by)
def _fmt(name, k, n):
  wf = _w(1, k, n)
  if name == "int8_g32":
    q = Q.quantize(wf, bits=8, group_size=32, axis=0)
    return q, np_dequant(q)
  if name == "int4_packed_g64":
    q = Q.quantize(wf, bits=4, group_size=64, axis=0)
    return as_qmatmul_weight(q, pack=True), np_dequant(q)
  if name == "int4_asym_packed_gK":
    q = Q.quantize(wf, bits=4, group_size=None, axis=0, symmetric=False)
    return as_qmatmul_weight(q, pack=True), np_dequant(q)
  if name == "int8_asym_g32":
    q = Q.quantize(wf, bits=8, group_size=32, axis=0, symmetric=False)
    return q, np_dequant(q)
  if name == "int4_per_row":  # scales [K, 1]: folded into x by the kernels
    q = Q.quantize(wf, bits=4)
    return q, np_dequant(q)
  if name == "int6_per_tensor":
    q = Q.quantize(wf, bits=6, axis=None)
    return q, np_dequant(q)
  if name == "fp8_e4m3_g32":
    q = Q.fp_quantize(wf, format="e4m3", group_size=32, axis=0)
    return q, np_dequant(q)
  if name == "fp8_e5m2_gK":
    q = Q.fp_quantize(wf, format="e5m2", group_size=None, axis=0)
    return q, np_dequant(q)
  if name == "nf4_packed_g64":
    q = Q.nf_quantize(wf, group_size=64, axis=0)
    return as_qmatmul_weight(q, pack=True), np_dequant(q)
  if name == "nupes3_g32":
    q, _ = Q.nupes_quantize(wf, bits=3, group_size=32, axis=0)
    return q, np_dequant(q)
  if name == "codebook3":
    q = Q.codebook_quantize(wf, bits=3, n_iter=3)
    return q, np_dequant(q)
  if name == "quant_dense_w4_asym_g32":
    codes, s, z = nnq._rtn_quantize(wf, 4, 32, False)  # pylint: disable=protected-access
    packed = nnq._pack_int4(codes)  # pylint: disable=protected-access
    qn = np_unpack_qd(packed)
    ref = ((qn - _np_expand(np.asarray(z, np.float64), qn.shape))
           * _np_expand(np.asarray(s, np.float64), qn.shape))
    return from_quant_dense(packed, s, z, bits=4), ref
  raise ValueError(name)


FORMATS = ["int8_g32", "int4_packed_g64", "int4_asym_packed_gK",
           "int8_asym_g32", "int4_per_row", "int6_per_tensor", "fp8_e4m3_g32",
           "fp8_e5m2_gK", "nf4_packed_g64", "nupes3_g32", "codebook3",
           "quant_dense_w4_asym_g32"]
GPU_FORMATS = [f for f in FORMATS if f not in ("nf4_packed_g64", "nupes3_g32",
                                                "codebook3")]
# (M, K, N, block_sizes): aligned multi-tile grid, unaligned single tile, M=1.
SHAPES = [(16, 256, 256, (8, 128, 128)), (3, 192, 40, None),
          (1, 128, 128, None)]


def _x(m, k, dtype, key=2):
  return jax.random.normal(jax.random.key(key), (m, k), jnp.float32).astype(
      dtype)


def _tol(dtype, oracle, x):
  scale = float(np.abs(np.asarray(x, np.float64)).sum(1).max()
                * np.abs(oracle).max())
  return (2e-5 if dtype == jnp.float32 else 1.2e-2) * max(scale, 1.0)


def _block(bs, w, backend):
  if bs is None:
    return None
  bm, bn, bk = bs
  if getattr(w, "packed", False):
    bk //= 2
    if backend == "pallas_tpu":
      bk = max(bk, 128) if bk < 128 else bk
  return (bm if backend == "pallas_tpu" else 16, bn, bk)


# Default run: every format once, rotating over the shapes and dtypes; the
# full format x shape product is marked slow.
_DEFAULT = [(f, i % len(SHAPES)) for i, f in enumerate(FORMATS)]
_ALL = [(f, i) for f in FORMATS for i in range(len(SHAPES))]
_CASES = _DEFAULT + [pytest.param(*c, marks=pytest.mark.slow)
                     for c in _ALL if c not in _DEFAULT]


@pytest.mark.parametrize("fmt,shape_i", _CASES)
def test_tpu_kernel_and_reference_match_oracle(fmt, shape_i):
  m, k, n, bs = SHAPES[shape_i]
  dtype = jnp.bfloat16 if (FORMATS.index(fmt) // 3) % 2 else jnp.float32
  w, oracle = _fmt(fmt, k, n)
  x = _x(m, k, dtype)
  want = np.asarray(x, np.float64) @ oracle
  tol = _tol(dtype, oracle, x)
  bsz = _block(bs, w, "pallas_tpu")
  if bsz is not None and getattr(w, "packed", False) and bsz[2] > k // 2:
    bsz = None
  y_ref = jax.jit(functools.partial(quantized_matmul, implementation="xla"))(
      x, w)
  y_k = jax.jit(functools.partial(
      quantized_matmul, implementation="pallas_tpu", interpret=True,
      block_sizes=bsz))(x, w)
  assert y_k.dtype == dtype and y_k.shape == (m, n)
  np.testing.assert_allclose(np.asarray(y_ref, np.float64), want, atol=tol)
  np.testing.assert_allclose(np.asarray(y_k, np.float64), want, atol=tol)


@pytest.mark.parametrize("fmt,dtype", [
    (f, (jnp.float32, jnp.bfloat16)[i % 2]) for i, f in enumerate(GPU_FORMATS)
    if f in ("int8_g32", "int4_packed_g64", "int4_asym_packed_gK",
             "fp8_e5m2_gK", "quant_dense_w4_asym_g32")])
def test_gpu_kernel_interpret_matches_oracle(fmt, dtype):
  m, k, n = 5, 128, 64
  w, oracle = _fmt(fmt, k, n)
  x = _x(m, k, dtype)
  want = np.asarray(x, np.float64) @ oracle
  y = jax.jit(functools.partial(quantized_matmul, implementation="pallas_gpu",
                                interpret=True))(x, w)
  np.testing.assert_allclose(np.asarray(y, np.float64), want,
                             atol=_tol(dtype, oracle, x))


@pytest.mark.parametrize("fmt,backend,dtype", [
    ("int8_g32", "pallas_tpu", jnp.float32),
    ("int4_packed_g64", "pallas_tpu", jnp.bfloat16),
    ("fp8_e4m3_g32", "pallas_tpu", jnp.bfloat16),
    ("nf4_packed_g64", "pallas_tpu", jnp.float32),
    ("int4_per_row", "pallas_tpu", jnp.float32),
    ("int8_asym_g32", "pallas_gpu", jnp.bfloat16),
    ("int4_asym_packed_gK", "pallas_gpu", jnp.float32)])
def test_grad_matches_reference(fmt, backend, dtype):
  m, k, n = 4, 128, 48
  w, oracle = _fmt(fmt, k, n)
  x = _x(m, k, dtype)
  ct = jax.random.normal(jax.random.key(7), (m, n), jnp.float32)

  def loss(impl, x):
    y = quantized_matmul(x, w, implementation=impl,
                         interpret=impl != "xla" or None)
    return jnp.sum(y.astype(jnp.float32) * ct)

  v_k, g_k = jax.jit(jax.value_and_grad(functools.partial(loss, backend)))(x)
  v_r, g_r = jax.jit(jax.value_and_grad(functools.partial(loss, "xla")))(x)
  want_g = np.asarray(ct, np.float64) @ oracle.T
  tol = 1e-4 if dtype == jnp.float32 else 3e-2
  assert g_k.dtype == dtype
  scale = np.abs(want_g).max()
  np.testing.assert_allclose(np.asarray(g_k, np.float64), want_g,
                             atol=tol * scale)
  np.testing.assert_allclose(np.asarray(g_r, np.float64), want_g,
                             atol=tol * scale)
  np.testing.assert_allclose(float(v_k), float(v_r), rtol=tol * 10)
  # No gradient to the quantized weight (zero cotangents).
  gw = jax.grad(lambda w_: jnp.sum(quantized_matmul(
      x, w_, implementation=backend, interpret=True).astype(jnp.float32)),
                allow_int=True)(as_qmatmul_weight(w))
  assert not np.any(np.asarray(gw.scales))


def _np_w8a8(x, q):
  """Oracle: per-row int8 activations, int64 products, float64 rescale."""
  xf = np.asarray(x, np.float64)
  amax = np.abs(xf).max(1, keepdims=True)
  sx = np.where(amax > 0, np.asarray(
      jnp.asarray(amax, jnp.float32) / 127.0, np.float64), 1.0)
  xq = np.clip(np.round(xf / sx), -127, 127)
  return (xq @ np_dequant(q)) * sx


@pytest.mark.parametrize("backend,m,k,n,group", [
    ("xla", 3, 256, 64, 128), ("pallas_tpu", 3, 256, 128, 128),
    ("pallas_gpu", 5, 128, 64, 64), ("xla", 20, 128, 32, None)])
def test_w8a8(backend, m, k, n, group):
  q = Q.quantize(_w(3, k, n), bits=8, group_size=group, axis=0)
  x = _x(m, k, jnp.float32)
  y = jax.jit(functools.partial(
      quantized_matmul, activation_bits=8, implementation=backend,
      interpret=backend != "xla" or None))(x, q)
  want = _np_w8a8(x, q)
  np.testing.assert_allclose(np.asarray(y, np.float64), want,
                             atol=2e-4 * np.abs(want).max())
  if backend == "xla" and group is None:
    return
  # Straight-through dx.
  g = jax.grad(lambda x_: jnp.sum(quantized_matmul(
      x_, q, activation_bits=8, implementation=backend,
      interpret=backend != "xla" or None)))(x)
  np.testing.assert_allclose(np.asarray(g, np.float64),
                             np.ones((m, n)) @ np_dequant(q).T, atol=1e-3)


def test_lowrank_and_outliers_match_oracle():
  k, n, r = 64, 32, 2
  wf = _w(4, k, n)
  q = Q.nf_quantize(wf, group_size=32, axis=0)  # LQ-LoRA's Q part
  l1 = jax.random.normal(jax.random.key(11), (k, r)) * 0.1
  l2 = jax.random.normal(jax.random.key(12), (r, n)) * 0.1
  x = _x(3, k, jnp.float32)
  want = np.asarray(x, np.float64) @ (
      np_dequant(q) + np.asarray(l1, np.float64) @ np.asarray(l2, np.float64))
  y = jax.jit(lambda x_, a, b: quantized_matmul(
      x_, q, lowrank=(a, b), implementation="pallas_tpu", interpret=True))(
          x, l1, l2)
  np.testing.assert_allclose(np.asarray(y, np.float64), want, atol=1e-4)
  # Gradients reach the low-rank factors (LQ-LoRA fine-tuning).
  ga, gb = jax.jit(jax.grad(lambda a, b: jnp.sum(quantized_matmul(
      x, q, lowrank=(a, b))), argnums=(0, 1)))(l1, l2)
  ga_want = np.asarray(x, np.float64).T @ np.ones((3, n)) @ np.asarray(
      l2, np.float64).T
  np.testing.assert_allclose(np.asarray(ga), ga_want, rtol=1e-4, atol=1e-3)
  assert gb.shape == (r, n)

  # GWQ / SpQR split: outliers kept in float, the dense part holds 0 there.
  idx = jnp.array([5 * n + 3, 40 * n + 10, 63 * n + 31], jnp.int32)
  vals = jnp.array([3.5, -4.0, 2.25], jnp.float16)
  dense_q = Q.quantize(wf.reshape(-1).at[idx].set(0).reshape(k, n), bits=3,
                       group_size=32, axis=0, symmetric=False)
  so = Q.SparseOutlierArray(dense=dense_q, indices=idx, values=vals)
  dense = np_dequant(dense_q).reshape(-1)
  dense[np.asarray(idx)] = np.asarray(vals, np.float64)
  want = np.asarray(x, np.float64) @ dense.reshape(k, n)
  for impl in ("xla", "pallas_tpu"):
    y = jax.jit(lambda x_, w_, impl=impl: quantized_matmul(
        x_, w_, implementation=impl, interpret=impl != "xla" or None))(x, so)
    np.testing.assert_allclose(np.asarray(y, np.float64), want, atol=1e-4)


def test_batch_dims_and_preferred_element_type():
  q = Q.quantize(_w(5, 64, 32), bits=8, group_size=32, axis=0)
  x = jax.random.normal(jax.random.key(0), (2, 3, 64)).astype(jnp.bfloat16)
  y = quantized_matmul(x, q, preferred_element_type=jnp.float32,
                       implementation="pallas_tpu", interpret=True)
  assert y.shape == (2, 3, 32) and y.dtype == jnp.float32
  want = np.asarray(x, np.float64).reshape(6, 64) @ np_dequant(q)
  np.testing.assert_allclose(np.asarray(y).reshape(6, 32), want,
                             atol=_tol(jnp.bfloat16, np_dequant(q),
                                       x.reshape(6, 64)))


# ----------------------------------------------------------------------------
# Sharding.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["xla", "pallas_tpu"])
def test_shard_map_k_and_n_sharding(impl):
  mesh = jax.make_mesh((8,), ("d",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  k, n, g = 512, 256, 64
  q = Q.quantize(_w(6, k, n), bits=8, group_size=g, axis=0)
  x = _x(4, k, jnp.float32)
  want = np.asarray(x, np.float64) @ np_dequant(q)
  kw = dict(implementation=impl, interpret=impl != "xla" or None)

  def local(x_, codes, scales):
    qa = Q.QuantizedArray(codes=codes, scales=scales, bits=8, group_size=g,
                          axis=0, format="int", dtype=jnp.float32)
    return quantized_matmul(x_, qa, **kw)

  def k_sharded(x_, codes, scales):
    return jax.lax.psum(local(x_, codes, scales), "d")

  shard = lambda a, spec: jax.sharding.reshard(a, spec)
  with jax.set_mesh(mesh):
    fk = jax.jit(jax.shard_map(
        k_sharded, mesh=mesh, in_specs=(P(None, "d"), P("d", None),
                                        P("d", None)),
        out_specs=P(), check_vma=False))
    yk = fk(shard(x, P(None, "d")), shard(q.codes, P("d", None)),
            shard(q.scales, P("d", None)))
    fn = jax.jit(jax.shard_map(
        local, mesh=mesh, in_specs=(P(), P(None, "d"), P(None, "d")),
        out_specs=P(None, "d"), check_vma=False))
    yn = fn(shard(x, P()), shard(q.codes, P(None, "d")),
            shard(q.scales, P(None, "d")))
  unsharded = quantized_matmul(x, q, implementation="xla")
  for y in (yk, yn):
    np.testing.assert_allclose(np.asarray(y, np.float64), want, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y), np.asarray(unsharded),
                               atol=1e-4)


# ----------------------------------------------------------------------------
# Dispatch and bad input.
# ----------------------------------------------------------------------------


def test_dispatch():
  q = Q.quantize(_w(8, 64, 32), bits=8, group_size=32, axis=0)
  x = _x(2, 64, jnp.float32)
  jaxpr = str(jax.make_jaxpr(lambda x_: quantized_matmul(x_, q))(x))
  assert "pallas_call" not in jaxpr  # None on CPU -> xla
  jaxpr = str(jax.make_jaxpr(
      lambda x_: quantized_matmul(x_, q, interpret=True))(x))
  assert "pallas_call" in jaxpr  # interpret=True -> the TPU kernel
  for impl in ("pallas_tpu", "pallas_gpu"):
    with pytest.raises(BackendUnsupportedError, match="interpret=True"):
      quantized_matmul(x, q, implementation=impl)
  # A format the kernels cannot take: 256-level codebook.
  cb = Q.codebook_quantize(_w(9, 64, 32), bits=8, n_iter=1)
  with pytest.raises(BackendUnsupportedError, match="levels"):
    quantized_matmul(x, cb, implementation="pallas_tpu", interpret=True)
  with pytest.raises(BackendUnsupportedError, match="look-up"):
    quantized_matmul(x, cb, implementation="pallas_gpu", interpret=True)
  jaxpr = str(jax.make_jaxpr(
      lambda x_: quantized_matmul(x_, cb, interpret=True))(x))
  assert "pallas_call" not in jaxpr  # fell back to xla
  y = quantized_matmul(x, cb, interpret=True)
  np.testing.assert_allclose(np.asarray(y, np.float64),
                             np.asarray(x, np.float64) @ np_dequant(cb),
                             atol=1e-4)


def test_bad_input():
  q = Q.quantize(_w(8, 64, 32), bits=8, group_size=32, axis=0)
  with pytest.raises(ValueError, match=r"K=64"):
    quantized_matmul(jnp.ones((2, 48)), q)
  with pytest.raises(TypeError, match="float32 or bfloat16"):
    quantized_matmul(jnp.ones((2, 64), jnp.int32), q)
  with pytest.raises(TypeError, match="float32 or bfloat16"):
    quantized_matmul(jnp.ones((2, 64), jnp.float16), q)
  with pytest.raises(TypeError, match="QuantizedArray"):
    quantized_matmul(jnp.ones((2, 64)), jnp.ones((64, 32)))
  with pytest.raises(ValueError, match="activation_bits"):
    quantized_matmul(jnp.ones((2, 64)), q, activation_bits=4)
  qa = Q.quantize(_w(8, 64, 32), bits=8, group_size=32, axis=0,
                  symmetric=False)
  with pytest.raises(ValueError, match="activation_bits=8"):
    quantized_matmul(jnp.ones((2, 64)), qa, activation_bits=8)
  with pytest.raises(ValueError, match="lowrank"):
    quantized_matmul(jnp.ones((2, 64)), q,
                     lowrank=(jnp.ones((64, 2)), jnp.ones((3, 32))))
  with pytest.raises(ValueError, match="implementation"):
    quantized_matmul(jnp.ones((2, 64)), q, implementation="cuda")
  with pytest.raises(ValueError, match="pack=True"):
    as_qmatmul_weight(q, pack=True)  # 8-bit codes cannot be packed
  with pytest.raises(ValueError, match="bits"):
    from_quant_dense(q.codes, q.scales, None, bits=3)
  # float4 codes: XLA only.
  f4 = Q.fp_quantize(_w(8, 64, 32), format="e2m1", group_size=32, axis=0)
  with pytest.raises(BackendUnsupportedError, match="float4|fp codes"):
    quantized_matmul(jnp.ones((2, 64)), f4, implementation="pallas_tpu",
                     interpret=True)
  np.testing.assert_allclose(
      np.asarray(quantized_matmul(jnp.ones((2, 64)), f4), np.float64),
      np.ones((2, 64)) @ np_dequant(f4), atol=1e-4)


@pytest.mark.parametrize("fmt", ["int4_asym_packed_gK", "int4_per_row",
                                 "nf4_packed_g64", "quant_dense_w4_asym_g32"])
def test_reference_chunked_gemv(fmt):
  """The XLA decode path scans over K chunks; force several chunks."""
  from jaxkit.kernels.quantized_matmul import reference  # pylint: disable=g-import-not-at-top
  w, oracle = _fmt(fmt, 256, 64)
  pw = as_qmatmul_weight(w)
  assert reference._num_chunks(pw, 4096) > 1  # pylint: disable=protected-access
  x = _x(3, 256, jnp.float32)
  y = jax.jit(lambda x_: reference._gemv(x_, pw, chunk_bytes=4096))(x)  # pylint: disable=protected-access
  np.testing.assert_allclose(np.asarray(y, np.float64),
                             np.asarray(x, np.float64) @ oracle, atol=1e-4)
