"""Tests for jaxkit.selection.d3.

Oracles: the UPD formula written in numpy (sigmoid(-log p_t) * max(0, 1 -
H_t / log V), averaged over response tokens) and two hand values (a flat
distribution scores 0; a confident correct token scores ~1/2); a numpy loop of
the greedy weighted k-center rule (argmax of weight * distance to the selected
set); the k-center 2-approximation theorem checked against a brute-force
optimum; the identity "two greedy rounds = one longer round".
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.selection import d3 as D


def _upd_numpy(logits, targets, mask):
  z = logits - logits.max(-1, keepdims=True)
  lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  p = np.exp(lp)
  loss = -np.take_along_axis(lp, targets[..., None], -1)[..., 0]
  ent = -(p * lp).sum(-1)
  tok = 1 / (1 + np.exp(-loss)) * np.maximum(0, 1 - ent / np.log(lp.shape[-1]))
  return np.array([tok[i][mask[i]].mean() if mask[i].any() else 0.0
                   for i in range(len(tok))])


def test_upd_matches_numpy_and_hand_cases():
  rng = np.random.default_rng(0)
  logits = (3 * rng.normal(size=(4, 6, 7))).astype(np.float32)
  targets = rng.integers(0, 7, size=(4, 6))
  mask = rng.random((4, 6)) < 0.7
  mask[3] = False
  lp = jax.nn.log_softmax(logits)
  got = D.upd_difficulty(lp, targets, where=mask)
  np.testing.assert_allclose(got, _upd_numpy(logits, targets, mask),
                             rtol=1e-5, atol=1e-6)
  assert float(got[3]) == 0.0
  # Padding (garbage, NaN) changes neither the value nor the gradient.
  lp_pad = jnp.where(mask[..., None], lp, jnp.nan)
  np.testing.assert_allclose(D.upd_difficulty(lp_pad, targets, where=mask),
                             got, rtol=1e-6)
  g = jax.jit(jax.grad(
      lambda x: D.upd_difficulty(x, targets, where=mask).sum()))(lp_pad)
  assert np.isfinite(np.asarray(g)).all()
  # Hand cases (same shapes): a flat distribution scores 0; a confident
  # correct token sigmoid(~0) * (1 - ~0) = 1/2.
  hand = np.zeros((4, 6, 7), np.float32)
  hand[1, 0, 0] = 40.0
  one = np.zeros((4, 6), bool)
  one[:, 0] = True
  got = D.upd_difficulty(jax.nn.log_softmax(hand), np.zeros((4, 6), int),
                         where=one)
  np.testing.assert_allclose(got[:2], [0.0, 0.5], atol=1e-5)
  with pytest.raises(ValueError, match="targets"):
    D.upd_difficulty(lp, targets[:, :3])
  with pytest.raises(TypeError, match="targets"):
    D.upd_difficulty(lp, targets.astype(np.float32))
  with pytest.raises(ValueError, match="normalised"):
    D.upd_difficulty(logits, targets)


def _greedy_numpy(emb, k, w, selected=(), valid=None, metric="euclidean"):
  emb = np.asarray(emb, np.float64)
  if metric == "cosine":
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    dist = 1 - emb @ emb.T
  else:
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
  n = len(emb)
  valid = np.ones(n, bool) if valid is None else valid
  chosen = list(selected)
  out = []
  for _ in range(k):
    cand = [i for i in range(n) if valid[i] and i not in chosen]
    if not cand:
      out.append(-1)
      continue
    if chosen:
      gain = [w[i] * dist[i, chosen].min() for i in cand]
    else:
      gain = [w[i] for i in cand]
    best = cand[int(np.argmax(gain))]
    chosen.append(best)
    out.append(best)
  return out


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_weighted_coreset_matches_numpy_greedy(metric):
  rng = np.random.default_rng(1)
  emb = rng.normal(size=(30, 4)).astype(np.float32)
  w = rng.random(30).astype(np.float32)
  valid = rng.random(30) < 0.8
  sel = np.array([3, -1, 7])
  f = jax.jit(lambda e, w, v, s: D.weighted_coreset_select(
      e, 6, weights=w, selected=s, where=v, metric=metric))
  got = f(emb, w, valid, sel)
  want = _greedy_numpy(emb, 6, w, selected=[3, 7], valid=valid, metric=metric)
  np.testing.assert_array_equal(got, want)
  got = D.weighted_coreset_select(emb, 6, weights=w, metric=metric)
  np.testing.assert_array_equal(got, _greedy_numpy(emb, 6, w, metric=metric))


def test_kcenter_two_approx_rounds_and_exhaustion():
  rng = np.random.default_rng(2)
  emb = rng.normal(size=(9, 2)).astype(np.float32)
  dist = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
  first = D.weighted_coreset_select(emb, 3)
  idx = np.asarray(first)
  radius = dist[:, idx].min(1).max()
  opt = min(dist[:, list(c)].min(1).max()
            for c in itertools.combinations(range(9), 3))
  assert len(set(idx.tolist())) == 3 and radius <= 2 * opt + 1e-6
  # Two rounds of 3 + 3 picks equal one round of 6.
  second = D.weighted_coreset_select(emb, 3, selected=first)
  np.testing.assert_array_equal(np.concatenate([first, second]),
                                D.weighted_coreset_select(emb, 6))
  valid = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0], bool)
  got = D.weighted_coreset_select(emb, 6, where=valid)
  assert sorted(np.asarray(got)[:3].tolist()) == [0, 2, 5]
  np.testing.assert_array_equal(np.asarray(got)[3:], [-1, -1, -1])


def test_d3_select_values_and_errors():
  rng = np.random.default_rng(3)
  emb = rng.normal(size=(20, 5)).astype(np.float32)
  dif, dep = rng.random(20).astype(np.float32), rng.random(20).astype(np.float32)
  got = D.d3_select(emb, 5, difficulty=dif, dependability=dep,
                    difficulty_weight=0.3)
  want = _greedy_numpy(emb, 5, 0.3 * dif + 0.7 * dep, metric="cosine")
  np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match="dependability"):
    D.d3_select(emb, 5, difficulty=dif, dependability=dep + 1.0)
  with pytest.raises(ValueError, match="difficulty_weight"):
    D.d3_select(emb, 5, difficulty=dif, dependability=dep,
                difficulty_weight=1.5)
  with pytest.raises(ValueError, match="budget"):
    D.weighted_coreset_select(emb, 21)
  with pytest.raises(ValueError, match="metric"):
    D.weighted_coreset_select(emb, 2, metric="l1")
  with pytest.raises(ValueError, match="weights"):
    D.weighted_coreset_select(emb, 2, weights=-np.ones(20, np.float32))


def test_d3_select_sharded_pool_matches_single_device():
  # Issue 5: with the pool sharded over the 8-device mesh every greedy pick
  # is still the argmax over the whole pool.
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  rows = jax.sharding.NamedSharding(mesh, jax.P("data"))
  rng = np.random.default_rng(4)
  emb = rng.normal(size=(64, 5)).astype(np.float32)
  dif = rng.random(64).astype(np.float32)
  dep = rng.random(64).astype(np.float32)
  valid = np.arange(64) % 9 != 2
  sel = np.array([3, 40, -1])
  f = jax.jit(lambda e, a, b, v: D.d3_select(
      e, 8, difficulty=a, dependability=b, difficulty_weight=0.3,
      selected=sel, where=v))
  want = f(emb, dif, dep, valid)
  with jax.set_mesh(mesh):
    got = f(*(jax.device_put(a, rows) for a in (emb, dif, dep, valid)))
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got, _greedy_numpy(
      emb, 8, 0.3 * dif + 0.7 * dep, selected=[3, 40], valid=valid,
      metric="cosine"))
