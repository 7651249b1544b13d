"""Tests for jaxkit.divergences.generators against numpy/scipy oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from jaxkit.divergences import GENERATOR_NAMES, csiszar_dual, get_generator
from tests.divergences import oracles

ALPHAS = {"amari_alpha": [-1.0, 0.3, 0.5, 2.0, 3.0]}


def _cases():
  return [pytest.param(name, a, id=f"{name}-{a}" if a is not None else name)
          for name in GENERATOR_NAMES for a in ALPHAS.get(name, [None])]


def _gen(name, a):
  return get_generator(name, alpha=a) if a is not None else get_generator(name)


T = np.array([0.05, 0.3, 0.9, 1.0, 1.7, 4.0, 11.0])


@pytest.mark.parametrize("name,a", _cases())
def test_f_matches_numpy_and_vanishes_at_one(name, a):
  g = _gen(name, a)
  got = jax.jit(g.f)(jnp.log(T))
  np.testing.assert_allclose(got, oracles.F[name](T, a), rtol=2e-5, atol=2e-6)
  assert abs(float(g.f(0.0))) < 1e-7


@pytest.mark.parametrize("name,a", _cases())
def test_derivatives_match_finite_differences(name, a):
  if name == "tv":
    t = T[T != 1.0]
  else:
    t = T
  f = lambda x: oracles.F[name](x, a)
  h = 1e-5 * t
  fd1 = (f(t + h) - f(t - h)) / (2 * h)
  fd2 = (f(t + h) - 2 * f(t) + f(t - h)) / h ** 2
  g = _gen(name, a)
  lr = jnp.log(t)
  np.testing.assert_allclose(g.f_prime(lr), fd1, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(g.f_double_prime(lr), fd2, rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(g.pathwise_weight(lr), t ** 2 * fd2, rtol=2e-3,
                             atol=2e-3)
  np.testing.assert_allclose(g.pseudo_reward(lr), t * fd1 - f(t), rtol=1e-4,
                             atol=1e-5)


def _numeric_conjugate(f, u):
  """sup_{t >= 0} u t - f(t) by bounded scalar maximisation in log t."""
  obj = lambda s: -(u * np.exp(s) - f(np.exp(s)))
  res = optimize.minimize_scalar(obj, bounds=(-30.0, 12.0), method="bounded",
                                 options=dict(xatol=1e-10))
  best = -res.fun
  # Also the boundary t -> 0 (sup may sit there).
  f0 = f(np.array(1e-300)) if np.isfinite(f(np.array(1e-300))) else np.inf
  return max(best, -f0)


@pytest.mark.parametrize("name,a", _cases())
def test_conjugate_matches_numerical_maximisation(name, a):
  g = _gen(name, a)
  lo, hi = g.conjugate_domain
  us = np.linspace(max(lo, -3.0), min(hi, 3.0), 9)[1:-1]
  f = lambda x: oracles.F[name](x, a)
  with np.errstate(all="ignore"):
    want = np.array([_numeric_conjugate(f, u) for u in us])
  got = np.asarray(jax.jit(g.conjugate)(jnp.asarray(us, jnp.float32)))
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("name,a", _cases())
def test_conjugate_of_derivative_is_pseudo_reward(name, a):
  g = _gen(name, a)
  lr = jnp.log(jnp.asarray([0.2, 0.7, 1.5, 3.0]))
  np.testing.assert_allclose(g.conjugate(g.f_prime(lr)), g.pseudo_reward(lr),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,a", _cases())
def test_output_activation_lands_in_domain(name, a):
  g = _gen(name, a)
  v = jnp.linspace(-8.0, 8.0, 33)
  u = g.output_activation(v)
  assert np.all(np.isfinite(np.asarray(g.conjugate(u))))
  lo, hi = g.conjugate_domain
  assert np.all(np.asarray(u) <= hi) and np.all(np.asarray(u) >= lo)
  np.testing.assert_allclose(g.conjugate_activation(v), g.conjugate(u),
                             rtol=1e-4, atol=1e-5)
  far = jnp.linspace(-30.0, 30.0, 61)
  assert np.all(np.isfinite(np.asarray(g.conjugate_activation(far))))


@pytest.mark.parametrize("name,a", _cases())
def test_limits_at_zero_and_infinity(name, a):
  g = _gen(name, a)
  f = lambda x: oracles.F[name](x, a)
  with np.errstate(all="ignore"):
    f0 = f(np.array(1e-12))
    slope = f(np.array(1e12)) / 1e12
  if np.isfinite(g.f_at_zero):
    np.testing.assert_allclose(g.f_at_zero, f0, rtol=1e-3, atol=1e-3)
  else:
    assert f0 > 20
  if np.isfinite(g.slope_at_infinity):
    np.testing.assert_allclose(g.slope_at_infinity, slope, rtol=1e-3, atol=1e-3)
  else:
    assert slope > 20


@pytest.mark.parametrize("name,a", _cases())
def test_csiszar_dual_is_t_f_of_inverse(name, a):
  g = _gen(name, a)
  d = csiszar_dual(g)
  want = T * oracles.F[name](1.0 / T, a)
  got = np.asarray(d.f(jnp.log(T)))
  if name == "gan":  # self-dual up to the affine term (t - 1) log 4.
    want = want - (T - 1) * np.log(4.0)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  assert csiszar_dual(d) == g or (a is not None and
                                 abs(csiszar_dual(d).alpha - a) < 1e-12)


def test_traced_alpha_under_jit():
  @jax.jit
  def f(alpha, lr):
    return get_generator("amari_alpha", alpha=alpha).f(lr)
  np.testing.assert_allclose(f(0.3, jnp.log(2.0)), oracles.F["amari_alpha"](2.0, 0.3),
                             rtol=1e-5)


def test_generator_is_a_pytree():
  g = get_generator("amari_alpha", alpha=0.3)
  leaves = jax.tree.leaves(g)
  assert leaves == [0.3]
  assert jax.tree.leaves(get_generator("kl")) == []


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="kullback"), "name"),
    (dict(name="amari_alpha"), "alpha"),
    (dict(name="amari_alpha", alpha=1.0), "alpha"),
    (dict(name="amari_alpha", alpha=0.0), "alpha"),
    (dict(name="kl", alpha=0.5), "alpha"),
    (dict(name="kl", beta=0.5), "unexpected"),
])
def test_bad_arguments(kwargs, match):
  name = kwargs.pop("name")
  with pytest.raises(ValueError, match=match):
    get_generator(name, **kwargs)


def test_csiszar_dual_rejects_non_generators():
  with pytest.raises(TypeError, match="generator"):
    csiszar_dual("kl")


@pytest.mark.parametrize("name", ["js", "gan", "kl", "squared_hellinger"])
def test_f_is_never_nan_for_extreme_log_ratios(name):
  g = get_generator(name)
  lr = jnp.array([-jnp.inf, -1e4, -100.0, 100.0, 1e4, jnp.inf])
  val = np.asarray(g.f(lr))
  assert not np.any(np.isnan(val)), val
  grad = jax.vmap(jax.grad(g.f))(lr[1:-1])
  assert not np.any(np.isnan(np.asarray(grad)))
  # Large but representable ratios: compare with the numpy formula in float64
  # (which itself cancels catastrophically beyond r ~ e^10 for js/gan).
  t = np.exp(np.array([-60.0, -20.0, 5.0, 10.0]))
  np.testing.assert_allclose(g.f(jnp.log(t)), oracles.F[name](t), rtol=1e-5)
