"""Tests for jaxkit.selection.influence_selection (MATES).

Oracles: a numpy transcription of the one-step look-ahead for squared-loss
linear regression (exact), central finite differences of the reference loss
for the small-step limit (-lr * grad L_ref . grad l_i), a least-squares solve
of the augmented ridge system (no centring) for the influence model, and the
Plackett-Luce probabilities p_i p_j / (1 - p_i) for Gumbel-top-2 draws.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import selection

# Jitted entry points (eager calls would compile every op separately).
_oracle = jax.jit(selection.oracle_influence,
                  static_argnames=("per_example_loss_fn", "update_fn",
                                   "batch_size"))
_fit = jax.jit(selection.fit_influence_model)

def _loss(w, batch):
  x, y = batch
  return (x @ w - y) ** 2


def _ref_loss_np(w, xr, yr):
  return np.mean((xr @ w - yr) ** 2)


def _data(seed=0, n=6, m=5, d=3):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=d).astype(np.float32) * 0.3
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = rng.normal(size=n).astype(np.float32)
  xr = rng.normal(size=(m, d)).astype(np.float32)
  yr = (xr @ np.array([1.0, -1.0, 0.5])).astype(np.float32)
  return w, x, y, xr, yr


def _np_oracle(w, x, y, xr, yr, lr):
  w, x, y = (np.asarray(a, np.float64) for a in (w, x, y))
  xr, yr = np.asarray(xr, np.float64), np.asarray(yr, np.float64)
  base = _ref_loss_np(w, xr, yr)
  out = []
  for xi, yi in zip(x, y):
    g = 2 * (xi @ w - yi) * xi
    out.append(_ref_loss_np(w - lr * g, xr, yr) - base)
  return np.array(out)


def test_oracle_matches_numpy_lookahead_and_finite_differences():
  w, x, y, xr, yr = _data()
  got = _oracle(_loss, w, (x, y), (xr, yr), lr=0.1)
  np.testing.assert_allclose(got, _np_oracle(w, x, y, xr, yr, 0.1),
                             rtol=1e-4, atol=1e-5)
  chunked = _oracle(_loss, w, (x, y), (xr, yr), lr=0.1,
                                       batch_size=4)
  np.testing.assert_allclose(chunked, got, rtol=1e-5, atol=1e-6)
  # Small-step limit: I_i / lr -> -grad L_ref . grad l_i, with grad L_ref by
  # central finite differences (float64 numpy).
  lr, h = 1e-3, 1e-5
  wd = w.astype(np.float64)
  fd = np.array([(_ref_loss_np(wd + h * e, xr, yr)
                  - _ref_loss_np(wd - h * e, xr, yr)) / (2 * h)
                 for e in np.eye(3)])
  gi = 2 * (x @ wd - y)[:, None] * x
  small = _oracle(_loss, w, (x, y), (xr, yr), lr=lr)
  np.testing.assert_allclose(np.asarray(small) / lr, -(gi @ fd), rtol=2e-2,
                             atol=2e-2)


def test_update_fn_and_pytree_params():
  w, x, y, xr, yr = _data(1)
  params = {"w": jnp.asarray(w), "b": jnp.zeros(())}
  loss = lambda p, b: (b[0] @ p["w"] + p["b"] - b[1]) ** 2
  sign_step = lambda p, g: jax.tree.map(lambda a, b: a - 0.05 * jnp.sign(b), p,
                                        g)
  got = _oracle(loss, params, (x, y), (xr, yr),
                                   update_fn=sign_step)
  base = _ref_loss_np(w.astype(np.float64), xr, yr)
  want = []
  for xi, yi in zip(x.astype(np.float64), y):
    r = xi @ w - yi
    w2 = w - 0.05 * np.sign(2 * r * xi)
    b2 = -0.05 * np.sign(2 * r)
    want.append(np.mean((xr @ w2 + b2 - yr) ** 2) - base)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_masks_and_fully_masked():
  w, x, y, xr, yr = _data(2)
  m = np.array([True, False, True, True, False, True])
  x_bad = np.where(m[:, None], x, np.nan).astype(np.float32)
  got = _oracle(_loss, w, (x_bad, y), (xr, yr), lr=0.1, where=m)
  full = _np_oracle(w, x, y, xr, yr, 0.1)
  np.testing.assert_allclose(np.asarray(got)[m], full[m], rtol=1e-4,
                             atol=1e-5)
  assert np.all(np.asarray(got)[~m] == 0.0)
  rm = np.array([True, True, False, True, False])
  got = _oracle(_loss, w, (x, y), (xr, yr), lr=0.1, reference_where=rm)
  np.testing.assert_allclose(got, _np_oracle(w, x, y, xr[rm], yr[rm], 0.1),
                             rtol=1e-4, atol=1e-5)
  none = _oracle(_loss, w, (x_bad, y), (xr, yr), lr=0.1,
                 where=np.zeros(6, bool))
  np.testing.assert_array_equal(none, 0.0)


def test_oracle_bad_inputs():
  w, x, y, xr, yr = _data()
  with pytest.raises(ValueError, match="exactly one"):
    selection.oracle_influence(_loss, w, (x, y), (xr, yr))
  with pytest.raises(ValueError, match="exactly one"):
    selection.oracle_influence(_loss, w, (x, y), (xr, yr), lr=0.1,
                               update_fn=lambda p, g: p)
  with pytest.raises(ValueError, match="lr"):
    selection.oracle_influence(_loss, w, (x, y), (xr, yr), lr=0.0)
  with pytest.raises(ValueError, match="candidates"):
    selection.oracle_influence(_loss, w, (x, y[:3]), (xr, yr), lr=0.1)
  with pytest.raises(ValueError, match="batch_size"):
    selection.oracle_influence(_loss, w, (x, y), (xr, yr), lr=0.1,
                               batch_size=0)
  with pytest.raises(ValueError, match="per_example_loss_fn"):
    selection.oracle_influence(lambda p, b: jnp.sum(_loss(p, b)), w, (x, y),
                               (xr, yr), lr=0.1)


def test_fit_influence_model_matches_augmented_lstsq():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(30, 4)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.0, 0.5]) + 0.3
       + 0.1 * rng.normal(size=30)).astype(np.float32)
  lam = 2.0
  # Ridge with an unpenalised intercept, as one least-squares problem.
  a = np.block([[x.astype(np.float64), np.ones((30, 1))],
                [np.sqrt(lam) * np.eye(4), np.zeros((4, 1))]])
  sol = np.linalg.lstsq(a, np.concatenate([y, np.zeros(4)]), rcond=None)[0]
  w, b = _fit(x, y, l2=lam, where=np.ones(30, bool))
  np.testing.assert_allclose(w, sol[:4], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(b, sol[4], rtol=1e-4, atol=1e-5)
  # Masked rows (nan) are ignored: same as fitting the subset.
  m = rng.random(30) > 0.3
  xn = np.where(m[:, None], x, np.nan).astype(np.float32)
  wm, bm = _fit(xn, y, l2=lam, where=m)
  a_m = np.block([[x[m].astype(np.float64), np.ones((m.sum(), 1))],
                  [np.sqrt(lam) * np.eye(4), np.zeros((4, 1))]])
  sol = np.linalg.lstsq(a_m, np.concatenate([y[m], np.zeros(4)]),
                        rcond=None)[0]
  np.testing.assert_allclose(wm, sol[:4], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(bm, sol[4], rtol=1e-4, atol=1e-5)
  w0, b0 = _fit(xn, y, l2=lam, where=np.zeros(30, bool))
  assert np.all(np.asarray(w0) == 0) and float(b0) == 0.0
  with pytest.raises(ValueError, match="l2"):
    selection.fit_influence_model(x, y, l2=0.0)
  with pytest.raises(ValueError, match="targets"):
    selection.fit_influence_model(x, y[:5])
  with pytest.raises(TypeError, match="features"):
    selection.fit_influence_model(x.astype(np.int32), y)


def test_gumbel_topk_is_plackett_luce_without_replacement():
  s = jnp.array([1.0, 0.2, -0.5])
  tau = 0.7
  keys = jax.random.split(jax.random.key(0), 20000)
  draws = jax.jit(jax.vmap(lambda k: selection.gumbel_topk_select(
      k, s, 2, temperature=tau)))(keys)
  draws = np.asarray(draws)
  assert np.all(draws[:, 0] != draws[:, 1])
  p = np.exp(np.asarray(s) / tau)
  p /= p.sum()
  for i in range(3):
    for j in range(3):
      if i != j:
        want = p[i] * p[j] / (1 - p[i])
        got = np.mean((draws[:, 0] == i) & (draws[:, 1] == j))
        assert abs(got - want) < 0.015, (i, j, got, want)


def test_gumbel_topk_deterministic_masks_and_errors():
  s = jnp.array([0.3, 2.0, np.nan, 1.0, -1.0])
  key = jax.random.key(1)
  np.testing.assert_array_equal(
      selection.gumbel_topk_select(key, s, 2, temperature=0.0), [1, 3])
  m = np.array([True, False, True, True, True])
  for t in (0.0, 1.0, 100.0):
    idx = np.asarray(selection.gumbel_topk_select(key, s, 3, temperature=t,
                                                  where=m))
    assert set(idx.tolist()) == {0, 3, 4}  # nan and masked never drawn
  # Fewer valid than k: the valid ones first, then masked fill.
  idx = selection.gumbel_topk_select(key, s, 4, temperature=1.0,
                                     where=np.array([0, 1, 0, 0, 1], bool))
  assert set(np.asarray(idx)[:2].tolist()) == {1, 4}
  with pytest.raises(ValueError, match="num_select"):
    selection.gumbel_topk_select(key, s, 0)
  with pytest.raises(ValueError, match="num_select"):
    selection.gumbel_topk_select(key, s, 6)
  with pytest.raises(ValueError, match="temperature"):
    selection.gumbel_topk_select(key, s, 2, temperature=-1.0)
  with pytest.raises(ValueError, match="scores"):
    selection.gumbel_topk_select(key, s[None], 2)


def test_mates_stage_on_sharded_pool_matches_single_device():
  # Issue 5: with candidates and reference batch sharded over the 8-device
  # mesh, the reference-loss mean, the ridge means / Gram matrix and the
  # top-k are global, not per shard.
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  rows = jax.sharding.NamedSharding(mesh, jax.P("data"))
  w, x, y, xr, yr = _data(seed=5, n=64, m=16)
  cw = np.arange(64) % 7 != 3
  rw = np.arange(16) >= 3            # masked reference rows: shards 0 and 1
  feats = np.random.default_rng(6).normal(size=(64, 4)).astype(np.float32)

  def stage(x, y, xr, yr, cw, rw, feats):
    infl = selection.oracle_influence(_loss, w, (x, y), (xr, yr), lr=0.1,
                                      where=cw, reference_where=rw)
    wf, bf = selection.fit_influence_model(feats, infl, l2=0.5, where=cw)
    pick = selection.gumbel_topk_select(jax.random.key(2), -(feats @ wf + bf),
                                        10, temperature=0.1, where=cw)
    return infl, wf, bf, pick

  args = (x, y, xr, yr, cw, rw, feats)
  want = jax.jit(stage)(*args)
  with jax.set_mesh(mesh):
    got = jax.jit(stage)(*(jax.device_put(a, rows) for a in args))
  for g, v in zip(got[:3], want[:3]):
    np.testing.assert_allclose(g, v, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got[3], want[3])
  # Independent: the look-ahead on the 13 valid reference rows.
  np.testing.assert_allclose(
      np.asarray(got[0])[cw],
      _np_oracle(w, x[cw], y[cw], xr[rw], yr[rw], 0.1), rtol=1e-4, atol=1e-6)
