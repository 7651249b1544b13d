"""Tests for jaxkit.sparsity.pst (PST, seed_002 #10).

Oracles: numpy transcriptions of the authors' ``SparseLinear.forward`` (score,
stable-argsort pruning of ``int(numel · sparsity)`` entries, masked updated
weight), hand-derived straight-through gradients of ``sum(G ⊙ Ŵ)`` with
respect to every trainable factor, and a loop transcription of
``schedule_sparsity_ratio``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import sparsity as sp
from jaxkit.sparsity import pst

D_IN, D_OUT, R, K = 6, 5, 2, 3


def _params(seed=0):
  rng = np.random.RandomState(seed)
  f = lambda *s: rng.randn(*s).astype(np.float32)  # noqa: E731
  w = f(D_IN, D_OUT)
  p = pst.PstParams(u=0.3 * f(D_IN, R), v=0.3 * f(R, D_OUT),
                    a=0.5 * f(D_IN, K), b=0.5 * f(K, D_OUT),
                    r=0.2 * f(D_IN), c=0.2 * f(D_OUT))
  return w, p


def np_keep(scores, sparsity):
  flat = np.asarray(scores, np.float64).reshape(-1)
  n_prune = int(flat.size * sparsity + 1e-6)
  order = np.argsort(-flat, kind="stable")
  keep = np.zeros(flat.size, bool)
  keep[order[:flat.size - n_prune]] = True
  return keep.reshape(np.shape(scores))


def np_forward(w, p, s, beta, a1, a2):
  w2 = w.astype(np.float64) + beta * p.u @ p.v
  score = (np.abs(w2) + a1 * p.a @ p.b
           + a2 * (p.r[:, None] + p.c[None, :]))
  m = np_keep(score, s)
  return w2, score, m, w2 * m


def test_importance_mask_and_weight_match_numpy():
  w, p = _params()
  beta, a1, a2, s = 0.7, 1.5, 0.5, 0.6
  w2, score, m, out = np_forward(w, p, s, beta, a1, a2)
  np.testing.assert_allclose(
      sp.pst_importance(w2.astype(np.float32), p.a, p.b, p.r, p.c, alpha1=a1,
                        alpha2=a2), score, rtol=1e-5, atol=1e-6)
  f = jax.jit(lambda w, p, s: sp.pst_weight(w, p, sparsity=s, beta=beta,
                                            alpha1=a1, alpha2=a2))
  got = f(w, p, s)  # traced sparsity
  np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)
  assert int(np.sum(np.asarray(got) == 0)) == int(w.size * s)
  # At init the learned scores are zero: plain global magnitude pruning.
  p0 = sp.pst_init(w, rank=R, mask_rank=K, key=jax.random.key(1))
  np.testing.assert_array_equal(sp.pst_weight(w, p0, sparsity=0.5),
                                w * np_keep(np.abs(w), 0.5))


def test_topk_mask_ste_ties_values_and_identity_gradient():
  s = np.array([[1.0, 3.0, 1.0], [3.0, 0.0, 1.0]], np.float32)  # ties
  f = jax.jit(lambda s, q: sp.topk_mask_ste(s, sparsity=q))
  for sparsity in (0.0, 0.3, 0.5, 0.99):
    got = f(s, sparsity)
    np.testing.assert_array_equal(got, np_keep(s, sparsity))
    assert set(np.unique(np.asarray(got))) <= {0.0, 1.0}
  big = np.array([1e8, -3e7, 5.0], np.float32)  # STE adds an exact zero
  np.testing.assert_array_equal(sp.topk_mask_ste(big, sparsity=0.4),
                                [1.0, 0.0, 1.0])
  g = np.arange(6, dtype=np.float32).reshape(2, 3)
  grad = jax.grad(lambda s: jnp.sum(sp.topk_mask_ste(s, sparsity=0.5) * g))(s)
  np.testing.assert_array_equal(grad, g)


def test_gradients_match_hand_derived_ste():
  w, p = _params(2)
  beta, a1, a2, s = 0.8, 1.2, 0.7, 0.4
  G = np.random.RandomState(3).randn(D_IN, D_OUT)
  w2, _, m, _ = np_forward(w, p, s, beta, a1, a2)
  d_s = G * w2                                   # dL/dS through the STE
  d_w2 = G * m + d_s * np.sign(w2)               # mask path + |W'| in S
  want = dict(u=beta * d_w2 @ p.v.T, v=beta * p.u.T @ d_w2,
              a=a1 * d_s @ p.b.T, b=a1 * p.a.T @ d_s,
              r=a2 * d_s.sum(1), c=a2 * d_s.sum(0))
  loss = lambda p, w: jnp.sum(  # noqa: E731
      sp.pst_weight(w, p, sparsity=s, beta=beta, alpha1=a1, alpha2=a2) * G)
  grads, gw = jax.jit(jax.grad(loss, argnums=(0, 1)))(p, w)
  for name, val in want.items():
    np.testing.assert_allclose(getattr(grads, name), val, rtol=1e-4,
                               atol=1e-5, err_msg=name)
  np.testing.assert_array_equal(gw, 0.0)  # the pretrained kernel is frozen
  # bf16 inputs: float32 result, finite gradients.
  pb = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), p)
  out = sp.pst_weight(jnp.asarray(w, jnp.bfloat16), pb, sparsity=0.5)
  assert out.dtype == jnp.float32
  gb = jax.jit(jax.grad(lambda p: jnp.sum(sp.pst_weight(w, p, sparsity=0.5))))(
      pb)
  assert all(np.all(np.isfinite(np.asarray(x, np.float32)))
             for x in jax.tree.leaves(gb))


def test_training_keeps_exact_sparsity_and_fits():
  """A few SGD steps on y = x @ W_target: loss falls, sparsity stays exact."""
  rng = np.random.RandomState(1)
  w = rng.randn(D_IN, D_OUT).astype(np.float32)
  target = w + 0.5 * rng.randn(D_IN, D_OUT).astype(np.float32)
  x = rng.randn(32, D_IN).astype(np.float32)
  p0 = sp.pst_init(w, rank=R, mask_rank=K, key=jax.random.key(1))

  def loss(p, s):
    return jnp.mean((x @ sp.pst_weight(w, p, sparsity=s) - x @ target) ** 2)

  @jax.jit
  def train(p):
    def step(p, t):
      s = sp.pst_sparsity_schedule(t, 60, final_sparsity=0.5)
      g = jax.grad(loss)(p, s)
      return jax.tree.map(lambda a, b: a - 0.005 * b, p, g), None
    return jax.lax.scan(step, p, jnp.arange(60))[0]

  p1 = train(p0)
  # Magnitude pruning of W at init vs. after PST (ratio ~0.5 here).
  assert float(loss(p1, 0.5)) < 0.75 * float(loss(p0, 0.5))
  assert int(jnp.sum(sp.pst_weight(w, p1, sparsity=0.5) == 0)) == 15


def np_schedule(step, total, iw, fw, si, sf):
  if step <= iw * total:
    return si
  if step > total - fw * total:
    return sf
  mul = 1 - (step - iw * total) / (total - (fw + iw) * total)
  return sf + (si - sf) * mul ** 3


def test_schedule_matches_authors_piecewise_formula():
  for total, iw, fw, si, sf in ((10, 0.1, 0.3, 0.0, 0.9),
                                (37, 0.2, 0.1, 0.1, 0.5)):
    f = jax.jit(lambda t: sp.pst_sparsity_schedule(
        t, total, final_sparsity=sf, initial_sparsity=si, initial_warmup=iw,
        final_warmup=fw))
    got = [float(f(t)) for t in range(total + 1)]
    want = [np_schedule(t, total, iw, fw, si, sf) for t in range(total + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bad_inputs():
  w, p = _params()
  with pytest.raises(ValueError, match="sparsity"):
    sp.pst_weight(w, p, sparsity=1.0)
  with pytest.raises(ValueError, match="`r`"):
    sp.pst_importance(w, p.a, p.b, p.r[:2], p.c)
  with pytest.raises(ValueError, match="`c`"):
    sp.pst_importance(w, p.a, p.b, p.r, p.r)
  with pytest.raises(ValueError, match="`a` @ `b`"):
    sp.pst_importance(w, p.a, p.b.T, p.r, p.c)
  with pytest.raises(ValueError, match="params.u"):
    sp.pst_weight(w.T, p, sparsity=0.5)
  with pytest.raises(TypeError, match="PstParams"):
    sp.pst_weight(w, tuple(p), sparsity=0.5)
  with pytest.raises(ValueError, match="rank"):
    sp.pst_init(w[0], key=jax.random.key(0))
  with pytest.raises(TypeError, match="mask_rank"):
    sp.pst_init(w, mask_rank=2.0, key=jax.random.key(0))
  with pytest.raises(ValueError, match="scores"):
    sp.topk_mask_ste(jnp.float32(1.0), sparsity=0.5)
  with pytest.raises(TypeError, match="scores"):
    sp.topk_mask_ste(jnp.arange(4), sparsity=0.5)
  with pytest.raises(ValueError, match="warmup"):
    sp.pst_sparsity_schedule(0, 10, initial_warmup=0.6, final_warmup=0.4)
  with pytest.raises(ValueError, match="final_sparsity"):
    sp.pst_sparsity_schedule(0, 10, final_sparsity=1.2)
