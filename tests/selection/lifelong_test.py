"""Tests for jaxkit.selection.lifelong (Adapt-∞).

Oracles: numpy transcriptions written from the definitions — np.histogram
entropies of standardised scores, a one-unit-at-a-time greedy budget
allocation (fewest-so-far first), per-cluster rank trimming + equal-width
strata + greedy quotas for coverage sampling, an O(N^2) loop for the SemDeDup
redundancy ``max_{i<j} cos`` clipped at 0, the Lloyd fixed point (centroids =
means of their points, labels = nearest centroid) for k-means, and one-hot
inputs / linearity for the random projection.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import selection

# Jitted entry points: one compile each instead of op-by-op eager dispatch.
_sketch = jax.jit(selection.gradient_sketch,
                  static_argnames=("dim", "normalize"))
_kmeans = jax.jit(selection.kmeans, static_argnames=("num_clusters",
                                                     "num_iters"))
_entropy = jax.jit(selection.score_entropy, static_argnames="num_bins")
_scorer = jax.jit(selection.select_scorer_per_cluster,
                  static_argnames=("num_clusters", "num_bins"))
_budgets = jax.jit(selection.balanced_cluster_budgets)
_coverage = jax.jit(selection.coverage_select,
                    static_argnames=("num_clusters", "num_bins", "trim"))
_adapt = jax.jit(selection.adapt_inf_select,
                 static_argnames=("num_clusters", "num_bins", "trim"))
_dedup_scores = jax.jit(selection.semdedup_scores, static_argnames="block_size")
_dedup = jax.jit(selection.semdedup_select,
                 static_argnames=("num_clusters", "block_size"))


# ----------------------------------------------------------- sketch, kmeans --


def test_gradient_sketch_projection_properties():
  key = jax.random.key(0)
  rng = np.random.default_rng(0)
  g1 = rng.normal(size=(5, 6))
  g2 = rng.normal(size=(5, 6))
  # One batch: unit vectors (which pick the rows of R), g1, g2 and g1 + g2.
  flat = np.concatenate([np.eye(6), g1, g2, g1 + g2]).astype(np.float32)
  tree = {"a": jnp.asarray(flat[:, :4].reshape(-1, 2, 2)),
          "b": jnp.asarray(flat[:, 4:])}
  s = np.asarray(_sketch(tree, key, dim=32, normalize=False))
  r = s[:6]
  np.testing.assert_allclose(np.abs(r), 1 / np.sqrt(32), rtol=1e-6)
  np.testing.assert_allclose(s[6:11], g1 @ r, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(s[16:], s[6:11] + s[11:16], rtol=1e-5, atol=1e-5)
  # Normalised, with a mask over nan rows: masked rows give 0.
  m = np.ones(21, bool)
  m[[7, 12]] = False
  nan_tree = jax.tree.map(
      lambda x: jnp.where(m.reshape((21,) + (1,) * (x.ndim - 1)), x, jnp.nan),
      tree)
  out = np.asarray(_sketch(nan_tree, key, dim=32, where=m))
  assert np.all(out[~m] == 0.0)
  want = s[m] / np.linalg.norm(s[m], axis=1, keepdims=True)
  np.testing.assert_allclose(out[m], want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="dim"):
    selection.gradient_sketch(tree, key, dim=0)
  with pytest.raises(ValueError, match="leading"):
    selection.gradient_sketch({"a": jnp.ones((3, 2)), "b": jnp.ones((4,))},
                              key, dim=4)


def test_kmeans_recovers_blobs_and_is_a_lloyd_fixed_point():
  rng = np.random.default_rng(1)
  centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
  truth = np.repeat(np.arange(3), 15)
  x = (centers[truth] + 0.5 * rng.normal(size=(45, 2))).astype(np.float32)
  outlier = np.array([[1e3, 1e3]], np.float32)
  xs = np.concatenate([x, outlier])
  m = np.arange(46) < 45
  f = lambda p, w: _kmeans(p, jax.random.key(3), num_clusters=3, where=w)
  c, lab = f(xs, m)
  c, lab = np.asarray(c), np.asarray(lab)
  # The partition of the valid points is the true one (up to relabelling).
  pairs = {(t, l) for t, l in zip(truth, lab[:45])}
  assert len(pairs) == 3 and len({l for _, l in pairs}) == 3
  # Fixed point: labels are nearest centroids, centroids are their means
  # (the masked outlier does not pull any centroid).
  d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(lab[:45], d.argmin(1))
  for k in range(3):
    np.testing.assert_allclose(c[k], x[lab[:45] == k].mean(0), rtol=1e-4,
                               atol=1e-4)
  c0, l0 = f(xs, np.zeros(46, bool))
  assert np.all(np.asarray(c0) == 0) and np.all(np.asarray(l0) == 0)
  with pytest.raises(ValueError, match="num_clusters"):
    selection.kmeans(x, jax.random.key(0), num_clusters=0)
  with pytest.raises(ValueError, match="points"):
    selection.kmeans(x[0], jax.random.key(0), num_clusters=2)


# ------------------------------------------------------------------ scores --


def test_image_grounding_score():
  pw = np.array([2.0, 4.0, 3.0, 1.0], np.float32)
  po = np.array([4.0, 2.0, 3.0, 5.0], np.float32)
  has = np.array([True, True, True, False])
  ig = jax.jit(selection.image_grounding_score)
  got = ig(pw, po, has_image=has)
  np.testing.assert_allclose(got, [2.0, 0.5, 1.0, 1.0])
  m = np.array([True, False, True, True])
  got = ig(np.where(m, pw, -1.0), po, where=m)
  np.testing.assert_allclose(got, [2.0, 0.0, 1.0, 5.0])
  with pytest.raises(ValueError, match="> 0"):
    selection.image_grounding_score(np.array([0.0, 1.0]), np.ones(2))
  with pytest.raises(ValueError, match="same shape"):
    selection.image_grounding_score(np.ones(3), np.ones(2))


def _np_entropy(s, nb):
  s = np.asarray(s, np.float64)
  if len(s) == 0 or s.std() == 0:
    return 0.0
  z = (s - s.mean()) / s.std()
  c, _ = np.histogram(z, bins=np.linspace(-4, 4, nb + 1))
  p = c[c > 0] / c.sum()
  return float(-(p * np.log2(p)).sum())


def test_score_entropy_and_scorer_choice_match_numpy_histograms():
  rng = np.random.default_rng(2)
  n, k = 60, 3
  lab = rng.integers(0, k, n)
  scores = np.stack([rng.normal(size=n),                      # spread
                     np.round(rng.normal(size=n)),            # few values
                     rng.exponential(size=n) ** 3]).astype(np.float32)
  scores[1, lab == 2] = rng.normal(size=(lab == 2).sum())     # cluster 2
  m = rng.random(n) > 0.2
  np.testing.assert_allclose(
      _entropy(scores[0], num_bins=20, where=m),
      _np_entropy(scores[0][m], 20), rtol=1e-5)
  best, ent = _scorer(scores, lab, num_clusters=k + 1, num_bins=20, where=m)
  want = np.array([[_np_entropy(scores[e][m & (lab == c)], 20)
                    for e in range(3)] for c in range(k + 1)])
  np.testing.assert_allclose(ent, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(best, want.argmax(1))
  assert int(best[k]) == 0                                    # empty cluster
  assert float(_entropy(jnp.ones(60), num_bins=20, where=m)) == 0.0
  assert float(_entropy(scores[0], num_bins=20,
                        where=np.zeros(n, bool))) == 0.0
  with pytest.raises(ValueError, match="labels"):
    selection.select_scorer_per_cluster(scores, lab, num_clusters=2)
  with pytest.raises(ValueError, match="num_bins"):
    selection.score_entropy(scores[0], num_bins=0)


# --------------------------------------------------------------- selection --


def _np_greedy_budgets(sizes, budget):
  b = np.zeros(len(sizes), int)
  for _ in range(min(budget, sum(sizes))):
    open_ = [i for i in range(len(sizes)) if b[i] < sizes[i]]
    b[min(open_, key=lambda i: (b[i], i))] += 1
  return b


def test_balanced_budgets_match_greedy_allocation():
  rng = np.random.default_rng(3)
  f = _budgets
  for _ in range(6):
    sizes = rng.integers(0, 12, 5)
    budget = int(rng.integers(0, 70))
    np.testing.assert_array_equal(f(sizes, budget),
                                  _np_greedy_budgets(sizes, budget))
  np.testing.assert_array_equal(f(np.zeros(5, np.int64), 5), 0)
  with pytest.raises(ValueError, match="budget"):
    selection.balanced_cluster_budgets(np.ones(3, np.int32), -1)
  with pytest.raises(TypeError, match="cluster_sizes"):
    selection.balanced_cluster_budgets(np.ones(3), 2)


def _np_cell_quotas(s, lab, valid, k, nb, trim, budget):
  """Eligibility and per-(cluster, stratum) quotas, from the definition."""
  elig = np.zeros(len(s), bool)
  strat = np.zeros(len(s), int)
  for c in range(k):
    idx = np.flatnonzero(valid & (lab == c))
    order = idx[np.argsort(s[idx], kind="stable")]
    cut = int(np.floor(trim * len(idx)))
    keep = order[cut:len(order) - cut]
    elig[keep] = True
    if len(keep):
      lo, hi = s[keep].min(), s[keep].max()
      w = (hi - lo) / nb
      strat[keep] = 0 if w == 0 else np.clip(
          np.floor((s[keep] - lo) / w), 0, nb - 1).astype(int)
  sizes = np.zeros((k, nb), int)
  for i in np.flatnonzero(elig):
    sizes[lab[i], strat[i]] += 1
  cb = _np_greedy_budgets(sizes.sum(1), budget)
  quotas = np.stack([_np_greedy_budgets(sizes[c], cb[c]) for c in range(k)])
  return elig, strat, quotas


def test_coverage_select_matches_stratified_quotas():
  rng = np.random.default_rng(4)
  n, k, nb = 80, 3, 4
  lab = rng.integers(0, k, n)
  s = (rng.normal(size=n) ** 3).astype(np.float32)
  s[5] = np.nan
  valid = rng.random(n) > 0.15
  f = lambda key, b, w: _coverage(key, s, lab, num_clusters=k, budget=b,
                                  num_bins=nb, trim=0.1, where=w)
  for budget, seed in ((10, 0), (33, 1), (500, 2)):
    keep = np.asarray(f(jax.random.key(seed), budget, valid))
    elig, strat, quotas = _np_cell_quotas(s, lab, valid & ~np.isnan(s), k, nb,
                                          0.1, budget)
    assert not np.any(keep & ~elig)
    assert keep.sum() == min(budget, elig.sum())
    got = np.zeros((k, nb), int)
    for i in np.flatnonzero(keep):
      got[lab[i], strat[i]] += 1
    np.testing.assert_array_equal(got, quotas)
  none = f(jax.random.key(0), 10, np.zeros(n, bool))
  assert not np.any(np.asarray(none))
  with pytest.raises(ValueError, match="trim"):
    selection.coverage_select(jax.random.key(0), s, lab, num_clusters=k,
                              budget=3, trim=0.5)
  with pytest.raises(ValueError, match="budget"):
    selection.coverage_select(jax.random.key(0), s, lab, num_clusters=k,
                              budget=-2)


def test_adapt_inf_select_uses_the_chosen_scorer():
  rng = np.random.default_rng(5)
  n, k = 48, 2
  lab = np.repeat(np.arange(k), n // k)
  scores = rng.normal(size=(2, n)).astype(np.float32)
  scores[0, lab == 1] = 0.0             # scorer 0 is flat on cluster 1
  scores[1, lab == 0] = 1.0             # scorer 1 is flat on cluster 0
  keep, scorer = _adapt(jax.random.key(0), scores, lab, num_clusters=k,
                        budget=10, num_bins=4, trim=0.0)
  np.testing.assert_array_equal(scorer, [0, 1])
  keep = np.asarray(keep)
  chosen = np.where(lab == 0, scores[0], scores[1])
  elig, strat, quotas = _np_cell_quotas(chosen, lab, np.ones(n, bool), k, 4,
                                        0.0, 10)
  got = np.zeros((k, 4), int)
  for i in np.flatnonzero(keep):
    got[lab[i], strat[i]] += 1
  np.testing.assert_array_equal(got, quotas)
  assert keep[lab == 0].sum() == 5 and keep[lab == 1].sum() == 5


# ----------------------------------------------------------------- pruning --


def _np_semdedup(e, lab, valid):
  u = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
  out = np.zeros(len(e))
  for j in range(len(e)):
    if not valid[j]:
      continue
    sims = [u[i] @ u[j] for i in range(j) if valid[i] and lab[i] == lab[j]]
    out[j] = max([0.0] + sims)
  return out


def test_semdedup_scores_and_select_match_numpy():
  rng = np.random.default_rng(6)
  n, k = 23, 3
  e = rng.normal(size=(n, 4)).astype(np.float32)
  e[7] = e[2] * 2.0                      # an exact duplicate (same cluster)
  lab = rng.integers(0, k, n)
  lab[7] = lab[2]
  valid = rng.random(n) > 0.2
  valid[[2, 7]] = True
  en = np.where(valid[:, None], e, np.nan).astype(np.float32)
  want = _np_semdedup(e, lab, valid)
  for blk in (5, 512):
    got = _dedup_scores(en, lab, where=valid, block_size=blk)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert abs(float(got[7]) - 1.0) < 1e-5
  keep = np.asarray(_dedup(en, lab, num_clusters=k, keep=11, where=valid))
  sizes = np.array([(valid & (lab == c)).sum() for c in range(k)])
  budgets = _np_greedy_budgets(sizes, 11)
  for c in range(k):
    idx = np.flatnonzero(valid & (lab == c))
    order = idx[np.argsort(want[idx], kind="stable")]
    np.testing.assert_array_equal(np.flatnonzero(keep & (lab == c)),
                                  np.sort(order[:budgets[c]]))
  if budgets[lab[2]] < sizes[lab[2]]:
    assert keep[2] and not keep[7]     # the later duplicate goes first
  assert not np.any(keep & ~valid)
  none = _dedup(en, lab, num_clusters=k, keep=5, where=np.zeros(n, bool))
  assert not np.any(np.asarray(none))
  with pytest.raises(ValueError, match="keep"):
    selection.semdedup_select(e, lab, num_clusters=k, keep=-1)
  with pytest.raises(ValueError, match="labels"):
    selection.semdedup_scores(e, lab[:5])




# ----------------------------------------------------------------- sharded --
# Issue 5: with the pool sharded over the 8-device mesh, the k-means
# statistics, per-cluster histograms, budgets, ranks and SemDeDup
# similarities are global, not per shard.


def _mesh():
  return jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))


def _put(mesh, a, *spec):
  return jax.device_put(a, jax.sharding.NamedSharding(mesh, jax.P(*spec)))


def test_kmeans_and_semdedup_on_sharded_pool_match_numpy():
  mesh = _mesh()
  rng = np.random.default_rng(7)
  centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]])
  truth = rng.permutation(np.repeat(np.arange(4), 16))  # clusters span shards
  pts = (centers[truth] + 0.5 * rng.normal(size=(64, 2))).astype(np.float32)
  valid = np.arange(64) % 10 != 1

  @jax.jit
  def prune(pts, valid):
    cent, lab = selection.kmeans(pts, jax.random.key(0), num_clusters=4,
                                 num_iters=10, where=valid)
    return cent, lab, selection.semdedup_select(pts, lab, num_clusters=4,
                                                keep=40, where=valid)

  with jax.set_mesh(mesh):
    cent, lab, keep = prune(_put(mesh, pts, "data"), _put(mesh, valid, "data"))
  # The sharded result is pinned by numpy: the true partition, centroids that
  # are the means of all their valid members (across shards), and SemDeDup's
  # per-cluster budgets filled with the globally least redundant rows.
  lab, keep = np.asarray(lab), np.asarray(keep)
  assert len({(t, l) for t, l in zip(truth[valid], lab[valid])}) == 4
  assert len(set(lab[valid].tolist())) == 4
  for c in range(4):
    np.testing.assert_allclose(cent[c], pts[valid & (lab == c)].mean(0),
                               rtol=1e-4, atol=1e-4)
  dup = _np_semdedup(pts, lab, valid)
  budgets = _np_greedy_budgets(
      np.array([(valid & (lab == c)).sum() for c in range(4)]), 40)
  for c in range(4):
    idx = np.flatnonzero(valid & (lab == c))
    order = idx[np.argsort(dup[idx], kind="stable")]
    np.testing.assert_array_equal(np.flatnonzero(keep & (lab == c)),
                                  np.sort(order[:budgets[c]]))


def test_adapt_inf_select_on_sharded_pool_matches_single_device():
  mesh = _mesh()
  rng = np.random.default_rng(8)
  n, k = 48, 2
  lab = rng.permutation(np.repeat(np.arange(k), n // k))
  scores = rng.normal(size=(2, n)).astype(np.float32)
  scores[0, lab == 1] = 0.0             # scorer 0 is flat on cluster 1
  scores[1, lab == 0] = 1.0             # scorer 1 is flat on cluster 0
  kw = dict(num_clusters=k, budget=10, num_bins=4, trim=0.0)
  want = _adapt(jax.random.key(0), scores, lab, **kw)
  with jax.set_mesh(mesh):
    keep, scorer = _adapt(jax.random.key(0), _put(mesh, scores, None, "data"),
                          _put(mesh, lab, "data"), **kw)
  np.testing.assert_array_equal(keep, want[0])
  np.testing.assert_array_equal(scorer, want[1])
  np.testing.assert_array_equal(scorer, [0, 1])
  # Independent: the stratified quotas of the whole clusters.
  chosen = np.where(lab == 0, scores[0], scores[1])
  _, strat, quotas = _np_cell_quotas(chosen, lab, np.ones(n, bool), k, 4,
                                     0.0, 10)
  got = np.zeros((k, 4), int)
  for i in np.flatnonzero(np.asarray(keep)):
    got[lab[i], strat[i]] += 1
  np.testing.assert_array_equal(got, quotas)
