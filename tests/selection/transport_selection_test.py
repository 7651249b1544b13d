"""Tests for jaxkit.selection.transport_selection (TAROT, Projektor).

Oracles (all numpy / scipy, written from the papers' formulas and the
authors' reference code, never calling the code under test):

* whitening: the Mahalanobis cosine (x-mu)^T S^-1 (y-mu) / norms with the
  pooled covariance S (no Cholesky), and identity covariance of the output;
* fixed-size and OTM selection: a transcription of the authors' loops
  (``DataSelector.select_data``: layer-by-layer set unions over per-target
  sorted lists, OT potentials from a float64 log-domain Sinkhorn written here);
* mixture OT: scipy's ``linear_sum_assignment`` (exact OT between equal-size
  uniform clouds) as epsilon -> 0, and finite differences of the float64
  Sinkhorn objective for the ratio gradient, also at a vertex of the simplex;
* Projektor fit: numpy least squares on the hand-built design; extrapolation:
  hand values, log-linear and power laws; mixture choice: a grid search of
  the projected performance with the numpy Sinkhorn.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from jaxkit.selection import transport_selection as T


def _np_sinkhorn(C, a, b, eps, iters=3000):
  """Float64 log-domain Sinkhorn; returns (objective, f, g)."""
  C = np.asarray(C, np.float64)
  la, lb = np.log(a), np.log(b)
  f = np.zeros(len(a))
  g = np.zeros(len(b))

  def lse(z, axis):
    mx = np.max(z, axis=axis, keepdims=True)
    return np.squeeze(mx, axis) + np.log(np.sum(np.exp(z - mx), axis=axis))

  for _ in range(iters):
    f_old = f
    f = -eps * lse(lb[None, :] + (g[None, :] - C) / eps, 1)
    g = -eps * lse(la[:, None] + (f[:, None] - C) / eps, 0)
    if np.max(np.abs(f - f_old)) < 1e-11:
      break
  return float(a @ f + b @ g), f, g


def _feats(seed=0, n=30, m=6, d=4):
  rng = np.random.default_rng(seed)
  scale = np.array([10.0, 1.0, 0.3, 3.0])[:d]
  c = rng.normal(size=(n, d)) * scale
  t = rng.normal(size=(m, d)) * scale + 0.5
  return c.astype(np.float32), t.astype(np.float32)


# ----------------------------------------------------------------------------
# Whitening.
# ----------------------------------------------------------------------------


def test_whitened_distance_is_mahalanobis_cosine_and_masks():
  c, t = _feats()
  x = np.concatenate([c, t]).astype(np.float64)
  mu = x.mean(0)
  cov = (x - mu).T @ (x - mu) / len(x) + 1e-5 * np.eye(4)
  inv = np.linalg.inv(cov)
  cc, tc = c - mu, t - mu
  cos = (cc @ inv @ tc.T) / np.sqrt(
      np.einsum("id,de,ie->i", cc, inv, cc)[:, None]
      * np.einsum("id,de,ie->i", tc, inv, tc)[None, :])
  want = np.sqrt(np.maximum(2 - 2 * cos, 0))
  fn = jax.jit(lambda c, t, cw, tw: T.whitened_feature_distance(
      c, t, candidate_where=cw, target_where=tw))
  # The pooled whitened (unnormalised) features have identity covariance.
  cw_, tw_ = jax.jit(lambda c, t: T.whiten_features(c, t, normalize=False))(
      c, t)
  z = np.concatenate([cw_, tw_])
  np.testing.assert_allclose(z.T @ z / len(z), np.eye(4), atol=1e-3)
  # NaN padding rows, masked, change nothing; masked pairs are 0.
  cp = np.concatenate([c, np.full((3, 4), np.nan, np.float32)])
  tp = np.concatenate([t, np.full((2, 4), np.nan, np.float32)])
  cm = np.arange(33) < 30
  tm = np.arange(8) < 6
  d = np.asarray(fn(cp, tp, cm, tm))
  np.testing.assert_allclose(d[:30, :6], want, atol=2e-4)
  assert np.all(d[30:] == 0) and np.all(d[:, 6:] == 0)
  # Fully masked: finite zeros.
  d0 = fn(cp, tp, np.zeros(33, bool), tm)
  assert np.all(np.asarray(d0) == 0)
  # Gradients are finite at d = 0 (a candidate equal to a target) and at
  # zero-padded masked rows.
  cz = np.nan_to_num(cp)
  cz[0] = t[0]
  g = jax.grad(lambda c: jnp.sum(fn(c, np.nan_to_num(tp), cm, tm)))(cz)
  assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[30:] == 0)


# ----------------------------------------------------------------------------
# TAROT selection vs. the authors' loops.
# ----------------------------------------------------------------------------


def _oracle_fixed_size(D, k, eps, higher):
  n, m = D.shape
  sorted_idx = np.argsort(D, axis=0, kind="stable")
  chosen = set()
  overflowed = False
  for i in range(n):
    layer = set(np.unique(sorted_idx[i]).tolist())
    if len(chosen | layer) <= k:
      chosen |= layer
      continue
    diff = np.array(sorted(layer - chosen))
    need = k - len(chosen)
    _, f, _ = _np_sinkhorn(D[diff], np.full(len(diff), 1 / len(diff)),
                           np.full(m, 1 / m), eps)
    order = np.argsort(-f if higher else f, kind="stable")
    chosen |= set(diff[order[:need]].tolist())
    overflowed = True
    break
  sel = np.array(sorted(chosen))
  _, f, _ = _np_sinkhorn(D[sel], np.full(len(sel), 1 / len(sel)),
                         np.full(m, 1 / m), eps)
  return sel, f - f.mean(), overflowed


def test_fixed_size_matches_authors_loop():
  c, t = _feats(1)
  D = np.asarray(T.whitened_feature_distance(c, t), np.float64)
  k, eps = 11, 0.05
  fn = jax.jit(lambda d, cw, tw, hi: T.tarot_fixed_size_select(
      d, k, epsilon=eps, higher_potential_first=hi, candidate_where=cw,
      target_where=tw))
  # Padded candidates and targets (garbage distances, masked) change nothing.
  Dp = jnp.asarray(np.pad(D, ((0, 4), (0, 2)), constant_values=-7.0),
                   jnp.float32)
  cw, tw = np.arange(34) < 30, np.arange(8) < 6
  for higher in (True, False):
    sel, w, overflowed = _oracle_fixed_size(D, k, eps, higher)
    assert overflowed  # the potential tie-break is exercised
    idx, wt = fn(Dp, cw, tw, higher)
    order = np.argsort(np.asarray(idx))
    np.testing.assert_array_equal(np.asarray(idx)[order], sel)
    np.testing.assert_allclose(np.asarray(wt)[order], w, atol=2e-3)
  # All targets masked: defined and finite.
  _, w0 = fn(Dp, cw, np.zeros(8, bool), True)
  assert np.all(np.isfinite(w0))


def _oracle_otm(D, folds, nf, kmax, eps, max_dist):
  n, m = D.shape
  sorted_idx = np.argsort(D, axis=0, kind="stable")
  union, ks = set(), []
  for f in range(nf):
    held = np.where(folds == f)[0]
    rest = np.where(folds != f)[0]
    best, chosen, kstar = np.inf, set(), 0
    for k in range(1, kmax + 1):
      idx = sorted_idx[:k, held].reshape(-1)
      idx = idx[D[idx, np.tile(held, k)] < max_dist]
      sel = np.unique(idx)
      c = np.inf if len(sel) == 0 else _np_sinkhorn(
          D[np.ix_(sel, rest)], np.full(len(sel), 1 / len(sel)),
          np.full(len(rest), 1 / len(rest)), eps)[0]
      if c < best:
        best, chosen, kstar = c, set(sel.tolist()), k
      else:
        break
    union |= chosen
    ks.append(kstar)
  return np.array(sorted(union)), np.array(ks)


def test_otm_matches_authors_loop_and_covers_modes():
  rng = np.random.default_rng(3)
  modes = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
  tgt = np.concatenate([modes[i] + 0.5 * rng.normal(size=(3, 2))
                        for i in range(3)])
  cand = np.concatenate([modes[i] + rng.normal(size=(8, 2)) for i in range(3)]
                        + [rng.normal(size=(12, 2)) * 0.8 + [3.0, 3.0]])
  D = np.sqrt(((cand[:, None] - tgt[None]) ** 2).sum(-1))
  folds = np.arange(9) % 3
  sel, ks = _oracle_otm(D, folds, 3, 6, 0.5, 4.0)
  fn = jax.jit(lambda d, cw: T.tarot_otm_select(
      d, max_rank=6, num_folds=3, epsilon=0.5, max_distance=4.0,
      candidate_where=cw))
  res = fn(jnp.asarray(D, jnp.float32), np.ones(36, bool))
  np.testing.assert_array_equal(np.where(res.selected)[0], sel)
  np.testing.assert_array_equal(res.fold_rank, ks)
  assert np.all(np.isfinite(res.weights))
  assert np.all(np.asarray(res.weights)[~np.asarray(res.selected)] == 0)
  # Every target mode is covered by the selection.
  near = np.argmin(((cand[sel][:, None] - modes[None]) ** 2).sum(-1), axis=1)
  assert set(near.tolist()) == {0, 1, 2}
  # All candidates masked: nothing selected, finite.
  none = fn(jnp.asarray(D, jnp.float32), np.zeros(36, bool))
  assert not np.any(none.selected) and np.all(np.isfinite(none.weights))


def test_tarot_bad_inputs():
  d = jnp.ones((4, 3))
  with pytest.raises(ValueError, match="num_selected"):
    T.tarot_fixed_size_select(d, 5)
  with pytest.raises(ValueError, match="num_selected"):
    T.tarot_fixed_size_select(d, 0)
  with pytest.raises(ValueError, match="epsilon"):
    T.tarot_fixed_size_select(d, 2, epsilon=0.0)
  with pytest.raises(TypeError, match="distance"):
    T.tarot_fixed_size_select(jnp.ones((4, 3), jnp.int32), 2)
  with pytest.raises(ValueError, match="candidate_where"):
    T.tarot_fixed_size_select(d, 2, candidate_where=np.ones(3, bool))
  with pytest.raises(ValueError, match="fold_ids"):
    T.tarot_otm_select(d, max_rank=2, num_folds=2, fold_ids=np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="num_folds"):
    T.tarot_otm_select(d, max_rank=2, num_folds=1)
  with pytest.raises(ValueError, match="feature dimension"):
    T.whiten_features(jnp.ones((3, 2)), jnp.ones((3, 4)))
  with pytest.raises(TypeError, match="candidates"):
    T.whiten_features(jnp.ones((3, 2), jnp.int32), jnp.ones((3, 2)))


# ----------------------------------------------------------------------------
# Projektor.
# ----------------------------------------------------------------------------


def _sources(seed=0, n=6, m=12):
  rng = np.random.default_rng(seed)
  src = np.stack([rng.normal(size=(n, 2)),
                  rng.normal(size=(n, 2)) + [2.0, 0.0],
                  rng.normal(size=(n, 2)) + [0.0, -1.5]]).astype(np.float32)
  val = np.concatenate([rng.normal(size=(m // 2, 2)),
                        rng.normal(size=(m // 2, 2)) + [2.0, 0.0]])
  return src, val.astype(np.float32)


def _np_mixture_ot(src, val, q, eps):
  k, n, _ = src.shape
  x = src.reshape(k * n, -1).astype(np.float64)
  q = np.asarray(q, np.float64) / np.sum(q)
  a = np.repeat(q / n, n)
  C = ((x[:, None] - val[None].astype(np.float64)) ** 2).sum(-1)
  keep = a > 0
  return _np_sinkhorn(C[keep], a[keep], np.full(len(val), 1 / len(val)),
                      eps)[0]


_PAD = 2


@jax.jit
def _value_and_grad(src_pad, val, q, eps, sw, tw):
  return jax.value_and_grad(lambda q: T.mixture_ot_distance(
      src_pad, val, q, epsilon=eps, source_where=sw, target_where=tw,
      tol=1e-6))(q)


def _padded(src):
  k, n, d = src.shape
  pad = np.concatenate([src, np.full((k, _PAD, d), np.nan, np.float32)], 1)
  sw = np.arange(n + _PAD)[None, :].repeat(k, 0) < n
  return pad, sw


def test_mixture_ot_value_and_ratio_gradient():
  src, val = _sources()
  pad, sw = _padded(src)
  tw = np.ones(len(val), bool)
  vg = lambda q, eps, tw=tw: _value_and_grad(
      pad, val, jnp.asarray(q, jnp.float32), jnp.float32(eps), sw, tw)
  # Small epsilon: the exact OT (linear_sum_assignment; 12 equal masses on
  # each side) <= OT_eps <= exact + eps * log(12).
  x = src[:2].reshape(12, 2).astype(np.float64)
  C = ((x[:, None] - val[None]) ** 2).sum(-1)
  r, c = optimize.linear_sum_assignment(C)
  exact = C[r, c].mean()
  got = float(vg([1.0, 1.0, 0.0], 0.02)[0])
  assert exact - 1e-3 <= got <= exact + 0.02 * np.log(12) + 1e-3
  # Ratio gradient vs finite differences of the float64 objective (padding
  # is masked NaN, so this also checks that padding changes nothing).
  eps, h = 0.3, 1e-4
  for q, k, l in [(np.array([0.5, 0.3, 0.2]), 0, 2),
                  (np.array([0.2, 0.5, 0.3]), 1, 0)]:
    e = np.zeros(3)
    e[k], e[l] = h, -h
    fd = (_np_mixture_ot(src, val, q + e, eps)
          - _np_mixture_ot(src, val, q - e, eps)) / (2 * h)
    v, g = vg(q, eps)
    np.testing.assert_allclose(v, _np_mixture_ot(src, val, q, eps), rtol=1e-4)
    np.testing.assert_allclose(g[k] - g[l], fd, rtol=2e-3, atol=2e-3)
  # At a vertex (sources 1 and 2 carry no mass) the one-sided derivative
  # towards source 1 is still right (c-transformed potentials).
  q = np.array([1.0, 0.0, 0.0])
  e = np.array([-h, h, 0.0])
  fd = (_np_mixture_ot(src, val, q + e, eps)
        - _np_mixture_ot(src, val, q, eps)) / h
  _, g = vg(q, eps)
  np.testing.assert_allclose(g[1] - g[0], fd, rtol=5e-3, atol=5e-3)
  # No valid validation point: defined, finite value and gradient.
  v0, g0 = vg(q, eps, np.zeros(len(val), bool))
  assert float(v0) == 0.0 and np.all(np.isfinite(g0))


def test_fit_projektor_recovers_model_and_masks():
  rng = np.random.default_rng(0)
  q = rng.dirichlet(np.ones(3), size=20)
  ot = rng.uniform(0.5, 2.0, size=20)
  b0, b1, b2 = -0.3, np.array([0.1, -0.2, 0.05]), np.array([0.2, 0.0, -0.1])
  c0, c1, c2 = 0.8, np.array([0.0, 0.1, -0.05]), np.array([0.1, 0.2, 0.0])
  perf = (b0 + q @ b1 + (q ** 2) @ b2) * ot + c0 + q @ c1 + (q ** 2) @ c2
  coef = jax.jit(T.fit_projektor)(q.astype(np.float32), ot.astype(np.float32),
                                  perf.astype(np.float32))
  q_new = rng.dirichlet(np.ones(3), size=5)
  ot_new = rng.uniform(0.5, 2.0, size=5)
  want = ((b0 + q_new @ b1 + (q_new ** 2) @ b2) * ot_new + c0 + q_new @ c1
          + (q_new ** 2) @ c2)
  got = jax.jit(T.projektor_predict)(coef, q_new.astype(np.float32),
                                     ot_new.astype(np.float32))
  np.testing.assert_allclose(got, want, atol=2e-3)
  # Ridge: numpy normal equations on the hand-built design; masked garbage
  # runs are ignored.
  phi = np.concatenate([ot[:, None], q * ot[:, None], q ** 2 * ot[:, None],
                        np.ones((20, 1)), q, q ** 2], axis=1)
  want_r = np.linalg.solve(phi.T @ phi + 0.1 * np.eye(14), phi.T @ perf)
  qg = np.concatenate([q, np.ones((3, 3))]).astype(np.float32)
  og = np.concatenate([ot, [9.0, 9.0, 9.0]]).astype(np.float32)
  pg = np.concatenate([perf, [-5.0, 5.0, 7.0]]).astype(np.float32)
  got_m = jax.jit(lambda *a: T.fit_projektor(*a[:3], ridge=0.1, where=a[3]))(
      qg, og, pg, np.arange(23) < 20)
  np.testing.assert_allclose(got_m, want_r, atol=2e-3)
  with pytest.raises(ValueError, match="performance"):
    T.fit_projektor(q, ot, perf[:-1])
  with pytest.raises(ValueError, match="coefficients"):
    T.projektor_predict(coef[:-1], q, ot)


def test_extrapolate_hand_and_scaling_laws():
  p = T.projektor_extrapolate(jnp.array([0.6, 0.5]), jnp.array([0.7, 0.5]),
                              n0=100.0, n1=1000.0, n=10000.0)
  np.testing.assert_allclose(p, [0.8, 0.5], atol=1e-6)
  # log-linear performance and (through log loss) a power law are exact.
  lin = lambda n: 0.3 + 0.05 * np.log(n)
  np.testing.assert_allclose(
      T.projektor_extrapolate(jnp.array(lin(500.0)), jnp.array(lin(2000.0)),
                              n0=500.0, n1=2000.0, n=1e6), lin(1e6), rtol=1e-5)
  loss = lambda n: 3.0 * n ** -0.3
  got = jax.jit(lambda a, b: T.projektor_extrapolate(
      a, b, n0=500.0, n1=2000.0, n=1e6))(jnp.log(loss(500.0)),
                                         jnp.log(loss(2000.0)))
  np.testing.assert_allclose(np.exp(got), loss(1e6), rtol=1e-4)
  with pytest.raises(ValueError, match="n1"):
    T.projektor_extrapolate(jnp.array(1.0), jnp.array(1.0), n0=5.0, n1=5.0,
                            n=9.0)
  with pytest.raises(ValueError, match="n0"):
    T.projektor_extrapolate(jnp.array(1.0), jnp.array(1.0), n0=-1.0, n1=5.0,
                            n=9.0)


# ~10 s of gradient-ascent steps: `make test-all`.
@pytest.mark.slow
def test_select_mixture_matches_grid_search():
  src, val = _sources(2, n=6, m=12)
  src, eps = src[:2], 0.3
  k = 2
  # Stage-1 fits at the two pilot sizes: accuracy falls with OT; the larger
  # scale also rewards source 0 a little.
  coef0 = np.zeros(4 * k + 2, np.float32)
  coef0[0], coef0[2 * k + 1] = -0.2, 0.9
  coef1 = coef0.copy()
  coef1[0] = -0.15
  coef1[2 * k + 2] = 0.05
  n0, n1, n = 100.0, 400.0, 5000.0

  def proj(q):
    ot0 = _np_mixture_ot(src[:, :4], val, q, eps)   # the n0 sub-pilot
    ot1 = _np_mixture_ot(src, val, q, eps)
    pr = lambda c, ot: ((c[0] + q @ c[1:1 + k] + q ** 2 @ c[1 + k:1 + 2 * k])
                        * ot + c[2 * k + 1] + q @ c[2 * k + 2:3 * k + 2]
                        + q ** 2 @ c[3 * k + 2:])
    t = np.log(n / n0) / np.log(n1 / n0)
    return pr(coef0, ot0) + t * (pr(coef1, ot1) - pr(coef0, ot0))

  grid = np.linspace(0.0, 1.0, 41)
  vals = [proj(np.array([p, 1 - p])) for p in grid]
  p_star = grid[int(np.argmax(vals))]
  assert 0.1 < p_star < 0.9   # an interior optimum
  q, perf = T.projektor_select_mixture(
      src, val, coef0, coef1, n0=n0, n1=n1, n=n, num_steps=40,
      learning_rate=0.5, decay=0.97, epsilon=eps, init_ratios=np.array(
          [0.05, 0.95]), source_where_n0=np.arange(6)[None].repeat(2, 0) < 4)
  np.testing.assert_allclose(q[0], p_star, atol=0.04)
  np.testing.assert_allclose(perf, proj(np.asarray(q, np.float64)),
                             atol=2e-3)
  assert abs(float(np.sum(q)) - 1.0) < 1e-6 and np.all(np.asarray(q) >= 0)
  with pytest.raises(ValueError, match="coefficients_n0"):
    T.projektor_select_mixture(src, val, coef0[:-1], coef1, n0=n0, n1=n1,
                               n=n, num_steps=1, learning_rate=0.1,
                               epsilon=eps)
  with pytest.raises(ValueError, match="ratios"):
    T.mixture_ot_distance(src, val, np.array([-1.0, 2.0]), epsilon=eps)
  with pytest.raises(ValueError, match="source_where"):
    T.mixture_ot_distance(src, val, np.array([1.0, 1.0]), epsilon=eps,
                          source_where=np.zeros((2, 6), bool))



# ----------------------------------------------------------------------------
# Sharded pool (issue 5: reductions over the pool are global, not per shard).
# ----------------------------------------------------------------------------


def _mesh(*spec):
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  return mesh, jax.sharding.NamedSharding(mesh, jax.P(*spec))


def test_tarot_sharded_pool_matches_single_device_and_authors_loop():
  mesh, rows = _mesh("data")
  c, t = _feats(1, n=64, m=6)
  cw = np.arange(64) >= 5     # the masked candidates all sit on shard 0
  k, eps = 17, 0.05
  wfd = jax.jit(lambda c, cw: T.whitened_feature_distance(
      c, t, candidate_where=cw))
  fn = jax.jit(lambda c, cw: (wfd(c, cw),) + T.tarot_fixed_size_select(
      wfd(c, cw), k, epsilon=eps, candidate_where=cw))
  want_d = wfd(c, cw)
  with jax.set_mesh(mesh):
    d, idx, w = fn(jax.device_put(c, rows), jax.device_put(cw, rows))
  np.testing.assert_allclose(d, want_d, atol=1e-5)
  # Global whitening statistics: the numpy Mahalanobis cosine with the mean
  # and covariance of all 59 + 6 valid points (not of one shard's).
  x = np.concatenate([c[cw], t]).astype(np.float64)
  mu = x.mean(0)
  inv = np.linalg.inv((x - mu).T @ (x - mu) / len(x) + 1e-5 * np.eye(4))
  cc, tc = c[cw] - mu, t - mu
  cos = (cc @ inv @ tc.T) / np.sqrt(
      np.einsum("id,de,ie->i", cc, inv, cc)[:, None]
      * np.einsum("id,de,ie->i", tc, inv, tc)[None, :])
  np.testing.assert_allclose(np.asarray(d)[cw],
                             np.sqrt(np.maximum(2 - 2 * cos, 0)), atol=2e-4)
  # Global neighbour lists and OT potentials: the authors' loop on the valid
  # candidates (one float64 Sinkhorn over all of them).
  sel, w_oracle, overflowed = _oracle_fixed_size(
      np.asarray(d, np.float64)[cw], k, eps, True)
  assert overflowed
  order = np.argsort(np.asarray(idx))
  np.testing.assert_array_equal(np.asarray(idx)[order],
                                np.flatnonzero(cw)[sel])
  np.testing.assert_allclose(np.asarray(w)[order], w_oracle, atol=2e-3)


def test_projektor_sharded_sources_match_single_device():
  mesh, pts = _mesh(None, "data")
  src, val = _sources()
  pad, sw = _padded(src)     # 8 points per source: the 2 NaN pads on 2 shards
  q, eps = jnp.array([0.5, 0.3, 0.2]), jnp.float32(0.3)
  tw = np.ones(len(val), bool)
  v_want, g_want = _value_and_grad(pad, val, q, eps, sw, tw)
  with jax.set_mesh(mesh):
    v, g = _value_and_grad(jax.device_put(pad, pts), val, q, eps,
                           jax.device_put(sw, pts), tw)
  np.testing.assert_allclose(v, v_want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(g, g_want, rtol=1e-4, atol=1e-5)
  # The per-point masses q_k / n_k use each source's global count.
  np.testing.assert_allclose(v, _np_mixture_ot(src, val, q, 0.3), rtol=1e-4)
