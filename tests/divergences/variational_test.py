"""Tests for jaxkit.divergences.variational (f-GAN bound, logistic critic).

Oracles (no jaxkit code): the exact categorical divergence in numpy float64
with f, f' and the inverse output activations written out below. Exact
expectations are formed by replicating categories in proportion to their
probabilities, so a sample mean *is* the expectation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from jaxkit.divergences import get_generator
from jaxkit.divergences.variational import density_ratio_logistic_loss
from jaxkit.divergences.variational import variational_bound

LOG2, LOG4 = np.log(2.0), np.log(4.0)


def _softplus_inv(y):
  return np.log(np.expm1(y))


def _oracle(name, alpha=None):
  """(f, f', g^{-1}) in numpy for each generator (t > 0)."""
  a = alpha
  table = {
      "kl": (lambda t: t * np.log(t), lambda t: 1 + np.log(t), lambda u: u),
      "reverse_kl": (lambda t: -np.log(t), lambda t: -1 / t,
                     lambda u: -np.log(-u)),  # g(v) = -exp(-v)
      "js": (lambda t: 0.5 * (t * np.log(t) - (1 + t) * np.log((1 + t) / 2)),
             lambda t: 0.5 * np.log(2 * t / (1 + t)),
             # g(v) = (log 2 - softplus(-v)) / 2
             lambda u: -_softplus_inv(LOG2 - 2 * u)),
      "tv": (lambda t: 0.5 * np.abs(t - 1), lambda t: 0.5 * np.sign(t - 1),
             # g(v) = tanh(v) / 2 reaches +-1/2 only at +-inf: use +-30.
             lambda u: 30.0 * np.sign(u)),
      "pearson_chi2": (lambda t: (t - 1) ** 2, lambda t: 2 * (t - 1),
                       lambda u: u),
      "neyman_chi2": (lambda t: (1 - t) ** 2 / t, lambda t: 1 - t ** -2.0,
                      lambda u: -np.log1p(-u)),  # g(v) = 1 - exp(-v)
      "squared_hellinger": (lambda t: (np.sqrt(t) - 1) ** 2,
                            lambda t: 1 - t ** -0.5,
                            lambda u: -np.log1p(-u)),
      "jeffreys": (lambda t: (t - 1) * np.log(t),
                   lambda t: np.log(t) + 1 - 1 / t, lambda u: u),
      "amari_alpha": (
          lambda t: (t ** a - 1 - a * (t - 1)) / (a * (a - 1)),
          lambda t: (t ** (a - 1) - 1) / (a - 1),
          # a < 1: g(v) = h - softplus(h - v), h = 1/(1-a); a > 1: identity.
          (lambda u: 1 / (1 - a) - _softplus_inv(1 / (1 - a) - u))
          if a is not None and a < 1 else (lambda u: u)),
      "gan": (lambda t: t * np.log(t) - (1 + t) * np.log(1 + t) + LOG4,
              lambda t: np.log(t / (1 + t)),
              lambda u: -_softplus_inv(-u)),  # g(v) = -softplus(-v)
  }
  return table[name]


GENS = [("kl", None), ("reverse_kl", None), ("js", None), ("tv", None),
        ("pearson_chi2", None), ("neyman_chi2", None),
        ("squared_hellinger", None), ("jeffreys", None), ("amari_alpha", 0.5),
        ("amari_alpha", -1.0), ("amari_alpha", 2.0), ("gan", None)]
IDS = [n if a is None else f"{n}_{a}" for n, a in GENS]

# P = [1, 2, 3, 4] / 10 and Q = [4, 3, 2, 1] / 10, replicated exactly.
P = np.array([1, 2, 3, 4]) / 10
Q = np.array([4, 3, 2, 1]) / 10
IDX_P = np.repeat(np.arange(4), [1, 2, 3, 4])
IDX_Q = np.repeat(np.arange(4), [4, 3, 2, 1])


def _gen(name, alpha):
  return get_generator(name) if alpha is None else get_generator(name,
                                                                 alpha=alpha)


@pytest.mark.parametrize("name,alpha", GENS, ids=IDS)
def test_bound_below_divergence_and_tight_at_optimal_critic(name, alpha):
  f, f_prime, g_inv = _oracle(name, alpha)
  exact = float(np.sum(Q * f(P / Q)))
  gen = _gen(name, alpha)
  bound = jax.jit(lambda v: variational_bound(v[IDX_P], v[IDX_Q], gen))

  v_star = g_inv(f_prime(P / Q))
  np.testing.assert_allclose(float(bound(jnp.float32(v_star))), exact,
                             rtol=2e-5, atol=2e-6)
  rng = np.random.default_rng(0)
  critics = jnp.float32(v_star + rng.normal(size=(32, 4)))
  critics = jnp.concatenate([critics, jnp.float32(rng.normal(size=(32, 4)))])
  values = np.asarray(jax.vmap(bound)(critics))
  assert np.all(values <= exact + 1e-5), (values.max(), exact)
  # The optimum is a maximum: perturbations do strictly worse (not for TV,
  # whose bound saturates, and whose "optimal" critic is only approached).
  if name != "tv":
    assert np.all(values[:32] < exact)


def test_bound_monte_carlo_gaussians():
  # P = N(1, 1), Q = N(0, 1): optimal KL critic 1 + log r = 1/2 + x; KL = 1/2.
  rng = np.random.default_rng(0)
  n = 200_000
  x = 1.0 + rng.standard_normal(n)
  y = rng.standard_normal(n)
  vp, vq = 0.5 + x, 0.5 + y
  se = np.sqrt(vp.var() / n + np.exp(vq - 1).var() / n)
  got = variational_bound(jnp.float32(vp), jnp.float32(vq), "kl")
  assert abs(float(got) - 0.5) <= 5 * se


def test_gan_bound_is_log4_minus_logistic_loss():
  rng = np.random.default_rng(1)
  vp, vq = jnp.float32(rng.normal(size=(3, 7))), jnp.float32(
      rng.normal(size=(3, 5)))
  np.testing.assert_allclose(
      np.asarray(variational_bound(vp, vq, "gan")),
      LOG4 - np.asarray(density_ratio_logistic_loss(vp, vq)), rtol=1e-5)


def test_logistic_loss_minimiser_is_log_ratio():
  loss = jax.jit(lambda l: density_ratio_logistic_loss(l[IDX_P], l[IDX_Q]))
  grad = jax.jit(jax.grad(lambda l: density_ratio_logistic_loss(l[IDX_P],
                                                                l[IDX_Q])))
  log_ratio = np.log(P / Q)
  # Stationary at log p/q ...
  np.testing.assert_allclose(np.asarray(grad(jnp.float32(log_ratio))), 0.0,
                             atol=1e-6)
  # ... and numerical minimisation from zero recovers it.
  res = optimize.minimize(lambda l: float(loss(jnp.float32(l))), np.zeros(4),
                          jac=lambda l: np.asarray(grad(jnp.float32(l)),
                                                   np.float64),
                          method="L-BFGS-B", options=dict(gtol=1e-9))
  np.testing.assert_allclose(res.x, log_ratio, atol=1e-3)
  # Minimum value: log 4 - 2 JS(P || Q).
  js = 0.5 * np.sum(P * np.log(2 * P / (P + Q)) + Q * np.log(2 * Q / (P + Q)))
  np.testing.assert_allclose(float(loss(jnp.float32(log_ratio))),
                             LOG4 - 2 * js, rtol=1e-6)
  # The minimiser does not depend on the class sizes: replicate P twice.
  idx_p2 = np.concatenate([IDX_P, IDX_P])
  g2 = jax.grad(lambda l: density_ratio_logistic_loss(l[idx_p2], l[IDX_Q]))(
      jnp.float32(log_ratio))
  np.testing.assert_allclose(np.asarray(g2), 0.0, atol=1e-6)


def test_logistic_loss_value():
  lp = jnp.array([0.5, -1.0, 2.0])
  lq = jnp.array([0.3, -0.2])
  expected = (np.mean(np.log1p(np.exp(-np.array([0.5, -1.0, 2.0])))) +
              np.mean(np.log1p(np.exp(np.array([0.3, -0.2])))))
  np.testing.assert_allclose(float(density_ratio_logistic_loss(lp, lq)),
                             expected, rtol=1e-6)


# ----------------------------------------------------------------------------
# Masks, dtypes, transformations, sharding, errors.
# ----------------------------------------------------------------------------

FNS = {
    "bound_js": lambda a, b, **kw: variational_bound(a, b, "js", **kw),
    "bound_rkl": lambda a, b, **kw: variational_bound(a, b, "reverse_kl", **kw),
    "logistic": density_ratio_logistic_loss,
}


def _data(seed=0, n=9, m=6, b=3):
  rng = np.random.default_rng(seed)
  return jnp.float32(rng.normal(size=(b, n))), jnp.float32(
      rng.normal(size=(b, m)))


@pytest.mark.parametrize("fn_name", list(FNS))
def test_mask_grad_bf16_vmap_axis(fn_name):
  fn = FNS[fn_name]
  vp, vq = _data()
  mp = np.ones(vp.shape, bool)
  mq = np.ones(vq.shape, bool)
  mp[0, 3:] = False
  mq[1, ::2] = False
  mp[2] = False
  mq[2] = False
  vp_bad = jnp.where(mp, vp, jnp.nan)
  vq_bad = jnp.where(mq, vq, jnp.inf)
  out = jax.jit(lambda a, b: fn(a, b, where_p=mp, where_q=mq))(vp_bad, vq_bad)
  for row in range(2):
    ref = fn(vp[row][mp[row]], vq[row][mq[row]])
    np.testing.assert_allclose(float(out[row]), float(ref), rtol=1e-5)
  assert float(out[2]) == 0.0
  gp, gq = jax.grad(lambda a, b: jnp.sum(fn(a, b, where_p=mp, where_q=mq)),
                    argnums=(0, 1))(vp_bad, vq_bad)
  for g, m in ((gp, mp), (gq, mq)):
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(g)[~m] == 0.0)
  # Per-row mask with a size-1 sample dimension.
  row_mask = np.array([[True], [False], [True]])
  out = fn(vp, vq, where_p=row_mask)
  full = fn(vp, vq)
  np.testing.assert_allclose(np.asarray(out)[[0, 2]], np.asarray(full)[[0, 2]],
                             rtol=1e-6)
  np.testing.assert_allclose(float(out[1]), float(fn(vp[1][:0], vq[1])),
                             rtol=1e-6)
  # bf16.
  o16 = jax.jit(fn)(vp.astype(jnp.bfloat16), vq.astype(jnp.bfloat16))
  assert o16.dtype == jnp.float32
  ref = fn(vp.astype(jnp.bfloat16).astype(jnp.float32),
           vq.astype(jnp.bfloat16).astype(jnp.float32))
  np.testing.assert_allclose(np.asarray(o16), np.asarray(ref), rtol=1e-6)
  # vmap and axis=0.
  np.testing.assert_allclose(np.asarray(jax.vmap(fn)(vp, vq)),
                             np.asarray(fn(vp, vq)), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(fn(vp.T, vq.T, axis=0)),
                             np.asarray(fn(vp, vq)), rtol=1e-5)


@pytest.mark.parametrize("fn_name", list(FNS))
def test_sharded(fn_name):
  fn = FNS[fn_name]
  vp, vq = _data(seed=2, n=64, m=32, b=4)
  mp = np.random.default_rng(0).random(vp.shape) > 0.3
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P(None, "data"))
  out = jax.jit(lambda a, b, m: fn(a, b, where_p=m))(
      jax.device_put(vp, sh), jax.device_put(vq, sh), jax.device_put(mp, sh))
  np.testing.assert_allclose(np.asarray(out),
                             np.asarray(fn(vp, vq, where_p=mp)), rtol=1e-5)


def test_traced_generator_parameter():
  vp, vq = _data(seed=3)

  @jax.jit
  def fn(alpha):
    return variational_bound(vp, vq, get_generator("amari_alpha", alpha=alpha))

  np.testing.assert_allclose(
      float(fn(2.0)[0]),
      float(variational_bound(vp, vq, get_generator("amari_alpha",
                                                    alpha=2.0))[0]),
      rtol=1e-6)


def test_bad_inputs():
  vp, vq = _data()
  with pytest.raises(ValueError, match="critic_q"):
    variational_bound(vp, vq[:2], "kl")
  with pytest.raises(ValueError, match="critic_q"):
    variational_bound(vp, vq[0], "kl")
  with pytest.raises(TypeError, match="critic_p"):
    variational_bound(vp.astype(jnp.int32), vq, "kl")
  with pytest.raises(ValueError, match="generator"):
    variational_bound(vp, vq, "wasserstein")
  with pytest.raises(ValueError, match="where_q"):
    variational_bound(vp, vq, "kl", where_q=jnp.ones((6,), bool))
  with pytest.raises(ValueError, match="where_p"):
    density_ratio_logistic_loss(vp, vq, where_p=jnp.ones((3, 6), bool))
  with pytest.raises(TypeError, match="logit_q"):
    density_ratio_logistic_loss(vp, vq.astype(jnp.int8))
  with pytest.raises(ValueError, match="logit_q"):
    density_ratio_logistic_loss(vp, jnp.zeros((2, 6)))
  with pytest.raises(TypeError, match="axis"):
    density_ratio_logistic_loss(vp, vq, axis=(0, 1))
  with pytest.raises(ValueError, match="axis"):
    density_ratio_logistic_loss(vp, vq, axis=3)


@pytest.mark.parametrize("name", ["js", "gan", "squared_hellinger", "neyman_chi2"])
def test_bound_finite_for_large_critic_outputs(name):
  from jaxkit.divergences.variational import variational_bound
  v = jnp.linspace(-40.0, 40.0, 17)
  val, g = jax.value_and_grad(lambda c: variational_bound(c, c, name))(v)
  assert np.isfinite(float(val)) and np.all(np.isfinite(np.asarray(g)))
