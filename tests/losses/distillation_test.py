"""Tests for jaxkit.losses.distillation against independent numpy/scipy oracles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import test_util as jtu
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr, softmax

from jaxkit.losses.distillation import (bd_kd_loss, kd_loss, pld_loss,
                                        sinkhorn_kd_loss)


def _logits(shape, seed, scale=2.0):
  return np.random.default_rng(seed).normal(size=shape) * scale


def _np_f(name, t, alpha=None):
  """f(t) written directly from the textbook definitions (float64)."""
  if name == "kl":
    return t * np.log(t)
  if name == "reverse_kl":
    return -np.log(t)
  if name == "tv":
    return 0.5 * np.abs(t - 1)
  if name == "pearson_chi2":
    return (t - 1) ** 2
  if name == "neyman_chi2":
    return (1 - t) ** 2 / t
  if name == "squared_hellinger":
    return (np.sqrt(t) - 1) ** 2
  if name == "jeffreys":
    return (t - 1) * np.log(t)
  if name == "amari_alpha":
    a = alpha
    return (t ** a - 1 - a * (t - 1)) / (a * (a - 1))
  if name == "gan":
    return t * np.log(t) - (1 + t) * np.log(1 + t) + np.log(4)
  raise ValueError(name)


S = _logits((4, 6, 11), 0)
T = _logits((4, 6, 11), 1)


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
def test_kl_matches_scipy(tau):
  want = tau**2 * rel_entr(softmax(T / tau, -1), softmax(S / tau, -1)).sum(-1)
  got = jax.jit(lambda s, t: kd_loss(s, t, temperature=tau))(
      jnp.asarray(S, jnp.float32), jnp.asarray(T, jnp.float32))
  assert got.shape == (4, 6)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_js_matches_scipy():
  tau = 3.0
  want = tau**2 * jensenshannon(softmax(T / tau, -1), softmax(S / tau, -1),
                                axis=-1) ** 2
  got = kd_loss(jnp.asarray(S, jnp.float32), jnp.asarray(T, jnp.float32),
                temperature=tau, divergence="js")
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,alpha", [
    ("kl", None), ("reverse_kl", None), ("tv", None), ("pearson_chi2", None),
    ("neyman_chi2", None), ("squared_hellinger", None), ("jeffreys", None),
    ("amari_alpha", 0.3), ("amari_alpha", -0.5), ("gan", None)])
def test_generators_match_numpy(name, alpha):
  tau = 1.5
  p = softmax(T / tau, -1)  # teacher = target
  q = softmax(S / tau, -1)
  want = tau**2 * np.sum(q * _np_f(name, p / q, alpha), -1)
  got = jax.jit(lambda s, t: kd_loss(s, t, temperature=tau, divergence=name,
                                     alpha=alpha))(
      jnp.asarray(S, jnp.float32), jnp.asarray(T, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)


def test_temperature_scaling_and_reverse_order():
  s, t = jnp.asarray(S[0], jnp.float32), jnp.asarray(T[0], jnp.float32)
  tau = 2.5
  # kd(s/..., τ) = τ² kd(s/τ, t/τ, τ=1).
  np.testing.assert_allclose(kd_loss(s, t, temperature=tau),
                             tau**2 * kd_loss(s / tau, t / tau), rtol=1e-5)
  # reverse KL with roles swapped equals forward KL.
  np.testing.assert_allclose(kd_loss(s, t, divergence="reverse_kl"),
                             kd_loss(t, s), rtol=1e-5)
  np.testing.assert_allclose(kd_loss(s, s), np.zeros(6), atol=1e-6)


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_masked_tokens_junk_and_grads(chunk_size):
  mask = np.ones((4, 6), bool)
  mask[:, 4:] = False
  mask[3] = False  # a fully masked example
  s = S.astype(np.float32).copy()
  t = T.astype(np.float32).copy()
  s[~mask] = np.nan
  t[~mask] = np.inf
  f = jax.jit(lambda s, t: kd_loss(s, t, temperature=2.0, where=mask,
                                   chunk_size=chunk_size))
  got = f(s, t)
  want = 4.0 * rel_entr(softmax(T / 2, -1), softmax(S / 2, -1)).sum(-1)
  want = np.where(mask, want, 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  gs, gt = jax.grad(lambda s, t: f(s, t).sum(), argnums=(0, 1))(s, t)
  assert np.all(np.isfinite(gs)) and np.all(np.isfinite(gt))
  assert np.all(gs[~mask] == 0) and np.all(gt[~mask] == 0)


def test_gradient_matches_finite_differences():
  s = jnp.asarray(S[0, :2], jnp.float32)
  t = jnp.asarray(T[0, :2], jnp.float32)
  jtu.check_grads(
      lambda s, t: kd_loss(s, t, temperature=2.0, divergence="js").sum(),
      (s, t), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_bf16_accumulates_in_f32(chunk_size):
  sb = jnp.asarray(S, jnp.bfloat16)
  tb = jnp.asarray(T, jnp.bfloat16)
  got = jax.jit(lambda s, t: kd_loss(s, t, temperature=2.0,
                                     chunk_size=chunk_size))(sb, tb)
  assert got.dtype == jnp.float32
  s64 = np.asarray(sb.astype(jnp.float32), np.float64)
  t64 = np.asarray(tb.astype(jnp.float32), np.float64)
  want = 4.0 * rel_entr(softmax(t64 / 2, -1), softmax(s64 / 2, -1)).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_chunked_gradients_equal_default(dtype):
  s, t = jnp.asarray(S, dtype), jnp.asarray(T, dtype)
  loss = lambda cs: (lambda a, b: kd_loss(a, b, temperature=2.0,
                                           chunk_size=cs).sum())
  g_full = jax.grad(loss(None), argnums=(0, 1))(s, t)
  g_chunk = jax.grad(loss(5), argnums=(0, 1))(s, t)
  for a, b in zip(g_full, g_chunk):
    assert np.any(np.asarray(a, np.float32) != 0)
    np.testing.assert_allclose(np.asarray(b, np.float32),
                               np.asarray(a, np.float32), rtol=1e-2, atol=1e-3)


def test_chunked_equals_default_and_vmap():
  s, t = jnp.asarray(S, jnp.float32), jnp.asarray(T, jnp.float32)
  full = kd_loss(s, t, temperature=2.0, divergence="js")
  for cs in (1, 5, 24, 100):
    np.testing.assert_allclose(
        kd_loss(s, t, temperature=2.0, divergence="js", chunk_size=cs), full,
        rtol=1e-6, atol=1e-7)
  vm = jax.jit(jax.vmap(lambda a, b: kd_loss(a, b, temperature=2.0,
                                             divergence="js")))(s, t)
  np.testing.assert_allclose(vm, full, rtol=1e-6, atol=1e-7)


def test_sharded_equals_single_device():
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  s = jnp.asarray(_logits((16, 3, 10), 5), jnp.float32)
  t = jnp.asarray(_logits((16, 3, 10), 6), jnp.float32)
  mask = jnp.asarray(np.random.default_rng(7).random((16, 3)) > 0.3)
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  fn = lambda s, t, m: kd_loss(s, t, temperature=2.0, where=m)
  got = jax.jit(fn)(jax.device_put(s, sh), jax.device_put(t, sh),
                    jax.device_put(mask, sh))
  np.testing.assert_allclose(got, fn(s, t, mask), rtol=1e-6, atol=1e-7)


def test_bad_inputs():
  s = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="teacher_logits"):
    kd_loss(s, jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="temperature"):
    kd_loss(s, s, temperature=0.0)
  with pytest.raises(ValueError, match="temperature"):
    kd_loss(s, s, temperature=-1.0)
  with pytest.raises(ValueError, match="divergence"):
    kd_loss(s, s, divergence="wasserstein")
  with pytest.raises(ValueError, match="divergence"):
    kd_loss(s, s, divergence="amari_alpha")  # alpha missing
  with pytest.raises(ValueError, match="where"):
    kd_loss(s, s, where=jnp.ones((3,), bool))
  with pytest.raises(ValueError, match="chunk_size"):
    kd_loss(s, s, chunk_size=0)
  with pytest.raises(TypeError, match="student_logits"):
    kd_loss(jnp.zeros((2, 3), jnp.int32), s)
  with pytest.raises(ValueError, match="forward_weight"):
    bd_kd_loss(s, s, forward_weight=jnp.ones((3,)))
  with pytest.raises(ValueError, match="forward_weight"):
    bd_kd_loss(s, s, forward_weight=1.5)
  with pytest.raises(ValueError, match="temperature"):
    sinkhorn_kd_loss(s, s, temperature=0.0)
  with pytest.raises(ValueError, match="num_iters"):
    sinkhorn_kd_loss(s, s, num_iters=0)


def test_bd_kd_matches_numpy():
  s, t = S[:, 0], T[:, 0]
  tau = 2.0
  w = np.array([0.0, 0.3, 0.8, 1.0])
  p, q = softmax(t / tau, -1), softmax(s / tau, -1)
  want = tau**2 * (w * rel_entr(p, q).sum(-1)
                   + (1 - w) * rel_entr(q, p).sum(-1))
  got = jax.jit(lambda s, t, w: bd_kd_loss(s, t, forward_weight=w,
                                           temperature=tau))(
      jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32),
      jnp.asarray(w, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _sinkd_reference(s, t, tau=2.0, eps=0.1, n_iters=20, scale=1e-3):
  """Direct float64 port of SinKD's reference algorithm (plain iterations)."""
  ps, pt = softmax(s / tau, -1), softmax(t / tau, -1)
  W = np.abs(ps[:, None, :] - pt[None, :, :]).sum(-1)  # cdist(p_s, p_t, p=1)
  K = np.exp(-W / eps)
  for _ in range(n_iters):
    K = K / K.sum(1, keepdims=True)
    K = K / K.sum(0, keepdims=True)
  return scale * np.sum(K * W)


@pytest.mark.parametrize("tau,eps,n_iters", [(2.0, 0.1, 20), (1.0, 0.05, 7),
                                             (3.0, 0.5, 50)])
def test_sinkhorn_kd_matches_reference(tau, eps, n_iters):
  s, t = _logits((12, 10), 8), _logits((12, 10), 9)
  want = _sinkd_reference(s, t, tau, eps, n_iters)
  got = jax.jit(lambda s, t: sinkhorn_kd_loss(
      s, t, temperature=tau, epsilon=eps, num_iters=n_iters))(
          jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32))
  assert got.shape == ()
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_sinkhorn_kd_mask_and_grads():
  s, t = _logits((2, 5, 10), 10), _logits((2, 5, 10), 11)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], bool)
  want = _sinkd_reference(s[mask], t[mask])
  sj = np.where(mask[..., None], s, np.nan).astype(np.float32)
  tj = t.astype(np.float32)
  f = jax.jit(lambda s, t: sinkhorn_kd_loss(s, t, where=mask))
  np.testing.assert_allclose(f(sj, tj), want, rtol=1e-4)
  gs, gt = jax.grad(f, argnums=(0, 1))(sj, tj)
  assert np.all(np.isfinite(gs)) and np.all(np.isfinite(gt))
  assert np.all(gs[~mask] == 0)
  assert float(sinkhorn_kd_loss(sj, tj, where=np.zeros((2, 5), bool))) == 0.0


def _pld_reference(s, t, y, tau):
  from scipy.special import logsumexp
  rest = sorted([k for k in range(len(s)) if k != y], key=lambda k: -t[k])
  pi = [y] + rest
  w = softmax(t / tau)
  return sum(w[pi[k]] * (logsumexp(s[pi[k:]]) - s[pi[k]])
             for k in range(len(s)))


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_pld_matches_bruteforce(tau):
  s, t = _logits((6, 7), 12), _logits((6, 7), 13)
  y = np.random.default_rng(14).integers(0, 7, size=6)
  want = np.array([_pld_reference(s[i], t[i], y[i], tau) for i in range(6)])
  got = jax.jit(lambda s, t, y: pld_loss(s, t, y, temperature=tau))(
      jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32), y)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  g = jax.grad(lambda s: pld_loss(s, jnp.asarray(t, jnp.float32), y).sum())(
      jnp.asarray(s, jnp.float32))
  assert np.all(np.isfinite(g))
  with pytest.raises(ValueError, match="labels"):
    pld_loss(s, t, y[:3])
