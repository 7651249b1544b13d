"""Tests for jaxkit.losses.classification.

Oracles: numpy transcriptions of the papers' formulas written here (never the
code under test), optax's integer-label cross-entropy, limiting identities
(comp-sum tau = 0 / 1 / 2, LDR-KL lambda -> 0 = Crammer-Singer hinge,
lambda = 1, c = 0 = CE - log C), scipy's Gaussian log-density and
sklearn's confusion matrix.
"""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import optax
import pytest
from scipy import special as sps
from scipy import stats

from jaxkit.losses import classification as C

B, K = 6, 5


def _data(seed=0, b=B, k=K, scale=2.0):
  rng = np.random.RandomState(seed)
  z = (rng.randn(b, k) * scale).astype(np.float32)
  y = rng.randint(0, k, size=b).astype(np.int32)
  return z, y


def _np_ce(z, y):
  z = np.asarray(z, np.float64)
  return sps.logsumexp(z, axis=-1) - z[np.arange(len(y)), y]


def _np_p(z):
  return sps.softmax(np.asarray(z, np.float64), axis=-1)


# ----------------------------------------------------------------------------
# LDAM / DRW.
# ----------------------------------------------------------------------------


def np_ldam(z, y, counts, max_margin, scale):
  m = np.asarray(counts, np.float64) ** -0.25
  m = m * max_margin / m.max()
  zz = np.asarray(z, np.float64).copy()
  zz[np.arange(len(y)), y] -= m[y]
  return _np_ce(scale * zz, y)


def test_ldam_matches_numpy():
  z, y = _data()
  counts = np.array([500, 100, 30, 10, 2])
  got = jax.jit(lambda z, y: C.ldam_loss(z, y, class_counts=counts,
                                         max_margin=0.4, scale=7.0))(z, y)
  np.testing.assert_allclose(got, np_ldam(z, y, counts, 0.4, 7.0), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(C.ldam_margins(counts, max_margin=0.4),
                             0.4 * (counts ** -0.25) / 2 ** -0.25, rtol=1e-6)


def test_ldam_zero_margin_is_scaled_ce():
  z, y = _data(1)
  counts = np.ones(K)
  # Equal counts: every margin equals max_margin -> CE of s(z - m e_y).
  got = C.ldam_loss(z, y, class_counts=counts, max_margin=1e-6, scale=1.0)
  np.testing.assert_allclose(
      got, optax.softmax_cross_entropy_with_integer_labels(z, y), rtol=1e-4,
      atol=1e-5)


def test_ldam_grad_mask_extreme_vmap():
  z, y = _data(2)
  counts = np.array([50., 20., 10., 5., 1.])
  f = lambda z: jnp.sum(C.ldam_loss(z, y, class_counts=counts, scale=3.0))
  check_grads(f, (jnp.asarray(z, jnp.float64) if jax.config.x64_enabled
                  else z,), order=1, modes=("rev",), eps=1e-2, atol=5e-2, rtol=5e-2)
  # Masking a class = deleting its column.
  mask = np.ones((1, K), bool)
  mask[0, 1] = False
  yy = np.where(y == 1, 0, y)
  got = C.ldam_loss(z, yy, class_counts=counts, scale=3.0, where=mask)
  keep = [0, 2, 3, 4]
  remap = np.array([0, 0, 1, 2, 3])
  m = counts ** -0.25
  m = 0.5 * m / m.max()
  zz = z.astype(np.float64).copy()
  zz[np.arange(B), yy] -= m[yy]
  want = _np_ce(3.0 * zz[:, keep], remap[yy])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Extreme logits, f32 and bf16.
  for dt in (jnp.float32, jnp.bfloat16):
    ze = jnp.asarray(np.sign(z) * 1e4, dt)
    v, g = jax.value_and_grad(lambda z: jnp.sum(
        C.ldam_loss(z, y, class_counts=counts)))(ze)
    assert np.all(np.isfinite(np.asarray(v, np.float32)))
    assert np.all(np.isfinite(np.asarray(g, np.float32)))
  # vmap over an extra leading axis == batched call.
  zb = np.stack([z, z[::-1]])
  yb = np.stack([y, y[::-1]])
  f2 = jax.jit(jax.vmap(lambda z, y: C.ldam_loss(z, y, class_counts=counts)))
  np.testing.assert_allclose(f2(zb, yb),
                             C.ldam_loss(zb, yb, class_counts=counts),
                             rtol=1e-6)


def test_ldam_bad_inputs():
  z, y = _data()
  counts = np.array([5, 4, 3, 2, 1])
  with pytest.raises(ValueError, match="class_counts"):
    C.ldam_loss(z, y, class_counts=np.array([5, 0, 3, 2, 1]))
  with pytest.raises(ValueError, match="class_counts"):
    C.ldam_loss(z, y, class_counts=np.array([5, 4, 3]))
  with pytest.raises(ValueError, match="labels"):
    C.ldam_loss(z, np.full(B, K), class_counts=counts)
  with pytest.raises(ValueError, match="labels"):
    C.ldam_loss(z, y[:3], class_counts=counts)
  with pytest.raises(TypeError, match="labels"):
    C.ldam_loss(z, y.astype(np.float32), class_counts=counts)
  with pytest.raises(TypeError, match="logits"):
    C.ldam_loss(z.astype(np.int32), y, class_counts=counts)
  with pytest.raises(ValueError, match="scale"):
    C.ldam_loss(z, y, class_counts=counts, scale=-1.0)
  with pytest.raises(ValueError, match="logits"):
    C.ldam_loss(np.float32(1.0), y, class_counts=counts)


def test_drw_class_weights():
  counts = np.array([1000, 100, 10, 1])
  beta = 0.999
  eff = (1 - beta) / (1 - beta ** counts.astype(np.float64))
  want = eff / eff.sum() * len(counts)
  np.testing.assert_allclose(C.drw_class_weights(counts, beta=beta), want,
                             rtol=1e-4)
  np.testing.assert_allclose(C.drw_class_weights(counts, beta=0.0), 1.0)
  f = jax.jit(lambda s: C.drw_class_weights(counts, beta=beta, step=s,
                                            start_step=5))
  np.testing.assert_allclose(f(4), 1.0)
  np.testing.assert_allclose(f(5), want, rtol=1e-4)
  np.testing.assert_allclose(  # beta = 1: inverse frequency, sum C
      C.drw_class_weights(counts, beta=1.0),
      (1 / counts) / (1 / counts).sum() * len(counts), rtol=1e-5)
  with pytest.raises(ValueError, match="beta"):
    C.drw_class_weights(counts, beta=1.5)
  with pytest.raises(ValueError, match="class_counts"):
    C.drw_class_weights(np.array([3, 0]), beta=0.9)


# ----------------------------------------------------------------------------
# Comp-sum.
# ----------------------------------------------------------------------------


def test_comp_sum_limits():
  z, y = _data(3, b=16, k=7)
  ce = optax.softmax_cross_entropy_with_integer_labels(z, y)
  np.testing.assert_allclose(C.comp_sum_loss(z, y, tau=1.0), ce, rtol=1e-5,
                             atol=1e-6)
  py = _np_p(z)[np.arange(16), y]
  np.testing.assert_allclose(C.comp_sum_loss(z, y, tau=2.0), 1 - py,
                             rtol=1e-5, atol=1e-6)
  zz = z.astype(np.float64)
  u = np.exp(zz - zz[np.arange(16), y][:, None]).sum(-1) - 1.0
  np.testing.assert_allclose(C.comp_sum_loss(z, y, tau=0.0), u, rtol=1e-5)
  q = 0.5  # tau = 1.5: generalised CE (1 - p^q) / q
  np.testing.assert_allclose(C.comp_sum_loss(z, y, tau=1.5), (1 - py**q) / q,
                             rtol=1e-5, atol=1e-6)
  # Phi^tau(u) from the paper's definition in u.
  for tau in (0.3, 3.0):
    want = ((1 + u) ** (1 - tau) - 1) / (1 - tau)
    np.testing.assert_allclose(C.comp_sum_loss(z, y, tau=tau), want,
                               rtol=1e-5, atol=1e-6)
  # Traced tau (a schedule) gives the same numbers, incl. tau = 1.
  g = jax.jit(lambda z, y, t: C.comp_sum_loss(z, y, tau=t))
  for tau in (0.0, 1.0, 2.0):
    np.testing.assert_allclose(g(z, y, tau), C.comp_sum_loss(z, y, tau=tau),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [0.0, 1.0, 1.5, 2.0])
def test_comp_sum_grad(tau):
  z, y = _data(4, k=4, scale=1.0)
  f = lambda z: jnp.sum(C.comp_sum_loss(z, y, tau=tau))
  check_grads(f, (z,), order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)
  # Analytic: d/dz Phi^tau = p_y^{tau-1} (p - e_y).
  p = _np_p(z)
  py = p[np.arange(B), y]
  want = (py ** (tau - 1))[:, None] * (p - np.eye(4)[y])
  np.testing.assert_allclose(jax.grad(f)(z), want, rtol=1e-4, atol=1e-5)


def test_comp_sum_mask_extreme_vmap():
  z, y = _data(5)
  mask = np.ones((B, K), bool)
  mask[:, 2] = False
  y = np.where(y == 2, 3, y)
  mask[0] = False  # fully masked row -> 0, finite grads
  got, g = jax.value_and_grad(
      lambda z: C.comp_sum_loss(z, y, tau=1.0, where=mask).sum())(z)
  keep = [0, 1, 3, 4]
  remap = np.array([0, 1, 0, 2, 3])
  want = _np_ce(z[:, keep], remap[y])
  want[0] = 0.0
  np.testing.assert_allclose(got, want.sum(), rtol=1e-5)
  assert np.all(np.isfinite(g)) and np.all(g[0] == 0) and np.all(g[:, 2] == 0)
  for dt in (jnp.float32, jnp.bfloat16):
    ze = jnp.asarray(np.sign(z) * 1e4, dt)
    for tau in (1.0, 1.5, 2.0):
      v, gg = jax.value_and_grad(
          lambda z: jnp.sum(C.comp_sum_loss(z, y, tau=tau)))(ze)
      assert np.isfinite(float(v)) and np.all(np.isfinite(
          np.asarray(gg, np.float32)))
      # Traced tau (a schedule): the unused expm1 branch must not leak NaN.
      gt = jax.jit(jax.grad(
          lambda z, t: jnp.sum(C.comp_sum_loss(z, y, tau=t))))(ze, tau)
      assert np.all(np.isfinite(np.asarray(gt, np.float32)))
    yl = np.argmax(np.asarray(ze, np.float32), -1)  # tau = 0 finite when right
    v = C.comp_sum_loss(ze, yl, tau=0.0)
    assert np.all(np.isfinite(np.asarray(v)))
  zb, yb = np.stack([z, -z]), np.stack([y, y])
  np.testing.assert_allclose(
      jax.jit(jax.vmap(lambda a, b: C.comp_sum_loss(a, b, tau=1.0)))(zb, yb),
      C.comp_sum_loss(zb, yb, tau=1.0), rtol=1e-6)
  assert C.comp_sum_loss(jnp.asarray(z, jnp.bfloat16), y, tau=1.0).dtype == (
      jnp.float32)


def test_comp_sum_bad_inputs():
  z, y = _data()
  with pytest.raises(ValueError, match="tau"):
    C.comp_sum_loss(z, y, tau=-0.5)
  with pytest.raises(ValueError, match="labels"):
    C.comp_sum_loss(z, -np.ones(B, np.int32), tau=1.0)
  with pytest.raises(ValueError, match="where"):
    C.comp_sum_loss(z, y, tau=1.0, where=np.ones((B,), bool))


# ----------------------------------------------------------------------------
# LDR-KL / ALDR-KL.
# ----------------------------------------------------------------------------


def np_ldr(z, y, lam, c):
  z = np.asarray(z, np.float64)
  a = c * (1 - np.eye(z.shape[-1])[y]) + z - z[np.arange(len(y)), y][:, None]
  lam = np.broadcast_to(np.asarray(lam, np.float64), (len(y),))[:, None]
  return lam[:, 0] * (sps.logsumexp(a / lam, axis=-1) - np.log(z.shape[-1]))


def test_ldr_kl_matches_numpy_and_limits():
  z, y = _data(6)
  np.testing.assert_allclose(C.ldr_kl_loss(z, y, lam=0.7, margin=1.3),
                             np_ldr(z, y, 0.7, 1.3), rtol=1e-5, atol=1e-6)
  # lambda -> 0: Crammer-Singer hinge max(0, max_{k != y} c + z_k - z_y).
  zz = z.astype(np.float64)
  other = np.where(np.eye(K)[y] > 0, -np.inf, zz).max(-1)
  cs = np.maximum(0.0, 1.0 + other - zz[np.arange(B), y])
  np.testing.assert_allclose(C.ldr_kl_loss(z, y, lam=1e-4, margin=1.0), cs,
                             atol=1e-3)
  # lambda = 1, c = 0: CE - log C.
  np.testing.assert_allclose(
      C.ldr_kl_loss(z, y, lam=1.0, margin=0.0),
      optax.softmax_cross_entropy_with_integer_labels(z, y) - np.log(K),
      rtol=1e-5, atol=1e-5)


def test_ldr_kl_grad_mask_extreme_jit_vmap():
  z, y = _data(7, scale=1.0)
  check_grads(lambda z: jnp.sum(C.ldr_kl_loss(z, y, lam=0.5)), (z,), order=1,
              modes=("rev",), atol=2e-2, rtol=2e-2)
  mask = np.ones((1, K), bool)
  mask[0, 4] = False
  yy = np.where(y == 4, 0, y)
  np.testing.assert_allclose(
      C.ldr_kl_loss(z, yy, lam=0.5, where=mask),
      np_ldr(z[:, :4], yy, 0.5, 1.0), rtol=1e-5, atol=1e-6)
  for dt in (jnp.float32, jnp.bfloat16):
    ze = jnp.asarray(np.sign(z) * 1e4, dt)
    v, g = jax.value_and_grad(lambda z: jnp.sum(
        C.ldr_kl_loss(z, y, lam=0.1)))(ze)
    assert np.isfinite(float(v)) and np.all(np.isfinite(
        np.asarray(g, np.float32)))
  zb, yb = np.stack([z, -z]), np.stack([y, y])
  np.testing.assert_allclose(
      jax.jit(jax.vmap(lambda a, b: C.ldr_kl_loss(a, b, lam=0.5)))(zb, yb),
      C.ldr_kl_loss(zb, yb, lam=0.5), rtol=1e-6)
  with pytest.raises(ValueError, match="lam"):
    C.ldr_kl_loss(z, y, lam=0.0)
  with pytest.raises(ValueError, match="margin"):
    C.ldr_kl_loss(z, y, margin=-1.0)


def np_aldr(z, y, lam0, alpha, c, lam_prev):
  z = np.asarray(z, np.float64)
  k = z.shape[-1]
  p = sps.softmax(z / lam_prev[:, None], axis=-1)
  kl = np.sum(p * np.log(k * p), axis=-1)
  lam = lam0 - lam0 * kl / (alpha * np.log(k))
  extra = -0.5 * alpha * np.log(k) / lam0 * (lam - lam0) ** 2
  return np_ldr(z, y, lam, c) + extra, lam


def test_aldr_kl_matches_reference_formula():
  z, y = _data(8)
  lam_prev = np.linspace(0.6, 1.0, B).astype(np.float32)
  want, lam = np_aldr(z, y, 1.0, 3.0, 0.5, lam_prev.astype(np.float64))
  np.testing.assert_allclose(
      C.aldr_kl_lambdas(z, lam0=1.0, alpha=3.0, lam_prev=lam_prev), lam,
      rtol=1e-5)
  got = jax.jit(lambda z, y, lp: C.aldr_kl_loss(
      z, y, lam0=1.0, alpha=3.0, margin=0.5, lam_prev=lp))(z, y, lam_prev)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # lambda is gradient-stopped: the gradient is LDR-KL's at fixed lambda.
  g = jax.grad(lambda z: jnp.sum(C.aldr_kl_loss(z, y, alpha=3.0)))(z)
  lam1 = np.asarray(C.aldr_kl_lambdas(z, alpha=3.0))
  eps = 1e-3
  zp = z.astype(np.float64).copy()
  zp[0, 1] += eps
  zm = z.astype(np.float64).copy()
  zm[0, 1] -= eps
  fd = (np_ldr(zp, y, lam1, 1.0) - np_ldr(zm, y, lam1, 1.0))[0] / (2 * eps)
  np.testing.assert_allclose(g[0, 1], fd, rtol=1e-3, atol=1e-4)
  for dt in (jnp.float32, jnp.bfloat16):
    ze = jnp.asarray(np.sign(z) * 1e4, dt)
    v, gg = jax.value_and_grad(lambda z: jnp.sum(C.aldr_kl_loss(z, y)))(ze)
    assert np.isfinite(float(v)) and np.all(np.isfinite(
        np.asarray(gg, np.float32)))
  with pytest.raises(ValueError, match="alpha"):
    C.aldr_kl_loss(z, y, alpha=1.0)
  with pytest.raises(ValueError, match="lam_prev"):
    C.aldr_kl_loss(z, y, lam_prev=np.ones(3, np.float32))


# ----------------------------------------------------------------------------
# AnyLoss.
# ----------------------------------------------------------------------------


def np_anyloss(p, y, metric, L=73.0, beta=1.0):
  a = sps.expit(L * (np.asarray(p, np.float64) - 0.5))
  y = np.asarray(y, np.float64)
  tp, fn = (y * a).sum(), (y * (1 - a)).sum()
  fp, tn = ((1 - y) * a).sum(), ((1 - y) * (1 - a)).sum()
  return 1 - {
      "accuracy": (tp + tn) / len(y),
      "f1": 2 * tp / (2 * tp + fp + fn),
      "f_beta": (1 + beta**2) * tp / ((1 + beta**2) * tp + beta**2 * fn + fp),
      "balanced_accuracy": 0.5 * (tp / (tp + fn) + tn / (tn + fp)),
      "gmean": np.sqrt(tp / (tp + fn) * tn / (tn + fp)),
  }[metric]


@pytest.mark.parametrize("metric", C.ANYLOSS_METRICS)
def test_anyloss_matches_numpy(metric):
  rng = np.random.RandomState(0)
  p = rng.uniform(size=32).astype(np.float32)
  y = (rng.uniform(size=32) < 0.3).astype(np.int32)
  np.testing.assert_allclose(
      jax.jit(lambda p, y: C.anyloss(p, y, metric=metric, beta=2.0))(p, y),
      np_anyloss(p, y, metric, beta=2.0), rtol=1e-5)


def test_anyloss_hard_limit_sklearn_grad_logits_mask():
  metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.RandomState(1)
  p = np.where(rng.uniform(size=40) < 0.5, 0.95, 0.05).astype(np.float32)
  y = (rng.uniform(size=40) < 0.4).astype(np.int32)
  # Confident probabilities: the soft confusion matrix is the hard one.
  np.testing.assert_allclose(C.anyloss(p, y, metric="f1", amplifier=500.0),
                             1 - metrics.f1_score(y, p > 0.5), atol=1e-6)
  np.testing.assert_allclose(
      C.anyloss(p, y, metric="balanced_accuracy", amplifier=500.0),
      1 - metrics.balanced_accuracy_score(y, p > 0.5), atol=1e-6)
  x = rng.randn(40).astype(np.float32)
  np.testing.assert_allclose(C.anyloss(x, y, from_logits=True),
                             np_anyloss(sps.expit(x), y, "f1"), rtol=1e-5)
  check_grads(lambda x: C.anyloss(x, y, from_logits=True, amplifier=3.0),
              (x,), order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)
  m = np.arange(40) < 25
  np.testing.assert_allclose(C.anyloss(p, y, where=m),
                             np_anyloss(p[:25], y[:25], "f1"), rtol=1e-5)
  with pytest.raises(ValueError, match="metric"):
    C.anyloss(p, y, metric="auc")
  with pytest.raises(ValueError, match="labels"):
    C.anyloss(p, y + 1)
  with pytest.raises(ValueError, match="probs_or_logits"):
    C.anyloss(x, y)
  with pytest.raises(ValueError, match="labels"):
    C.anyloss(p, y[:5])


def test_anyloss_and_bags_sharded():
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.RandomState(2)
  p = rng.uniform(size=64).astype(np.float32)
  y = (rng.uniform(size=64) < 0.5).astype(np.int32)
  bags = (np.arange(64) % 4).astype(np.int32)
  rho = np.array([0.2, 0.4, 0.6, 0.8], np.float32)
  ps, ys, bs = jax.device_put((p, y, bags), sh)
  f = jax.jit(lambda p, y: C.anyloss(p, y, metric="balanced_accuracy"))
  np.testing.assert_allclose(f(ps, ys), f(p, y), rtol=1e-6)
  g = jax.jit(lambda p, b: C.bag_proportion_loss(p, b, rho))
  np.testing.assert_allclose(g(ps, bs), g(p, bags), rtol=1e-6)


# ----------------------------------------------------------------------------
# Probability margin, WTA, bags, Gaussian prototypes.
# ----------------------------------------------------------------------------


def test_probability_margin():
  z, y = _data(9)
  p = _np_p(z)
  other = np.where(np.eye(K)[y] > 0, -1, p).max(-1)
  np.testing.assert_allclose(C.probability_margin_loss(z, y),
                             other - p[np.arange(B), y], rtol=1e-5, atol=1e-6)
  check_grads(lambda z: jnp.sum(C.probability_margin_loss(z, y)), (z,),
              order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)
  ze = jnp.asarray(np.sign(z) * 1e4, jnp.bfloat16)
  assert np.all(np.isfinite(np.asarray(jax.grad(
      lambda z: jnp.sum(C.probability_margin_loss(z, y)))(ze), np.float32)))
  with pytest.raises(ValueError, match="2 classes"):
    C.probability_margin_loss(z[:, :1], np.zeros(B, np.int32))


def test_multi_head_min_loss():
  rng = np.random.RandomState(3)
  x = rng.rand(3, 8).astype(np.float32)
  np.testing.assert_allclose(C.multi_head_min_loss(x), x.min(0))
  srt = np.sort(x, 0)
  want = 0.7 * srt[0] + 0.3 * (srt[1] + srt[2]) / 2
  np.testing.assert_allclose(C.multi_head_min_loss(x, relaxation=0.3), want,
                             rtol=1e-6)
  np.testing.assert_allclose(C.multi_head_min_loss(x.T, axis=1), x.min(0))
  g = jax.grad(lambda x: C.multi_head_min_loss(x).sum())(x)
  np.testing.assert_array_equal(g, (x == x.min(0)).astype(np.float32))
  with pytest.raises(ValueError, match="relaxation"):
    C.multi_head_min_loss(x, relaxation=2.0)


def test_bag_proportion_loss():
  rng = np.random.RandomState(4)
  p = rng.uniform(0.05, 0.95, size=20).astype(np.float32)
  bags = rng.randint(0, 3, size=20).astype(np.int32)
  rho = np.array([0.1, 0.5, 0.9, 0.3], np.float32)  # bag 3 is empty
  pbar = np.array([p[bags == g].mean() if np.any(bags == g) else 0.5
                   for g in range(4)])
  want = -(rho * np.log(pbar) + (1 - rho) * np.log(1 - pbar))
  want[3] = 0.0
  np.testing.assert_allclose(C.bag_proportion_loss(p, bags, rho), want,
                             rtol=1e-5)
  check_grads(lambda p: C.bag_proportion_loss(p, bags, rho).sum(), (p,),
              order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)
  with pytest.raises(ValueError, match="bag_ids"):
    C.bag_proportion_loss(p, bags + 4, rho)


def test_gaussian_prototype_logits():
  rng = np.random.RandomState(5)
  q = rng.randn(4, 3).astype(np.float32)
  s = rng.randn(2, 5, 3).astype(np.float32)
  got = C.gaussian_prototype_logits(q, s, eps=1e-3)
  mu = s.mean(1)
  var = s.var(1) + 1e-3
  want = np.stack([stats.norm.logpdf(q, mu[n], np.sqrt(var[n])).sum(-1)
                   for n in range(2)], -1) + 0.5 * 3 * np.log(2 * np.pi)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="feature"):
    C.gaussian_prototype_logits(q[:, :2], s)


def test_pgd_attack_linear_closed_form_and_pma():
  rng = np.random.RandomState(6)
  w = rng.randn(4).astype(np.float32)
  x = rng.randn(3, 4).astype(np.float32)
  adv = C.pgd_attack(lambda xa: xa @ w, x, eps=0.2, step_size=0.1,
                     n_steps=5)
  np.testing.assert_allclose(adv, x + 0.2 * np.sign(w), atol=1e-6)
  adv2 = C.pgd_attack(lambda xa: xa @ w, x, eps=0.2, step_size=0.1,
                      n_steps=5, norm="l2")
  np.testing.assert_allclose(adv2, x + 0.2 * w / np.linalg.norm(w),
                             atol=1e-5)
  adv3 = C.pgd_attack(lambda xa: xa @ w, x, eps=0.2, step_size=0.1,
                      n_steps=5, key=jax.random.key(0), bounds=(-0.5, 0.5))
  assert np.all(np.asarray(adv3) <= 0.5) and np.all(np.asarray(adv3) >= -0.5)
  assert np.all(np.abs(np.asarray(adv3) - np.clip(x, -0.5, 0.5)) <= 0.2 + 0.7)
  # Attacking with the probability margin raises it.
  W = rng.randn(4, 5).astype(np.float32)
  y = np.argmax(x @ W, -1).astype(np.int32)
  f = lambda xa: C.probability_margin_loss(xa @ W, y)
  adv4 = jax.jit(lambda x: C.pgd_attack(f, x, eps=0.5, step_size=0.1,
                                        n_steps=10))(x)
  assert np.all(np.asarray(f(adv4)) >= np.asarray(f(x)) - 1e-6)
  with pytest.raises(ValueError, match="norm"):
    C.pgd_attack(f, x, eps=0.1, step_size=0.1, n_steps=1, norm="l1")
  with pytest.raises(ValueError, match="eps"):
    C.pgd_attack(f, x, eps=-0.1, step_size=0.1, n_steps=1)


def test_comp_sum_one_pass_fallback_is_exact():
  # Row 0 has a logit 200 above its label logit (p_y ~ e^-200): the one-pass
  # form would overflow, so the exact max-shifted path must be taken.
  z, y = _data(10, b=4, k=6)
  z[0, (y[0] + 1) % 6] = z[0, y[0]] + 200.0
  want = optax.softmax_cross_entropy_with_integer_labels(z, y)
  np.testing.assert_allclose(
      jax.jit(lambda z: C.comp_sum_loss(z, y, tau=1.0))(z), want, rtol=1e-5)
  np.testing.assert_allclose(  # under vmap, lax.cond becomes a select
      jax.jit(jax.vmap(lambda a, b: C.comp_sum_loss(a, b, tau=1.0)))(z, y),
      want, rtol=1e-5)
  g = jax.grad(lambda z: jnp.sum(C.comp_sum_loss(z, y, tau=1.0)))(z)
  np.testing.assert_allclose(g, _np_p(z) - np.eye(6)[y], atol=1e-5)
  gv = jax.vmap(jax.grad(lambda a, b: C.comp_sum_loss(a, b, tau=1.0)))(z, y)
  np.testing.assert_allclose(gv, _np_p(z) - np.eye(6)[y], atol=1e-5)
