"""Tests for jaxkit.divergences.gaussian (closed-form Gaussian divergences).

Oracles: textbook formulas written independently in numpy float64 (explicit
inverses, determinants and scipy.linalg.sqrtm), scipy.stats Monte Carlo,
scipy.integrate.quad in 1-D, POT's Bures–Wasserstein distance and ot.emd2 on
samples, and hand-computed univariate values.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
import scipy.integrate
import scipy.linalg
import scipy.stats
from jax.test_util import check_grads

from jaxkit.divergences.gaussian import (gaussian_cauchy_schwarz, gaussian_kl,
                                         gaussian_renyi, gaussian_w2)

ALL = {
    "kl": gaussian_kl,
    "w2": gaussian_w2,
    "cs": gaussian_cauchy_schwarz,
    "renyi": functools.partial(gaussian_renyi, alpha=0.7),
}


def _spd(rng, batch, d, jitter=0.3):
  a = rng.normal(size=batch + (d, d))
  return a @ np.swapaxes(a, -1, -2) / d + jitter * np.eye(d)


def _problem(seed=0, batch=(3,), d=3):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=batch + (d,)), _spd(rng, batch, d),
          rng.normal(size=batch + (d,)), _spd(rng, batch, d))


# --------------------------- numpy float64 oracles ---------------------------


def np_kl(mp, sp, mq, sq):
  d = len(mp)
  iq = np.linalg.inv(sq)
  dl = mq - mp
  return 0.5 * (np.trace(iq @ sp) + dl @ iq @ dl - d
                + np.log(np.linalg.det(sq) / np.linalg.det(sp)))


def np_w2(mp, sp, mq, sq):
  r = scipy.linalg.sqrtm(sp)
  cross = scipy.linalg.sqrtm(r @ sq @ r)
  return float(np.sum((mp - mq) ** 2)
               + np.real(np.trace(sp + sq - 2 * cross)))


def np_cs(mp, sp, mq, sq):
  # -2 log int pq + log int p^2 + log int q^2 with scipy densities.
  d = len(mp)
  cross = scipy.stats.multivariate_normal(mq, sp + sq).logpdf(mp)
  selfp = scipy.stats.multivariate_normal(np.zeros(d), 2 * sp).logpdf(
      np.zeros(d))
  selfq = scipy.stats.multivariate_normal(np.zeros(d), 2 * sq).logpdf(
      np.zeros(d))
  return -2 * cross + selfp + selfq


def np_renyi(mp, sp, mq, sq, a):
  sa = a * sq + (1 - a) * sp
  dl = mp - mq
  return (a / 2 * dl @ np.linalg.inv(sa) @ dl
          - np.log(np.linalg.det(sa) / (np.linalg.det(sp) ** (1 - a)
                                         * np.linalg.det(sq) ** a))
          / (2 * (a - 1)))


def _batched(fn, *args, **kw):
  return np.array([fn(*[a[i] for a in args], **kw)
                   for i in range(len(args[0]))])


# ---------------------------------- KL ---------------------------------------


def test_kl_matches_numpy_textbook_formula():
  mp, sp, mq, sq = _problem()
  got = jax.jit(gaussian_kl)(mp, sp, mq, sq)
  np.testing.assert_allclose(got, _batched(np_kl, mp, sp, mq, sq), rtol=1e-4,
                             atol=1e-5)


def test_kl_matches_scipy_monte_carlo():
  mp, sp, mq, sq = (a[0] for a in _problem(seed=1, batch=(1,), d=2))
  p = scipy.stats.multivariate_normal(mp, sp)
  q = scipy.stats.multivariate_normal(mq, sq)
  s = p.rvs(size=200_000, random_state=np.random.default_rng(0))
  log_r = p.logpdf(s) - q.logpdf(s)
  mc, se = log_r.mean(), log_r.std() / np.sqrt(len(s))
  got = float(jax.jit(gaussian_kl)(mp, sp, mq, sq))
  assert abs(got - mc) < 4 * se + 1e-4, (got, mc, se)


@pytest.mark.parametrize("mp,vp,mq,vq,expected", [
    (0.0, 1.0, 0.0, 1.0, 0.0),
    (0.0, 1.0, 1.0, 1.0, 0.5),  # delta^2 / 2
    (0.0, 1.0, 1.0, 4.0, np.log(2.0) + 2.0 / 8.0 - 0.5),
    (2.0, 9.0, -1.0, 1.0, -np.log(3.0) + (9.0 + 9.0) / 2.0 - 0.5),
])
def test_kl_univariate_hand_values(mp, vp, mq, vq, expected):
  # KL(N(m1,s1^2)||N(m2,s2^2)) = log(s2/s1) + (s1^2 + (m1-m2)^2)/(2 s2^2) - 1/2.
  for diagonal in (True, False):
    cp = np.array([vp]) if diagonal else np.array([[vp]])
    cq = np.array([vq]) if diagonal else np.array([[vq]])
    got = gaussian_kl(np.array([mp]), cp, np.array([mq]), cq,
                      diagonal=diagonal)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_kl_vae_standard_normal_prior():
  # Kingma & Welling, Appendix B: -1/2 sum(1 + log var - mu^2 - var).
  rng = np.random.default_rng(3)
  mu = rng.normal(size=(4, 5))
  var = rng.uniform(0.1, 3.0, size=(4, 5))
  want = -0.5 * np.sum(1 + np.log(var) - mu ** 2 - var, axis=-1)
  got = gaussian_kl(mu, var, np.zeros_like(mu), np.ones_like(var),
                    diagonal=True)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_kl_nearly_equal_variances_no_cancellation():
  v = np.float32(1.0) + np.float32(1e-3)
  got = float(gaussian_kl(np.zeros(1, np.float32), np.array([v]),
                          np.zeros(1, np.float32), np.ones(1, np.float32),
                          diagonal=True))
  r = np.float64(v)
  want = 0.5 * (r - 1 - np.log(r))
  np.testing.assert_allclose(got, want, rtol=1e-3)


@pytest.mark.parametrize("name", sorted(ALL))
def test_diagonal_matches_full_with_diagonal_matrices(name):
  rng = np.random.default_rng(4)
  mp, mq = rng.normal(size=(2, 3, 4))
  vp, vq = rng.uniform(0.2, 2.0, size=(2, 3, 4))
  fn = ALL[name]
  full = fn(mp, vp[..., None] * np.eye(4), mq, vq[..., None] * np.eye(4))
  diag = fn(mp, vp, mq, vq, diagonal=True)
  np.testing.assert_allclose(diag, full, rtol=1e-5, atol=1e-6)


# ---------------------------------- W2 ---------------------------------------


def test_w2_matches_pot_and_sqrtm_formula():
  mp, sp, mq, sq = _problem(seed=5, batch=(4,), d=3)
  got = np.asarray(jax.jit(gaussian_w2)(mp, sp, mq, sq))
  pot = np.array([
      ot.gaussian.bures_wasserstein_distance(mp[i], mq[i], sp[i], sq[i]) ** 2
      for i in range(4)])  # POT returns W2, not W2^2.
  np.testing.assert_allclose(got, pot, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got, _batched(np_w2, mp, sp, mq, sq), rtol=1e-4,
                             atol=1e-5)


def test_w2_equal_means_is_squared_bures():
  _, sp, _, sq = _problem(seed=6, batch=(2,), d=3)
  m = np.zeros((2, 3))
  got = gaussian_w2(m, sp, m, sq)
  want = [ot.gaussian.bures_distance(sp[i], sq[i]) ** 2 for i in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_w2_matches_emd_on_1d_samples():
  # Quantile ("quasi-Monte Carlo") samples: the empirical measures converge
  # to the Gaussians without the O(1/sqrt(n)) noise of random draws.
  n = 1000
  u = scipy.stats.norm.ppf((np.arange(n) + 0.5) / n)
  rng = np.random.default_rng(7)
  xs = rng.permutation(0.5 + 1.5 * u)
  ys = rng.permutation(-1.0 + 0.7 * u)
  a = np.full(n, 1.0 / n)
  emp = ot.emd2(a, a, (xs[:, None] - ys[None, :]) ** 2, numItermax=10**7)
  got = float(gaussian_w2(np.array([0.5]), np.array([2.25]),
                          np.array([-1.0]), np.array([0.49]), diagonal=True))
  np.testing.assert_allclose(got, 1.5 ** 2 + 0.8 ** 2)
  np.testing.assert_allclose(emp, got, rtol=0.01)


def test_w2_symmetric_and_zero_for_identical():
  mp, sp, mq, sq = _problem(seed=8)
  np.testing.assert_allclose(gaussian_w2(mp, sp, mq, sq),
                             gaussian_w2(mq, sq, mp, sp), rtol=1e-4)
  np.testing.assert_allclose(gaussian_w2(mp, sp, mp, sp), 0.0, atol=1e-5)


def test_w2_gradient_finite_at_repeated_eigenvalues():
  # Identity covariances: an eigenvector-based sqrtm would give nan here.
  def f(s):
    return gaussian_w2(jnp.zeros(3), s, jnp.ones(3), 2.0 * jnp.eye(3))
  g = jax.jit(jax.grad(f))(jnp.eye(3))
  assert np.all(np.isfinite(g))
  # d/dS tr(S) - 2 tr((S^1/2 2I S^1/2)^1/2) at S = I: I - sqrt(2) I.
  np.testing.assert_allclose(g, (1 - np.sqrt(2.0)) * np.eye(3), atol=1e-5)


# -------------------------------- Rényi --------------------------------------


@pytest.mark.parametrize("alpha", [0.3, 0.5, 2.0, 3.0])
def test_renyi_matches_quadrature_1d(alpha):
  mp, sp, mq, sq = 0.3, 1.2, -0.4, 1.5
  p = scipy.stats.norm(mp, np.sqrt(sp))
  q = scipy.stats.norm(mq, np.sqrt(sq))
  integral, _ = scipy.integrate.quad(
      lambda t: np.exp(alpha * p.logpdf(t) + (1 - alpha) * q.logpdf(t)),
      -np.inf, np.inf, epsabs=1e-12)
  want = np.log(integral) / (alpha - 1)
  got = gaussian_renyi(np.array([mp]), np.array([[sp]]), np.array([mq]),
                       np.array([[sq]]), alpha=alpha)
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_renyi_matches_numpy_formula():
  mp, sp, mq, sq = _problem(seed=9)
  # For alpha > 1, alpha*Sq + (1-alpha)*Sp = Sp + alpha*(Sq - Sp) is PD when
  # Sq - Sp is PSD.
  sq_big = sp + _spd(np.random.default_rng(90), (3,), 3)
  for alpha, sq in ((0.25, sq), (0.8, sq), (1.3, sq_big), (2.5, sq_big)):
    got = jax.jit(functools.partial(gaussian_renyi, alpha=alpha))(
        mp, sp, mq, sq)
    np.testing.assert_allclose(
        got, _batched(np_renyi, mp, sp, mq, sq, a=alpha), rtol=1e-4,
        atol=1e-5)


def test_renyi_approaches_kl_as_alpha_to_one():
  mp, sp, mq, sq = _problem(seed=10)
  kl = np.asarray(gaussian_kl(mp, sp, mq, sq))
  eps = 1e-2
  lo = np.asarray(gaussian_renyi(mp, sp, mq, sq, alpha=1 - eps))
  hi = np.asarray(gaussian_renyi(mp, sp, mq, sq, alpha=1 + eps))
  np.testing.assert_allclose(hi, kl, rtol=0.05)
  np.testing.assert_allclose(lo, kl, rtol=0.05)
  # The first-order terms cancel in the symmetric average.
  np.testing.assert_allclose(0.5 * (lo + hi), kl, rtol=2e-3)
  # D_alpha is non-decreasing in alpha.
  assert np.all(lo <= kl + 1e-5) and np.all(kl <= hi + 1e-5)


def test_renyi_half_is_symmetric_bhattacharyya():
  mp, sp, mq, sq = _problem(seed=11)
  a = gaussian_renyi(mp, sp, mq, sq, alpha=0.5)
  b = gaussian_renyi(mq, sq, mp, sp, alpha=0.5)
  np.testing.assert_allclose(a, b, rtol=1e-5)


def test_renyi_invalid_order_raises_eagerly_and_is_inf_under_jit():
  m = np.zeros(1)
  # alpha * 1 + (1 - alpha) * 4 <= 0 for alpha >= 4/3: the integral diverges.
  for diagonal in (False, True):
    cp = np.array([4.0]) if diagonal else np.array([[4.0]])
    cq = np.array([1.0]) if diagonal else np.array([[1.0]])
    with pytest.raises(ValueError, match="alpha"):
      gaussian_renyi(m, cp, m, cq, alpha=2.0, diagonal=diagonal)
    f = jax.jit(lambda a, cp=cp, cq=cq, diagonal=diagonal: gaussian_renyi(
        m, cp, m, cq, alpha=a, diagonal=diagonal))
    assert float(f(2.0)) == np.inf
    assert np.isfinite(float(f(1.2)))  # a valid alpha > 1
    g = jax.jit(jax.grad(lambda c, cq=cq, diagonal=diagonal: gaussian_renyi(
        m, c, m, cq, alpha=2.0, diagonal=diagonal)))(jnp.asarray(cp))
    assert np.all(np.isfinite(g))


def test_renyi_traced_alpha_gradient_is_finite():
  mp, sp, mq, sq = _problem(seed=12, batch=(2,))
  g = jax.jit(jax.grad(
      lambda a: jnp.sum(gaussian_renyi(mp, sp, mq, sq, alpha=a))))(0.6)
  assert np.isfinite(g)


# ------------------------------ Cauchy–Schwarz -------------------------------


def test_cs_matches_quadrature_1d():
  mp, sp, mq, sq = 0.3, 0.8, -0.9, 2.1
  p = scipy.stats.norm(mp, np.sqrt(sp))
  q = scipy.stats.norm(mq, np.sqrt(sq))
  quad = functools.partial(scipy.integrate.quad, a=-np.inf, b=np.inf,
                           epsabs=1e-13)
  ipq = quad(lambda t: p.pdf(t) * q.pdf(t))[0]
  ipp = quad(lambda t: p.pdf(t) ** 2)[0]
  iqq = quad(lambda t: q.pdf(t) ** 2)[0]
  want = -np.log(ipq ** 2 / (ipp * iqq))
  for diagonal in (True, False):
    cp = np.array([sp]) if diagonal else np.array([[sp]])
    cq = np.array([sq]) if diagonal else np.array([[sq]])
    got = gaussian_cauchy_schwarz(np.array([mp]), cp, np.array([mq]), cq,
                                  diagonal=diagonal)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_cs_matches_scipy_density_formula():
  mp, sp, mq, sq = _problem(seed=13)
  got = jax.jit(gaussian_cauchy_schwarz)(mp, sp, mq, sq)
  np.testing.assert_allclose(got, _batched(np_cs, mp, sp, mq, sq), rtol=1e-4,
                             atol=1e-5)


def test_cs_symmetric_and_zero_for_identical():
  mp, sp, mq, sq = _problem(seed=14)
  np.testing.assert_allclose(gaussian_cauchy_schwarz(mp, sp, mq, sq),
                             gaussian_cauchy_schwarz(mq, sq, mp, sp),
                             rtol=1e-5)
  np.testing.assert_allclose(gaussian_cauchy_schwarz(mp, sp, mp, sp), 0.0,
                             atol=1e-5)
  v = np.full((3, 3), 0.7)
  np.testing.assert_allclose(
      gaussian_cauchy_schwarz(mp, v, mp, v, diagonal=True), 0.0, atol=1e-6)


# ------------------------- gradients, dtypes, transforms ---------------------


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("diagonal", [False, True])
def test_gradients_match_finite_differences(name, diagonal):
  with jax.enable_x64(True):
    mp, sp, mq, sq = (jnp.asarray(a) for a in _problem(seed=15, batch=(2,),
                                                        d=3))
    if diagonal:
      sp, sq = jnp.diagonal(sp, axis1=-2, axis2=-1), jnp.diagonal(
          sq, axis1=-2, axis2=-1)
    fn = ALL[name]

    def f(mp, sp, mq, sq):
      if not diagonal:  # finite differences must stay symmetric
        sp = 0.5 * (sp + jnp.swapaxes(sp, -1, -2))
        sq = 0.5 * (sq + jnp.swapaxes(sq, -1, -2))
      return jnp.sum(fn(mp, sp, mq, sq, diagonal=diagonal))

    check_grads(f, (mp, sp, mq, sq), order=1, modes=("rev",), atol=1e-4,
                rtol=1e-4)


@pytest.mark.parametrize("name", sorted(ALL))
def test_bf16_inputs_accumulate_in_float32(name):
  mp, sp, mq, sq = _problem(seed=16)
  bf = [jnp.asarray(a, jnp.bfloat16) for a in (mp, sp, mq, sq)]
  got = ALL[name](*bf)
  assert got.dtype == jnp.float32
  # Reference: the same bf16-rounded inputs in float32.
  want = ALL[name](*[a.astype(jnp.float32) for a in bf])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got, ALL[name](mp, sp, mq, sq), rtol=0.1,
                             atol=0.05)


@pytest.mark.parametrize("name", sorted(ALL))
def test_jit_vmap_and_batch_dims_agree(name):
  mp, sp, mq, sq = _problem(seed=17, batch=(2, 3), d=2)
  fn = ALL[name]
  batched = fn(mp, sp, mq, sq)
  assert batched.shape == (2, 3)
  vm = jax.jit(jax.vmap(jax.vmap(fn)))(mp, sp, mq, sq)
  np.testing.assert_allclose(vm, batched, rtol=1e-5, atol=1e-6)
  single = fn(mp[1, 2], sp[1, 2], mq[1, 2], sq[1, 2])
  assert single.shape == ()
  np.testing.assert_allclose(single, batched[1, 2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ALL))
def test_sharded_batch_equals_single_device(name):
  mesh = jax.make_mesh((8,), ("data",))  # Explicit axes by default
  sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  args = [np.asarray(a, np.float32) for a in _problem(seed=18, batch=(16,))]
  fn = ALL[name]
  sharded = [jax.device_put(a, sharding) for a in args]
  np.testing.assert_allclose(jax.jit(fn)(*sharded), fn(*args), rtol=1e-5,
                             atol=1e-6)


# ------------------------------- bad inputs ----------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
def test_bad_inputs_raise(name):
  fn = ALL[name]
  mp, sp, mq, sq = _problem(seed=19, batch=(2,), d=3)
  with pytest.raises(ValueError, match="cov_p"):
    fn(mp, sp[..., :2], mq, sq)  # non-square
  with pytest.raises(ValueError, match="cov_q"):
    fn(mp, sp, mq, sq[..., :2, :2])  # wrong d
  with pytest.raises(ValueError, match="mean_p"):
    fn(mp[..., :2], sp, mq, sq)  # mismatched means
  with pytest.raises(ValueError, match="mean_p"):
    fn(mp[0], sp, mq, sq)  # mismatched batch dims (no broadcasting)
  with pytest.raises(TypeError, match="mean_q"):
    fn(mp, sp, np.zeros((2, 3), np.int32), sq)
  with pytest.raises(TypeError, match="cov_p"):
    fn(mp, np.ones((2, 3, 3), bool), mq, sq)
  with pytest.raises(ValueError, match="cov_p"):
    fn(mp, -sp, mq, sq)  # not PD
  asym = sp.copy()
  asym[..., 0, 1] += 1.0
  with pytest.raises(ValueError, match="symmetric"):
    fn(mp, asym, mq, sq)
  with pytest.raises(ValueError, match="cov_q"):
    fn(mp, np.ones((2, 3)), mq, np.zeros((2, 3)), diagonal=True)
  with pytest.raises(ValueError, match="cov_p"):
    fn(mp, sp, mq, sq, diagonal=True)  # matrices with diagonal=True
  with pytest.raises(TypeError, match="diagonal"):
    fn(mp, sp, mq, sq, diagonal="yes")
  with pytest.raises(ValueError, match="mean_p"):
    fn(np.float32(0.0), np.float32(1.0), np.float32(0.0), np.float32(1.0),
       diagonal=True)


def test_renyi_bad_alpha_raises():
  mp, sp, mq, sq = _problem(seed=20, batch=(2,), d=2)
  for bad in (1.0, 1, 0.0, -0.5, float("nan")):
    with pytest.raises(ValueError, match="alpha"):
      gaussian_renyi(mp, sp, mq, sq, alpha=bad)
  with pytest.raises(ValueError, match="alpha"):
    gaussian_renyi(mp, sp, mq, sq, alpha=np.array([0.5, 0.5]))
  with pytest.raises(TypeError, match="alpha"):
    gaussian_renyi(mp, sp, mq, sq, alpha=True)
  with pytest.raises(TypeError):
    gaussian_renyi(mp, sp, mq, sq)  # alpha is required
