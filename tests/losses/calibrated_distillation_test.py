"""Tests for jaxkit.losses.calibrated_distillation (DAC-KL), numpy oracles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, log_softmax, rel_entr

from jaxkit.losses import dac_kl_loss

S = np.random.default_rng(0).normal(size=(3, 4, 9)) * 2.0
T = np.random.default_rng(1).normal(size=(3, 4, 9)) * 2.0


def _np_hard(s, t, lo, hi):
  """DAC-KL with the hard selection, written from the formula (float64)."""
  s, t = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
  lo, hi = np.broadcast_to(lo, s.shape[:1]), np.broadcast_to(hi, s.shape[:1])
  out = []
  for si, ti, l, u in zip(s, t, lo, hi):
    lt, ls = log_softmax(ti), log_softmax(si)
    v = len(lt)
    srt = np.sort(lt)
    keep = (lt >= srt[int(np.floor(l * (v - 1)))]) & (
        lt <= srt[int(np.ceil(u * (v - 1)))])
    pt = np.exp(lt[keep]) / np.exp(lt[keep]).sum()
    ps = np.exp(ls[keep]) / np.exp(ls[keep]).sum()
    out.append(rel_entr(pt, ps).sum())
  return np.array(out)


def _np_soft(s, t, lo, hi, softness):
  lt, ls = log_softmax(t, -1), log_softmax(s, -1)
  th_lo = np.quantile(lt, lo, axis=-1)[..., None]  # numpy 'linear' method
  th_hi = np.quantile(lt, hi, axis=-1)[..., None]
  m = expit((lt - th_lo) / softness) * expit((th_hi - lt) / softness)
  pt = m * np.exp(lt)
  pt /= pt.sum(-1, keepdims=True)
  ps = m * np.exp(ls)
  ps /= ps.sum(-1, keepdims=True)
  return rel_entr(pt, ps).sum(-1)


_HARD = jax.jit(lambda s, t, lo, hi: dac_kl_loss(s, t, lower=lo, upper=hi))


def test_hard_selection_matches_numpy():
  s, t = jnp.asarray(S, jnp.float32), jnp.asarray(T, jnp.float32)
  rng = np.random.default_rng(2)
  per_token = (rng.uniform(0, 0.5, size=(3, 4)),
               rng.uniform(0.5, 1, size=(3, 4)))
  for lo, hi in [(0.0, 1.0), (0.6, 1.0), (0.3, 0.8), (1.0, 1.0), per_token]:
    lo, hi = np.broadcast_to(lo, (3, 4)), np.broadcast_to(hi, (3, 4))
    got = _HARD(s, t, lo, hi)
    np.testing.assert_allclose(
        got, _np_hard(S, T, lo.reshape(-1), hi.reshape(-1)).reshape(3, 4),
        rtol=2e-5, atol=1e-6)
    if lo[0, 0] == 0.0 and hi[0, 0] == 1.0:  # (0, 1) is plain KD
      kd = rel_entr(np.exp(log_softmax(T, -1)),
                    np.exp(log_softmax(S, -1))).sum(-1)
      np.testing.assert_allclose(got, kd, rtol=2e-5, atol=1e-6)
    if lo[0, 0] == hi[0, 0] == 1.0:  # one kept class: a point mass, KL 0
      np.testing.assert_allclose(got, 0.0, atol=1e-6)


def test_soft_selection_matches_numpy_and_bounds_get_gradients():
  args = (jnp.asarray(S, jnp.float32), jnp.asarray(T, jnp.float32))

  def total(lo, hi):
    v = dac_kl_loss(*args, lower=lo, upper=hi, softness=0.3)
    return v.sum(), v

  (_, got), (g_lo, g_hi) = jax.jit(jax.value_and_grad(
      total, (0, 1), has_aux=True))(0.4, 0.9)
  np.testing.assert_allclose(got, _np_soft(S, T, 0.4, 0.9, 0.3), rtol=1e-4,
                             atol=1e-6)
  eps = 1e-4  # central differences of the numpy oracle (smooth in the levels)
  fd_lo = (_np_soft(S, T, 0.4 + eps, 0.9, 0.3).sum()
           - _np_soft(S, T, 0.4 - eps, 0.9, 0.3).sum()) / (2 * eps)
  fd_hi = (_np_soft(S, T, 0.4, 0.9 + eps, 0.3).sum()
           - _np_soft(S, T, 0.4, 0.9 - eps, 0.3).sum()) / (2 * eps)
  np.testing.assert_allclose([g_lo, g_hi], [fd_lo, fd_hi], rtol=2e-2)
  assert abs(float(g_lo)) > 1e-3


@pytest.mark.parametrize("softness", [0.0, 0.2])
def test_masks_padding_and_edges_are_finite(softness):
  def total(s, t, m):
    v = dac_kl_loss(s, t, lower=0.5, upper=1.0, softness=softness, where=m)
    return v.sum(), v

  vg = jax.jit(jax.value_and_grad(total, (0, 1), has_aux=True))
  s = jnp.asarray(S, jnp.float32).at[:, 2:].set(jnp.nan)
  t = jnp.asarray(T, jnp.float32)
  (_, got), (g, _) = vg(s, t, jnp.arange(4)[None, :] < 2)
  want = (_np_soft(S[:, :2], T[:, :2], 0.5, 1.0, softness) if softness else
          _np_hard(S[:, :2], T[:, :2], 0.5, 1.0).reshape(3, 2))
  np.testing.assert_allclose(got[:, :2], want, rtol=2e-5, atol=1e-6)
  np.testing.assert_array_equal(got[:, 2:], 0.0)
  assert np.all(np.isfinite(g)) and np.all(g[:, 2:] == 0)
  (val, _), (g, _) = vg(s, t, jnp.zeros((3, 4), bool))  # fully masked
  assert float(val) == 0.0 and np.all(g == 0)
  # Extreme student logits against a flat (all-tied) teacher.
  big = jnp.asarray(S * 1e4, jnp.float32)
  (val, _), gs = vg(big, jnp.zeros_like(big), jnp.ones((3, 4), bool))
  assert np.isfinite(float(val))
  assert all(np.all(np.isfinite(x)) for x in gs)


def test_bf16_inputs_accumulate_in_float32():
  got = _HARD(jnp.asarray(S, jnp.bfloat16), jnp.asarray(T, jnp.bfloat16),
              0.0, 1.0)
  assert got.dtype == jnp.float32


def test_bad_inputs():
  s, t = jnp.asarray(S), jnp.asarray(T)
  with pytest.raises(ValueError, match="lower"):
    dac_kl_loss(s, t, lower=-0.1, upper=1.0)
  with pytest.raises(ValueError, match="upper"):
    dac_kl_loss(s, t, lower=0.0, upper=1.5)
  with pytest.raises(ValueError, match="<= `upper`"):
    dac_kl_loss(s, t, lower=0.9, upper=0.1)
  with pytest.raises(ValueError, match="lower"):
    dac_kl_loss(s, t, lower=jnp.zeros((4,)), upper=1.0)
  with pytest.raises(ValueError, match="softness"):
    dac_kl_loss(s, t, lower=0.0, upper=1.0, softness=-1.0)
  with pytest.raises(ValueError, match="same shape"):
    dac_kl_loss(s, t[..., :3], lower=0.0, upper=1.0)
  with pytest.raises(TypeError, match="student_logits"):
    dac_kl_loss(jnp.ones((2, 3), int), t[0, :2, :3], lower=0.0, upper=1.0)
  with pytest.raises(ValueError, match="where"):
    dac_kl_loss(s, t, lower=0.0, upper=1.0, where=jnp.ones((4,), bool))
