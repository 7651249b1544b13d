"""Tests for jaxkit.divergences.sampled (Monte Carlo f-divergence estimators).

Oracles: the exact categorical divergence sum_k q_k f(p_k / q_k) in numpy
float64 with every generator written out below (no jaxkit code), and the
closed-form KL between 1-D Gaussians. Monte Carlo tolerances are a multiple of
the standard error measured (in numpy) on the same samples.

The large-sample convergence checks call the estimators eagerly. XLA's YNNPACK
reduce fusion (jaxlib 0.10.2, CPU) miscompiles ``sum(g(x) * g(c * x))`` for
transcendental ``g`` once the input has >= 4096 elements; importing jaxkit
disables that fusion, and ``test_xla_cpu_ynn_fusion_canary`` guards it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.divergences import get_generator
from jaxkit.divergences.sampled import importance_sampled
from jaxkit.divergences.sampled import mc_under_p
from jaxkit.divergences.sampled import mc_under_q
from tests.divergences import oracles

# ----------------------------------------------------------------------------
# Independent numpy oracles.
# ----------------------------------------------------------------------------


def _np_f(name, alpha=None):
  """The generator f(t), t > 0, written out in numpy float64 (tests/oracles)."""
  return lambda t: oracles.F[name](t, alpha)


def _exact(p, q, name, alpha=None):
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  return float(np.sum(q * _np_f(name, alpha)(p / q)))


GENS = [("kl", None), ("reverse_kl", None), ("js", None), ("tv", None),
        ("pearson_chi2", None), ("neyman_chi2", None),
        ("squared_hellinger", None), ("jeffreys", None), ("amari_alpha", 0.5),
        ("amari_alpha", 2.0), ("gan", None)]
GEN_IDS = [n if a is None else f"{n}_{a}" for n, a in GENS]


def _gen(name, alpha):
  return get_generator(name) if alpha is None else get_generator(name,
                                                                 alpha=alpha)


P_CAT = np.array([0.1, 0.25, 0.3, 0.2, 0.15])
Q_CAT = np.array([0.2, 0.2, 0.15, 0.3, 0.15 + 1e-12])
Q_CAT = Q_CAT / Q_CAT.sum()
N_MC = 100_000


def _draw(probs, n, seed):
  return np.random.default_rng(seed).choice(len(probs), size=n, p=probs)


# ----------------------------------------------------------------------------
# Convergence to exact values.
# ----------------------------------------------------------------------------


_FAST = {"kl", "js", "pearson_chi2"}
GENS_SLOW_MARKED = [
    pytest.param(n, a, id=i,
                 marks=() if n in _FAST else (pytest.mark.slow,))
    for (n, a), i in zip(GENS, GEN_IDS)]


@pytest.mark.parametrize("name,alpha", GENS_SLOW_MARKED)
def test_categorical_convergence(name, alpha):
  gen = _gen(name, alpha)
  exact = _exact(P_CAT, Q_CAT, name, alpha)
  lp_all, lq_all = np.log(P_CAT), np.log(Q_CAT)
  f = _np_f(name, alpha)

  # Samples from Q.
  iq = _draw(Q_CAT, N_MC, 0)
  t = P_CAT[iq] / Q_CAT[iq]
  se = np.std(f(t)) / np.sqrt(N_MC)
  est = mc_under_q(jnp.asarray(lp_all[iq], jnp.float32),
                   jnp.asarray(lq_all[iq], jnp.float32), gen)
  assert abs(float(est) - exact) <= 5 * se + 1e-5, (float(est), exact, se)

  # Samples from P.
  ip = _draw(P_CAT, N_MC, 1)
  t = P_CAT[ip] / Q_CAT[ip]
  se = np.std(f(t) / t) / np.sqrt(N_MC)
  est = mc_under_p(jnp.asarray(lp_all[ip], jnp.float32),
                   jnp.asarray(lq_all[ip], jnp.float32), gen)
  assert abs(float(est) - exact) <= 5 * se + 1e-5, (float(est), exact, se)

  # Samples from a proposal.
  prop = np.array([0.3, 0.1, 0.2, 0.2, 0.2])
  ipi = _draw(prop, N_MC, 2)
  t = P_CAT[ipi] / Q_CAT[ipi]
  w = Q_CAT[ipi] / prop[ipi]
  se = np.std(w * f(t)) / np.sqrt(N_MC)
  args = [jnp.asarray(a[ipi], jnp.float32)
          for a in (lp_all, lq_all, np.log(prop))]
  for sn in (True, False):
    val, ess = importance_sampled(*args, gen, self_normalize=sn)
    assert abs(float(val) - exact) <= 6 * se + 1e-5, (sn, float(val), exact)
    np.testing.assert_allclose(float(ess), w.sum() ** 2 / (w ** 2).sum(),
                               rtol=1e-4)


def _gauss_logpdf(x, mu, sigma):
  return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(
      2 * np.pi)


def _gauss_kl(mu1, s1, mu2, s2):
  """KL(N(mu1, s1^2) || N(mu2, s2^2)), closed form."""
  return np.log(s2 / s1) + (s1 ** 2 + (mu1 - mu2) ** 2) / (2 * s2 ** 2) - 0.5


@pytest.mark.parametrize(
    "name", ["kl", pytest.param("reverse_kl", marks=pytest.mark.slow)])
def test_gaussian_kl_closed_form(name):
  mp, sp, mq, sq = 0.5, 1.0, 0.0, 1.3   # P = N(0.5, 1), Q = N(0, 1.3^2)
  exact = (_gauss_kl(mp, sp, mq, sq) if name == "kl" else
           _gauss_kl(mq, sq, mp, sp))
  f = _np_f(name)
  rng = np.random.default_rng(3)
  n = 200_000
  xq = mq + sq * rng.standard_normal(n)
  xp = mp + sp * rng.standard_normal(n)
  xpi = 0.2 + 1.5 * rng.standard_normal(n)

  def logs(x):
    return (_gauss_logpdf(x, mp, sp), _gauss_logpdf(x, mq, sq),
            _gauss_logpdf(x, 0.2, 1.5))

  lp, lq, _ = logs(xq)
  se = np.std(f(np.exp(lp - lq))) / np.sqrt(n)
  est = mc_under_q(jnp.float32(lp), jnp.float32(lq), name)
  assert abs(float(est) - exact) <= 5 * se + 1e-4

  lp, lq, _ = logs(xp)
  t = np.exp(lp - lq)
  se = np.std(f(t) / t) / np.sqrt(n)
  est = mc_under_p(jnp.float32(lp), jnp.float32(lq), name)
  assert abs(float(est) - exact) <= 5 * se + 1e-4

  lp, lq, lpi = logs(xpi)
  w = np.exp(lq - lpi)
  se = np.std(w * f(np.exp(lp - lq))) / np.sqrt(n)
  val, _ = importance_sampled(jnp.float32(lp), jnp.float32(lq),
                              jnp.float32(lpi), name)
  assert abs(float(val) - exact) <= 6 * se + 1e-4


def test_mc_under_p_zero_model_probability_uses_slope():
  # q has a zero entry: D_f = sum_{q>0} q f(p/q) + p_k * lim f(t)/t.
  p = np.array([0.2, 0.3, 0.5])
  q = np.array([0.6, 0.4, 0.0])
  for name, slope in [("js", 0.5 * np.log(2)), ("squared_hellinger", 1.0),
                      ("tv", 0.5)]:
    f = _np_f(name)
    exact = np.sum(q[:2] * f(p[:2] / q[:2])) + p[2] * slope
    # Exact expectation under P by replicating categories 2:3:5.
    idx = np.repeat(np.arange(3), [2, 3, 5])
    with np.errstate(divide="ignore"):
      lp, lq = np.log(p[idx]), np.log(q[idx])
    lp, lq = jnp.float32(lp), jnp.float32(lq)
    est = jax.jit(lambda a, b, n=name: mc_under_p(a, b, n))(lp, lq)
    np.testing.assert_allclose(float(est), exact, rtol=1e-5, err_msg=name)
    g = jax.grad(lambda b, n=name: mc_under_p(lp, b, n))(lq)
    assert np.all(np.isfinite(np.asarray(g)[idx != 2])), name


def test_importance_sampled_zero_model_probability_uses_slope():
  p = np.array([0.2, 0.3, 0.5])
  q = np.array([0.6, 0.4, 0.0])
  prop = np.array([0.25, 0.25, 0.5])  # replicated exactly: 1:1:2
  idx = np.repeat(np.arange(3), [1, 1, 2])
  f = _np_f("js")
  exact = np.sum(q[:2] * f(p[:2] / q[:2])) + p[2] * 0.5 * np.log(2)
  with np.errstate(divide="ignore"):
    args = [jnp.float32(np.log(a[idx])) for a in (p, q, prop)]
  val, ess = importance_sampled(*args, "js", self_normalize=False)
  np.testing.assert_allclose(float(val), exact, rtol=1e-5)
  # Self-normalised: weights q/pi = [2.4, 1.6, 0, 0] sum to 4 = N, same value.
  val_sn, _ = importance_sampled(*args, "js")
  np.testing.assert_allclose(float(val_sn), exact, rtol=1e-5)
  np.testing.assert_allclose(float(ess), 4.0 ** 2 / (2.4 ** 2 + 1.6 ** 2),
                             rtol=1e-5)
  grads = jax.grad(lambda a, b, c: importance_sampled(a, b, c, "js")[0],
                   argnums=(0, 1, 2))(*args)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))


def test_mc_under_q_zero_target_probability():
  # log p = -inf contributes f(0): 0 for KL, inf for reverse KL.
  lp = jnp.array([jnp.log(0.5), -jnp.inf, jnp.log(0.5)])
  lq = jnp.log(jnp.array([0.4, 0.2, 0.4]))
  val = mc_under_q(lp, lq, "kl")
  expected = np.mean([1.25 * np.log(1.25), 0.0, 1.25 * np.log(1.25)])
  np.testing.assert_allclose(float(val), expected, rtol=1e-6)
  g = jax.grad(lambda b: mc_under_q(lp, b, "kl"))(lq)
  assert np.all(np.isfinite(np.asarray(g)))
  assert float(mc_under_q(lp, lq, "reverse_kl")) == np.inf


def test_mc_under_p_extreme_log_ratios_stay_finite():
  # f(r)/r from the dual at -log r: no overflow for |log r| = 200 in float32.
  lr = jnp.array([-200.0, 200.0])
  zeros = jnp.zeros(2)
  np.testing.assert_allclose(
      np.asarray(jax.vmap(lambda a: mc_under_p(a[None], jnp.zeros(1), "kl"))(lr)),
      [-200.0, 200.0], rtol=1e-6)
  # JS: f(r)/r -> 1/2 log 2 as r -> inf.
  val = mc_under_p(jnp.array([200.0]), jnp.zeros(1), "js")
  np.testing.assert_allclose(float(val), 0.5 * np.log(2), rtol=1e-5)
  # Reverse KL: f(r)/r = -log(r)/r -> 0 as r -> inf.
  val = mc_under_p(jnp.array([200.0]), jnp.zeros(1), "reverse_kl")
  np.testing.assert_allclose(float(val), 0.0, atol=1e-30)
  del zeros


@pytest.mark.parametrize("name,alpha", GENS, ids=GEN_IDS)
def test_mc_under_p_pointwise_equals_f_over_r(name, alpha):
  # Per-sample value is exactly f(r)/r (the 'gan' dual is corrected).
  t = np.array([0.05, 0.4, 1.0, 2.5, 9.0])
  expected = _np_f(name, alpha)(t) / t
  lr = jnp.float32(np.log(t))
  got = jax.vmap(lambda a: mc_under_p(a[None], jnp.zeros(1),
                                      _gen(name, alpha)))(lr)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name,alpha", GENS, ids=GEN_IDS)
def test_categorical_jit_small(name, alpha):
  # Exact expectations by replication (counts proportional to probabilities),
  # under jit, small enough to stay clear of the XLA fusion bug.
  p = np.array([0.1, 0.2, 0.3, 0.4])
  q = np.array([0.25, 0.25, 0.3, 0.2])
  gen = _gen(name, alpha)
  exact = _exact(p, q, name, alpha)
  iq = np.repeat(np.arange(4), [5, 5, 6, 4])       # exactly q
  ip = np.repeat(np.arange(4), [1, 2, 3, 4])       # exactly p
  lp, lq = np.log(p), np.log(q)
  est = jax.jit(lambda a, b: mc_under_q(a, b, gen))(
      jnp.float32(lp[iq]), jnp.float32(lq[iq]))
  np.testing.assert_allclose(float(est), exact, rtol=1e-5, atol=1e-6)
  est = jax.jit(lambda a, b: mc_under_p(a, b, gen))(
      jnp.float32(lp[ip]), jnp.float32(lq[ip]))
  np.testing.assert_allclose(float(est), exact, rtol=1e-5, atol=1e-6)
  ipi = np.arange(4)                              # uniform proposal, exactly
  for sn in (True, False):
    val, ess = jax.jit(lambda a, b, c, sn=sn: importance_sampled(
        a, b, c, gen, self_normalize=sn))(
            jnp.float32(lp[ipi]), jnp.float32(lq[ipi]),
            jnp.float32(np.log(np.full(4, 0.25))))
    np.testing.assert_allclose(float(val), exact, rtol=1e-5, atol=1e-6)
    w = q / 0.25
    np.testing.assert_allclose(float(ess), w.sum() ** 2 / (w ** 2).sum(),
                               rtol=1e-5)


def test_xla_cpu_ynn_fusion_canary():
  # jaxkit's import disables XLA:CPU's YNNPACK fusion, which (jaxlib 0.10.2)
  # miscompiles sum(g(x) * g(c*x)) for >= 4096 elements; see
  # jaxkit/_src/xla_workarounds.py.
  # Pearson under P evaluates the Neyman generator -expm1(x) * expm1(-x).
  ip = _draw(P_CAT, 4096, 1)
  lp = jnp.float32(np.log(P_CAT[ip]))
  lq = jnp.float32(np.log(Q_CAT[ip]))
  eager = mc_under_p(lp, lq, "pearson_chi2")
  jitted = jax.jit(lambda a, b: mc_under_p(a, b, "pearson_chi2"))(lp, lq)
  np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-5)


# ----------------------------------------------------------------------------
# ESS.
# ----------------------------------------------------------------------------


def test_ess_uniform_and_one_hot():
  n = 16
  lp = jnp.zeros(n)
  lq = jnp.full((n,), -3.0)
  _, ess = importance_sampled(lp, lq, lq + 0.7, "kl")  # constant weights
  np.testing.assert_allclose(float(ess), n, rtol=1e-6)
  lq1 = jnp.full((n,), -jnp.inf).at[3].set(-1.0)
  _, ess = importance_sampled(lp, lq1, jnp.zeros(n), "js")
  np.testing.assert_allclose(float(ess), 1.0, rtol=1e-6)
  # Nearly one-hot with finite log-weights as well.
  lq2 = jnp.full((n,), -1e4).at[5].set(0.0)
  _, ess = importance_sampled(lp, lq2, jnp.zeros(n), "kl")
  np.testing.assert_allclose(float(ess), 1.0, rtol=1e-6)


def test_importance_sampled_shift_invariance_of_self_normalized():
  # Self-normalised weights do not care about a constant in log q - log pi.
  rng = np.random.default_rng(0)
  lp, lq, lpi = (jnp.float32(rng.normal(size=32)) for _ in range(3))
  a = importance_sampled(lp, lq, lpi, "js")
  b = importance_sampled(lp, lq, lpi + 50.0, "js")
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


# ----------------------------------------------------------------------------
# Masks, dtypes, transformations, sharding, errors.
# ----------------------------------------------------------------------------

FNS = {
    "mc_under_q": lambda lp, lq, lpi, **kw: mc_under_q(lp, lq, "js", **kw),
    "mc_under_p": lambda lp, lq, lpi, **kw: mc_under_p(lp, lq, "kl", **kw),
    "is_sn": lambda lp, lq, lpi, **kw: importance_sampled(
        lp, lq, lpi, "pearson_chi2", **kw),
    "is_unnorm": lambda lp, lq, lpi, **kw: importance_sampled(
        lp, lq, lpi, "squared_hellinger", self_normalize=False, **kw),
}


def _data(shape, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(jnp.float32(0.7 * rng.normal(size=shape)) - 2.0
               for _ in range(3))


@pytest.mark.parametrize("fn_name", list(FNS))
def test_mask_equals_subset(fn_name):
  fn = FNS[fn_name]
  lp, lq, lpi = _data((3, 12))
  mask = np.ones((3, 12), bool)
  mask[0, 5:] = False
  mask[1, ::3] = False
  # Garbage in masked entries must not leak.
  lp = jnp.where(mask, lp, jnp.nan)
  lq = jnp.where(mask, lq, -jnp.inf)
  out = jax.jit(lambda a, b, c: fn(a, b, c, where=mask))(lp, lq, lpi)
  for row in range(3):
    m = mask[row]
    ref = fn(lp[row][m], lq[row][m], lpi[row][m])
    np.testing.assert_allclose(
        np.asarray(jax.tree.map(lambda o: o[row], out)), np.asarray(ref),
        rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn_name", list(FNS))
def test_masked_and_fully_masked_rows_have_finite_gradients(fn_name):
  fn = FNS[fn_name]
  lp, lq, lpi = _data((2, 6))
  mask = np.array([[True, True, False, True, False, False], [False] * 6])
  lp = jnp.where(mask, lp, jnp.nan)
  lq = jnp.where(mask, lq, jnp.inf)
  lpi = jnp.where(mask, lpi, -jnp.inf)

  def scalar(a, b, c):
    out = fn(a, b, c, where=mask)
    out = out[0] if isinstance(out, tuple) else out
    return jnp.sum(out)

  out = fn(lp, lq, lpi, where=mask)
  out = out if isinstance(out, tuple) else (out,)
  for o in out:
    assert float(o[1]) == 0.0
    assert np.all(np.isfinite(np.asarray(o)))
  grads = jax.grad(scalar, argnums=(0, 1, 2))(lp, lq, lpi)
  for g in grads:
    g = np.asarray(g)
    assert np.all(np.isfinite(g))
    assert np.all(g[~mask] == 0.0)


@pytest.mark.parametrize("fn_name", list(FNS))
def test_bf16_computes_in_float32(fn_name):
  fn = FNS[fn_name]
  args = _data((4, 16), seed=1)
  args16 = tuple(a.astype(jnp.bfloat16) for a in args)
  out16 = jax.jit(fn)(*args16)
  out32 = fn(*(a.astype(jnp.float32) for a in args16))
  for o16, o32 in zip(jax.tree.leaves(out16), jax.tree.leaves(out32)):
    assert o16.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(o16), np.asarray(o32), rtol=1e-6)


@pytest.mark.parametrize("fn_name", list(FNS))
def test_jit_vmap_and_axis(fn_name):
  fn = FNS[fn_name]
  lp, lq, lpi = _data((5, 7), seed=2)
  batched = fn(lp, lq, lpi)
  vmapped = jax.jit(jax.vmap(fn))(lp, lq, lpi)
  for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(vmapped)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)
  # Sample axis first.
  moved = fn(lp.T, lq.T, lpi.T, axis=0)
  for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(moved)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


@pytest.mark.parametrize("fn_name", list(FNS))
def test_sharded_equals_single_device(fn_name):
  fn = FNS[fn_name]
  lp, lq, lpi = _data((4, 64), seed=3)
  mask = np.random.default_rng(0).random((4, 64)) > 0.3
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P(None, "data"))
  args = [jax.device_put(a, sh) for a in (lp, lq, lpi)]
  m = jax.device_put(jnp.asarray(mask), sh)
  out = jax.jit(lambda a, b, c, w: fn(a, b, c, where=w))(*args, m)
  ref = fn(lp, lq, lpi, where=mask)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


def test_traced_alpha_generator():
  lp, lq, _ = _data((8,), seed=4)

  @jax.jit
  def fn(alpha):
    return mc_under_q(lp, lq, get_generator("amari_alpha", alpha=alpha))

  t = np.exp(np.asarray(lp, np.float64) - np.asarray(lq, np.float64))
  np.testing.assert_allclose(float(fn(0.3)),
                             np.mean(_np_f("amari_alpha", 0.3)(t)), rtol=1e-5)


def test_bad_inputs():
  a = jnp.zeros((3, 4))
  with pytest.raises(ValueError, match="log_q"):
    mc_under_q(a, jnp.zeros((3, 5)), "kl")
  with pytest.raises(ValueError, match="log_proposal"):
    importance_sampled(a, a, jnp.zeros((4,)), "kl")
  with pytest.raises(TypeError, match="log_p"):
    mc_under_p(jnp.zeros((3, 4), jnp.int32), a, "kl")
  with pytest.raises(TypeError, match="log_q"):
    mc_under_q(a, np.zeros((3, 4), bool), "kl")
  with pytest.raises(ValueError, match="generator"):
    mc_under_q(a, a, "kullback")
  with pytest.raises(TypeError, match="generator"):
    mc_under_p(a, a, 3)
  with pytest.raises(ValueError, match="where"):
    mc_under_q(a, a, "kl", where=jnp.ones((3,), bool))
  with pytest.raises(ValueError, match="axis"):
    mc_under_q(a, a, "kl", axis=2)
  with pytest.raises(ValueError, match="sample"):
    mc_under_q(jnp.float32(0.0), jnp.float32(0.0), "kl")
  with pytest.raises(TypeError, match="self_normalize"):
    importance_sampled(a, a, a, "kl", self_normalize=1)
  with pytest.raises(ValueError, match="alpha"):
    mc_under_q(a, a, "amari_alpha")  # needs alpha: pass an FGenerator
