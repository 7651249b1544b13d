"""Tests for jaxkit.losses.ordinal_solvers (PRESTO fit).

Oracles, all float64 numpy / scipy written from the paper's formulas:
``P(y = k) = sigmoid(a_k + b_k x) - sigmoid(a_{k-1} + b_{k-1} x)`` with an
analytic gradient; the penalised problem solved by scipy L-BFGS-B on the
split variables ``psi = psi+ - psi-`` (``psi_0 = b_0``, ``psi_k = b_k -
b_{k-1}``, bounds ``psi+- >= 0``); the proportional-odds MLE by scipy BFGS;
and the closed form ``b = 0``, ``a_k = logit(F_k)`` (empirical cumulative
class frequencies) above the largest useful ``lam``.

Compile time dominates: every fit shares one signature (200 rows + 8 padded
rows, D = 3, K = 4; ``lam``, ``penalize_first`` and ``num_iters`` are traced).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize
from scipy import special as sps

from jaxkit.losses import ordinal_solvers as S

K, D, N, PAD = 4, 3, 200, 8


def _np_nll_grad(a, b, x, y):
  """Mean NLL of the category-specific cumulative-logit model + gradients."""
  n = len(y)
  sig = sps.expit(a + x @ b.T)
  ext = np.concatenate([np.zeros((n, 1)), sig, np.ones((n, 1))], 1)
  r = np.arange(n)
  p = ext[r, y + 1] - ext[r, y]
  if np.any(p <= 0):
    return np.inf, None, None
  ds = sig * (1 - sig)
  deta = np.zeros_like(sig)
  up, lo = y < K - 1, y > 0
  deta[r[up], y[up]] -= ds[r[up], y[up]] / p[up]
  deta[r[lo], y[lo] - 1] += ds[r[lo], y[lo] - 1] / p[lo]
  deta /= n
  return -np.log(p).mean(), deta.sum(0), deta.T @ x


def _np_objective(a, b, x, y, lam, penalize_first):
  psi = np.diff(np.concatenate([np.zeros((1, D)), b]), axis=0)
  w = np.ones(K - 1)
  w[0] = float(penalize_first)
  return _np_nll_grad(a, b, x, y)[0] + lam * np.sum(w[:, None] * np.abs(psi))


def _oracle(x, y, lam, penalize_first):
  m = (K - 1) * D
  w = np.ones((K - 1, 1))
  w[0] = float(penalize_first)

  def fun(th):
    a = th[:K - 1]
    psi = (th[K - 1:K - 1 + m] - th[K - 1 + m:]).reshape(K - 1, D)
    f, ga, gb = _np_nll_grad(a, np.cumsum(psi, 0), x, y)
    if ga is None:
      return np.inf, np.zeros_like(th)
    gpsi = np.cumsum(gb[::-1], 0)[::-1]
    pen = lam * np.sum(w * (th[K - 1:K - 1 + m] + th[K - 1 + m:]).reshape(
        K - 1, D))
    return f + pen, np.concatenate([ga, (gpsi + lam * w).ravel(),
                                    (-gpsi + lam * w).ravel()])

  th0 = np.concatenate([np.linspace(-1, 1, K - 1), np.zeros(2 * m)])
  res = optimize.minimize(
      fun, th0, jac=True, method="L-BFGS-B",
      bounds=[(None, None)] * (K - 1) + [(0, None)] * (2 * m),
      options=dict(maxiter=20000, ftol=1e-15, gtol=1e-12, maxcor=30))
  psi = (res.x[K - 1:K - 1 + m] - res.x[K - 1 + m:]).reshape(K - 1, D)
  return res.x[:K - 1], np.cumsum(psi, 0), psi, res.fun


def _data(seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(N, D)
  b = np.array([[1.0, -0.5, 0.0], [1.0, -0.5, 0.0], [1.5, -0.5, 0.0]])
  eta = np.array([-1.0, 0.5, 2.0]) + x @ b.T
  y = (rng.rand(N, 1) > sps.expit(eta)).sum(1)
  # Padded rows: garbage features and labels, masked out.
  xp = np.concatenate([x, np.full((PAD, D), 1e6)]).astype(np.float32)
  yp = np.concatenate([y, np.full(PAD, 7)]).astype(np.int32)
  return x, y, xp, yp, np.arange(N + PAD) < N


def _fit(xp, yp, where, lam, penalize_first=True, num_iters=300):
  return S.presto_fit(xp, yp, num_classes=K, lam=lam, where=where,
                      penalize_first=penalize_first, num_iters=num_iters)


@pytest.mark.parametrize("penalize_first,lam", [(True, 0.03), (False, 0.01)])
def test_fit_matches_scipy_oracle(penalize_first, lam):
  x, y, xp, yp, where = _data()
  fit = _fit(xp, yp, where, lam, penalize_first)
  a, b, psi, f = _oracle(x, y, lam, penalize_first)
  np.testing.assert_allclose(fit.betas, b, atol=1e-5)
  np.testing.assert_allclose(fit.alphas, a, atol=1e-5)
  # Fused-lasso sparsity: exactly the oracle's zero differences are zero.
  got_psi = np.diff(np.concatenate([np.zeros((1, D)), fit.betas]), axis=0)
  np.testing.assert_array_equal(np.asarray(fit.betas)[0] == 0,
                                np.abs(b[0]) < 1e-9)
  np.testing.assert_array_equal(np.abs(got_psi[1:]) < 1e-6,
                                np.abs(psi[1:]) < 1e-9)
  assert 0 < np.sum(np.abs(psi[1:]) < 1e-9) < psi[1:].size
  np.testing.assert_allclose(fit.objective, f, rtol=1e-6)
  np.testing.assert_allclose(
      _np_objective(np.asarray(fit.alphas, np.float64),
                    np.asarray(fit.betas, np.float64), x, y, lam,
                    penalize_first), f, rtol=1e-6)
  assert bool(fit.converged) and float(fit.kkt_residual) < 1e-5
  np.testing.assert_allclose(
      S.presto_objective(xp, yp, fit.alphas, fit.betas, lam=lam,
                         penalize_first=penalize_first, where=where),
      f, rtol=1e-6)


def test_large_lambda_limits():
  x, y, xp, yp, where = _data()
  # Everything penalised: b = 0 and the intercepts of the class frequencies.
  fit = _fit(xp, yp, where, 10.0)
  np.testing.assert_array_equal(fit.betas, 0.0)
  cum = np.cumsum(np.bincount(y, minlength=K))[:K - 1] / N
  np.testing.assert_allclose(fit.alphas, sps.logit(cum), atol=1e-5)
  # Differences penalised only: the proportional-odds MLE.
  fit = _fit(xp, yp, where, 10.0, penalize_first=False)

  def po(th):
    f, ga, gb = _np_nll_grad(th[:K - 1], np.tile(th[K - 1:], (K - 1, 1)), x, y)
    if ga is None:
      return np.inf, np.zeros_like(th)
    return f, np.concatenate([ga, gb.sum(0)])

  res = optimize.minimize(po, np.r_[-1.0, 0.0, 1.0, np.zeros(D)], jac=True,
                          method="BFGS", options=dict(gtol=1e-10))
  np.testing.assert_allclose(fit.betas, np.tile(res.x[K - 1:], (K - 1, 1)),
                             atol=1e-5)
  np.testing.assert_allclose(fit.alphas, res.x[:K - 1], atol=1e-5)
  assert bool(fit.converged)


def test_report_masks_and_vmap():
  x, y, xp, yp, where = _data()
  early = _fit(xp, yp, where, 0.03, num_iters=1)
  assert not bool(early.converged) and float(early.kkt_residual) > 1e-3
  # All rows masked: defined and finite (no data, everything shrunk to 0).
  empty = _fit(xp, yp, np.zeros(N + PAD, bool), 0.03)
  assert np.all(np.isfinite(empty.alphas)) and np.all(empty.betas == 0)
  assert np.isfinite(float(empty.objective)) and bool(empty.converged)
  # A lambda grid under jit + vmap equals the single fits.
  lams = jnp.array([0.03, 10.0])
  grid = jax.jit(jax.vmap(lambda l: S.presto_fit(
      xp, yp, num_classes=K, lam=l, where=where, num_iters=300)))(lams)
  np.testing.assert_allclose(grid.betas[1], 0.0)
  np.testing.assert_allclose(grid.betas[0], _fit(xp, yp, where, 0.03).betas,
                             atol=1e-6)
  # presto_objective against the numpy objective, with padding.
  a = np.array([-1.0, 0.3, 1.5], np.float32)
  b = np.random.RandomState(1).randn(K - 1, D).astype(np.float32) * 0.1
  np.testing.assert_allclose(
      S.presto_objective(xp, yp, a, b, lam=0.2, where=where),
      _np_objective(a, b, x, y, 0.2, True), rtol=1e-5)
  np.testing.assert_allclose(
      S.presto_objective(x.astype(np.float32), y.astype(np.int32), a, b,
                         lam=0.2, penalize_first=False),
      _np_objective(a, b, x, y, 0.2, False), rtol=1e-5)


def test_bad_inputs():
  x = np.zeros((4, 2), np.float32)
  y = np.array([0, 1, 2, 1], np.int32)
  fit = S.presto_fit
  with pytest.raises(ValueError, match="labels"):
    fit(x, np.array([0, 1, 3, 1], np.int32), num_classes=3, lam=0.1)
  with pytest.raises(ValueError, match="labels"):
    fit(x, y[:3], num_classes=3, lam=0.1)
  with pytest.raises(TypeError, match="labels"):
    fit(x, y.astype(np.float32), num_classes=3, lam=0.1)
  with pytest.raises(ValueError, match="rank"):
    fit(x[0], y, num_classes=3, lam=0.1)
  with pytest.raises(ValueError, match="lam"):
    fit(x, y, num_classes=3, lam=-1.0)
  with pytest.raises(ValueError, match="num_classes"):
    fit(x, y, num_classes=1, lam=0.1)
  with pytest.raises(TypeError, match="num_iters"):
    fit(x, y, num_classes=3, lam=0.1, num_iters=2.5)
  with pytest.raises(ValueError, match="tol"):
    fit(x, y, num_classes=3, lam=0.1, tol=0.0)
  with pytest.raises(ValueError, match="betas"):
    S.presto_objective(x, y, np.zeros(2, np.float32),
                       np.zeros((2, 3), np.float32), lam=0.1)
