"""Tests for jaxkit.losses.sequence against a float64 numpy log-softmax gather."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.losses.sequence import sequence_log_probs
from jaxkit.losses.sequence import token_log_probs

B, T, V = 8, 5, 11


def _np_token_log_probs(logits, labels, mask):
  z = np.asarray(logits, np.float64)
  lsm = z - z.max(-1, keepdims=True)
  lsm = lsm - np.log(np.exp(lsm).sum(-1, keepdims=True))
  safe = np.where(mask, labels, 0)
  picked = np.take_along_axis(lsm, safe[..., None], -1)[..., 0]
  return np.where(mask, picked, 0.0)


def _data(seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  logits = (3.0 * rng.standard_normal((B, T, V))).astype(dtype)
  labels = rng.integers(0, V, (B, T)).astype(np.int32)
  lengths = rng.integers(0, T + 1, (B,))
  lengths[0] = 0  # one fully masked row
  mask = np.arange(T)[None, :] < lengths[:, None]
  labels = np.where(mask, labels, -100).astype(np.int32)  # junk padding ids
  return logits, labels, mask


def test_token_log_probs_matches_numpy():
  logits, labels, mask = _data()
  got = jax.jit(lambda z, y, m: token_log_probs(z, y, where=m))(
      logits, labels, mask)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, _np_token_log_probs(logits, labels, mask),
                             rtol=1e-5, atol=1e-5)


def test_unmasked_all_valid():
  logits, labels, _ = _data(1)
  labels = np.abs(labels) % V
  full = np.ones((B, T), bool)
  np.testing.assert_allclose(
      jax.jit(token_log_probs)(logits, labels),
      _np_token_log_probs(logits, labels, full), rtol=1e-5, atol=1e-5)


def test_sequence_log_probs_is_masked_sum():
  logits, labels, mask = _data(2)
  got = jax.jit(lambda z, y, m: sequence_log_probs(z, y, where=m))(
      logits, labels, mask)
  want = _np_token_log_probs(logits, labels, mask).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert got[0] == 0.0  # fully masked row


def test_masked_positions_junk_labels_no_nan_and_no_effect():
  logits, labels, mask = _data(3)
  fn = jax.jit(lambda z: jnp.sum(sequence_log_probs(z, labels, where=mask)))
  g = jax.grad(fn)(logits)
  assert np.all(np.isfinite(g))
  np.testing.assert_array_equal(np.asarray(g)[~mask], 0.0)
  perturbed = np.where(mask[..., None], logits, 1e4).astype(np.float32)
  np.testing.assert_allclose(fn(perturbed), fn(logits), rtol=1e-6)


def test_row_mask_broadcasts():
  logits, labels, _ = _data(4)
  labels = np.abs(labels) % V
  row = np.array([True, False] * (B // 2))[:, None]
  got = sequence_log_probs(logits, labels, where=row)
  want = _np_token_log_probs(logits, labels,
                             np.broadcast_to(row, (B, T))).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bf16_logits_accumulate_in_f32():
  logits, labels, mask = _data(5)
  lb = jnp.asarray(logits, jnp.bfloat16)
  got = jax.jit(lambda z: sequence_log_probs(z, labels, where=mask))(lb)
  assert got.dtype == jnp.float32
  want = _np_token_log_probs(np.asarray(lb.astype(jnp.float32)), labels,
                             mask).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_vmap_matches_batch():
  logits, labels, mask = _data(6)
  fn = lambda z, y, m: sequence_log_probs(z[None], y[None], where=m[None])[0]
  got = jax.jit(jax.vmap(fn))(logits, labels, mask)
  np.testing.assert_allclose(
      got, sequence_log_probs(logits, labels, where=mask), rtol=1e-6)


def test_sharded_equals_single_device():
  logits, labels, mask = _data(7)
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  fn = lambda z, y, m: sequence_log_probs(z, y, where=m)
  got = jax.jit(fn)(jax.device_put(logits, sh), jax.device_put(labels, sh),
                    jax.device_put(mask, sh))
  np.testing.assert_allclose(got, fn(logits, labels, mask), rtol=1e-6)


def test_bad_inputs():
  logits, labels, mask = _data(8)
  with pytest.raises(TypeError, match="labels"):
    token_log_probs(logits, labels.astype(np.float32))
  with pytest.raises(TypeError, match="logits"):
    token_log_probs(labels[..., None], labels)
  with pytest.raises(ValueError, match="labels"):
    token_log_probs(logits, labels[:, :-1])
  with pytest.raises(ValueError, match="logits"):
    token_log_probs(logits[0], labels[0])
  with pytest.raises(ValueError, match="where"):
    token_log_probs(logits, labels, where=mask[:, 0])
