"""Tests for jaxkit.losses.prototype_margins.

Oracles: a float64 numpy cross-entropy over [s_1 + shift, ..., s_N + shift, 0]
written from the formula, hand cases, optax's cross-entropy (zero margins and
ranges = softmax CE with an extra zero logit), and the large-scale hinge
limit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxkit.losses import classification as C
from jaxkit.losses import prototype_margins as P

_loss = jax.jit(P.adaptive_margin_nota_loss)
_pred = jax.jit(P.nota_predictions)


def _np_loss(z, y, r, m, kappa):
  z = z.astype(np.float64)
  n = z.shape[-1]
  r, m = np.broadcast_to(r, (n,)), np.broadcast_to(m, (n,))
  out = []
  for zi, yi in zip(z, y):
    s = zi + r
    if yi == n:
      u = np.append(kappa * (s + m), 0.0)
    else:
      u = np.append(kappa * s, 0.0)
      u[yi] -= kappa * m[yi]
    out.append(np.log(np.sum(np.exp(u - u.max()))) + u.max() - u[yi])
  return np.array(out)


def _hinge(z, y, r, m):
  n = z.shape[-1]
  r, m = np.broadcast_to(r, (n,)), np.broadcast_to(m, (n,))
  s = z + r
  out = []
  for si, yi in zip(s, y):
    if yi == n:
      out.append(max(0.0, np.max(si + m)))
    else:
      other = max(0.0, np.max(np.delete(si, yi)))
      out.append(max(0.0, other - si[yi] + m[yi]))
  return np.array(out)


def test_matches_numpy_hand_case_and_limits():
  rng = np.random.RandomState(0)
  z = (rng.randn(8, 4) * 2).astype(np.float32)
  y = np.array([0, 1, 2, 3, 4, 4, 1, 4])
  r = rng.rand(4).astype(np.float32)
  m = (rng.rand(4) * 0.5).astype(np.float32)
  got = _loss(z, y, ranges=r, margin=m, scale=2.0)
  np.testing.assert_allclose(got, _np_loss(z, y, r, m, 2.0), rtol=1e-5)
  # Hand case: s = (1, -1); class 0 with margin 0.5 -> log(e^.5 + e^-1 + 1)
  # - 0.5; NOTA: log(1 + e^-1.5 + e^-2.5).
  hand = _loss(np.array([[-1.0, -3.0], [-4.0, -5.0]]), np.array([0, 2]),
               ranges=2.0, margin=0.5, scale=1.0)
  np.testing.assert_allclose(
      hand, [np.log(np.exp(0.5) + np.exp(-1) + 1) - 0.5,
             np.log(1 + np.exp(-1.5) + np.exp(-2.5))], rtol=1e-6)
  # No ranges, no margins: softmax CE with an extra zero "NOTA" logit.
  ext = np.concatenate([z, np.zeros((8, 1), np.float32)], -1)
  np.testing.assert_allclose(
      _loss(z, y, ranges=0.0, margin=0.0, scale=1.0),
      optax.softmax_cross_entropy_with_integer_labels(ext, y), rtol=1e-5)
  # Large scale: loss / scale -> the boundary-with-margin hinge.
  np.testing.assert_allclose(_loss(z, y, ranges=r, margin=m, scale=1e4) / 1e4,
                             _hinge(z, y, r, m), atol=1e-3)
  # Predictions: NOTA iff outside every range.
  np.testing.assert_array_equal(
      _pred(np.array([[-1.0, -3.0], [-4.0, -5.0], [-3.0, 0.5]]), ranges=2.0),
      [0, 2, 1])
  s = z + r
  want = np.where(s.max(-1) > 0, s.argmax(-1), 4)
  np.testing.assert_array_equal(_pred(z, ranges=r), want)


def test_masks_gradients_extremes_with_gaussian_prototypes():
  rng = np.random.RandomState(1)
  support = rng.randn(4, 3, 2).astype(np.float32)
  queries = rng.randn(6, 2).astype(np.float32)
  y = np.array([0, 1, 3, 4, 4, 2])
  cmask = np.array([[True, True, False, True]])       # a 3-way episode
  rmask = np.ones((6, 1), bool)
  rmask[5] = False                                    # a padded query

  @jax.jit
  def grads(queries, support, ranges, where):
    def f(q, s, r):
      logits = C.gaussian_prototype_logits(q, s)
      return jnp.sum(P.adaptive_margin_nota_loss(
          logits, y, ranges=r, margin=0.3, where=where))
    return jax.grad(f, argnums=(0, 1, 2))(queries, support, ranges)

  ranges = np.full(4, 2.0, np.float32)
  for g in grads(queries, support, ranges, cmask & rmask):
    assert np.all(np.isfinite(g))
  # Class mask == dropping the class; nan in masked logits is harmless;
  # a query of a masked class, or a masked query row, gives 0.
  z = rng.randn(6, 4).astype(np.float32)
  zj = z.copy()
  zj[:, 2] = np.nan
  got = _loss(zj, y, ranges=ranges, margin=0.3, where=cmask & rmask)
  keep = [0, 1, 3]
  y_sub = np.array([0, 1, 2, 3, 3, 2])   # class 3 -> 2, NOTA 4 -> 3
  want = _np_loss(z[:, keep], y_sub, ranges[keep], 0.3, 1.0)
  np.testing.assert_allclose(got[:5], want[:5], rtol=1e-5)
  assert got[5] == 0.0
  got = _loss(zj, np.array([2, 1, 3, 4, 4, 2]), ranges=ranges, margin=0.3,
              where=cmask)
  assert got[0] == 0.0 and got[5] == 0.0
  g = jax.jit(jax.grad(lambda z: jnp.sum(P.adaptive_margin_nota_loss(
      z, y, ranges=ranges, margin=0.3, where=cmask & rmask))))(zj)
  assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[:, 2] == 0)
  # |z| = 1e4 in float32 and bf16.
  gl = jax.jit(jax.value_and_grad(lambda z: jnp.sum(
      P.adaptive_margin_nota_loss(z, y, ranges=ranges, margin=0.3))))
  for dt in (jnp.float32, jnp.bfloat16):
    v, g = gl(jnp.asarray(1e4 * np.sign(z), dt))
    assert np.isfinite(v) and np.all(np.isfinite(g))
  # Sharded == single device.
  mesh = jax.make_mesh((2,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:2])
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  np.testing.assert_allclose(
      _loss(jax.device_put(z, sh), jax.device_put(y, sh), ranges=ranges,
            margin=0.3), _np_loss(z, y, ranges, 0.3, 1.0), rtol=1e-5)


def test_bad_inputs():
  z = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match="labels"):
    P.adaptive_margin_nota_loss(z, np.array([0, 4]), ranges=1.0)
  with pytest.raises(ValueError, match="labels"):
    P.adaptive_margin_nota_loss(z, np.array([0, -1]), ranges=1.0)
  with pytest.raises(ValueError, match="labels"):
    P.adaptive_margin_nota_loss(z, np.array([0]), ranges=1.0)
  with pytest.raises(TypeError, match="labels"):
    P.adaptive_margin_nota_loss(z, np.array([0.0, 1.0]), ranges=1.0)
  with pytest.raises(ValueError, match="ranges"):
    P.adaptive_margin_nota_loss(z, np.array([0, 3]), ranges=np.ones(2))
  with pytest.raises(ValueError, match="margin"):
    P.adaptive_margin_nota_loss(z, np.array([0, 3]), ranges=1.0, margin=-0.1)
  with pytest.raises(ValueError, match="margin"):
    P.adaptive_margin_nota_loss(z, np.array([0, 3]), ranges=1.0,
                                margin=np.array([0.1, -0.1, 0.0]))
  with pytest.raises(ValueError, match="scale"):
    P.adaptive_margin_nota_loss(z, np.array([0, 3]), ranges=1.0, scale=0.0)
  with pytest.raises(TypeError, match="logits"):
    P.nota_predictions(z.astype(np.int32), ranges=1.0)
  with pytest.raises(ValueError, match="where"):
    P.nota_predictions(z, ranges=1.0, where=np.ones(3, bool))
