"""Tests for jaxkit.selection.active_distillation (RAD) against the game itself."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import selection as S


def np_game_value(p, g, k):
  """min over fractional corruptions c (sum c <= k) of sum p g (1 - c).

  The adversary's best response, computed directly: corrupt the largest
  p_i g_i first (floor(k) of them fully, the next one by the fraction).
  ``p`` is one strategy ``[N]`` or a batch ``[S, N]``.
  """
  v = np.atleast_2d(np.asarray(p, np.float64)) * np.asarray(g, np.float64)
  v = -np.sort(-v, axis=1)
  whole = int(np.floor(k))
  removed = v[:, :whole].sum(1)
  if whole < v.shape[1]:
    removed = removed + (k - whole) * v[:, whole]
  out = v.sum(1) - removed
  return out if np.ndim(p) == 2 else float(out[0])


def simplex_grid(n, steps):
  pts = [idx for idx in itertools.product(range(steps + 1), repeat=n - 1)
         if sum(idx) <= steps]
  pts = np.array(pts, np.float64)
  return np.concatenate([pts, steps - pts.sum(1, keepdims=True)], 1) / steps


# One shape N=8 throughout (smaller cases are padded with masked entries), so
# every jitted function compiles once.
N = 8
_rad = jax.jit(lambda g, k, m: S.rad_query_distribution(
    g, num_mistakes=k, where=m))
_rad_q = jax.jit(lambda g, q, m: S.rad_query_distribution(
    g, teacher_correct_probs=q, where=m))
_select = jax.jit(jax.vmap(
    lambda key, g, m: S.rad_select(key, g, budget=N, num_mistakes=1.0,
                                   where=m), in_axes=(0, None, None)))


def pad(x, value=0.0):
  x = np.asarray(x, np.float32)
  return np.concatenate([x, np.full(N - len(x), value, np.float32)])


def first(n):
  return np.arange(N) < n


@pytest.mark.parametrize("k", [0.0, 0.5, 1.0, 1.7, 2.5])
def test_rad_is_the_minimax_strategy_brute_force(k):
  rng = np.random.default_rng(int(k * 10))
  g = rng.uniform(0.05, 1.0, size=4)
  # Four real points, four masked ones carrying garbage.
  p = np.asarray(_rad(pad(g, np.nan), k, first(4)), np.float64)
  np.testing.assert_array_equal(p[4:], 0.0)
  p = p[:4]
  np.testing.assert_allclose(p.sum(), 1.0, atol=1e-6)
  ours = np_game_value(p, g, k)
  # Exhaustive grid over the simplex (step 1/60) plus random strategies.
  best = np_game_value(simplex_grid(4, 60), g, k).max()
  rand = rng.dirichlet(np.full(4, 0.5), size=3000)
  best = max(best, np_game_value(rand, g, k).max())
  assert ours >= best - 1e-6, (ours, best)
  # ... and no better strategy exists beyond the grid's resolution.
  assert ours <= best + 0.02


def test_rad_hand_cases():
  g = pad([1.0, 0.5, 0.25, 0.0])
  m = first(4)
  # No mistakes: query the most informative point.
  np.testing.assert_allclose(_rad(g, 0.0, m), pad([1, 0, 0, 0]))
  # k = 1: m=2 gives (2-1)/(1+2) = 1/3 > m=3: 2/7 > m=1: 0; p ∝ 1/g on top 2.
  np.testing.assert_allclose(_rad(g, 1.0, m), pad([1 / 3, 2 / 3]), rtol=1e-6)
  # Equal gains: spread uniformly (value (n - k)/n).
  np.testing.assert_allclose(_rad(np.ones(N, np.float32), 1.0, first(N)),
                             np.full(N, 1 / N), rtol=1e-6)
  # k at least the number of positive gains: value 0, p ∝ 1/g on all of them.
  np.testing.assert_allclose(_rad(g, 5.0, m), pad(np.array([1, 2, 4]) / 7),
                             rtol=1e-6)
  # All masked, or only zero gains: all zeros, finite.
  np.testing.assert_array_equal(_rad(g, 1.0, first(0)), 0.0)
  np.testing.assert_array_equal(_rad(np.zeros(N, np.float32), 1.0, m), 0.0)


def test_rad_teacher_probs_give_k():
  rng = np.random.default_rng(7)
  g = rng.uniform(0, 1, N).astype(np.float32)
  q = rng.uniform(0.6, 1, N).astype(np.float32)
  m = first(6)
  p = _rad_q(g, q, m)
  k = float(np.sum(1 - q[:6]))
  np.testing.assert_allclose(p, _rad(g, k, m), atol=1e-7)
  # Independent check of the closed form on the sorted gains.
  gs = np.sort(g[:6])[::-1]
  ratio = [(j + 1 - k) / np.sum(1 / gs[:j + 1]) for j in range(6)]
  top = gs[:int(np.argmax(ratio)) + 1]
  want = np.where(np.isin(g, top) & m, 1 / g, 0.0) / np.sum(1 / top)
  np.testing.assert_allclose(p, want, rtol=1e-5)


def test_rad_select_and_sharding():
  g = np.array([1.0, 0.5, 0.25, 0.1, 0.0, 0.3, 0.7, 0.2], np.float32)
  mask = np.array([1, 1, 1, 1, 1, 0, 0, 1], bool)
  p = np.asarray(_rad(g, 1.0, mask))
  assert set(np.flatnonzero(p)) == {0, 1}
  keys = jax.random.split(jax.random.key(2), 4000)
  idx = np.asarray(_select(keys, g, mask))
  assert all(len(set(row)) == N for row in idx[:50])       # distinct
  assert set(idx[0, :2]) == {0, 1}                           # support first
  np.testing.assert_array_equal(idx[0, 2:6], [2, 7, 3, 4])   # then by gain
  assert set(idx[0, 6:]) == {5, 6}                           # masked last
  # The first draw follows p.
  freq = np.bincount(idx[:, 0], minlength=N) / len(idx)
  np.testing.assert_allclose(freq, p, atol=0.03)
  # Explicitly sharded gains and mask give the same draws.
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  got = _select(keys[:4], jax.device_put(g, sh), jax.device_put(mask, sh))
  np.testing.assert_array_equal(got, idx[:4])


def test_rad_bad_inputs():
  g = jnp.array([0.5, 0.2])
  with pytest.raises(ValueError, match="exactly one"):
    S.rad_query_distribution(g)
  with pytest.raises(ValueError, match="exactly one"):
    S.rad_query_distribution(g, num_mistakes=1.0,
                             teacher_correct_probs=jnp.ones(2))
  with pytest.raises(ValueError, match="non-negative"):
    S.rad_query_distribution(jnp.array([-0.5, 0.2]), num_mistakes=1.0)
  with pytest.raises(ValueError, match="non-negative"):
    S.rad_query_distribution(jnp.array([jnp.inf, 0.2]), num_mistakes=1.0)
  with pytest.raises(ValueError, match="num_mistakes"):
    S.rad_query_distribution(g, num_mistakes=-1.0)
  with pytest.raises(ValueError, match="teacher_correct_probs"):
    S.rad_query_distribution(g, teacher_correct_probs=jnp.array([0.5, 1.5]))
  with pytest.raises(ValueError, match="teacher_correct_probs"):
    S.rad_query_distribution(g, teacher_correct_probs=jnp.ones(3))
  with pytest.raises(ValueError, match="rank"):
    S.rad_query_distribution(jnp.ones((2, 2)), num_mistakes=1.0)
  with pytest.raises(TypeError, match="floating"):
    S.rad_query_distribution(jnp.array([1, 2]), num_mistakes=1.0)
  with pytest.raises(ValueError, match="budget"):
    S.rad_select(jax.random.key(0), g, budget=3, num_mistakes=1.0)
  with pytest.raises(TypeError, match="budget"):
    S.rad_select(jax.random.key(0), g, budget=1.0, num_mistakes=1.0)
