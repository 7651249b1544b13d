"""Tests for jaxkit.divergences.kernel (Cauchy–Schwarz from samples, MMD²).

Oracles: direct numpy float64 evaluations of the estimators' formulas (Gram
matrices built with explicit loops / broadcasting, no log-sum-exp), integrals
of products of scipy.stats.gaussian_kde densities (integrate_kde), the Gaussian
closed form of D_CS written with scipy.stats densities (seed_003 X11), the
closed-form population MMD² of two Gaussians, and scipy's pdist median.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special
import scipy.stats
from jax.test_util import check_grads

from jaxkit.divergences.kernel import cauchy_schwarz, mmd2

# --------------------------------- oracles -----------------------------------


def np_sq_dists(a, b):
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def np_cs(x, y, sigma, unbiased=False):
  """D_CS of Gaussian KDEs with bandwidth sigma: Gram kernel of variance 2s^2."""

  def term(a, b, same):
    k = np.exp(-np_sq_dists(a, b) / (4.0 * sigma ** 2))
    if same and unbiased:
      n = len(a)
      return (k.sum() - np.trace(k)) / (n * (n - 1))
    return k.mean()

  return (-2 * np.log(term(x, y, False)) + np.log(term(x, x, True))
          + np.log(term(y, y, True)))


def np_kernel(a, b, sigma, kernel):
  r = np.sqrt(np.sum((np.asarray(a, np.float64) - b) ** 2))
  if kernel == "gaussian":
    return np.exp(-r ** 2 / (2 * sigma ** 2))
  if kernel == "laplacian":
    return np.exp(-r / sigma)
  return 1.0 / np.sqrt(1.0 + r ** 2 / sigma ** 2)


def np_mmd2_loops(x, y, sigma, kernel="gaussian", unbiased=False):
  n, m = len(x), len(y)
  kxx = kyy = kxy = 0.0
  for i in range(n):
    for j in range(n):
      if not (unbiased and i == j):
        kxx += np_kernel(x[i], x[j], sigma, kernel)
  for i in range(m):
    for j in range(m):
      if not (unbiased and i == j):
        kyy += np_kernel(y[i], y[j], sigma, kernel)
  for i in range(n):
    for j in range(m):
      kxy += np_kernel(x[i], y[j], sigma, kernel)
  if unbiased:
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)
  return kxx / n ** 2 + kyy / m ** 2 - 2 * kxy / (n * m)


def np_cs_gaussian(mp, sp, mq, sq):
  """Closed-form D_CS of two Gaussians from scipy densities."""
  z = np.zeros(len(mp))
  mvn = scipy.stats.multivariate_normal
  return (-2 * mvn(mq, sp + sq).logpdf(mp) + mvn(z, 2 * sp).logpdf(z)
          + mvn(z, 2 * sq).logpdf(z))


def _samples(seed=0, batch=(), n=7, m=5, d=3, shift=0.7):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=batch + (n, d)).astype(np.float32)
  y = (rng.normal(size=batch + (m, d)) * 1.3 + shift).astype(np.float32)
  return x, y


def _jit(fn, **kw):
  return jax.jit(functools.partial(fn, **kw))


# ----------------------------- Cauchy–Schwarz --------------------------------


@pytest.mark.parametrize("unbiased", [False, True])
def test_cs_matches_numpy_formula(unbiased):
  x, y = _samples(seed=1, batch=(2,))
  sig = np.array([0.6, 1.7], np.float32)
  got = _jit(cauchy_schwarz, bandwidth=sig, unbiased=unbiased)(x, y)
  want = [np_cs(x[b], y[b], float(sig[b]), unbiased) for b in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  got = _jit(cauchy_schwarz, bandwidth=0.9, unbiased=unbiased)(x, y)
  want = [np_cs(x[b], y[b], 0.9, unbiased) for b in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_cs_equals_integrals_of_scipy_kdes():
  # The kernel-scaling convention: `bandwidth` is the std of each KDE bump.
  rng = np.random.default_rng(2)
  xs = rng.normal(size=6)
  ys = rng.normal(size=5) * 0.8 + 0.9
  sigma = 0.4
  kde_x = scipy.stats.gaussian_kde(xs, bw_method=sigma / xs.std(ddof=1))
  kde_y = scipy.stats.gaussian_kde(ys, bw_method=sigma / ys.std(ddof=1))
  np.testing.assert_allclose(np.sqrt(kde_x.covariance[0, 0]), sigma)
  # scipy integrates products of KDEs exactly (sums of Gaussian overlaps).
  ipq = kde_x.integrate_kde(kde_y)
  ipp = kde_x.integrate_kde(kde_x)
  iqq = kde_y.integrate_kde(kde_y)
  want = -np.log(ipq ** 2 / (ipp * iqq))
  got = _jit(cauchy_schwarz, bandwidth=sigma)(
      xs[:, None].astype(np.float32), ys[:, None].astype(np.float32))
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_cs_properties():
  x, y = _samples(seed=3)
  f = _jit(cauchy_schwarz, bandwidth=0.8)
  np.testing.assert_allclose(f(x, y), f(y, x), rtol=1e-5)
  np.testing.assert_allclose(f(x, x), 0.0, atol=1e-6)
  assert float(f(x, y)) > 0
  # Translation and permutation invariant.
  np.testing.assert_allclose(f(x + 5.0, y + 5.0), f(x, y), rtol=1e-4)
  np.testing.assert_allclose(f(x[::-1], y[::-1]), f(x, y), rtol=1e-5)
  # Duplicating every sample does not change the KDEs (V-statistic).
  np.testing.assert_allclose(f(np.concatenate([x, x]), y), f(x, y), rtol=1e-5)


def test_cs_far_apart_does_not_underflow():
  x, y = _samples(seed=4, n=4, m=4, d=2)
  got = float(_jit(cauchy_schwarz, bandwidth=0.05)(x, y + 30.0))
  # ~3e5: every exp(-d^2 / 4s^2) underflows even in float64, so the oracle is
  # the same formula with scipy's float64 logsumexp.
  lse = lambda a, b: scipy.special.logsumexp(
      -np_sq_dists(a, b) / (4 * 0.05 ** 2))
  want = -2 * lse(x, y + 30.0) + lse(x, x) + lse(y, y)
  with np.errstate(divide="ignore"):
    assert not np.isfinite(np_cs(x, y + 30.0, 0.05))
  assert np.isfinite(got)
  np.testing.assert_allclose(got, want, rtol=1e-3)


def test_cs_converges_to_gaussian_closed_form_with_inflated_covariance():
  """seed_003 X11: E[Gram terms] = closed form with covariances S + h^2 I."""
  mp, sp = np.array([0.0, 0.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
  mq, sq = np.array([0.8, -0.4]), np.array([[0.6, -0.2], [-0.2, 1.2]])
  h, n = 0.5, 2000
  want = np_cs_gaussian(mp, sp + h * h * np.eye(2), mq, sq + h * h * np.eye(2))
  f = _jit(cauchy_schwarz, bandwidth=h, unbiased=True)
  vals = []
  for seed in range(4):
    rng = np.random.default_rng(100 + seed)
    x = rng.multivariate_normal(mp, sp, size=n).astype(np.float32)
    y = rng.multivariate_normal(mq, sq, size=n).astype(np.float32)
    vals.append(float(f(x, y)))
  # Per-seed Monte-Carlo std at n = 2000 is ~0.026; 4 seeds -> SE ~0.013.
  assert abs(np.mean(vals) - want) < 0.05, (vals, want)


def test_cs_unbiased_self_terms_remove_diagonal_bias_and_small_h_limit():
  mp, sp = np.array([0.0, 0.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
  mq, sq = np.array([0.8, -0.4]), np.array([[0.6, -0.2], [-0.2, 1.2]])
  h, n, seeds = 0.2, 200, 64
  want = np_cs_gaussian(mp, sp + h * h * np.eye(2), mq, sq + h * h * np.eye(2))
  rng = np.random.default_rng(5)
  x = rng.multivariate_normal(mp, sp, size=(seeds, n)).astype(np.float32)
  y = rng.multivariate_normal(mq, sq, size=(seeds, n)).astype(np.float32)
  u = np.asarray(_jit(cauchy_schwarz, bandwidth=h, unbiased=True)(x, y))
  v = np.asarray(_jit(cauchy_schwarz, bandwidth=h)(x, y))
  se = u.std() / np.sqrt(seeds)
  assert abs(u.mean() - want) < 4 * se + 0.01, (u.mean(), want, se)
  # The V-statistic's self terms carry a positive O(1/(n h^d)) bias.
  assert v.mean() - want > 0.1
  # Small bandwidth, large n: close to the un-smoothed closed form.
  unsmoothed = np_cs_gaussian(mp, sp, mq, sq)
  x = rng.multivariate_normal(mp, sp, size=4000).astype(np.float32)
  y = rng.multivariate_normal(mq, sq, size=4000).astype(np.float32)
  got = float(_jit(cauchy_schwarz, bandwidth=0.05, unbiased=True)(x, y))
  assert abs(got - unsmoothed) < 0.1, (got, unsmoothed)


# ----------------------------------- MMD² ------------------------------------


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd2_matches_numpy_double_loop(kernel, unbiased):
  x, y = _samples(seed=6, n=6, m=5)
  got = _jit(mmd2, bandwidth=1.3, kernel=kernel, unbiased=unbiased)(x, y)
  want = np_mmd2_loops(x, y, 1.3, kernel, unbiased)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_mmd2_identical_samples():
  x, _ = _samples(seed=7, n=9)
  assert abs(float(_jit(mmd2, bandwidth=1.0)(x, x))) < 1e-6
  np.testing.assert_allclose(
      _jit(mmd2, bandwidth=1.0, kernel="laplacian")(x, x), 0.0, atol=1e-6)
  # The U-statistic is not 0 for x == y: it is -(1/n^2...) of the diagonal.
  want = np_mmd2_loops(x, x, 1.0, "gaussian", True)
  np.testing.assert_allclose(_jit(mmd2, bandwidth=1.0, unbiased=True)(x, x),
                             want, rtol=1e-4, atol=1e-6)


def test_mmd2_unbiased_estimator_is_unbiased():
  # Population MMD^2 of two Gaussians under the RBF kernel:
  # E k(a, b) = (2 pi s^2)^{d/2} N(mu_a; mu_b, S_a + S_b + s^2 I).
  d, s = 2, 1.0
  mp, sp = np.zeros(d), np.eye(d)
  mq, sq = np.array([0.5, 0.0]), np.diag([1.5, 0.7])
  mvn = scipy.stats.multivariate_normal
  c = (2 * np.pi * s * s) ** (d / 2)
  ek = lambda ma, sa, mb, sb: c * mvn(mb, sa + sb + s * s * np.eye(d)).pdf(ma)
  want = ek(mp, sp, mp, sp) + ek(mq, sq, mq, sq) - 2 * ek(mp, sp, mq, sq)
  rng = np.random.default_rng(8)
  seeds, n = 2000, 6
  x = rng.multivariate_normal(mp, sp, size=(seeds, n)).astype(np.float32)
  y = rng.multivariate_normal(mq, sq, size=(seeds, n)).astype(np.float32)
  u = np.asarray(_jit(mmd2, bandwidth=s, unbiased=True)(x, y))
  v = np.asarray(_jit(mmd2, bandwidth=s)(x, y))
  se = u.std() / np.sqrt(seeds)
  assert abs(u.mean() - want) < 4 * se, (u.mean(), want, se)
  assert v.mean() - want > 10 * se  # the V-statistic is biased upwards


# ------------------------------ median heuristic -----------------------------


@pytest.mark.parametrize("fn", [mmd2, cauchy_schwarz])
def test_median_heuristic_matches_pdist_median(fn):
  x, y = _samples(seed=9, batch=(2,), n=6, m=5)
  xw = np.array([[1, 1, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1]], bool)
  yw = np.array([[1, 1, 0, 1, 1], [1, 0, 1, 1, 1]], bool)
  x[0, 4] = np.nan  # padded
  got = _jit(fn, bandwidth="median")(x, y, x_where=xw, y_where=yw)
  for b in range(2):
    z = np.concatenate([x[b][xw[b]], y[b][yw[b]]]).astype(np.float64)
    med = np.median(scipy.spatial.distance.pdist(z))
    want = _jit(fn, bandwidth=float(med))(x[b][xw[b]], y[b][yw[b]])
    np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-6)


# --------------------------- masks and gradients -----------------------------

CASES = [
    ("cs", functools.partial(cauchy_schwarz, bandwidth=0.7)),
    ("cs_u", functools.partial(cauchy_schwarz, bandwidth=0.7, unbiased=True)),
    ("mmd", functools.partial(mmd2, bandwidth=0.7)),
    ("mmd_lap_u", functools.partial(mmd2, bandwidth=0.7, kernel="laplacian",
                                    unbiased=True)),
    ("mmd_imq", functools.partial(mmd2, bandwidth=0.7, kernel="imq")),
]
CASE_IDS = [c[0] for c in CASES]


def _padded(seed=10):
  x, y = _samples(seed=seed, batch=(3,), n=6, m=5)
  xw = np.ones((3, 6), bool)
  yw = np.ones((3, 5), bool)
  xw[0, [1, 4]] = False
  yw[0, 4] = False
  yw[1, [0, 2]] = False
  xw[2, 5] = False
  x = np.where(xw[..., None], x, np.nan).astype(np.float32)  # garbage padding
  y = np.where(yw[..., None], y, np.inf).astype(np.float32)
  return x, y, xw, yw


@pytest.mark.parametrize("name,fn", CASES, ids=CASE_IDS)
def test_masked_equals_subset(name, fn):
  del name
  x, y, xw, yw = _padded()
  got = jax.jit(fn)(x, y, x_where=xw, y_where=yw)
  assert np.all(np.isfinite(got))
  jfn = jax.jit(fn)
  for b in range(3):
    want = jfn(x[b][xw[b]], y[b][yw[b]])
    np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,fn", CASES, ids=CASE_IDS)
def test_gradients_finite_with_padding_and_empty_rows(name, fn):
  del name
  x, y, xw, yw = _padded()
  xw[2] = False  # a fully masked row gives 0
  val, (gx, gy) = jax.jit(jax.value_and_grad(
      lambda x, y: jnp.sum(fn(x, y, x_where=xw, y_where=yw) ** 2),
      argnums=(0, 1)))(x, y)
  assert np.isfinite(val)
  assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))
  assert np.all(gx[~xw] == 0) and np.all(gy[~yw] == 0)
  np.testing.assert_array_equal(
      jax.jit(fn)(x, y, x_where=xw, y_where=yw)[2], 0.0)
  # Gradients of a padded row match those of its subset.
  xs, ys = x[0][xw[0]], y[0][yw[0]]
  val, gs = jax.jit(jax.value_and_grad(fn))(xs, ys)
  np.testing.assert_allclose(gx[0][xw[0]], 2 * val * gs, rtol=1e-4,
                             atol=1e-6)


def test_unbiased_needs_two_samples():
  x, y = _samples(seed=11, n=3, m=3)
  xw = np.array([True, False, False])
  for fn in (cauchy_schwarz, mmd2):
    u = _jit(fn, bandwidth=1.0, unbiased=True)(x, y, x_where=xw)
    assert float(u) == 0.0
    assert float(_jit(fn, bandwidth=1.0)(x, y, x_where=xw)) != 0.0


def test_laplacian_gradient_finite_at_duplicate_points():
  x, y = _samples(seed=12, n=4, m=4)
  y[0] = x[0]
  g = jax.jit(jax.grad(
      lambda x: mmd2(x, y, bandwidth=1.0, kernel="laplacian")))(x)
  assert np.all(np.isfinite(g))


@pytest.mark.parametrize("name,fn", CASES, ids=CASE_IDS)
def test_gradients_match_finite_differences(name, fn):
  del name
  with jax.enable_x64(True):
    x, y = (jnp.asarray(a, jnp.float64) for a in _samples(seed=13, n=5, m=4,
                                                         d=2))
    xw = jnp.array([True, True, False, True, True])
    check_grads(jax.jit(lambda x, y: fn(x, y, x_where=xw)), (x, y), order=1,
                modes=("rev",), atol=1e-4, rtol=1e-4)


def test_bandwidth_gradient():
  x, y = _samples(seed=14)
  with jax.enable_x64(True):
    x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
    for fn in (cauchy_schwarz, mmd2):
      check_grads(jax.jit(lambda s, fn=fn: fn(x, y, bandwidth=s)), (0.8,),
                  order=1,
                  modes=("rev",), atol=1e-5, rtol=1e-4)


# --------------------------- dtypes, transforms ------------------------------


@pytest.mark.parametrize("name,fn", CASES, ids=CASE_IDS)
def test_bf16_inputs_accumulate_in_float32(name, fn):
  del name
  x, y = _samples(seed=15, batch=(2,))
  xb, yb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16)
  got = jax.jit(fn)(xb, yb)
  assert got.dtype == jnp.float32
  want = jax.jit(fn)(xb.astype(jnp.float32), yb.astype(jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got, jax.jit(fn)(x, y), rtol=0.05, atol=1e-3)


@pytest.mark.parametrize("name,fn", CASES, ids=CASE_IDS)
def test_jit_and_vmap_agree_with_batch_dims(name, fn):
  del name
  x, y, xw, yw = _padded()
  batched = jax.jit(fn)(x, y, x_where=xw, y_where=yw)
  vm = jax.jit(jax.vmap(lambda a, b, c, d: fn(a, b, x_where=c, y_where=d)))(
      x, y, xw, yw)
  np.testing.assert_allclose(vm, batched, rtol=1e-5, atol=1e-7)
  # Two batch dims.
  x2 = np.stack([x, x[::-1]])
  y2 = np.stack([y, y[::-1]])
  w2 = (np.stack([xw, xw[::-1]]), np.stack([yw, yw[::-1]]))
  out = jax.jit(fn)(x2, y2, x_where=w2[0], y_where=w2[1])
  assert out.shape == (2, 3)
  np.testing.assert_allclose(out[1], batched[::-1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,axis_type", [("cs", "explicit"),
                                            ("mmd", "explicit"),
                                            ("cs_u", "auto")])
def test_sharded_equals_single_device(name, axis_type):
  fn = dict(CASES)[name]
  if axis_type == "explicit":
    mesh = jax.make_mesh((8,), ("data",))  # Explicit axes by default
  else:
    mesh = jax.make_mesh((8,), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
  spec = jax.sharding.NamedSharding(mesh, jax.P("data"))
  jfn = jax.jit(fn)
  # Batch axis sharded.
  x, y = _samples(seed=16, batch=(8,), n=6, m=5)
  got = jfn(jax.device_put(x, spec), jax.device_put(y, spec))
  np.testing.assert_allclose(got, jfn(x, y), rtol=1e-5, atol=1e-7)
  # Sample axis sharded (reductions over samples are global), with a mask.
  x, y = _samples(seed=17, n=32, m=16)
  xw = np.arange(32) % 5 != 0
  got = jfn(jax.device_put(x, spec), jax.device_put(y, spec),
            x_where=jax.device_put(xw, spec))
  np.testing.assert_allclose(got, jfn(x, y, x_where=xw), rtol=1e-5,
                             atol=1e-7)


# ------------------------------- bad inputs ----------------------------------


@pytest.mark.parametrize("fn", [cauchy_schwarz, mmd2])
def test_bad_inputs_raise(fn):
  x, y = _samples(seed=18, batch=(2,))
  f = functools.partial(fn, bandwidth=1.0)
  with pytest.raises(ValueError, match="`x`"):
    f(x[0, :, 0], y[0])  # rank 1
  with pytest.raises(ValueError, match="feature size"):
    f(x, y[..., :2])
  with pytest.raises(ValueError, match="batch dimensions"):
    f(x, y[0])
  with pytest.raises(ValueError, match="at least one sample"):
    f(x[:, :0], y)
  with pytest.raises(TypeError, match="`y`"):
    f(x, y.astype(np.int32))
  with pytest.raises(ValueError, match="x_where"):
    f(x, y, x_where=np.ones((2, 7, 1), bool))
  with pytest.raises(ValueError, match="y_where"):
    f(x, y, y_where=np.ones((5,), bool))  # missing batch axis
  with pytest.raises(ValueError, match="bandwidth"):
    fn(x, y, bandwidth=0.0)
  with pytest.raises(ValueError, match="bandwidth"):
    fn(x, y, bandwidth=-1.0)
  with pytest.raises(ValueError, match="bandwidth"):
    fn(x, y, bandwidth=np.ones(3, np.float32))  # not the batch shape
  with pytest.raises(ValueError, match="bandwidth"):
    fn(x, y, bandwidth=np.array([1.0, -1.0], np.float32))
  with pytest.raises(ValueError, match="bandwidth"):
    fn(x, y, bandwidth="silverman")
  with pytest.raises(ValueError, match="bandwidth"):
    fn(x, y, bandwidth=None)
  with pytest.raises(TypeError, match="bandwidth"):
    fn(x, y, bandwidth=True)
  with pytest.raises(TypeError, match="bandwidth"):
    fn(x, y, bandwidth=np.array(1, np.int32))
  with pytest.raises(TypeError):
    fn(x, y)  # bandwidth is required


def test_mmd2_bad_kernel_raises():
  x, y = _samples(seed=19)
  with pytest.raises(ValueError, match="kernel"):
    mmd2(x, y, bandwidth=1.0, kernel="rbf")
