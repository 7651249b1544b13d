"""Tests for jaxkit.losses.label_proportions (LLP-BP pseudo-labels).

Oracles: exact marginals of the paper's Gibbs distribution by brute-force
enumeration of all 2^N labelings in numpy (BP must match it on a single bag
and on tree-structured bag/edge graphs, and be close on a weakly coupled
loopy graph); scikit-learn's cosine ``NearestNeighbors`` (what the authors'
code uses) for the k-NN graph.

Compile time dominates, so the small cases share one padded signature
(N = 9 instances, G = 3 bags, E = 6 edges) through ``_bp``.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from jaxkit.losses import label_proportions as L

N, G, E = 9, 3, 6


@jax.jit
def _bp(ids, props, edges, w, where, edge_where, sim_lambda, bag_lambda):
  return L.llp_belief_propagation(
      ids, props, edges, w, where=where, edge_where=edge_where,
      sim_lambda=sim_lambda, bag_lambda=bag_lambda, num_iters=60,
      max_bag_size=N)


def _pad(ids, props, edges=np.zeros((0, 2)), w=np.zeros(0)):
  """Pads a small problem to the shared signature (padding masked out)."""
  n, e = len(ids), len(edges)
  where = np.arange(N) < n
  edge_where = np.arange(E) < e
  ids = np.concatenate([ids, np.zeros(N - n)]).astype(np.int32)
  props = np.concatenate([props, np.zeros(G - len(props))]).astype(np.float32)
  # Padding edges point at real instances: the mask alone must drop them.
  edges = np.concatenate([np.reshape(edges, (-1, 2)),
                          np.tile([[0, 1]], (E - e, 1))]).astype(np.int32)
  w = np.concatenate([w, np.full(E - e, 5.0)]).astype(np.float32)
  return ids, props, edges, w, where, edge_where


def _brute_marginals(bag_ids, props, edges=(), weights=(), sim_lambda=1.0,
                     bag_lambda=1.0):
  n = len(bag_ids)
  bag_ids = np.asarray(bag_ids)
  sizes = np.bincount(bag_ids, minlength=len(props))
  ys = np.array(list(itertools.product([0, 1], repeat=n)), np.float64)
  energy = np.zeros(len(ys))
  for (i, j), s in zip(edges, weights):
    energy -= sim_lambda * s * (ys[:, i] - ys[:, j]) ** 2
  for g, rho in enumerate(props):
    count = ys[:, bag_ids == g].sum(1)
    energy -= bag_lambda * (count - rho * sizes[g]) ** 2
  p = np.exp(energy - energy.max())
  return (p[:, None] * ys).sum(0) / p.sum()


# Bags {0,1,2}, {3,4}, {5,6} chained by single edges: a tree factor graph.
TREE = (np.array([0, 0, 0, 1, 1, 2, 2]), np.array([1 / 3, 0.5, 1.0]),
        np.array([[2, 3], [4, 5]]), np.array([0.8, 0.3]))


def test_single_bag_and_tree_graphs_are_exact():
  ids = np.zeros(6, np.int32)  # one bag of 6, no edges
  got = _bp(*_pad(ids, np.array([0.3])), 1.0, 2.0)
  np.testing.assert_allclose(got[:6], _brute_marginals(ids, [0.3],
                                                       bag_lambda=2.0),
                             atol=1e-5)
  got = _bp(*_pad(*TREE), 2.0, 1.5)
  np.testing.assert_allclose(
      got[:7], _brute_marginals(*TREE, sim_lambda=2.0, bag_lambda=1.5),
      atol=1e-5)
  np.testing.assert_allclose(got[7:], 0.5)  # padded instances


def test_loopy_graph_close_to_exact_and_permutation():
  rng = np.random.RandomState(0)
  ids = np.repeat(np.arange(3), 3)
  props = np.array([1 / 3, 2 / 3, 1.0])
  edges = np.array([[0, 1], [1, 3], [3, 4], [4, 6], [2, 8], [5, 7]])
  w = rng.uniform(0.2, 0.5, size=6)
  got = np.asarray(_bp(*_pad(ids, props, edges, w), 0.5, 1.0))
  want = _brute_marginals(ids, props, edges, w, sim_lambda=0.5)
  # Weak couplings: loopy BP is close to exact (measured 5e-3), not exact.
  np.testing.assert_allclose(got, want, atol=0.02)
  assert np.max(np.abs(got - want)) > 1e-5
  # Relabelling the instances permutes the marginals.
  perm = rng.permutation(9)
  inv = np.argsort(perm)
  got_p = np.asarray(_bp(*_pad(ids[perm], props, inv[edges], w), 0.5, 1.0))
  np.testing.assert_allclose(got_p[inv], got, atol=1e-6)


def test_pseudo_labels_recover_blobs_where_bags_alone_cannot():
  # Mini echo of the paper: two blobs, random bags of 8 with mixed
  # proportions; the k-NN similarity factors let BP recover the labels.
  rng = np.random.RandomState(1)
  y = np.repeat([0, 1], 32)
  x = (rng.randn(64, 4) * 0.3 + y[:, None] * 2.0 - 1.0).astype(np.float32)
  perm = rng.permutation(64)
  x, y = x[perm], y[perm]
  bags = np.arange(64, dtype=np.int32) // 8
  rho = np.array([y[bags == g].mean() for g in range(8)], np.float32)
  e, s, ok = L.llp_knn_graph(x, k=5)
  bp = jax.jit(lambda ok: L.llp_belief_propagation(
      bags, rho, e, s, edge_where=ok, max_bag_size=8))
  assert np.mean((np.asarray(bp(ok)) > 0.5) == y) >= 0.95
  bags_only = np.asarray(bp(jnp.zeros_like(ok)))
  assert np.mean((bags_only > 0.5) == y) < 0.8


def test_masks_all_masked_and_gradients():
  args = _pad(*TREE)

  def f(props, w, where, bag_lambda):
    m = _bp(args[0], props, args[2], w, where, args[5], 1.0, bag_lambda)
    return jnp.sum(m * jnp.arange(1.0, N + 1))

  grad = jax.jit(jax.grad(f, argnums=(0, 1)))
  props, w, where = args[1], args[3], args[4]
  # All masked: every marginal is 0.5, gradients are finite.
  none = np.zeros(N, bool)
  np.testing.assert_allclose(_bp(args[0], props, args[2], w, none, args[5],
                                 1.0, 1.0), 0.5)
  for g in grad(props, w, none, 1.0):
    assert np.all(np.isfinite(g))
  # Hard, saturated bags (proportions 0 / 1 and a strong bag factor).
  hard = np.array([0.0, 1.0, 1.0], np.float32)
  for g in grad(hard, w, where, 50.0):
    assert np.all(np.isfinite(g))
  # Central differences.
  gp, gw = grad(props, w, where, 1.0)
  eps = 1e-2
  for g, dp, dw in ((gp[0], [eps, 0, 0], 0), (gw[0], 0, [eps] + [0] * 5)):
    fd = (f(props + dp, w + dw, where, 1.0)
          - f(props - dp, w - dw, where, 1.0)) / (2 * eps)
    assert abs(float(fd)) > 1e-3
    np.testing.assert_allclose(g, fd, rtol=2e-2)


def test_knn_graph_matches_sklearn():
  rng = np.random.RandomState(3)
  x = rng.randn(64, 4).astype(np.float32)
  edges, w, ok = map(np.asarray, L.llp_knn_graph(x, k=5))
  _, idx = NearestNeighbors(n_neighbors=5, metric="cosine").fit(x).kneighbors()
  want = {tuple(sorted((i, j))) for i in range(64) for j in idx[i]}
  got = [tuple(sorted(e)) for e in edges[ok]]
  assert len(got) == len(set(got)) and set(got) == want
  i, j = edges[ok].T
  dist = np.linalg.norm(x[i] - x[j], axis=1)
  np.testing.assert_allclose(w[ok], np.exp(-dist), rtol=1e-5)
  # Distance cut-off, masked instances and the length scale.
  where = np.arange(64) < 60
  e2, w2, ok2 = map(np.asarray, L.llp_knn_graph(
      x, k=5, where=where, length_scale=2.0, max_distance=0.2))
  assert 0 < ok2.sum() < ok.sum()
  assert not np.any(np.isin(e2[ok2], np.arange(60, 64)))
  i, j = e2[ok2].T
  norms = np.linalg.norm(x, axis=1)
  d = 1 - np.sum(x[i] * x[j], 1) / norms[i] / norms[j]
  assert np.all(d < 0.2)
  np.testing.assert_allclose(
      w2[ok2], np.exp(-np.linalg.norm(x[i] - x[j], axis=1) / 2), rtol=1e-5)


def test_bad_inputs():
  ids = np.array([0, 0, 1], np.int32)
  props = np.array([0.5, 1.0], np.float32)
  bp = L.llp_belief_propagation
  with pytest.raises(ValueError, match="bag_ids"):
    bp(np.array([0, 0, 2], np.int32), props)
  with pytest.raises(ValueError, match="bag_props"):
    bp(ids, np.array([0.5, 1.5], np.float32))
  with pytest.raises(TypeError, match="bag_ids"):
    bp(ids.astype(np.float32), props)
  with pytest.raises(ValueError, match="edges"):
    bp(ids, props, np.array([[0, 3]], np.int32), np.ones(1, np.float32))
  with pytest.raises(ValueError, match=r"edges.*\[E, 2\]"):
    bp(ids, props, np.array([0, 1], np.int32), np.ones(1, np.float32))
  with pytest.raises(ValueError, match="edge_weights"):
    bp(ids, props, np.array([[0, 1]], np.int32))
  with pytest.raises(ValueError, match="damping"):
    bp(ids, props, damping=1.0)
  with pytest.raises(ValueError, match="bag_lambda"):
    bp(ids, props, bag_lambda=-1.0)
  with pytest.raises(ValueError, match="max_bag_size"):
    bp(ids, props, max_bag_size=1)
  with pytest.raises(ValueError, match="max_bag_size"):
    jax.jit(bp)(ids, props)
  with pytest.raises(ValueError, match="`k`"):
    L.llp_knn_graph(np.ones((3, 2), np.float32), k=3)
  with pytest.raises(ValueError, match="features"):
    L.llp_knn_graph(np.ones((3,), np.float32), k=1)
