"""Tests for jaxkit.losses.apo (APO / View-R1, seed_003 #29).

Oracles: numpy transcriptions of the authors' pipeline (View-R1's
``calculate_kl_weight``, the positive-advantage KL weighting of
``training_step`` and the ``neg_diff_weights`` of
``compute_advantages_and_returns``, with torch's unbiased std), written
here without calling the code under test, and hand-computed values.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.losses import apo_kl_penalty
from jaxkit.losses import dads_kl_weights
from jaxkit.losses import difficulty_adaptive_kl_coef
from jaxkit.losses import stcr_advantage_weights


def ref_kl_weight(d):  # View-R1 calculate_kl_weight(difficulty)
  if d == 0.0 or d == 1.0:
    return 1.0
  return 1.0 - math.exp(-math.e * (1.0 - d))


def ref_dads(rewards):
  correct = np.trunc(rewards)
  g = rewards.shape[-1]
  difficulty = 1.0 - correct.sum(-1) / g
  adv = (rewards - rewards.mean(-1, keepdims=True)) / (
      rewards.std(-1, ddof=1, keepdims=True) + 1e-9)
  w = np.ones_like(rewards)
  for p in range(rewards.shape[0]):
    for i in range(g):
      if adv[p, i] > 0:
        w[p, i] = ref_kl_weight(difficulty[p])
  return w, adv


def ref_stcr(lengths, rewards):
  correct = np.trunc(rewards)
  pos_mean = (lengths * correct).sum(-1, keepdims=True) / (
      correct.sum(-1, keepdims=True) + 1e-9)
  diff = (lengths - pos_mean) * (1 - correct)
  w = np.where(diff > 0, 1 - 1.00001 ** (-diff), 0.0)
  w[correct.sum(-1) == 0] = 0.0
  return w + 1


def test_coef_hand_values_and_reference():
  acc = np.array([0.0, 0.125, 0.25, 0.5, 0.875, 1.0])
  got = jax.jit(difficulty_adaptive_kl_coef)(jnp.asarray(acc, jnp.float32))
  np.testing.assert_allclose(got, [ref_kl_weight(1 - a) for a in acc],
                             rtol=1e-6)
  np.testing.assert_allclose(got[3], 1 - math.exp(-math.e / 2), rtol=1e-6)
  np.testing.assert_allclose(
      difficulty_adaptive_kl_coef(jnp.array([0.5]), scale=1.0),
      [1 - math.exp(-0.5)], rtol=1e-6)


def test_dads_matches_reference_pipeline_with_format_bonus():
  # Rewards = correctness + 0.5 format bonus; positives by advantage > 0.
  rng = np.random.default_rng(0)
  rewards = (rng.integers(0, 2, (6, 8)) + 0.5 * rng.integers(0, 2, (6, 8))
             ).astype(np.float64)
  rewards[0] = 1.5  # all correct
  rewards[1] = 0.0  # all wrong
  want, adv = ref_dads(rewards)
  got = dads_kl_weights(np.trunc(rewards), positive=adv > 0)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # 0/1 rewards: default positives (= correct) give the same weights.
  binary = np.trunc(rewards)
  want_b, _ = ref_dads(binary)
  np.testing.assert_allclose(jax.jit(dads_kl_weights)(jnp.asarray(binary)),
                             want_b, rtol=1e-6)


def test_dads_mask():
  m = jnp.array([[1, 1, 1, 1, 0], [0, 0, 0, 0, 0]], bool)
  fn = jax.jit(lambda c: dads_kl_weights(c, where=m))
  w = 1 - math.exp(-math.e * 0.5)  # accuracy 2/4 among the valid samples
  for junk in (0, 1):  # the masked sample's label does not matter
    got = fn(jnp.array([[1, 0, 1, 0, junk], [junk, 1, 0, 0, 1]]))
    np.testing.assert_allclose(got, [[w, 1, w, 1, 0], [0, 0, 0, 0, 0]],
                               rtol=1e-6)


def test_stcr_matches_reference():
  rng = np.random.default_rng(1)
  lengths = rng.integers(10, 60000, (5, 6)).astype(np.float64)
  rewards = rng.integers(0, 2, (5, 6)) + 0.5 * rng.integers(0, 2, (5, 6))
  rewards[2] = 0.5  # no correct answer: weights 1
  want = ref_stcr(lengths, rewards)
  got = jax.jit(stcr_advantage_weights)(jnp.asarray(lengths, jnp.float32),
                                        jnp.asarray(np.trunc(rewards) > 0))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_array_equal(got[2], 1.0)
  assert np.all((np.asarray(got) >= 1) & (np.asarray(got) < 2))
  # int lengths accepted; hand case: 1 - 1.00001^-49800.
  w = stcr_advantage_weights(jnp.array([[100, 300, 50000, 150]]),
                             jnp.array([[1, 1, 0, 0]]))
  np.testing.assert_allclose(w, [[1, 1, 2 - 1.00001 ** -49800, 1]],
                             rtol=1e-6)


def test_stcr_mask():
  correct = jnp.array([[1, 1, 0, 0, 1]])
  m = jnp.array([[1, 1, 1, 1, 0]], bool)
  fn = jax.jit(lambda ln, w: stcr_advantage_weights(ln, correct, where=w))
  want = [[1, 1, 2 - 1.00001 ** -4800, 1, 0]]  # mean correct length 200
  for junk in (0.0, 1e9):  # the masked sample's length does not matter
    got = fn(jnp.array([[100.0, 300.0, 5000.0, 150.0, junk]]), m)
    np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_array_equal(
      fn(jnp.ones((1, 5)), jnp.zeros_like(m)), 0.0)


def test_apo_kl_penalty_reference_masks_and_gradients():
  rng = np.random.default_rng(2)
  lp = rng.normal(size=(4, 5)) - 2
  lr = rng.normal(size=(4, 5)) - 2
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0],
                   [0, 0, 0, 0, 0]], bool)
  w = np.array([1.0, 0.5, 0.25, 1.0])
  d = lr - lp
  k3 = np.exp(d) - d - 1
  want = w * np.array([k3[i][mask[i]].mean() if mask[i].any() else 0.0
                       for i in range(4)])
  fn = jax.jit(jax.value_and_grad(
      lambda a, b, c, r: apo_kl_penalty(a, r, b, where=c).sum(),
      argnums=(0, 1)))
  got = apo_kl_penalty(jnp.asarray(lp, jnp.float32), jnp.asarray(lr),
                       jnp.asarray(w), where=mask)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  junk = jnp.where(mask, jnp.asarray(lp, jnp.float32), jnp.nan)
  val, (g, gw) = fn(junk, jnp.asarray(w, jnp.float32), jnp.asarray(mask),
                    jnp.asarray(lr, jnp.float32))
  np.testing.assert_allclose(val, want.sum(), rtol=1e-5)
  assert np.all(np.isfinite(g))
  np.testing.assert_array_equal(np.asarray(g)[~mask], 0.0)
  np.testing.assert_array_equal(gw, 0.0)  # weights are data
  # Extreme log-ratios stay finite.
  ext = jnp.array([[-300.0, 0.0], [0.0, -300.0]])
  val, (g, _) = fn(ext, jnp.ones(2), jnp.ones((2, 2), bool), ext[::-1])
  assert np.isfinite(val) and np.all(np.isfinite(g))


def test_bad_inputs():
  with pytest.raises(ValueError, match="group_accuracy"):
    difficulty_adaptive_kl_coef(jnp.array([1.5]))
  with pytest.raises(ValueError, match="scale"):
    difficulty_adaptive_kl_coef(jnp.array([0.5]), scale=0.0)
  with pytest.raises(ValueError, match="correct"):
    dads_kl_weights(jnp.array([[0.0, 1.5]]))
  with pytest.raises(ValueError, match="positive"):
    dads_kl_weights(jnp.array([[0, 1]]), positive=jnp.array([True]))
  with pytest.raises(ValueError, match="rank"):
    dads_kl_weights(jnp.array(1))
  with pytest.raises(ValueError, match="base"):
    stcr_advantage_weights(jnp.array([[1.0, 2.0]]), jnp.array([[1, 0]]),
                           base=1.0)
  with pytest.raises(ValueError, match="lengths"):
    stcr_advantage_weights(jnp.array([[-1.0, 2.0]]), jnp.array([[1, 0]]))
  with pytest.raises(ValueError, match="correct"):
    stcr_advantage_weights(jnp.array([[1.0, 2.0]]), jnp.array([1, 0]))
  with pytest.raises(TypeError, match="lengths"):
    stcr_advantage_weights(True,
                           jnp.array([[1]]))
  with pytest.raises(ValueError, match="kl_weights"):
    apo_kl_penalty(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.ones(3))
  with pytest.raises(ValueError, match="same shape"):
    apo_kl_penalty(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.ones(2))
