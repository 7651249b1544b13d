"""Tests for jaxkit.selection.prototypes (SSL-prototype pruning scores).

Oracles: numpy cosine / Euclidean distances to the nearest prototype written
from the definitions, and scikit-learn ``KMeans`` (n_init=10) centroids on
well-separated blobs, where k-means has one optimum, as the prototypes of the
score.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from jaxkit import selection

_dist = jax.jit(selection.nearest_prototype_distance, static_argnames="metric")
_scores = jax.jit(selection.ssl_prototype_scores,
                  static_argnames=("num_clusters", "num_iters", "metric"))


def np_nearest(x, c, metric):
  if metric == "cosine":
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    d = 1.0 - xn @ cn.T
  else:
    d = np.sqrt(((x[:, None, :] - c[None]) ** 2).sum(-1))
  return d.min(1), d.argmin(1)


def _blobs(rng, n_per=12, scale=0.05):
  dirs = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0]])
  x = np.concatenate([d * rng.uniform(1, 3) + scale * rng.normal(size=(n_per, 4))
                      for d in dirs])
  return x.astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nearest_prototype_distance_oracle_masks_grads(metric):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(10, 5)).astype(np.float32)
  c = rng.normal(size=(3, 5)).astype(np.float32)
  want_d, want_l = np_nearest(x.astype(np.float64), c.astype(np.float64),
                              metric)
  d, lab = _dist(x, c, metric=metric)
  np.testing.assert_allclose(d, want_d, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(lab, want_l)
  # bf16 inputs are computed in float32.
  d16, _ = _dist(x.astype(jnp.bfloat16), c.astype(jnp.bfloat16), metric=metric)
  assert d16.dtype == jnp.float32
  np.testing.assert_allclose(d16, want_d, rtol=5e-2, atol=5e-2)
  # Masked NaN padding rows give 0 and leave the others unchanged.
  xp = np.concatenate([x, np.full((2, 5), np.nan, np.float32)])
  m = np.arange(12) < 10
  dp, lp = _dist(xp, c, metric=metric, where=m)
  np.testing.assert_allclose(dp[:10], d, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(dp[10:], 0.0)
  np.testing.assert_array_equal(lp[10:], 0)
  # Finite gradients at x == prototype and at x == 0.
  edge = np.stack([c[1], np.zeros(5, np.float32)])
  g = jax.jit(jax.grad(
      lambda e: jnp.sum(selection.nearest_prototype_distance(
          e, c, metric=metric)[0])))(edge)
  assert np.all(np.isfinite(g))


def test_ssl_prototype_scores_match_sklearn_kmeans():
  rng = np.random.default_rng(1)
  x = _blobs(rng)
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(unit)
  want, _ = np_nearest(unit.astype(np.float64), km.cluster_centers_, "cosine")
  got = selection.ssl_prototype_scores(x, jax.random.key(0), num_clusters=3)
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
  # Euclidean, under jit, with masked NaN padding rows (scored 0).
  km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(x)
  want, _ = np_nearest(x.astype(np.float64), km.cluster_centers_, "euclidean")
  xp = np.concatenate([x, np.full((4, 4), np.nan, np.float32)])
  m = np.arange(xp.shape[0]) < x.shape[0]
  got_p = _scores(xp, jax.random.key(0), num_clusters=3, metric="euclidean",
                  where=m)
  np.testing.assert_allclose(got_p[:-4], want, rtol=1e-3, atol=1e-4)
  np.testing.assert_array_equal(got_p[-4:], 0.0)
  # All masked: every score is 0; no rows: an empty score vector.
  zero = _scores(xp, jax.random.key(0), num_clusters=3, metric="euclidean",
                 where=np.zeros_like(m))
  np.testing.assert_array_equal(zero, 0.0)
  assert selection.ssl_prototype_scores(
      np.zeros((0, 4), np.float32), jax.random.key(0),
      num_clusters=2).shape == (0,)


def test_ssl_prototype_prune_and_bad_inputs():
  rng = np.random.default_rng(2)
  x = _blobs(rng)  # same shape as above: reuses the compiled k-means
  pts = x / np.linalg.norm(x, axis=1, keepdims=True)
  km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(pts)
  s, _ = np_nearest(pts.astype(np.float64), km.cluster_centers_, "cosine")
  key = jax.random.key(3)
  hard = selection.ssl_prototype_prune(x, key, num_clusters=3,
                                       keep_fraction=0.25, keep="hard")
  easy = selection.ssl_prototype_prune(x, key, num_clusters=3,
                                       keep_fraction=0.25, keep="easy")
  np.testing.assert_array_equal(hard, np.argsort(-s, kind="stable")[:9])
  np.testing.assert_array_equal(easy, np.argsort(s, kind="stable")[:9])
  with pytest.raises(ValueError, match="metric"):
    selection.ssl_prototype_scores(x, key, num_clusters=3, metric="l1")
  with pytest.raises(ValueError, match="num_clusters"):
    selection.ssl_prototype_scores(x, key, num_clusters=0)
  with pytest.raises(ValueError, match="where"):
    selection.ssl_prototype_scores(x, key, num_clusters=2,
                                   where=np.ones(3, bool))
  with pytest.raises(ValueError, match="embeddings"):
    selection.ssl_prototype_scores(x[0], key, num_clusters=2)
  with pytest.raises(TypeError, match="embeddings"):
    selection.ssl_prototype_scores(x.astype(np.int32), key, num_clusters=2)
  with pytest.raises(ValueError, match="keep_fraction"):
    selection.ssl_prototype_prune(x, key, num_clusters=2, keep_fraction=0.0)
  with pytest.raises(ValueError, match="empty"):
    selection.ssl_prototype_prune(np.zeros((0, 4), np.float32), key,
                                  num_clusters=2, keep_fraction=0.5)
  with pytest.raises(ValueError, match="prototypes"):
    selection.nearest_prototype_distance(x, np.ones((2, 3), np.float32))



def test_sharded_pool_matches_single_device_and_sklearn():
  # Issue 5: with the pool sharded over the 8-device mesh, the k-means
  # prototypes and the pruning threshold are global, not per shard.
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  rows = jax.sharding.NamedSharding(mesh, jax.P("data"))
  rng = np.random.default_rng(4)
  x = _blobs(rng, n_per=16)[rng.permutation(48)]   # blobs span the shards
  valid = np.arange(48) % 7 != 2
  xn = np.where(valid[:, None], x, np.nan).astype(np.float32)
  prune = jax.jit(lambda x, valid: selection.ssl_prototype_prune(
      x, jax.random.key(0), num_clusters=3, keep_fraction=0.25, where=valid))
  want = prune(xn, valid)
  with jax.set_mesh(mesh):
    kept = prune(jax.device_put(xn, rows), jax.device_put(valid, rows))
  np.testing.assert_array_equal(kept, want)
  # Independent: sklearn prototypes of all valid rows; the 12 (ceil(0.25 * 48),
  # a static size) valid rows farthest from them are kept, farthest first.
  unit = x[valid] / np.linalg.norm(x[valid], axis=1, keepdims=True)
  km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(unit)
  s, _ = np_nearest(unit.astype(np.float64), km.cluster_centers_, "cosine")
  np.testing.assert_array_equal(
      kept, np.flatnonzero(valid)[np.argsort(-s, kind="stable")[:12]])
