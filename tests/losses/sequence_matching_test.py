"""Tests for jaxkit.losses.sequence_matching (SequenceMatch), numpy oracles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from jaxkit.losses import add_backspace_noise, sequence_match_loss

A = 5


def _np_terms(logits, acts, valid, gamma):
  """Per-position (r, V(s) - gamma V(s')) from the definitions (float64)."""
  q = np.take_along_axis(logits, acts[..., None], -1)[..., 0]
  v = logsumexp(logits, -1)
  v_next = np.zeros_like(v)
  v_next[:, :-1] = np.where(valid[:, 1:], v[:, 1:], 0.0)
  return q - gamma * v_next, v - gamma * v_next


def _np_loss(dl, da, dm, ml, ma, mm, alpha, gamma, act=None):
  rd, vd = _np_terms(dl, da, dm, gamma)
  rm, vm = _np_terms(ml, ma, mm, gamma)
  mean = lambda x, m: (x * m).sum() / max(m.sum(), 1)
  act = dm if act is None else act & dm
  return (-mean(rd, act) + 0.5 * (mean(vd, dm) + mean(vm, mm))
          + (0.5 * (mean(rd ** 2, dm) + mean(rm ** 2, mm))) / (4 * alpha))


def _batch(seed, b, t):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, t, A)) * 1.5
  acts = rng.integers(0, A, size=(b, t))
  lengths = rng.integers(1, t + 1, size=(b, 1))
  return logits, acts, np.arange(t)[None] < lengths


def _wrapped(dl, da, ml, ma, alpha, gamma, dm, mm, act):
  return sequence_match_loss(dl, da, ml, ma, alpha=alpha, gamma=gamma,
                             data_where=dm, model_where=mm,
                             data_action_where=act)


# One compilation each for every value / gradient check below.
_LOSS = jax.jit(_wrapped)
_GRAD = jax.jit(jax.value_and_grad(_wrapped, (0, 2)))


def test_matches_numpy():
  dl, da, dm = _batch(0, 3, 6)
  ml, ma, mm = _batch(1, 3, 6)
  act = np.random.default_rng(2).uniform(size=dm.shape) < 0.7
  for alpha, gamma in [(0.5, 1.0), (2.0, 0.9)]:
    got = _LOSS(dl, da, ml, ma, alpha, gamma, dm, mm, act)
    np.testing.assert_allclose(
        got, _np_loss(dl, da, dm, ml, ma, mm, alpha, gamma, act), rtol=1e-5)


def test_reduces_to_mle():
  dl, da, dm = _batch(3, 3, 6)
  nll = -(np.take_along_axis(log_softmax(dl, -1), da[..., None], -1)[..., 0]
          * dm).sum() / dm.sum()
  # alpha -> inf, gamma = 1, model batch = data batch: value term telescopes.
  got = _LOSS(dl, da, dl, da, 1e12, 1.0, dm, dm, dm)
  np.testing.assert_allclose(got, nll, rtol=1e-5)


def test_masks_padding_gradients_and_fully_masked():
  dl, da, dm = _batch(4, 3, 6)
  ml, ma, mm = _batch(5, 3, 6)
  dl_junk = np.where(dm[..., None], dl, np.nan).astype(np.float32)
  da_junk = np.where(dm, da, 99)  # out-of-range actions at padding are fine
  val, (gd, gm) = _GRAD(dl_junk, da_junk, ml, ma, 0.5, 1.0, dm, mm, dm)
  np.testing.assert_allclose(val, _np_loss(dl, da, dm, ml, ma, mm, 0.5, 1.0),
                             rtol=1e-5)
  assert np.all(np.isfinite(gd)) and np.all(np.isfinite(gm))
  assert np.all(np.asarray(gd)[~dm] == 0)
  none = np.zeros_like(dm)
  val, (gd, _) = _GRAD(dl_junk, da, dl, da, 0.5, 1.0, none, none, none)
  assert float(val) == 0.0 and np.all(np.asarray(gd) == 0)
  big = (dl * 1e4).astype(np.float32)
  val, grads = _GRAD(big, da, big, da, 0.5, 1.0, dm, dm, dm)
  assert np.isfinite(float(val)) and all(
      np.all(np.isfinite(g)) for g in grads)


def test_sequence_match_bad_inputs():
  dl, da, _ = _batch(6, 2, 4)
  with pytest.raises(ValueError, match="alpha"):
    sequence_match_loss(dl, da, dl, da, alpha=0.0)
  with pytest.raises(ValueError, match="gamma"):
    sequence_match_loss(dl, da, dl, da, gamma=1.5)
  with pytest.raises(ValueError, match="same number of actions"):
    sequence_match_loss(dl, da, dl[..., :3], da)
  with pytest.raises(ValueError, match="data_actions"):
    sequence_match_loss(dl, da + A, dl, da)
  with pytest.raises(ValueError, match="data_actions"):
    sequence_match_loss(dl, da[:, :2], dl, da)
  with pytest.raises(TypeError, match="model_actions"):
    sequence_match_loss(dl, da, dl, da.astype(float))
  with pytest.raises(ValueError, match="rank"):
    sequence_match_loss(dl[0], da[0], dl, da)
  with pytest.raises(ValueError, match="model_where"):
    sequence_match_loss(dl, da, dl, da, model_where=np.ones((4,), bool))


def _apply_backspaces(acts, valid, bk):
  out = []
  for a, v in zip(acts, valid):
    stack = []
    for x in a[v]:
      if x == bk:
        stack.pop()
      else:
        stack.append(int(x))
    out.append(stack)
  return out


def test_backspace_noise_round_trip_and_structure():
  rng = np.random.default_rng(7)
  toks = rng.integers(0, 6, size=(5, 8))
  where = np.arange(8)[None] < rng.integers(0, 9, size=(5, 1))
  where[2, 3] = False  # a hole: that token is dropped
  f = jax.jit(lambda t, k, p: add_backspace_noise(
      t, k, p=p, backspace_id=6, vocab_size=6, where=where))
  acts, valid, noise = map(np.asarray, f(toks, jax.random.key(0), 0.5))
  assert acts.shape == (5, 24)
  want = [list(t[w]) for t, w in zip(toks, where)]
  assert _apply_backspaces(acts, valid, 6) == want
  # Every inserted token is wrong, and is followed by a backspace.
  rows, cols = np.nonzero(noise)
  assert np.all(acts[rows, cols + 1] == 6) and np.all(acts[rows, cols] < 6)
  assert np.all(acts[rows, cols] != acts[rows, cols + 2])
  assert noise.sum() > 0 and np.all(valid[noise])
  np.testing.assert_array_equal(valid.sum(1),
                                where.sum(1) + 2 * noise.sum(1))
  # p = 0: the valid tokens packed to the left, nothing inserted.
  acts, valid, noise = map(np.asarray, f(toks, jax.random.key(1), 0.0))
  assert not noise.any()
  for a, v, t, w in zip(acts, valid, toks, where):
    np.testing.assert_array_equal(a[v], t[w])
    assert v.sum() == w.sum() and np.all(a[~v] == 0)


def test_backspace_noise_bad_inputs():
  toks = jnp.zeros((2, 3), jnp.int32)
  k = jax.random.key(0)
  with pytest.raises(ValueError, match="backspace_id"):
    add_backspace_noise(toks, k, p=0.1, backspace_id=2, vocab_size=5)
  with pytest.raises(ValueError, match="vocab_size"):
    add_backspace_noise(toks, k, p=0.1, backspace_id=5, vocab_size=1)
  with pytest.raises(ValueError, match="`p`"):
    add_backspace_noise(toks, k, p=1.5, backspace_id=5, vocab_size=5)
  with pytest.raises(TypeError, match="tokens"):
    add_backspace_noise(toks.astype(float), k, p=0.1, backspace_id=5,
                        vocab_size=5)
  with pytest.raises(ValueError, match="tokens"):
    add_backspace_noise(toks + 7, k, p=0.1, backspace_id=5, vocab_size=5)
  with pytest.raises(ValueError, match="length"):
    add_backspace_noise(toks, k, p=0.1, backspace_id=5, vocab_size=5,
                        length=0)
  with pytest.raises(TypeError, match="vocab_size"):
    add_backspace_noise(toks, k, p=0.1, backspace_id=5, vocab_size=5.0)
