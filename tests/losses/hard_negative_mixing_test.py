"""Tests for jaxkit.losses.hard_negative_mixing.

Oracles: the MoCHi construction checked geometrically in numpy (every synthetic
negative is a unit vector in the convex cone of two of the query's top-k
negatives, or of the query and one of them with weight <= 1/2), hand cases,
and a float64 numpy InfoNCE written from the formula.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.losses import hard_negative_mixing as H
from jaxkit.losses import metric as M

# Jitted entry points: one compile per shape instead of one per eager op.
_mix = jax.jit(H.mix_hard_negatives,
               static_argnames=("num_hard", "num_mix", "num_query_mix"))
_loss = jax.jit(H.info_nce_mixed_negatives_loss)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _cone_coeffs(h, a, b):
  """Least-squares (c_a, c_b) with h = c_a a + c_b b, and the residual."""
  basis = np.stack([a, b], 1)
  c, *_ = np.linalg.lstsq(basis, h, rcond=None)
  return c, np.linalg.norm(basis @ c - h)


def _check_mixes(q, neg_rows, mixed, num_hard, num_mix, where_row=None):
  """Each mixed row lies in the cone of allowed pairs (numpy oracle)."""
  qn, nn = _unit(q.astype(np.float64)), _unit(neg_rows.astype(np.float64))
  scores = nn @ qn
  if where_row is not None:
    scores = np.where(where_row, scores, -np.inf)
  top = np.argsort(-scores)[:num_hard]
  if where_row is not None:
    top = [t for t in top if where_row[t]]
  mixed = np.asarray(mixed, np.float64)
  np.testing.assert_allclose(np.linalg.norm(mixed, axis=-1), 1.0, atol=1e-5)
  for s, h in enumerate(mixed):
    ok = False
    if s < num_mix:
      for a, b in itertools.product(top, top):
        if a == b:
          ok |= np.linalg.norm(h - nn[a]) < 1e-5
          continue
        c, res = _cone_coeffs(h, nn[a], nn[b])
        ok |= res < 1e-5 and np.all(c > -1e-6)
    else:
      for a in top:
        c, res = _cone_coeffs(h, qn, nn[a])
        ok |= (res < 1e-5 and np.all(c > -1e-6)
               and c[0] <= 0.5 * c.sum() + 1e-6)
    assert ok, f"synthetic negative {s} is not a MoCHi mix of the top-k"


@pytest.mark.parametrize("shared", [False, True])
def test_mix_is_moChi_mix_of_hardest(shared):
  rng = np.random.RandomState(0)
  q = rng.randn(3, 5).astype(np.float32)
  neg = rng.randn(7, 5) if shared else rng.randn(3, 6, 5)
  neg = (neg * 2.0).astype(np.float32)   # unnormalised on purpose
  kw = dict(num_hard=2, num_mix=6, num_query_mix=4)
  mixed, valid = _mix(jax.random.key(3), q, neg, **kw)
  assert mixed.shape == (3, 10, 5) and np.all(valid)
  for i in range(3):
    _check_mixes(q[i], neg if shared else neg[i], mixed[i], 2, 6)
  again, _ = _mix(jax.random.key(3), q, neg, **kw)
  np.testing.assert_array_equal(again, mixed)
  other, _ = _mix(jax.random.key(4), q, neg, **kw)
  assert not np.allclose(other, mixed)


def test_mix_hand_cases_and_query_weight_distribution():
  q = np.array([[1.0, 0.0, 0.0]], np.float32)
  # The hardest negative (0, 1, 0) is orthogonal to the query.
  neg = np.array([[[0.0, 2.0, 0.0], [-1.0, 0.0, 0.1]]], np.float32)
  kw = dict(num_hard=1, num_mix=3, num_query_mix=400)
  mixed, _ = _mix(jax.random.key(1), q, neg, max_query_weight=0.5, **kw)
  h = np.asarray(mixed[0], np.float64)
  # num_hard = 1: every pair mix is the hardest negative itself.
  np.testing.assert_allclose(h[:3], np.tile([0, 1, 0], (3, 1)), atol=1e-6)
  # Query mixes: beta q + (1 - beta) n with beta ~ U(0, 1/2).
  beta = h[3:, 0] / (h[3:, 0] + h[3:, 1])
  assert np.all(h[:, 2] == 0) and beta.min() >= 0 and beta.max() <= 0.5
  assert abs(beta.mean() - 0.25) < 0.03
  # max_query_weight = 0 gives the negative back.
  mixed, _ = _mix(jax.random.key(1), q, neg, max_query_weight=0.0, **kw)
  np.testing.assert_allclose(mixed[0], np.tile([0, 1, 0], (403, 1)),
                             atol=1e-6)


def test_mix_masks():
  rng = np.random.RandomState(1)
  q = rng.randn(3, 4).astype(np.float32)
  neg = rng.randn(3, 5, 4).astype(np.float32)
  nw = np.ones((3, 5), bool)
  # Hide each query's two hardest negatives (and poison them with nan).
  scores = np.einsum("bd,bmd->bm", _unit(q), _unit(neg))
  hardest = np.argsort(-scores, axis=1)[:, :2]
  for i in range(3):
    nw[i, hardest[i]] = False
    neg[i, hardest[i]] = np.nan
  nw[2] = False                       # a query with no valid negative
  qw = np.array([True, False, True])  # a masked query
  q[1] = np.nan
  mixed, valid = _mix(jax.random.key(0), q, neg, num_hard=3, num_mix=4,
                      num_query_mix=2, negative_where=nw, where=qw)
  assert np.all(np.isfinite(mixed))
  np.testing.assert_array_equal(valid, [[True] * 6, [False] * 6, [False] * 6])
  assert np.all(np.asarray(mixed)[1:] == 0)
  _check_mixes(q[0], neg[0], mixed[0], 3, 4, where_row=nw[0])


def test_mix_bad_inputs():
  q = np.zeros((2, 3), np.float32)
  n = np.ones((2, 4, 3), np.float32)
  k = jax.random.key(0)
  with pytest.raises(ValueError, match="num_hard"):
    H.mix_hard_negatives(k, q, n, num_hard=5, num_mix=1)
  with pytest.raises(ValueError, match="num_mix"):
    H.mix_hard_negatives(k, q, n, num_hard=2, num_mix=0)
  with pytest.raises(ValueError, match="max_query_weight"):
    H.mix_hard_negatives(k, q, n, num_hard=2, num_mix=1,
                         max_query_weight=0.6)
  with pytest.raises(TypeError, match="num_mix"):
    H.mix_hard_negatives(k, q, n, num_hard=2, num_mix=1.0)
  with pytest.raises(TypeError, match="key"):
    H.mix_hard_negatives(np.zeros(3), q, n, num_hard=2, num_mix=1)
  with pytest.raises(ValueError, match="negatives"):
    H.mix_hard_negatives(k, q, n[:1], num_hard=2, num_mix=1)
  with pytest.raises(ValueError, match="negative_where"):
    H.mix_hard_negatives(k, q, n, num_hard=2, num_mix=1,
                         negative_where=np.ones(4, bool))


def _np_loss(q, p, n, h, hmask, tau, gamma):
  q, p = _unit(q.astype(np.float64)), _unit(p.astype(np.float64))
  s = q @ p.T / tau
  z = np.exp(s).sum(1)
  if n is not None:
    nn = _unit(n.reshape(-1, n.shape[-1]).astype(np.float64))
    z = z + np.exp(q @ nn.T / tau).sum(1)
  if h is not None:
    hn = _unit(h.astype(np.float64))
    z = z + (hmask * np.exp(np.einsum("bd,bsd->bs", q, hn) / tau)).sum(1)
  prob = np.exp(np.diag(s)) / z
  return -((1.0 - prob) ** gamma) * np.log(prob)


def test_loss_matches_numpy_and_reduces_to_base():
  rng = np.random.RandomState(2)
  q, p = rng.randn(2, 5, 4).astype(np.float32)
  n = rng.randn(5, 2, 4).astype(np.float32)
  h = rng.randn(5, 3, 4).astype(np.float32)
  hm = rng.rand(5, 3) > 0.3
  for gamma in (0.0, 2.0):
    got = _loss(q, p, n, h, mixed_where=hm, temperature=0.3, gamma=gamma)
    np.testing.assert_allclose(got, _np_loss(q, p, n, h, hm, 0.3, gamma),
                               rtol=1e-5, atol=1e-6)
  # Without synthetic negatives, or with all of them masked: the base loss.
  base = jax.jit(M.info_nce_hard_negatives_loss)(q, p, n, temperature=0.3,
                                                 gamma=2.0)
  np.testing.assert_allclose(
      _loss(q, p, n, h, mixed_where=hm & False, temperature=0.3, gamma=2.0),
      base, rtol=1e-6)
  np.testing.assert_allclose(_loss(q, p, n, temperature=0.3, gamma=2.0),
                             base, rtol=1e-6)


def test_loss_masks_gradients_extremes_and_end_to_end():
  rng = np.random.RandomState(3)
  q, p = rng.randn(2, 6, 4).astype(np.float32)
  n = rng.randn(6, 2, 4).astype(np.float32)
  keep = np.array([1, 1, 0, 1, 1, 1], bool)

  @jax.jit
  @functools.partial(jax.value_and_grad, has_aux=True)
  def train(q, p, n, key, tau):
    # End to end: mixing inside the jitted, differentiated training loss.
    h, v = H.mix_hard_negatives(key, q, n, num_hard=2, num_mix=3,
                                num_query_mix=1, where=keep)
    loss = H.info_nce_mixed_negatives_loss(
        q, p, n, h, mixed_where=v, temperature=tau, gamma=0.5, where=keep)
    return jnp.mean(loss), (loss, h, v)

  qj, pj, nj = q.copy(), p.copy(), n.copy()
  qj[2], pj[2], nj[2] = np.nan, np.nan, np.nan
  (_, (got, h, v)), g = train(qj, pj, nj, jax.random.key(0), 0.1)
  want = _np_loss(q[keep], p[keep], n[keep], np.asarray(h)[keep],
                  np.asarray(v)[keep], 0.1, 0.5)
  np.testing.assert_allclose(np.asarray(got)[keep], want, rtol=1e-5)
  assert got[2] == 0.0 and not np.any(np.asarray(v)[2])
  assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[2] == 0)
  # Extreme logits: |s/τ| up to 1e4 (τ = 1e-4) -> finite value and gradient.
  (val, _), g = train(q, p, n, jax.random.key(0), 1e-4)
  assert np.isfinite(val) and np.all(np.isfinite(g))
  bf = _loss(jnp.asarray(q, jnp.bfloat16), jnp.asarray(p, jnp.bfloat16),
             mixed_negatives=jnp.asarray(h, jnp.bfloat16), temperature=1e-4)
  assert bf.dtype == jnp.float32 and np.all(np.isfinite(bf))


def test_loss_sharded_and_bad_inputs():
  rng = np.random.RandomState(4)
  q, p = rng.randn(2, 8, 4).astype(np.float32)
  h = rng.randn(8, 2, 4).astype(np.float32)
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  np.testing.assert_allclose(
      _loss(jax.device_put(q, sh), jax.device_put(p, sh),
            mixed_negatives=jax.device_put(h, sh), temperature=0.2),
      _np_loss(q, p, None, h, np.ones((8, 2)), 0.2, 0.0), rtol=1e-5)
  with pytest.raises(ValueError, match="mixed_negatives"):
    H.info_nce_mixed_negatives_loss(q, p, mixed_negatives=h[:4])
  with pytest.raises(ValueError, match="mixed_where"):
    H.info_nce_mixed_negatives_loss(q, p, mixed_negatives=h,
                                    mixed_where=np.ones(8, bool))
  with pytest.raises(ValueError, match="gamma"):
    H.info_nce_mixed_negatives_loss(q, p, gamma=-1.0)
  with pytest.raises(ValueError, match="temperature"):
    H.info_nce_mixed_negatives_loss(q, p, temperature=0.0)
  with pytest.raises(TypeError, match="mixed_negatives"):
    H.info_nce_mixed_negatives_loss(q, p, mixed_negatives=h.astype(np.int32))
