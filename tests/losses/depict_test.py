"""Tests for jaxkit.losses.depict (DEPICT joint objective).

Oracles: the paper's formula in float64 numpy (per-layer squared error over
the layer size, KL(q || p~) per row) and the authors' Theano/Lasagne loss
written out in numpy: ``sum_l w_l * mean(squared_error)`` over the whole
batch with ``w = (1, 0.1, 0.1)`` and the categorical cross-entropy to the
soft targets (= KL + H(q)).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxkit.losses import depict as D
from jaxkit.losses.clustering import depict_targets


def _layers(seed=0, n=6):
  rng = np.random.RandomState(seed)
  shapes = [(n, 4, 4, 1), (n, 2, 2, 3), (n, 5)]  # input, conv, dense
  clean = [rng.randn(*s).astype(np.float32) for s in shapes]
  recon = [(c + 0.3 * rng.randn(*c.shape)).astype(np.float32) for c in clean]
  return clean, recon


def _probs(seed, n=6, c=3):
  z = np.random.RandomState(seed).randn(n, c) * 2
  return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_matches_paper_formula_and_authors_code():
  clean, recon = _layers()
  rec = jax.jit(D.depict_reconstruction_loss)
  want = sum(np.mean((c.astype(np.float64) - r) ** 2, axis=tuple(
      range(1, c.ndim))) for c, r in zip(clean, recon))
  np.testing.assert_allclose(rec(clean, recon, layer_weights=np.ones(3)),
                             want, rtol=1e-5)
  # Authors' build_MdA: loss0.mean() + 0.1 * (loss1.mean() + loss2.mean()).
  w = np.array([1.0, 0.1, 0.1])
  authors = sum(wl * np.mean((c.astype(np.float64) - r) ** 2)
                for wl, c, r in zip(w, clean, recon))
  np.testing.assert_allclose(np.mean(rec(clean, recon, layer_weights=w)),
                             authors, rtol=1e-5)
  # Joint loss: KL(q || p~) + gamma * reconstruction; the authors' CE
  # training loss equals the KL plus the entropy of q.
  p_noisy = _probs(1)
  q = np.asarray(depict_targets(_probs(2).astype(np.float32)), np.float64)
  lp32, q32 = np.log(p_noisy).astype(np.float32), q.astype(np.float32)
  loss = jax.jit(D.depict_loss)
  kl = np.sum(q * (np.log(q) - np.log(p_noisy)), 1)
  np.testing.assert_allclose(
      loss(lp32, q32, clean, recon, reconstruction_weight=0.5),
      kl + 0.5 * want, rtol=1e-5)
  ce = -np.sum(q * np.log(p_noisy), 1)
  np.testing.assert_allclose(
      loss(lp32, q32, clean, recon, reconstruction_weight=0.0),
      ce + np.sum(q * np.log(q), 1), rtol=1e-5)
  # bf16 activations accumulate in float32.
  got = rec([c.astype(jnp.bfloat16) for c in clean],
            [r.astype(jnp.bfloat16) for r in recon], layer_weights=np.ones(3))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=3e-2)


def test_gradients_targets_and_masks():
  clean, recon = _layers(3)
  lp = np.log(_probs(4)).astype(np.float32)
  q = np.asarray(depict_targets(_probs(5).astype(np.float32)))
  ones = np.ones(6, bool)

  @functools.partial(jax.jit, static_argnums=5)
  def f(lp, q, c0, r0, where, stop=False):
    per = D.depict_loss(lp, q, [c0] + clean[1:], [r0] + recon[1:],
                        where=where, stop_target_gradient=stop)
    return jnp.sum(per * jnp.arange(1.0, 7.0)), per

  grad = jax.jit(jax.grad(lambda *a: f(*a)[0], argnums=(0, 1, 2, 3)),
                 static_argnums=5)
  check_grads(lambda a, b, c: f(a, q, b, c, ones, False)[0],
              (lp, clean[0], recon[0]), order=1, modes=("rev",), eps=1e-2,
              atol=2e-2, rtol=2e-2)
  _, g_q, g_clean, g_rec = grad(lp, q, clean[0], recon[0], ones, False)
  assert np.all(g_q == 0)  # targets carry no gradient
  np.testing.assert_allclose(g_clean, -g_rec, rtol=1e-6)  # d/dz = -d/dzhat
  assert np.all(grad(lp, q, clean[0], recon[0], ones, True)[2] == 0)
  # Masked rows hold NaN garbage: the valid rows are unchanged, the masked
  # ones are 0, gradients are finite; all-masked gives 0.
  bad = lambda a: np.where(np.arange(6).reshape((6,) + (1,) * (a.ndim - 1))
                           < 4, a, np.nan).astype(np.float32)
  where = np.arange(6) < 4
  args = (bad(lp), bad(q), bad(clean[0]), bad(recon[0]))
  got = f(*args, where)[1]
  np.testing.assert_allclose(got[:4], f(lp, q, clean[0], recon[0], ones)[1][:4],
                             rtol=1e-6)
  np.testing.assert_array_equal(got[4:], 0.0)
  for g in grad(*args, where, False):
    assert np.all(np.isfinite(g))
  none = np.zeros(6, bool)
  assert float(f(lp, q, clean[0], recon[0], none)[0]) == 0.0
  for g in grad(lp, q, clean[0], recon[0], none, False):
    assert np.all(np.isfinite(g))


def test_bad_inputs():
  clean, recon = _layers()
  lp = np.log(_probs(1)).astype(np.float32)
  with pytest.raises(ValueError, match="same number of layers"):
    D.depict_reconstruction_loss(clean, recon[:2])
  with pytest.raises(ValueError, match="at least one"):
    D.depict_reconstruction_loss([], [])
  with pytest.raises(TypeError, match="list/tuple"):
    D.depict_reconstruction_loss(clean[0], recon[0])
  with pytest.raises(ValueError, match="same shape"):
    D.depict_reconstruction_loss(clean, [recon[0], recon[2], recon[1]])
  with pytest.raises(ValueError, match="batch size"):
    D.depict_reconstruction_loss([clean[0], clean[2][:3]],
                                 [recon[0], recon[2][:3]])
  with pytest.raises(ValueError, match="layer_weights"):
    D.depict_reconstruction_loss(clean, recon, layer_weights=(1.0,))
  with pytest.raises(ValueError, match="layer_weights"):
    D.depict_reconstruction_loss(clean, recon, layer_weights=(1.0, -1.0, 1.0))
  with pytest.raises(TypeError, match="clean_activations"):
    D.depict_reconstruction_loss([np.zeros((6, 2), np.int32)],
                                 [np.zeros((6, 2), np.int32)])
  with pytest.raises(ValueError, match="cluster_targets"):
    D.depict_loss(lp, lp[:, :2], clean, recon)
  with pytest.raises(ValueError, match="batch size"):
    D.depict_loss(lp[:4], np.exp(lp[:4]), clean, recon)
  with pytest.raises(ValueError, match="reconstruction_weight"):
    D.depict_loss(lp, np.exp(lp), clean, recon, reconstruction_weight=-1.0)
