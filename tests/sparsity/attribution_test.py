"""Tests for jaxkit.sparsity.attribution (WAGLE) against hand derivations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import sparsity as S


def _quadratic_problem(seed=0):
  """Tiny quadratic model with hand-derived gradients (numpy, float64).

  Forget loss  l_f(t) = 1/2 sum_i c_i (t_i - a_i)^2  -> grad c * (t - a).
  Retain loss  l_r(t) = gamma/2 ||t - b||^2          -> grad gamma * (t - b).
  """
  rng = np.random.default_rng(seed)
  shapes = {"w": (3, 4), "b": (5,)}
  theta = {k: rng.normal(size=s) for k, s in shapes.items()}
  a = {k: rng.normal(size=s) for k, s in shapes.items()}
  b = {k: rng.normal(size=s) for k, s in shapes.items()}
  c = {k: rng.uniform(0.5, 2.0, size=s) for k, s in shapes.items()}
  gamma = 0.7
  g_f = {k: c[k] * (theta[k] - a[k]) for k in shapes}
  g_r = {k: gamma * (theta[k] - b[k]) for k in shapes}
  return theta, a, b, c, gamma, g_f, g_r


def _f32(tree):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def np_mask(scores, sparsity, per):
  """Oracle: freeze floor(s*N) smallest |S| (ties: later index frozen)."""
  keys = sorted(scores)          # jax flattens dicts in sorted key order
  if per == "leaf":
    return {k: np_mask({k: scores[k]}, sparsity, "global")[k] for k in keys}
  flat = np.concatenate([np.abs(scores[k]).reshape(-1) for k in keys])
  n_frozen = int(np.floor(sparsity * flat.size + 1e-6))
  order = sorted(range(flat.size), key=lambda i: (flat[i], -i))
  keep = np.ones(flat.size, bool)
  keep[order[:n_frozen]] = False
  out, start = {}, 0
  for k in keys:
    size = scores[k].size
    out[k] = keep[start:start + size].reshape(scores[k].shape)
    start += size
  return out


def test_scores_hand_values():
  # theta = [1, -2], g_f = [3, 1], g_r = [0.5, 1], gamma = 0.5:
  # (1 - 0.5/0.5) * 3 = 0,  (-2 - 1/0.5) * 1 = -4.
  s = S.weight_attribution_scores(
      {"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([3.0, 1.0])},
      {"w": jnp.array([0.5, 1.0])}, gamma=0.5)
  np.testing.assert_allclose(s["w"], [0.0, -4.0])


def test_scores_quadratic_newton_identity():
  # For the isotropic quadratic retain loss with curvature gamma, the
  # retain Newton step theta - grad l_r / gamma lands exactly on the retain
  # optimum b, so S = b * grad l_f = b * c * (theta - a).
  theta, a, b, c, gamma, g_f, g_r = _quadratic_problem()
  s = S.weight_attribution_scores(_f32(theta), _f32(g_f), _f32(g_r),
                                  gamma=gamma)
  for k in theta:
    np.testing.assert_allclose(s[k], b[k] * c[k] * (theta[k] - a[k]),
                               rtol=1e-4, atol=1e-5)


def test_scores_other_gamma_and_jax_grads():
  # gamma differs from the retain curvature: S = (t - 0.7 (t - b)/2) g_f.
  theta, a, b, c, _, g_f, g_r = _quadratic_problem(1)
  want = {k: (theta[k] - g_r[k] / 2.0) * g_f[k] for k in theta}
  # Gradients from jax.grad of the same losses agree with the hand ones.
  tj, aj, bj, cj = map(_f32, (theta, a, b, c))
  lf = lambda t: sum(0.5 * jnp.sum(cj[k] * (t[k] - aj[k]) ** 2) for k in t)
  lr = lambda t: sum(0.35 * jnp.sum((t[k] - bj[k]) ** 2) for k in t)
  s = S.weight_attribution_scores(tj, jax.grad(lf)(tj), jax.grad(lr)(tj),
                                  gamma=2.0)
  for k in theta:
    np.testing.assert_allclose(s[k], want[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.85])
@pytest.mark.parametrize("per", ["global", "leaf"])
def test_mask_exact_sparsity_matches_oracle(sparsity, per):
  theta, _, _, _, gamma, g_f, g_r = _quadratic_problem(2)
  scores = {k: (theta[k] - g_r[k] / gamma) * g_f[k] for k in theta}
  m = S.weight_attribution_mask(_f32(theta), _f32(g_f), _f32(g_r), sparsity,
                                gamma=gamma, per=per)
  want = np_mask(scores, sparsity, per)
  for k in theta:
    assert m[k].dtype == jnp.bool_
    np.testing.assert_array_equal(m[k], want[k])
  if per == "global":
    total = sum(v.size for v in theta.values())
    kept = sum(int(m[k].sum()) for k in m)
    assert kept == total - int(np.floor(sparsity * total + 1e-6))
  else:
    for k in theta:
      n = theta[k].size
      assert int(m[k].sum()) == n - int(np.floor(sparsity * n + 1e-6))


def test_mask_ties_keep_earlier_leaf_and_index():
  p = {"a": jnp.ones(2), "b": jnp.ones(2)}
  g = {"a": jnp.ones(2), "b": jnp.ones(2)}          # all |S| = 1
  z = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
  m = S.weight_attribution_mask(p, g, z, 0.5, gamma=1.0)
  np.testing.assert_array_equal(m["a"], [True, True])
  np.testing.assert_array_equal(m["b"], [False, False])


def test_jit_with_traced_sparsity():
  theta, _, _, _, gamma, g_f, g_r = _quadratic_problem(3)
  args = (_f32(theta), _f32(g_f), _f32(g_r))
  f = jax.jit(functools.partial(S.weight_attribution_mask, gamma=gamma))
  eager = S.weight_attribution_mask(*args, 0.4, gamma=gamma)
  got = f(*args, jnp.float32(0.4))
  for k in theta:
    np.testing.assert_array_equal(got[k], eager[k])
  g = jax.jit(functools.partial(S.weight_attribution_scores, gamma=gamma))
  s = g(*args)
  for k in theta:
    np.testing.assert_allclose(
        s[k], (theta[k] - g_r[k] / gamma) * g_f[k], rtol=1e-4, atol=1e-5)


def test_bad_inputs():
  p, g = {"w": jnp.ones(4)}, {"w": jnp.ones(4)}
  with pytest.raises(ValueError, match="g_forget"):
    S.weight_attribution_scores(p, {"v": jnp.ones(4)}, g, gamma=1.0)
  with pytest.raises(ValueError, match="g_retain"):
    S.weight_attribution_scores(p, g, {"w": jnp.ones(3)}, gamma=1.0)
  with pytest.raises(ValueError, match="gamma"):
    S.weight_attribution_scores(p, g, g, gamma=0.0)
  with pytest.raises(TypeError, match="params"):
    S.weight_attribution_scores({"w": jnp.ones(4, jnp.int32)}, g, g,
                                gamma=1.0)
  with pytest.raises(ValueError, match="sparsity"):
    S.weight_attribution_mask(p, g, g, 1.0, gamma=1.0)
  with pytest.raises(ValueError, match="per"):
    S.weight_attribution_mask(p, g, g, 0.5, gamma=1.0, per="row")
