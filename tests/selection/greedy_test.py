"""Tests for jaxkit.selection.greedy (Add-One-In greedy selection).

Oracles: a plain-numpy greedy loop over a numpy facility-location function
(written from the definition), brute-force enumeration of all size-k subsets
(greedy is optimal for a modular utility and within 1 - 1/e of the optimum for
a monotone submodular coverage), and hand cases for masks / seeds / empty
inputs.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import selection

_greedy = jax.jit(selection.greedy_select,
                  static_argnums=(0, 1),
                  static_argnames=("budget", "num_candidates", "batch_size"))


def np_facility(sim, sel, rows=None):
  best = np.where(sel[None, :], sim, 0.0).max(axis=1, initial=0.0)
  best = np.maximum(best, 0.0)
  if rows is not None:
    best = np.where(rows, best, 0.0)
  return best.sum()


def np_greedy(f, n, budget, valid, start):
  sel = start.copy()
  u = f(sel)
  idx, gains = [], []
  for _ in range(budget):
    best, best_gain = -1, -np.inf
    for i in range(n):
      if valid[i] and not sel[i]:
        trial = sel.copy()
        trial[i] = True
        g = f(trial) - u
        if g > best_gain:
          best, best_gain = i, g
    if best < 0:
      idx.append(-1)
      gains.append(0.0)
      continue
    sel[best] = True
    u += best_gain
    idx.append(best)
    gains.append(best_gain)
  return np.array(idx), np.array(gains), sel


class _FL:
  """Hashable facility-location utility (a static jit argument)."""

  def __init__(self, sim, rows=None):
    self.sim, self.rows = jnp.asarray(sim), rows

  def __call__(self, s):
    return selection.facility_location(self.sim, s, where=self.rows)


def test_matches_numpy_greedy_with_masks_padding_seed_and_chunks():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(9, 3))
  sim = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1)).astype(np.float32)
  valid = np.ones(9, bool)
  valid[[2, 5]] = False
  start = np.zeros(9, bool)
  start[7] = True
  want_idx, want_gain, want_sel = np_greedy(lambda s: np_facility(sim, s), 9,
                                            4, valid, start)
  res = _greedy(_FL(sim), 9, budget=4, where=valid, initial=start)
  np.testing.assert_array_equal(res.indices, want_idx)
  np.testing.assert_allclose(res.gains, want_gain, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(res.selected, want_sel)
  np.testing.assert_allclose(res.utility, np_facility(sim, want_sel),
                             rtol=1e-5)
  # Padding: 3 extra masked items (NaN similarities) and 3 masked points;
  # chunked evaluation; a random candidate window as large as the pool is
  # the full greedy.
  pad = np.full((12, 12), np.nan, np.float32)
  pad[:9, :9] = sim
  rows = np.arange(12) < 9
  res_pad = _greedy(_FL(pad, rows), 12, budget=4,
                    where=np.concatenate([valid, np.zeros(3, bool)]),
                    initial=np.concatenate([start, np.zeros(3, bool)]),
                    batch_size=5, num_candidates=12, key=jax.random.key(1))
  np.testing.assert_array_equal(res_pad.indices, want_idx)
  np.testing.assert_allclose(res_pad.gains, want_gain, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(res_pad.utility, res.utility, rtol=1e-6)


def test_brute_force_optimality_modular_and_submodular_bound():
  rng = np.random.default_rng(1)
  n, k = 8, 3
  v = rng.normal(size=n).astype(np.float32)
  modular = lambda s: jnp.sum(jnp.where(s, v, 0.0))
  res = selection.greedy_select(modular, n, budget=k)
  best = max(sum(v[list(c)]) for c in itertools.combinations(range(n), k))
  np.testing.assert_allclose(res.utility, best, rtol=1e-5)
  np.testing.assert_array_equal(np.sort(res.indices), np.sort(np.argsort(-v)[:k]))
  # Weighted coverage (monotone submodular): within 1 - 1/e of the optimum,
  # and the greedy gains are non-increasing.
  cover = (rng.random((n, 12)) < 0.3).astype(np.float32)
  wts = rng.random(12).astype(np.float32)

  def coverage(s):
    covered = jnp.any(jnp.where(s[:, None], cover > 0, False), axis=0)
    return jnp.sum(jnp.where(covered, wts, 0.0))

  res = selection.greedy_select(coverage, n, budget=k)
  opt = max(wts[cover[list(c)].any(axis=0)].sum()
            for c in itertools.combinations(range(n), k))
  assert float(res.utility) >= (1 - 1 / np.e) * opt - 1e-6
  assert np.all(np.diff(np.asarray(res.gains)) <= 1e-6)


def test_edge_cases_and_stochastic_windows():
  v = jnp.array([1.0, 3.0, 2.0, 5.0, 4.0])
  f = lambda s: jnp.sum(jnp.where(s, v, 0.0))
  # Everything masked: -1 indices, zero gains, the seed unchanged.
  res = _greedy(f, 5, budget=4, where=jnp.zeros(5, bool),
                initial=jnp.array([1, 0, 0, 0, 0], bool))
  np.testing.assert_array_equal(res.indices, [-1, -1, -1, -1])
  np.testing.assert_array_equal(res.gains, [0.0, 0.0, 0.0, 0.0])
  np.testing.assert_array_equal(res.selected, [True, False, False, False,
                                               False])
  assert float(res.utility) == 1.0
  # Fewer selectable items than the budget: the tail is -1.
  res = _greedy(f, 5, budget=4, where=jnp.array([1, 1, 0, 0, 1], bool),
                initial=jnp.zeros(5, bool))
  np.testing.assert_array_equal(res.indices, [4, 1, 0, -1])
  np.testing.assert_array_equal(res.gains, [4.0, 3.0, 1.0, 0.0])
  # NaN gains are skipped while a finite one exists.
  nan_f = lambda s: jnp.where(s[0], jnp.nan, 0.0) + f(s)
  res = selection.greedy_select(nan_f, 5, budget=1)
  assert int(res.indices[0]) == 3
  # budget 0 and an empty pool are defined.
  assert selection.greedy_select(f, 5, budget=0).indices.shape == (0,)
  empty = selection.greedy_select(lambda s: jnp.sum(s), 0, budget=0)
  assert empty.selected.shape == (0,) and float(empty.utility) == 0.0
  # One random candidate a step: distinct valid items, gains consistent.
  valid = jnp.array([1, 1, 1, 0, 1], bool)
  orders = set()
  for seed in range(4):
    r = _greedy(f, 5, budget=4, where=valid, num_candidates=1,
                key=jax.random.key(seed))
    idx = np.asarray(r.indices)
    assert sorted(idx.tolist()) == [0, 1, 2, 4]
    np.testing.assert_allclose(r.gains, np.asarray(v)[idx])
    orders.add(tuple(idx))
  assert len(orders) > 1


def test_bad_inputs():
  f = lambda s: jnp.sum(jnp.where(s, 1.0, 0.0))
  with pytest.raises(TypeError, match="utility_fn"):
    selection.greedy_select(3, 3, budget=1)
  with pytest.raises(ValueError, match="budget"):
    selection.greedy_select(f, 3, budget=4)
  with pytest.raises(ValueError, match="budget"):
    selection.greedy_select(f, 3, budget=-1)
  with pytest.raises(ValueError, match="key"):
    selection.greedy_select(f, 3, budget=1, num_candidates=2)
  with pytest.raises(ValueError, match="num_candidates"):
    selection.greedy_select(f, 3, budget=1, num_candidates=0,
                            key=jax.random.key(0))
  with pytest.raises(ValueError, match="batch_size"):
    selection.greedy_select(f, 3, budget=1, batch_size=0)
  with pytest.raises(ValueError, match="scalar"):
    selection.greedy_select(lambda s: s.astype(jnp.float32), 3, budget=1)
  with pytest.raises(ValueError, match="where"):
    selection.greedy_select(f, 3, budget=1, where=jnp.ones(4, bool))
  with pytest.raises(ValueError, match="selected"):
    selection.facility_location(jnp.ones((2, 3)), jnp.ones(2, bool))
  with pytest.raises(TypeError, match="similarity"):
    selection.facility_location(jnp.ones((2, 3), jnp.int32), jnp.ones(3, bool))



def test_sharded_ground_set_matches_single_device_and_numpy():
  # Issue 5: with the similarity rows and the item masks sharded over the
  # 8-device mesh, the coverage sum and every step's argmax are global.
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  rows = jax.sharding.NamedSharding(mesh, jax.P("data"))
  rng = np.random.default_rng(5)
  x = rng.normal(size=(64, 2))
  sim = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1)).astype(np.float32)
  valid = np.arange(64) % 9 != 4
  start = np.zeros(64, bool)
  start[[10, 50]] = True
  # A random candidate window as large as the pool (the Gumbel top-k over the
  # sharded mask) is the full greedy.
  run = jax.jit(lambda sim, valid, start: selection.greedy_select(
      lambda s: selection.facility_location(sim, s), 64, budget=4,
      where=valid, initial=start, num_candidates=64, key=jax.random.key(2)))
  want = run(sim, valid, start)
  with jax.set_mesh(mesh):
    got = run(*(jax.device_put(a, rows) for a in (sim, valid, start)))
  np.testing.assert_array_equal(got.indices, want.indices)
  np.testing.assert_array_equal(got.selected, want.selected)
  np.testing.assert_allclose(got.gains, want.gains, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got.utility, want.utility, rtol=1e-6)
  want_idx, want_gain, want_sel = np_greedy(
      lambda s: np_facility(sim, s), 64, 4, valid, start)
  np.testing.assert_array_equal(got.indices, want_idx)
  np.testing.assert_allclose(got.gains, want_gain, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(got.selected, want_sel)
