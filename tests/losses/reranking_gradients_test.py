"""Tests for jaxkit.losses.reranking_gradients.

Oracles: numpy weights written from the chain rule (sigmoid / softmax), the
gradients of the existing SFT and CL losses (yes_no_pointwise_loss summed over
the list, listwise_contrastive_loss) for the matching weight/direction
combinations, and the CL identity W_0 = sum_{m>=1} W_m.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.losses import ranking as R
from jaxkit.losses import reranking_gradients as G


def _np_weights(zy, zn, objective, tau):
  zy = zy.astype(np.float64)
  if objective == "sft":
    sig = 1.0 / (1.0 + np.exp(-(zy - zn)))
    w = sig.copy()
    w[..., 0] = 1.0 - sig[..., 0]
    return w
  e = np.exp(zy / tau - (zy / tau).max(-1, keepdims=True))
  p = e / e.sum(-1, keepdims=True)
  w = p.copy()
  w[..., 0] = 1.0 - p[..., 0]
  return w / tau


@jax.jit
def _grads(zy, zn, tau, mask):
  """Gradients (w.r.t. yes / no logits) of all four combinations."""
  out = {}
  for w in ("sft", "cl"):
    for d in ("sft", "cl"):
      f = lambda a, b, w=w, d=d: jnp.sum(G.unified_reranking_loss(
          a, b, weight=w, direction=d, temperature=tau, where=mask))
      out[w, d] = (f(zy, zn), jax.grad(f, argnums=(0, 1))(zy, zn))
  return out


def _ref_sft(zy, zn, mask):
  labels = np.zeros(zy.shape, np.float32)
  labels[:, 0] = 1.0
  return jnp.sum(R.yes_no_pointwise_loss(zy, zn, labels, where=mask))


def _ref_cl(zy, tau, mask):
  return jnp.sum(R.listwise_contrastive_loss(zy, temperature=tau,
                                             where=mask))


@jax.jit
def _ref_grads(zy, zn, tau, mask):
  return {
      "sft": (_ref_sft(zy, zn, mask),
              jax.grad(_ref_sft, argnums=(0, 1))(zy, zn, mask)),
      "cl": (_ref_cl(zy, tau, mask), jax.grad(_ref_cl)(zy, tau, mask)),
  }


def test_weights_match_numpy_and_cl_identity():
  rng = np.random.RandomState(0)
  zy, zn = rng.randn(2, 4, 5).astype(np.float32) * 2
  fn = jax.jit(G.reranking_gradient_weights, static_argnames="objective")
  for obj in ("sft", "cl"):
    np.testing.assert_allclose(fn(zy, zn, objective=obj, temperature=0.5),
                               _np_weights(zy, zn, obj, 0.5), rtol=1e-5,
                               atol=1e-7)
  w = fn(zy, None, objective="cl", temperature=0.5)
  np.testing.assert_allclose(w[:, 0], np.sum(w[:, 1:], -1), rtol=1e-5)


def test_matching_combinations_are_the_original_losses():
  rng = np.random.RandomState(1)
  zy, zn = rng.randn(2, 4, 5).astype(np.float32) * 2
  mask = np.ones((4, 5), bool)
  got, ref = _grads(zy, zn, 0.5, mask), _ref_grads(zy, zn, 0.5, mask)
  # (sft, sft): value and gradients of the summed pointwise SFT loss.
  val, (gy, gn) = got["sft", "sft"]
  np.testing.assert_allclose(val, ref["sft"][0], rtol=1e-5)
  np.testing.assert_allclose(gy, ref["sft"][1][0], atol=1e-6)
  np.testing.assert_allclose(gn, ref["sft"][1][1], atol=1e-6)
  # (cl, cl): value and gradient of listwise InfoNCE on the yes logits.
  val, (gy, gn) = got["cl", "cl"]
  np.testing.assert_allclose(val, ref["cl"][0], rtol=1e-5)
  np.testing.assert_allclose(gy, ref["cl"][1], atol=1e-6)
  assert np.all(np.asarray(gn) == 0)
  # Mixed combinations: -W * eps along the other objective's score.
  eps = np.where(np.arange(5) == 0, 1.0, -1.0)
  for w, d in (("sft", "cl"), ("cl", "sft")):
    val, (gy, gn) = got[w, d]
    want = -_np_weights(zy, zn, w, 0.5) * eps
    np.testing.assert_allclose(val, ref[w][0], rtol=1e-5)
    np.testing.assert_allclose(gy, want, atol=1e-6)
    np.testing.assert_allclose(gn, -want if d == "sft" else 0.0, atol=1e-6)


def test_masks_extremes_bf16_vmap():
  rng = np.random.RandomState(2)
  zy, zn = rng.randn(2, 4, 5).astype(np.float32)
  mask = np.ones((4, 5), bool)
  mask[:, 3:] = False          # padded candidates
  mask[3, 0] = False           # a list whose relevant document is padding
  zyj, znj = zy.copy(), zn.copy()
  zyj[~mask], znj[~mask] = np.nan, np.nan
  got = _grads(zyj, znj, 0.5, mask)
  sub = np.ones((3, 3), bool)
  want = _grads(zy[:3, :3], zn[:3, :3], 0.5, sub)
  for k, (val, (gy, gn)) in got.items():
    np.testing.assert_allclose(val, want[k][0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gy)[:3, :3], want[k][1][0],
                               atol=1e-6)
    for g in (gy, gn):
      assert np.all(np.isfinite(g))
      assert np.all(np.asarray(g)[~mask] == 0) and np.all(
          np.asarray(g)[3] == 0)
  w = jax.jit(G.reranking_gradient_weights, static_argnames="objective")(
      zyj, znj, objective="sft", where=mask)
  assert np.all(np.asarray(w)[~mask] == 0) and np.all(np.asarray(w)[3] == 0)
  # |z| = 1e4 in float32 and bf16.
  for dt in (jnp.float32, jnp.bfloat16):
    big = jnp.asarray(1e4 * np.sign(zy), dt), jnp.asarray(-1e4 * np.sign(zn),
                                                          dt)
    for val, grads in _grads(*big, 0.5, np.ones((4, 5), bool)).values():
      assert val.dtype == jnp.float32 and np.isfinite(val)
      assert all(np.all(np.isfinite(g)) for g in grads)
  v = jax.jit(jax.vmap(lambda a, b: G.unified_reranking_loss(
      a, b, weight="cl", direction="sft")))(zy.reshape(2, 2, 5),
                                            zn.reshape(2, 2, 5))
  np.testing.assert_allclose(
      v.reshape(-1), jax.jit(R.listwise_contrastive_loss)(zy), rtol=1e-5)


def test_bad_inputs():
  z = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match="objective"):
    G.reranking_gradient_weights(z, z, objective="dpo")
  with pytest.raises(ValueError, match="direction"):
    G.unified_reranking_loss(z, z, direction="x")
  with pytest.raises(ValueError, match="logit_no"):
    G.unified_reranking_loss(z, weight="cl", direction="sft")
  with pytest.raises(ValueError, match="logit_no"):
    G.reranking_gradient_weights(z, z[:, :2], objective="sft")
  with pytest.raises(ValueError, match="logit_yes"):
    G.reranking_gradient_weights(z[:, :1], objective="cl")
  with pytest.raises(ValueError, match="temperature"):
    G.reranking_gradient_weights(z, objective="cl", temperature=0.0)
  with pytest.raises(TypeError, match="logit_yes"):
    G.unified_reranking_loss(z.astype(np.int32), z)
  with pytest.raises(ValueError, match="where"):
    G.unified_reranking_loss(z, z, where=np.ones(3, bool))
