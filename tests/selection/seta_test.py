"""Tests for jaxkit.selection.seta.

Oracles: a numpy transcription of the reference SeTa (``mrazhou/SeTa``,
``seta.py``): ``kmeans_group`` (groups sorted by mean loss),
``slide_easy2hard`` (window of ``round(G * s)`` groups starting at
``epoch % (G - w + 1)``, every group at epoch 0) and ``no_prune`` annealing
after ``delta * epochs``, applied to the random subset our selector draws
(read off at epoch 0, where every group is kept); the groups come from
scikit-learn's ``KMeans`` on well-separated losses and from a numpy Lloyd
loop (argmin assignment) for :func:`kmeans_1d`; hand-counted cases; counts
``int(N * r)`` as in the reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.selection import seta as S


def _lloyd_numpy(x, k, iters=100):
  """Lloyd's algorithm with argmin assignment and quantile initialisation."""
  x = np.asarray(x, np.float64)
  xs = np.sort(x)
  c = xs[np.floor((np.arange(k) + 0.5) * len(x) / k).astype(int)]
  for _ in range(iters):
    lab = np.argmin(np.abs(x[:, None] - c[None, :]), axis=1)
    new = np.array([x[lab == j].mean() if np.any(lab == j) else c[j]
                    for j in range(k)])
    new = np.sort(new)
    if np.array_equal(new, c):
      break
    c = new
  return np.argmin(np.abs(x[:, None] - c[None, :]), axis=1), c


def _sorted_groups(scores, idx, k):
  """Reference `kmeans_group`: KMeans groups of `idx`, sorted by mean loss."""
  sklearn_cluster = pytest.importorskip("sklearn.cluster")
  km = sklearn_cluster.KMeans(n_clusters=k, random_state=0, n_init=10)
  lab = km.fit(scores[idx, None]).labels_
  groups = [idx[lab == j] for j in range(k)]
  return sorted(groups, key=lambda g: scores[g].mean())


def _slide_easy2hard(groups, it, window_scale):
  if it == 0:
    return groups
  w = round(len(groups) * window_scale)
  start = it % (len(groups) - w + 1)
  return groups[start:start + w]


def test_kmeans_1d_matches_numpy_lloyd_sklearn_and_masks():
  # One shape (N=120, K=5) throughout: one compilation.
  rng = np.random.default_rng(0)
  x = rng.exponential(size=120).astype(np.float32)
  labels, centers = S.kmeans_1d(x, 5)
  want_lab, want_c = _lloyd_numpy(x, 5)
  np.testing.assert_array_equal(labels, want_lab)
  np.testing.assert_allclose(centers, want_c, rtol=1e-5)
  # Masked entries (NaN, inf) are ignored and labelled -1.
  where = rng.random(120) < 0.8
  x_bad = np.where(where, x, np.where(rng.random(120) < 0.5, np.nan, np.inf))
  labels, centers = S.kmeans_1d(x_bad.astype(np.float32), 5, where=where)
  want_lab, want_c = _lloyd_numpy(x[where], 5)
  np.testing.assert_array_equal(np.asarray(labels)[where], want_lab)
  assert np.all(np.asarray(labels)[~where] == -1)
  np.testing.assert_allclose(centers, want_c, rtol=1e-5)
  # Well-separated blobs of unequal sizes: the same partition as sklearn.
  blobs = np.concatenate([rng.normal(m, 0.1, size=s) for m, s in
                          [(0, 19), (3, 40), (7, 15), (12, 26), (20, 20)]])
  blobs = rng.permutation(blobs).astype(np.float32)
  labels, _ = S.kmeans_1d(blobs, 5)
  groups = _sorted_groups(blobs, np.arange(120), 5)
  for j, g in enumerate(groups):
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(labels) == j), g)
  # Degenerate: all equal, all masked.
  labels, centers = S.kmeans_1d(jnp.full(120, 3.0), 5)
  np.testing.assert_array_equal(centers, np.full(5, 3.0))
  assert np.all(np.asarray(labels) == 0)
  labels, centers = S.kmeans_1d(jnp.ones(120), 5, where=jnp.zeros(120, bool))
  assert np.all(np.asarray(labels) == -1) and np.isfinite(centers).all()
  with pytest.raises(ValueError, match="num_clusters"):
    S.kmeans_1d(x, 0)


# Five well-separated loss levels, 12 examples each (N=60, G=5 throughout:
# the selector compiles once for all these tests).
_LEVELS = np.random.default_rng(1).permutation(np.concatenate(
    [np.random.default_rng(j).normal(3.0 * j, 0.2, size=12)
     for j in range(5)])).astype(np.float32)


@pytest.mark.parametrize("keep_ratio,window_scale",
                         [(1.0, 0.5), (0.7, 0.5), (0.8, 0.7), (0.9, 0.2)])
def test_seta_matches_reference_logic(keep_ratio, window_scale):
  s, n, num_epochs, delta = _LEVELS, 60, 9, 0.75
  key = jax.random.key(3)
  f = lambda e: np.flatnonzero(np.asarray(S.seta_select(
      key, s, epoch=e, keep_ratio=keep_ratio, num_groups=5,
      window_scale=window_scale, num_epochs=num_epochs, delta=delta)))
  subset = f(0)
  assert len(subset) == int(n * keep_ratio)
  sorted_groups = _sorted_groups(s, subset, 5)
  for e in range(num_epochs):
    if e + 1 > num_epochs * delta:  # IBSampler: iterations > stop_prune
      want = subset
    else:
      want = np.sort(np.concatenate(_slide_easy2hard(sorted_groups, e,
                                                     window_scale)))
    np.testing.assert_array_equal(f(e), want, err_msg=f"epoch {e}")


def test_seta_masks_counts_degenerate_and_sharded():
  rng = np.random.default_rng(2)
  s = rng.exponential(size=60).astype(np.float32)
  where = rng.random(60) < 0.7
  s_nan = np.where(where, s, np.nan).astype(np.float32)
  f = lambda k, w, e: np.asarray(S.seta_select(
      k, s_nan, epoch=e, keep_ratio=0.7, num_groups=5, where=w))
  for i in range(3):
    w = where & (np.arange(60) >= 8 * i)
    keep0 = f(jax.random.key(i), w, 0)
    assert keep0.sum() == int(w.sum() * 0.7) and not keep0[~w].any()
    keep3 = f(jax.random.key(i), w, 3)
    assert 0 < keep3.sum() < keep0.sum() and not keep3[~keep0].any()
  # All losses equal (the reference's initial scores): 5 equal chunks of 6.
  keep = S.seta_select(jax.random.key(0), jnp.full(60, 3.0), epoch=1,
                       keep_ratio=0.5, num_groups=5, window_scale=0.5)
  assert int(keep.sum()) == 12
  # Under jit with a traced epoch, sharded: the single-device result.
  want = S.seta_select(jax.random.key(5), s, epoch=2, keep_ratio=0.6,
                       num_groups=5)
  mesh = jax.make_mesh((4,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,),
                       devices=jax.devices()[:4])
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  g = jax.jit(lambda s, e: S.seta_select(jax.random.key(5), s, epoch=e,
                                         keep_ratio=0.6, num_groups=5))
  with jax.set_mesh(mesh):
    got = g(jax.device_put(s, sh), 2)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_seta_bad_inputs():
  key, s = jax.random.key(0), jnp.arange(20, dtype=jnp.float32)
  for bad in (0.0, 1.5):
    with pytest.raises(ValueError, match="keep_ratio"):
      S.seta_select(key, s, epoch=0, keep_ratio=bad, num_groups=4)
  with pytest.raises(ValueError, match="window_scale"):
    S.seta_select(key, s, epoch=0, keep_ratio=1.0, num_groups=4,
                  window_scale=0.1)
  with pytest.raises(ValueError, match="num_groups"):
    S.seta_select(key, s, epoch=0, keep_ratio=0.2, num_groups=4)
  with pytest.raises(ValueError, match="epoch"):
    S.seta_select(key, s, epoch=-1, keep_ratio=1.0, num_groups=4)
  with pytest.raises(ValueError, match="empty"):
    S.seta_select(key, jnp.zeros(0), epoch=0, keep_ratio=1.0, num_groups=1)
  with pytest.raises(TypeError, match="scores"):
    S.seta_select(key, jnp.arange(20), epoch=0, keep_ratio=1.0, num_groups=4)
