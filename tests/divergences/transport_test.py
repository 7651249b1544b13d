"""Tests for jaxkit.divergences.transport (oracles: POT, ott-jax, closed forms)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from ott.geometry import pointcloud
from ott.solvers import linear
from ott.tools import sinkhorn_divergence as ott_sd

from jaxkit.divergences import transport as tr

RTOL = 1e-4


def _problem(n, m, d=2, seed=0, weights=False):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  y = rng.normal(size=(m, d)) * 0.8 + 0.5
  if weights:
    a = rng.uniform(0.2, 1.0, n)
    b = rng.uniform(0.2, 1.0, m)
  else:
    a, b = np.ones(n), np.ones(m)
  return x, y, a / a.sum(), b / b.sum()


def _pot(x, y, a, b, eps, metric="sqeuclidean", method="sinkhorn_log",
         stop=1e-12):
  M = ot.dist(x, y, metric=metric)
  return float(ot.sinkhorn2(a, b, M, eps, method=method, numItermax=200000,
                            stopThr=stop))


@functools.partial(jax.jit, static_argnames=("eps", "method", "cost", "tol",
                                              "num_iters"))
def _jk(x, y, a, b, xw=None, yw=None, *, eps, method="auto",
        cost="sqeuclidean", tol=1e-6, num_iters=50000):
  return tr.sinkhorn(x, y, epsilon=eps, a=a, b=b, x_where=xw, y_where=yw,
                     method=method, cost=cost, tol=tol, num_iters=num_iters)


def _f32(*arrs):
  return [jnp.asarray(v, jnp.float32) for v in arrs]


# ---------------------------------------------------------------- vs POT


@pytest.mark.parametrize("method", ["auto", "log", "kernel"])
@pytest.mark.parametrize("weights", [False, True])
def test_matches_pot(method, weights):
  x, y, a, b = _problem(48, 40, weights=weights)
  eps = 0.1
  cost, aux = _jk(*_f32(x, y, a, b), eps=eps, method=method)
  np.testing.assert_allclose(float(cost), _pot(x, y, a, b, eps), rtol=RTOL)
  assert bool(aux.converged)
  assert float(aux.marginal_error) < 1e-5


def test_matches_pot_euclidean():
  x, y, a, b = _problem(40, 30, weights=True, seed=3)
  cost, _ = _jk(*_f32(x, y, a, b), eps=0.05, cost="euclidean")
  np.testing.assert_allclose(
      float(cost), _pot(x, y, a, b, 0.05, metric="euclidean"), rtol=RTOL)


def test_from_cost_l1_matches_pot():
  # SinKD-style: L1 cost between rows of two batches of probability vectors.
  rng = np.random.default_rng(1)
  ps = rng.dirichlet(np.ones(10), 16)
  pt = rng.dirichlet(np.ones(10), 16)
  M = np.abs(ps[:, None] - pt[None]).sum(-1)
  u = np.ones(16) / 16
  ref = ot.sinkhorn2(u, u, M, 0.1, method="sinkhorn_log", stopThr=1e-13,
                     numItermax=100000)
  cost, _ = jax.jit(lambda c: tr.sinkhorn_from_cost(c, epsilon=0.1,
                                                    tol=1e-6))(
                                                        jnp.asarray(M,
                                                                    jnp.float32))
  np.testing.assert_allclose(float(cost), ref, rtol=RTOL)


@pytest.mark.parametrize("method", ["auto", "log"])
def test_padded_matches_pot_on_subset(method):
  x, y, a, b = _problem(40, 36, weights=True, seed=2)
  n_pad, m_pad = 48, 44
  xp = np.full((n_pad, 2), np.nan)
  yp = np.full((m_pad, 2), 1e6)
  xp[:40], yp[:36] = x, y
  ap = np.zeros(n_pad)
  bp = np.full(m_pad, 7.0)  # garbage weights on padded points are ignored
  ap[:40], bp[:36] = a, b
  xw = np.arange(n_pad) < 40
  yw = np.arange(m_pad) < 36
  cost, aux = _jk(*_f32(xp, yp, ap, bp), jnp.asarray(xw), jnp.asarray(yw),
                  eps=0.1, method=method)
  np.testing.assert_allclose(float(cost), _pot(x, y, a, b, 0.1), rtol=RTOL)
  assert np.all(np.asarray(aux.plan)[~xw] == 0)
  assert np.all(np.asarray(aux.plan)[:, ~yw] == 0)
  assert np.all(np.isfinite(np.asarray(aux.f))) and np.all(
      np.isfinite(np.asarray(aux.g)))


def test_n512_auto_matches_pot():
  # POT's float64 kernel-domain solver is exact here (max C / eps ~ 800 <
  # 708 fails only in float32) and 200x faster than numpy sinkhorn_log.
  x, y, a, b = _problem(512, 512, seed=4)
  cost, aux = _jk(*_f32(x, y, a, b), eps=0.05, tol=1e-5)
  ref = _pot(x, y, a, b, 0.05, method="sinkhorn", stop=1e-10)
  np.testing.assert_allclose(float(cost), ref, rtol=RTOL)
  assert bool(aux.converged)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["log", "kernel"])
def test_n512_matches_pot_slow(method):
  x, y, a, b = _problem(512, 480, seed=5, weights=True)
  cost, _ = _jk(*_f32(x, y, a, b), eps=0.1, method=method, tol=1e-5)
  np.testing.assert_allclose(float(cost), _pot(x, y, a, b, 0.1), rtol=RTOL)


@pytest.mark.slow
def test_n512_padded_small_eps_slow():
  x, y, a, b = _problem(500, 470, seed=6, weights=True)
  xp = np.zeros((512, 2))
  yp = np.zeros((512, 2))
  xp[:500], yp[:470] = x, y
  ap = np.zeros(512)
  bp = np.zeros(512)
  ap[:500], bp[:470] = a, b
  xw = np.arange(512) < 500
  yw = np.arange(512) < 470
  cost, _ = _jk(*_f32(xp, yp, ap, bp), jnp.asarray(xw), jnp.asarray(yw),
                eps=0.01, tol=1e-5)
  np.testing.assert_allclose(float(cost), _pot(x, y, a, b, 0.01), rtol=RTOL)


# ---------------------------------------------------------------- methods


def test_kernel_and_log_agree_where_safe():
  x, y, a, b = _problem(64, 50, weights=True, seed=7)
  outs = [_jk(*_f32(x, y, a, b), eps=0.5, method=m) for m in
          ("kernel", "log", "auto")]
  for c, aux in outs[1:]:
    np.testing.assert_allclose(float(c), float(outs[0][0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(aux.plan),
                               np.asarray(outs[0][1].plan), atol=1e-6)


# ~30 s (POT at eps 0.02 to 1e-9): `make test-all`; the auto/log/kernel agreement above stays in the default run.
@pytest.mark.slow
def test_auto_is_stable_at_small_eps_where_kernel_fails():
  x, y, a, b = _problem(40, 30, seed=8)
  x[0] += 4.0  # an outlier: its whole kernel row underflows in float32
  eps = 0.02  # max C / eps ~ 1400, far beyond float32's ~87
  ref = _pot(x, y, a, b, eps, stop=1e-9)
  c_auto, aux = _jk(*_f32(x, y, a, b), eps=eps, tol=1e-5)
  np.testing.assert_allclose(float(c_auto), ref, rtol=RTOL)
  assert bool(aux.converged)
  _, aux_k = _jk(*_f32(x, y, a, b), eps=eps, method="kernel", tol=1e-5)
  assert not bool(aux_k.converged)


# ---------------------------------------------------------------- vs ott-jax


# The POT comparisons above (objective, plan, potentials' marginals) stay in
# the default run; this ott-jax one (~10-20 s of compiles) runs in
# `make test-all`.
@pytest.mark.slow
def test_matches_ott_objectives_and_potentials():
  x, y, a, b = _problem(50, 40, weights=True, seed=9)
  eps = 0.1
  x32, y32, a32, b32 = _f32(x, y, a, b)
  geom = pointcloud.PointCloud(x32, y32, epsilon=eps)
  out = jax.jit(lambda g: linear.solve(g, a=a32, b=b32, threshold=1e-6,
                                       max_iterations=20000))(geom)
  cost, aux = _jk(x32, y32, a32, b32, eps=eps)
  np.testing.assert_allclose(float(aux.objective), float(out.reg_ot_cost),
                             rtol=RTOL)
  np.testing.assert_allclose(float(aux.ent_objective),
                             float(out.ent_reg_cost), rtol=RTOL)
  np.testing.assert_allclose(float(cost), float(out.primal_cost), rtol=RTOL)
  # f = ott's f - eps log a, up to the gauge (f + c, g - c).
  f_ott = np.asarray(out.f) - eps * np.log(a)
  g_ott = np.asarray(out.g) - eps * np.log(b)
  shift = np.mean(np.asarray(aux.f) - f_ott)
  np.testing.assert_allclose(np.asarray(aux.f) - shift, f_ott, atol=2e-4)
  np.testing.assert_allclose(np.asarray(aux.g) + shift, g_ott, atol=2e-4)
  np.testing.assert_allclose(np.asarray(aux.plan), np.asarray(out.matrix),
                             atol=1e-6)


# ---------------------------------------------------------------- gradients


def test_grad_finite_with_padding():
  x, y, _, _ = _problem(20, 16, seed=10)
  xp = np.full((24, 2), np.nan)
  xp[:20] = x
  xw = jnp.arange(24) < 20

  def loss(xp):
    c, aux = tr.sinkhorn(xp, jnp.asarray(y, jnp.float32), epsilon=0.05,
                         x_where=xw, tol=1e-5)
    return c + aux.objective + jnp.sum(aux.f) * 0.0

  gx = jax.jit(jax.grad(loss))(jnp.asarray(xp, jnp.float32))
  assert np.all(np.isfinite(np.asarray(gx)))
  assert np.all(np.asarray(gx)[20:] == 0)


def test_grad_fully_masked_is_zero_and_finite():
  x = jnp.ones((5, 2))
  y = jnp.zeros((4, 2))
  fn = lambda x: tr.sinkhorn(x, y, epsilon=0.1,
                             x_where=jnp.zeros(5, bool))[0]
  assert float(jax.jit(fn)(x)) == 0.0
  g = jax.jit(jax.grad(fn))(x)
  assert np.all(np.asarray(g) == 0)


@pytest.mark.parametrize("which", ["cost", "objective"])
def test_grad_matches_finite_differences(which):
  x, y, a, b = _problem(8, 7, seed=11, weights=True)
  with jax.enable_x64(True):
    def fn(xx):
      c, aux = tr.sinkhorn(xx, jnp.asarray(y), epsilon=0.3, a=jnp.asarray(a),
                           b=jnp.asarray(b), tol=1e-12, num_iters=100000)
      return c if which == "cost" else aux.objective

    xx = jnp.asarray(x)
    g = np.asarray(jax.jit(jax.grad(fn))(xx))
    h = 1e-5
    fd = np.zeros_like(x)
    fj = jax.jit(fn)
    for i in range(x.shape[0]):
      for k in range(x.shape[1]):
        e = np.zeros_like(x)
        e[i, k] = h
        fd[i, k] = (float(fj(xx + e)) - float(fj(xx - e))) / (2 * h)
  np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


def test_grad_matches_ott():
  x, y, a, b = _problem(30, 25, seed=12)
  x32, y32 = _f32(x, y)
  eps = 0.1
  g_ott = jax.jit(jax.grad(lambda xx: linear.solve(
      pointcloud.PointCloud(xx, y32, epsilon=eps), threshold=1e-6,
      max_iterations=20000).reg_ot_cost))(x32)
  g_jk = jax.jit(jax.grad(lambda xx: tr.sinkhorn(
      xx, y32, epsilon=eps, tol=1e-6)[1].objective))(x32)
  np.testing.assert_allclose(np.asarray(g_jk), np.asarray(g_ott), rtol=1e-3,
                             atol=1e-5)


# ------------------------------------------------- batching, vmap, sharding


def _batched_problem(B=8, n=24, m=20, seed=13):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, n, 2)).astype(np.float32)
  y = rng.normal(size=(B, m, 2)).astype(np.float32)
  nx = rng.integers(3, n + 1, B)
  ny = rng.integers(3, m + 1, B)
  xw = np.arange(n)[None] < nx[:, None]
  yw = np.arange(m)[None] < ny[:, None]
  return x, y, xw, yw


def test_batched_equals_loop_and_vmap():
  x, y, xw, yw = _batched_problem()
  fn = jax.jit(lambda x, y, xw, yw: tr.sinkhorn(
      x, y, epsilon=0.05, x_where=xw, y_where=yw, tol=1e-6)[0])
  batched = np.asarray(fn(x, y, xw, yw))
  looped = np.array([float(fn(x[i], y[i], xw[i], yw[i]))
                     for i in range(len(x))])
  vmapped = np.asarray(jax.vmap(fn)(x, y, xw, yw))
  np.testing.assert_allclose(batched, looped, rtol=RTOL)
  np.testing.assert_allclose(vmapped, looped, rtol=RTOL)
  # Independent oracle for one element.
  i = 3
  ref = _pot(x[i][xw[i]].astype(np.float64), y[i][yw[i]].astype(np.float64),
             np.ones(xw[i].sum()) / xw[i].sum(),
             np.ones(yw[i].sum()) / yw[i].sum(), 0.05)
  np.testing.assert_allclose(batched[i], ref, rtol=RTOL)


def test_sharded_batch_equals_single_device():
  x, y, xw, yw = _batched_problem(seed=14)
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  fn = lambda x, y, xw, yw: tr.sinkhorn(x, y, epsilon=0.05, x_where=xw,
                                        y_where=yw, tol=1e-6)[0]
  args = [jax.device_put(v, sh) for v in (x, y, xw, yw)]
  np.testing.assert_allclose(np.asarray(jax.jit(fn)(*args)),
                             np.asarray(jax.jit(fn)(x, y, xw, yw)), rtol=1e-5)


def test_bf16_inputs_computed_in_f32():
  x, y, a, b = _problem(32, 32, seed=15)
  xb = jnp.asarray(x, jnp.bfloat16)
  yb = jnp.asarray(y, jnp.bfloat16)
  cost, aux = _jk(xb, yb, None, None, eps=0.1)
  assert cost.dtype == jnp.float32
  ref = _pot(np.asarray(xb.astype(jnp.float32), np.float64),
             np.asarray(yb.astype(jnp.float32), np.float64), a, b, 0.1)
  np.testing.assert_allclose(float(cost), ref, rtol=RTOL)


# ---------------------------------------------------- Sinkhorn divergence


# ott-jax comparison (~25 s of compiles): `make test-all`; the zero/positive/batched test below stays.
@pytest.mark.slow
def test_sinkhorn_divergence_matches_ott():
  x, y, a, b = _problem(40, 30, weights=True, seed=16)
  x32, y32, a32, b32 = _f32(x, y, a, b)
  eps = 0.1
  ref = ott_sd.sinkhorn_divergence(
      pointcloud.PointCloud, x32, y32, a=a32, b=b32, epsilon=eps,
      solve_kwargs=dict(threshold=1e-6, max_iterations=20000))[1].divergence
  div = jax.jit(lambda x, y, a, b: tr.sinkhorn_divergence(
      x, y, epsilon=eps, a=a, b=b, tol=1e-6))(x32, y32, a32, b32)
  np.testing.assert_allclose(float(div), float(ref), rtol=1e-3)
  # The entropy convention gives the same value (offsets cancel): check with
  # three explicit solves.
  ent = lambda p, q, wp, wq: float(_jk(p, q, wp, wq, eps=eps)[1].ent_objective)
  ent_div = ent(x32, y32, a32, b32) - 0.5 * (ent(x32, x32, a32, a32)
                                             + ent(y32, y32, b32, b32))
  np.testing.assert_allclose(float(div), ent_div, rtol=1e-3)


def test_sinkhorn_divergence_zero_and_positive_and_batched():
  rng = np.random.default_rng(17)
  x = jnp.asarray(rng.normal(size=(3, 32, 2)), jnp.float32)
  fn = jax.jit(lambda x, y: tr.sinkhorn_divergence(x, y, epsilon=0.1))
  np.testing.assert_allclose(np.asarray(fn(x, x)), 0.0, atol=1e-5)
  d = np.asarray(fn(x, x + jnp.array([1.0, 0.0])))
  assert d.shape == (3,) and np.all(d > 0.5)
  # Translation by t: S_eps -> |t|^2 = 1 as eps -> 0; close at eps = 0.1.
  np.testing.assert_allclose(d, 1.0, rtol=0.05)


def test_sinkhorn_divergence_grad_finite_with_padding():
  x, y, _, _ = _problem(20, 20, seed=18)
  xp = np.full((24, 2), np.nan)
  xp[:20] = x
  xw = jnp.arange(24) < 20
  g = jax.jit(jax.grad(lambda x: tr.sinkhorn_divergence(
      x, jnp.asarray(y, jnp.float32)[:20], epsilon=0.1, x_where=xw)))(
          jnp.asarray(xp, jnp.float32))
  assert np.all(np.isfinite(np.asarray(g)))


# ---------------------------------------------------------------- Monge gap


def _ott_monge_gap(x, tx, eps):
  """ott-jax's monge_gap_from_samples formula (ott.neural needs diffrax)."""
  try:
    from ott.neural.methods.monge_gap import monge_gap_from_samples
    return float(monge_gap_from_samples(x, tx, epsilon=eps, threshold=1e-6,
                                        max_iterations=20000))
  except ImportError:
    geom = pointcloud.PointCloud(x, tx, epsilon=eps, scale_cost=1.0)
    out = linear.solve(geom, threshold=1e-6, max_iterations=20000)
    return float(jnp.mean(jnp.sum((x - tx) ** 2, -1)) - out.ent_reg_cost)


def test_monge_gap_matches_ott_and_signs():
  rng = np.random.default_rng(19)
  x = jnp.asarray(rng.normal(size=(64, 2)), jnp.float32)
  A = jnp.array([[1.5, 0.4], [0.4, 0.8]])  # symmetric PD: gradient of convex
  R = jnp.array([[0.0, -1.0], [1.0, 0.0]])  # rotation by 90 degrees
  mg = jax.jit(lambda x, t, eps: tr.monge_gap(x, t, epsilon=eps, tol=1e-6),
               static_argnums=2)
  for t in (x @ A, x @ R):
    np.testing.assert_allclose(float(mg(x, t, 0.1)),
                               _ott_monge_gap(x, t, 0.1), rtol=1e-3)
  gaps = [float(mg(x, x @ A, e)) for e in (0.1, 0.03, 0.01)]
  assert all(g >= 0 for g in gaps)
  assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.1
  assert float(mg(x, x @ R, 0.01)) > 1.0
  # Translations are optimal too.
  assert float(mg(x, x + 3.0, 0.01)) < 0.1


def test_monge_gap_padded_equals_subset():
  rng = np.random.default_rng(20)
  x = rng.normal(size=(40, 2)).astype(np.float32)
  t = (x @ np.array([[0., -1.], [1., 0.]])).astype(np.float32)
  w = np.arange(40) < 33
  xp = np.where(w[:, None], x, np.nan).astype(np.float32)
  mg = jax.jit(lambda x, t, w: tr.monge_gap(x, t, epsilon=0.05, where=w,
                                            tol=1e-6))
  v = mg(xp, np.where(w[:, None], t, np.nan), w)
  ref = mg(x[:33], t[:33], None)
  np.testing.assert_allclose(float(v), float(ref), rtol=1e-4)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(epsilon=0.0), ValueError, "epsilon"),
    (dict(epsilon=-1.0), ValueError, "epsilon"),
    (dict(epsilon=0.1, cost="l1"), ValueError, "cost"),
    (dict(epsilon=0.1, method="fast"), ValueError, "method"),
    (dict(epsilon=0.1, num_iters=0), ValueError, "num_iters"),
    (dict(epsilon=0.1, x_where=np.ones(4, bool)), ValueError, "x_where"),
    (dict(epsilon=0.1, y_where=np.ones((5, 1), bool)), ValueError, "y_where"),
    (dict(epsilon=0.1, a=np.ones(3)), ValueError, "`a`"),
])
def test_bad_input(kwargs, err, match):
  x = np.zeros((5, 2), np.float32)
  y = np.zeros((6, 2), np.float32)
  with pytest.raises(err, match=match):
    tr.sinkhorn(x, y, **kwargs)


def test_bad_input_shapes_and_dtypes():
  x = np.zeros((5, 2), np.float32)
  with pytest.raises(ValueError, match="feature dimension"):
    tr.sinkhorn(x, np.zeros((6, 3), np.float32), epsilon=0.1)
  with pytest.raises(TypeError, match="`x`"):
    tr.sinkhorn(np.zeros((5, 2), np.int32), x, epsilon=0.1)
  with pytest.raises(TypeError, match="`cost_matrix`"):
    tr.sinkhorn_from_cost(np.zeros((5, 2), np.int32), epsilon=0.1)
  with pytest.raises(ValueError, match="`t_x`"):
    tr.monge_gap(x, np.zeros((4, 2), np.float32), epsilon=0.1)
  with pytest.raises(ValueError, match="`a`"):
    tr.sinkhorn(x, x, epsilon=0.1, a=-np.ones(5))
  with pytest.raises(TypeError, match="x_where"):
    tr.sinkhorn(x, x, epsilon=0.1, x_where=np.ones(5, np.float32))
