"""Tests for jaxkit.divergences.gradients (score-function and pathwise surrogates).

Oracles (no jaxkit code):
* score function: on the enumerable space of 4^3 sequences with a factorised
  softmax policy, the exact expectation of the surrogate gradient (a sum over
  all 64 sequences weighted by their probability) against autodiff of the
  exact categorical divergence sum_x q(x) f(p(x)/q(x)), with f written out in
  jax.numpy below;
* pathwise: 1-D Gaussians q_theta = N(theta, 1), p = N(0, 0.8^2); the exact
  D_f(theta) by scipy.integrate.quad and a central finite difference.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import stats

from jaxkit.divergences import get_generator
from jaxkit.divergences.gradients import log_partition_estimate
from jaxkit.divergences.gradients import pathwise_surrogate
from jaxkit.divergences.gradients import score_function_surrogate
from tests.divergences import oracles


def _f(name, xp, alpha=None):
  """The generator f(t), t > 0, in numpy or jax.numpy (``xp``)."""
  return lambda t: oracles.f_table(xp)[name](t, alpha)


def _gen(name, alpha):
  return get_generator(name) if alpha is None else get_generator(name,
                                                                 alpha=alpha)


# ----------------------------------------------------------------------------
# Score-function surrogate on an enumerable sequence space.
# ----------------------------------------------------------------------------

V, L = 4, 3
SEQS = np.array(list(itertools.product(range(V), repeat=L)))  # [64, 3]
_RNG = np.random.default_rng(0)
THETA0 = jnp.float32(0.6 * _RNG.normal(size=(L, V)))
P_SEQ = _RNG.dirichlet(np.full(len(SEQS), 2.0))
LOG_P = jnp.float32(np.log(P_SEQ))
PROP = _RNG.dirichlet(np.full(len(SEQS), 5.0))
LOG_PROP = jnp.float32(np.log(PROP))


def _log_q_of(theta, tokens):
  lsm = jax.nn.log_softmax(theta, axis=-1)
  return jnp.sum(lsm[jnp.arange(L), tokens], axis=-1)


def _exact_divergence(theta, name, alpha):
  lq = _log_q_of(theta, SEQS)
  q = jnp.exp(lq)
  return jnp.sum(q * _f(name, jnp, alpha)(jnp.exp(LOG_P - lq)))


SF_GENS = [("kl", None), ("reverse_kl", None), ("js", None), ("tv", None),
           ("pearson_chi2", None), ("amari_alpha", 0.5), ("neyman_chi2", None),
           ("squared_hellinger", None), ("jeffreys", None), ("gan", None)]
SF_IDS = [n if a is None else f"{n}_{a}" for n, a in SF_GENS]


def test_tv_is_away_from_ratio_one():
  log_r = np.asarray(LOG_P - _log_q_of(THETA0, SEQS))
  assert np.min(np.abs(log_r)) > 1e-3


@pytest.mark.parametrize("name,alpha", SF_GENS, ids=SF_IDS)
def test_score_function_exact_expectation(name, alpha):
  gen = _gen(name, alpha)
  exact = jax.grad(_exact_divergence)(THETA0, name, alpha)

  @jax.jit
  def expected_grads(theta):
    def on_policy(th, baseline):
      lq = _log_q_of(th, SEQS)[:, None]  # 64 "batches" of one sample each
      per = score_function_surrogate(lq, LOG_P[:, None], gen,
                                     baseline=baseline)
      return jnp.sum(jax.lax.stop_gradient(jnp.exp(lq[:, 0])) * per)

    def off_policy(th):
      lq = _log_q_of(th, SEQS)[:, None]
      per = score_function_surrogate(lq, LOG_P[:, None], gen,
                                     log_proposal=LOG_PROP[:, None],
                                     baseline=0.3)
      return jnp.sum(PROP * per)   # expectation under the proposal

    return (jax.grad(on_policy)(theta, 0.0), jax.grad(on_policy)(theta, 0.7),
            jax.grad(off_policy)(theta))

  scale = float(jnp.max(jnp.abs(exact)))
  for got in expected_grads(THETA0):
    np.testing.assert_allclose(np.asarray(got), np.asarray(exact),
                               rtol=2e-4, atol=2e-5 * scale)


@pytest.mark.parametrize("name", ["js", "kl"])
def test_score_function_monte_carlo(name):
  # Sampled sequences from q_theta; tolerance from per-sample gradient spread.
  n = 20_000
  probs = np.asarray(jax.nn.softmax(THETA0, axis=-1), np.float64)
  rng = np.random.default_rng(1)
  tokens = np.stack([rng.choice(V, size=n, p=probs[t] / probs[t].sum())
                     for t in range(L)], axis=-1)
  log_p = LOG_P[np.ravel_multi_index(tokens.T, (V,) * L)]
  tokens = jnp.asarray(tokens)

  def loss(theta, tok, lp):
    return score_function_surrogate(_log_q_of(theta, tok), lp, name)

  grad = jax.grad(loss)(THETA0, tokens, log_p)
  per = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(
      THETA0, tokens[:, None], log_p[:, None])
  se = np.std(np.asarray(per), axis=0) / np.sqrt(n)
  exact = jax.grad(_exact_divergence)(THETA0, name, None)
  assert np.all(np.abs(np.asarray(grad) - np.asarray(exact)) <= 5 * se + 1e-4)


def test_score_function_values_and_baseline_shapes():
  lq = jnp.array([[-1.0, -2.0, -0.5], [-0.3, -1.5, -2.5]])
  lp = jnp.array([[-1.2, -1.0, -0.9], [-0.1, -2.0, -2.0]])
  b = jnp.array([[0.1], [0.4]])  # per-row baseline
  out = score_function_surrogate(lq, lp, "reverse_kl", baseline=b)
  r = (np.asarray(lp) - np.asarray(lq)) - 1.0  # reverse-KL pseudo-reward
  expected = -np.mean((r - np.asarray(b)) * np.asarray(lq), axis=-1)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6)
  # Per-sample baseline array of the full shape.
  out = score_function_surrogate(lq, lp, "reverse_kl", baseline=lq * 0 + 0.2)
  np.testing.assert_allclose(np.asarray(out),
                             -np.mean((r - 0.2) * np.asarray(lq), axis=-1),
                             rtol=1e-6)
  # No gradient flows into log_p, log_proposal or the baseline.
  grads = jax.grad(
      lambda a, c, d: jnp.sum(score_function_surrogate(
          lq, a, "js", log_proposal=c, baseline=d)), argnums=(0, 1, 2))(
              lp, lq - 0.1, b)
  for g in grads:
    np.testing.assert_array_equal(np.asarray(g), 0.0)


# ----------------------------------------------------------------------------
# log_partition_estimate.
# ----------------------------------------------------------------------------


def test_log_partition_estimate():
  p_tilde = np.array([0.3, 1.2, 0.0, 2.5])   # a hard constraint zeroes x=2
  prop = np.array([0.4, 0.3, 0.2, 0.1])
  with np.errstate(divide="ignore"):
    lpt = np.log(p_tilde)
  # Exact expectation under the proposal by replication 4:3:2:1.
  idx = np.repeat(np.arange(4), [4, 3, 2, 1])
  out = jax.jit(log_partition_estimate)(jnp.float32(lpt[idx]),
                                        jnp.float32(np.log(prop[idx])))
  np.testing.assert_allclose(float(out), np.log(p_tilde.sum()), rtol=1e-6)
  # Large-sample (LLN) check, eager.
  n = 50_000
  i = np.random.default_rng(0).choice(4, size=n, p=prop)
  w = p_tilde[i] / prop[i]
  out = log_partition_estimate(jnp.float32(lpt[i]), jnp.float32(np.log(prop[i])))
  assert abs(np.exp(float(out)) - p_tilde.sum()) <= 5 * w.std() / np.sqrt(n)
  # All targets zero -> -inf; fully masked -> 0; gradients finite.
  lz = log_partition_estimate(jnp.full((3,), -jnp.inf), jnp.zeros(3))
  assert float(lz) == -np.inf
  a = jnp.float32([[0.1, jnp.nan, 0.3], [jnp.nan, jnp.nan, jnp.nan]])
  m = jnp.array([[True, False, True], [False, False, False]])
  out = log_partition_estimate(a, jnp.zeros((2, 3)), where=m)
  np.testing.assert_allclose(np.asarray(out),
                             [np.log(np.mean(np.exp([0.1, 0.3]))), 0.0],
                             rtol=1e-6)
  g = jax.grad(lambda x: jnp.sum(log_partition_estimate(
      x, jnp.zeros((2, 3)), where=m)))(a)
  assert np.all(np.isfinite(np.asarray(g)))


# ----------------------------------------------------------------------------
# Pathwise surrogate on 1-D Gaussians.
# ----------------------------------------------------------------------------

SIGMA_P = 0.8


def _np_logpdf(x, mu, s):
  return stats.norm.logpdf(x, mu, s)


def _exact_gauss_divergence(theta, name, alpha=None):
  f = _f(name, np, alpha)

  def integrand(x):
    lq = _np_logpdf(x, theta, 1.0)
    return np.exp(lq) * f(np.exp(_np_logpdf(x, 0.0, SIGMA_P) - lq))

  val, _ = integrate.quad(integrand, -12.0, 12.0, epsabs=1e-13, epsrel=1e-13,
                          limit=200)
  return val


def _pathwise_grad(theta, gen, n=2 ** 15, normalize=False):
  u = (np.arange(n) + 0.5) / n
  z = jnp.float32(stats.norm.ppf(u))[:, None]   # stratified N(0, 1) draws

  def loss(th):
    x = th + z                                   # reparameterised samples
    s_p = -x / SIGMA_P ** 2
    s_q = -(x - th)
    log_r = (-0.5 * (x / SIGMA_P) ** 2 - np.log(SIGMA_P) + 0.5 * z ** 2)[:, 0]
    return pathwise_surrogate(x, s_p, s_q, log_r, gen, normalize=normalize)

  return float(jax.grad(loss)(jnp.float32(theta)))


@pytest.mark.parametrize("name,alpha", [("kl", None), ("reverse_kl", None),
                                        ("js", None), ("squared_hellinger",
                                                       None),
                                        ("amari_alpha", 1.5)])
def test_pathwise_matches_finite_differences(name, alpha):
  theta, h = 0.6, 1e-3
  fd = (_exact_gauss_divergence(theta + h, name, alpha) -
        _exact_gauss_divergence(theta - h, name, alpha)) / (2 * h)
  got = _pathwise_grad(theta, _gen(name, alpha))
  np.testing.assert_allclose(got, fd, rtol=2e-3, atol=1e-5)


def test_pathwise_normalize_divides_by_batch_mean_weight():
  gen = get_generator("kl")
  rng = np.random.default_rng(0)
  x = jnp.float32(rng.normal(size=(2, 5, 3)))
  sp = jnp.float32(rng.normal(size=(2, 5, 3)))
  sq = jnp.float32(rng.normal(size=(2, 5, 3)))
  lr = jnp.float32(rng.normal(size=(2, 5)))
  mask = np.array([[1, 1, 1, 0, 1], [1, 0, 1, 1, 1]], bool)
  h = np.exp(np.asarray(lr))  # forward KL: h = r
  hbar = np.array([h[i][mask[i]].mean() for i in range(2)])
  raw = pathwise_surrogate(x, sp, sq, lr, gen, where=mask)
  nrm = pathwise_surrogate(x, sp, sq, lr, gen, where=mask, normalize=True)
  np.testing.assert_allclose(np.asarray(nrm), np.asarray(raw) / hbar,
                             rtol=1e-5)
  # Value: -mean_i sum_d h (s_p - s_q) x over valid samples.
  val = -(h[..., None] * (np.asarray(sp) - np.asarray(sq)) *
          np.asarray(x)).sum(-1)
  expected = [val[i][mask[i]].mean() for i in range(2)]
  np.testing.assert_allclose(np.asarray(raw), expected, rtol=1e-5)
  # TV weights are identically zero: normalize keeps them zero, no nan.
  out = pathwise_surrogate(x, sp, sq, lr, "tv", normalize=True)
  np.testing.assert_array_equal(np.asarray(out), 0.0)


def test_pathwise_gradient_only_through_x():
  rng = np.random.default_rng(1)
  x, sp, sq = (jnp.float32(rng.normal(size=(4, 2))) for _ in range(3))
  lr = jnp.float32(rng.normal(size=(4,)))
  grads = jax.grad(lambda *a: pathwise_surrogate(*a, "js"),
                   argnums=(0, 1, 2, 3))(x, sp, sq, lr)
  h = 0.5 / (1 + np.exp(-np.asarray(lr)))  # JS: r / (2 (1 + r))
  np.testing.assert_allclose(
      np.asarray(grads[0]),
      -h[:, None] * (np.asarray(sp) - np.asarray(sq)) / 4, rtol=1e-5)
  for g in grads[1:]:
    np.testing.assert_array_equal(np.asarray(g), 0.0)


# ----------------------------------------------------------------------------
# Masks, dtypes, transformations, sharding, errors (all three functions).
# ----------------------------------------------------------------------------


def _sf(lq, lp, lpi, **kw):
  return score_function_surrogate(lq, lp, "js", log_proposal=lpi,
                                  baseline=0.1, **kw)


def _lz(lq, lp, lpi, **kw):
  del lq
  return log_partition_estimate(lp, lpi, **kw)


SAMPLE_FNS = {"score_function": _sf, "log_partition": _lz}


def _data(shape, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(jnp.float32(0.7 * rng.normal(size=shape)) - 2.0
               for _ in range(3))


@pytest.mark.parametrize("fn_name", list(SAMPLE_FNS))
def test_sample_fns_mask_grad_bf16_vmap(fn_name):
  fn = SAMPLE_FNS[fn_name]
  lq, lp, lpi = _data((3, 10))
  mask = np.ones((3, 10), bool)
  mask[0, 4:] = False
  mask[1, ::2] = False
  mask[2] = False
  lq_bad = jnp.where(mask, lq, jnp.nan)
  lp_bad = jnp.where(mask, lp, -jnp.inf)
  out = jax.jit(lambda a, b, c: fn(a, b, c, where=mask))(lq_bad, lp_bad, lpi)
  for row in range(2):
    m = mask[row]
    ref = fn(lq[row][m], lp[row][m], lpi[row][m])
    np.testing.assert_allclose(float(out[row]), float(ref), rtol=1e-5)
  assert float(out[2]) == 0.0
  grads = jax.grad(lambda a, b, c: jnp.sum(fn(a, b, c, where=mask)),
                   argnums=(0, 1, 2))(lq_bad, lp_bad, lpi)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(g)[~mask] == 0.0)
  # bf16 in, float32 out, equal to float32 on the rounded inputs.
  args16 = tuple(a.astype(jnp.bfloat16) for a in (lq, lp, lpi))
  o16 = jax.jit(fn)(*args16)
  assert o16.dtype == jnp.float32
  np.testing.assert_allclose(
      np.asarray(o16), np.asarray(fn(*(a.astype(jnp.float32) for a in args16))),
      rtol=1e-6)
  # vmap == batched, axis=0 == transposed.
  np.testing.assert_allclose(np.asarray(jax.vmap(fn)(lq, lp, lpi)),
                             np.asarray(fn(lq, lp, lpi)), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(fn(lq.T, lp.T, lpi.T, axis=0)),
                             np.asarray(fn(lq, lp, lpi)), rtol=1e-5)


def _mesh():
  return jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


@pytest.mark.parametrize("fn_name", list(SAMPLE_FNS))
def test_sample_fns_sharded(fn_name):
  fn = SAMPLE_FNS[fn_name]
  args = _data((4, 64), seed=5)
  mask = np.random.default_rng(0).random((4, 64)) > 0.3
  sh = jax.sharding.NamedSharding(_mesh(), jax.P(None, "data"))
  out = jax.jit(lambda a, b, c, w: fn(a, b, c, where=w))(
      *[jax.device_put(a, sh) for a in args], jax.device_put(mask, sh))
  np.testing.assert_allclose(np.asarray(out),
                             np.asarray(fn(*args, where=mask)), rtol=1e-5)
  # Gradients of the score-function surrogate agree too.
  g = jax.jit(jax.grad(lambda a: jnp.sum(fn(a, args[1], args[2], where=mask))))(
      jax.device_put(args[0], sh))
  g_ref = jax.grad(lambda a: jnp.sum(fn(a, args[1], args[2], where=mask)))(
      args[0])
  np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-5,
                             atol=1e-7)


def _path_data(shape=(2, 16, 3), seed=0):
  rng = np.random.default_rng(seed)
  x, sp, sq = (jnp.float32(rng.normal(size=shape)) for _ in range(3))
  lr = jnp.float32(rng.normal(size=shape[:-1]))
  return x, sp, sq, lr


def test_pathwise_mask_grad_bf16_vmap():
  x, sp, sq, lr = _path_data()
  mask = np.ones((2, 16), bool)
  mask[0, 10:] = False
  mask[1, :3] = False
  bad = mask[..., None]
  args = (jnp.where(bad, x, jnp.nan), jnp.where(bad, sp, jnp.inf),
          jnp.where(bad, sq, jnp.nan), jnp.where(mask, lr, jnp.inf))
  fn = lambda *a, **kw: pathwise_surrogate(*a, "kl", **kw)  # noqa: E731
  out = jax.jit(lambda *a: fn(*a, where=mask, normalize=True))(*args)
  for row in range(2):
    m = mask[row]
    ref = fn(x[row][m], sp[row][m], sq[row][m], lr[row][m], normalize=True)
    np.testing.assert_allclose(float(out[row]), float(ref), rtol=1e-5)
  grads = jax.grad(lambda *a: jnp.sum(fn(*a, where=mask, normalize=True)),
                   argnums=(0, 1, 2, 3))(*args)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  full = np.zeros((2, 16), bool)
  assert float(jnp.sum(fn(*args, where=full))) == 0.0
  g = jax.grad(lambda a: jnp.sum(fn(a, *args[1:], where=full)))(args[0])
  assert np.all(np.asarray(g) == 0.0)
  # bf16.
  a16 = tuple(a.astype(jnp.bfloat16) for a in (x, sp, sq, lr))
  o16 = jax.jit(fn)(*a16)
  assert o16.dtype == jnp.float32
  np.testing.assert_allclose(
      np.asarray(o16), np.asarray(fn(*(a.astype(jnp.float32) for a in a16))),
      rtol=1e-6)
  # vmap over the leading axis == batched.
  np.testing.assert_allclose(np.asarray(jax.vmap(fn)(x, sp, sq, lr)),
                             np.asarray(fn(x, sp, sq, lr)), rtol=1e-5)


def test_pathwise_sharded():
  x, sp, sq, lr = _path_data((4, 64, 2), seed=3)
  mesh = _mesh()
  sh3 = jax.sharding.NamedSharding(mesh, jax.P(None, "data", None))
  sh2 = jax.sharding.NamedSharding(mesh, jax.P(None, "data"))
  fn = lambda *a: pathwise_surrogate(*a, "js", normalize=True)  # noqa: E731
  out = jax.jit(fn)(*[jax.device_put(a, sh3) for a in (x, sp, sq)],
                    jax.device_put(lr, sh2))
  np.testing.assert_allclose(np.asarray(out), np.asarray(fn(x, sp, sq, lr)),
                             rtol=1e-5)
  g = jax.jit(jax.grad(lambda a: jnp.sum(fn(a, sp, sq, lr))))(
      jax.device_put(x, sh3))
  g_ref = jax.grad(lambda a: jnp.sum(fn(a, sp, sq, lr)))(x)
  np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-5)


def test_bad_inputs():
  a = jnp.zeros((3, 4))
  with pytest.raises(ValueError, match="log_p"):
    score_function_surrogate(a, jnp.zeros((3, 5)), "kl")
  with pytest.raises(ValueError, match="log_proposal"):
    score_function_surrogate(a, a, "kl", log_proposal=jnp.zeros((4,)))
  with pytest.raises(TypeError, match="log_q"):
    score_function_surrogate(jnp.zeros((3, 4), jnp.int32), a, "kl")
  with pytest.raises(ValueError, match="generator"):
    score_function_surrogate(a, a, "not_a_divergence")
  with pytest.raises(ValueError, match="baseline"):
    score_function_surrogate(a, a, "kl", baseline=jnp.zeros((3,)))
  with pytest.raises(TypeError, match="baseline"):
    score_function_surrogate(a, a, "kl", baseline=True)
  with pytest.raises(ValueError, match="where"):
    score_function_surrogate(a, a, "kl", where=jnp.ones((4,), bool))
  with pytest.raises(ValueError, match="log_proposal"):
    log_partition_estimate(a, jnp.zeros((3,)))
  with pytest.raises(TypeError, match="log_target_unnorm"):
    log_partition_estimate(jnp.zeros((3,), jnp.int32), jnp.zeros((3,)))
  x, sp, sq, lr = _path_data()
  with pytest.raises(ValueError, match="log_r"):
    pathwise_surrogate(x, sp, sq, lr[:, :5], "kl")
  with pytest.raises(ValueError, match="score_q"):
    pathwise_surrogate(x, sp, sq[..., :2], lr, "kl")
  with pytest.raises(ValueError, match="x"):
    pathwise_surrogate(x[0, 0], sp[0, 0], sq[0, 0], lr[0, 0], "kl")
  with pytest.raises(TypeError, match="x"):
    pathwise_surrogate(x.astype(jnp.int32), sp, sq, lr, "kl")
  with pytest.raises(ValueError, match="generator"):
    pathwise_surrogate(x, sp, sq, lr, "klx")
  with pytest.raises(ValueError, match="where"):
    pathwise_surrogate(x, sp, sq, lr, "kl", where=jnp.ones((2, 16, 3), bool))
  with pytest.raises(TypeError, match="normalize"):
    pathwise_surrogate(x, sp, sq, lr, "kl", normalize="yes")
