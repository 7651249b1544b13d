"""Tests for jaxkit.losses.focal_modifiers (COMIC, seed_000 #6).

Oracles: a float64 numpy transcription of the multi-focal modifier formula
(value and the authors' detached-focusing gradient, derived by hand), the
closed-form special cases (ASL with gamma_neg + 1 via
``jaxkit.losses.asymmetric_loss``, the sigmoid focal loss and binary
cross-entropy written in numpy), and a numpy loop for the class-aware
threshold correction.
"""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from jaxkit import losses
from jaxkit.losses import focal_modifiers as FM

B, C = 4, 6
FREQ = np.array([500.0, 120.0, 40.0, 9.0, 3.0, 1.0], np.float32)


def _data(seed=0, scale=2.0):
  rng = np.random.RandomState(seed)
  z = (rng.randn(B, C) * scale).astype(np.float32)
  y = (rng.uniform(size=(B, C)) < 0.4).astype(np.float32)
  return z, y


def np_weights(freq, s):
  f = np.asarray(freq, np.float64)
  return (1.0 - np.log(f / f.max())) ** s


def np_mfm(z, y, freq, gp, gn, clip, s):
  z = np.asarray(z, np.float64)
  w = np_weights(freq, s)
  p = 1.0 / (1.0 + np.exp(-z))
  pm = np.maximum(p - clip, 0.0)
  pos = (1 - p) ** gp * np.log(p)
  neg = pm ** (gn + w) * np.log(1 - pm)
  return -(w * (y * pos + (1 - y) * neg)).sum(-1)


def np_mfm_grad_detached(z, y, freq, gp, gn, clip, s):
  """d loss / d z with the focusing factors held constant (authors' code)."""
  z = np.asarray(z, np.float64)
  w = np_weights(freq, s)
  p = 1.0 / (1.0 + np.exp(-z))
  pm = np.maximum(p - clip, 0.0)
  d_pos = -(1 - p) ** gp * (1 - p)                    # d[-F log p]/dz
  d_neg = np.where(p > clip, pm ** (gn + w) * p * (1 - p) / (1 - pm), 0.0)
  return w * (y * d_pos + (1 - y) * d_neg)


def test_weights_and_loss_match_numpy_formula():
  np.testing.assert_allclose(losses.class_frequency_weights(FREQ, exponent=0.5),
                             np_weights(FREQ, 0.5), rtol=1e-6)
  z, y = _data()
  f = jax.jit(FM.multi_focal_modifier_loss,
              static_argnames=("detach_focusing",))
  for gp, gn, clip, s in ((0.0, 3.0, 0.05, 1 / 3), (1.0, 2.0, 0.0, 1 / 6),
                          (2.0, 0.5, 0.2, 1.0)):
    want = np_mfm(z, y, FREQ, gp, gn, clip, s)
    got = f(z, y, FREQ, gamma_pos=gp, gamma_neg=gn, clip=clip,
            class_exponent=s, detach_focusing=gp == 0.0)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    g = jax.grad(lambda z: jnp.sum(f(z, y, FREQ, gamma_pos=gp, gamma_neg=gn,
                                     clip=clip, class_exponent=s)))(z)
    np.testing.assert_allclose(
        g, np_mfm_grad_detached(z, y, FREQ, gp, gn, clip, s), rtol=1e-4,
        atol=1e-6)


def test_special_cases_asl_focal_bce():
  z, y = _data(1)
  uniform = np.ones(C, np.float32)
  # w_c = 1: ASL with the negative exponent shifted by one (value and grad).
  for freq, s in ((uniform, 1 / 3), (FREQ, 0.0)):
    mfm = lambda z: FM.multi_focal_modifier_loss(  # noqa: E731
        z, y, freq, gamma_pos=1.0, gamma_neg=2.0, clip=0.05,
        class_exponent=s, detach_focusing=False)
    asl = lambda z: losses.asymmetric_loss(  # noqa: E731
        z, y, gamma_pos=1.0, gamma_neg=3.0, clip=0.05)
    vg = lambda f: jax.jit(jax.value_and_grad(  # noqa: E731
        lambda z: f(z).sum()))(z)
    (v1, g1), (v2, g2) = vg(mfm), vg(asl)
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-6)
  p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
  gamma = 2.0
  focal = -(y * (1 - p) ** gamma * np.log(p)
            + (1 - y) * p ** gamma * np.log(1 - p)).sum(-1)
  np.testing.assert_allclose(
      FM.multi_focal_modifier_loss(z, y, uniform, gamma_pos=gamma,
                                   gamma_neg=gamma - 1, clip=0.0),
      focal, rtol=2e-5)
  bce = (y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)).sum(-1)
  np.testing.assert_allclose(
      FM.multi_focal_modifier_loss(z, y, uniform, gamma_pos=0.0,
                                   gamma_neg=-1.0, clip=0.0), bce, rtol=2e-5)


def test_masks_extremes_and_finite_grads():
  z, y = _data(2)
  mask = np.ones((B, C), bool)
  mask[0, 1] = False
  mask[2] = False  # a fully masked row
  loss = FM.multi_focal_modifier_loss(z, y, FREQ, where=mask)
  keep = [i for i in range(C) if i != 1]
  # A masked label is removed from the sum (the class weights still use the
  # full frequency vector).
  row0 = np_mfm(z[:1, keep], y[:1, keep], FREQ[keep], 0.0, 3.0, 0.05, 1 / 3)
  w_full = np_weights(FREQ, 1 / 3)[keep]
  w_sub = np_weights(FREQ[keep], 1 / 3)
  assert np.allclose(w_full, w_sub)  # class 1 is not the most frequent
  np.testing.assert_allclose(loss[0], row0[0], rtol=1e-5)
  assert float(loss[2]) == 0.0
  g = jax.jit(jax.grad(lambda z: jnp.sum(FM.multi_focal_modifier_loss(
      z, y, FREQ, where=mask, detach_focusing=False))))(z)
  assert np.all(g[2] == 0.0) and g[0, 1] == 0.0
  for dt in (jnp.float32, jnp.bfloat16):
    ze = jnp.asarray(np.sign(z) * 1e4, dt)
    for detach in (True, False):
      v, g = jax.jit(jax.value_and_grad(lambda z: jnp.sum(
          FM.multi_focal_modifier_loss(z, y, FREQ, detach_focusing=detach))))(
              ze)
      assert np.isfinite(float(v))
      assert np.all(np.isfinite(np.asarray(g, np.float32)))
  check_grads(jax.jit(lambda z: jnp.sum(FM.multi_focal_modifier_loss(
      z, y, FREQ, gamma_pos=1.0, detach_focusing=False))), (z,), order=1,
              modes=("rev",), eps=1e-3, atol=3e-2, rtol=3e-2)


def test_loss_bad_inputs():
  z, y = _data(3)
  with pytest.raises(ValueError, match="targets"):
    FM.multi_focal_modifier_loss(z, y[:2], FREQ)
  with pytest.raises(ValueError, match="binary"):
    FM.multi_focal_modifier_loss(z, y * 0.5, FREQ)
  with pytest.raises(ValueError, match="class_freq"):
    FM.multi_focal_modifier_loss(z, y, FREQ[:3])
  with pytest.raises(ValueError, match="class_freq"):
    FM.multi_focal_modifier_loss(z, y, FREQ * 0)
  with pytest.raises(ValueError, match="gamma_neg"):
    FM.multi_focal_modifier_loss(z, y, FREQ, gamma_neg=-2.0)
  with pytest.raises(ValueError, match="clip"):
    FM.multi_focal_modifier_loss(z, y, FREQ, clip=1.0)
  with pytest.raises(ValueError, match="exponent"):
    FM.multi_focal_modifier_loss(z, y, FREQ, class_exponent=-1.0)
  with pytest.raises(TypeError, match="logits"):
    FM.multi_focal_modifier_loss(z.astype(np.int32), y, FREQ)
  with pytest.raises(TypeError, match="detach_focusing"):
    FM.multi_focal_modifier_loss(z, y, FREQ, detach_focusing=1)
  with pytest.raises(ValueError, match="where"):
    FM.multi_focal_modifier_loss(z, y, FREQ, where=np.ones(B, bool))


def np_correction(p, y, tau, valid):
  out = y.astype(bool).copy()
  for c in range(p.shape[1]):
    rows = [b for b in range(p.shape[0]) if valid[b, c]]
    mean = np.mean(p[rows, c]) if rows else 0.0
    for b in rows:
      if p[b, c] > tau and p[b, c] > mean:
        out[b, c] = True
  return out


def test_class_aware_threshold_correction():
  rng = np.random.RandomState(4)
  p = rng.uniform(size=(6, C)).astype(np.float32)
  p[:, 0] = 0.95  # every row confident: the batch mean blocks the recall
  y = (rng.uniform(size=(6, C)) < 0.2).astype(np.int32)
  valid = np.ones((6, C), bool)
  f = jax.jit(FM.class_aware_threshold_correction)
  out = f(p, y, tau=0.6)
  assert out.dtype == y.dtype
  np.testing.assert_array_equal(out, np_correction(p, y, 0.6, valid))
  assert not np.any(out[:, 0] & ~y[:, 0].astype(bool))
  # Padding rows: never corrected, and left out of the class means.
  pad = np.concatenate([p, np.ones((2, C), np.float32)])
  ypad = np.concatenate([y, np.zeros((2, C), np.int32)])
  rows = np.concatenate([np.ones(6, bool), np.zeros(2, bool)])[:, None]
  out_pad = f(pad, ypad, tau=0.6, where=rows)
  np.testing.assert_array_equal(out_pad[:6], out)
  np.testing.assert_array_equal(out_pad[6:], 0)
  none = f(p, y, tau=0.6, where=np.zeros((6, 1), bool))
  np.testing.assert_array_equal(none, y)
  with pytest.raises(ValueError, match="tau"):
    FM.class_aware_threshold_correction(p, y, tau=1.5)
  with pytest.raises(ValueError, match="probs"):
    FM.class_aware_threshold_correction(p[0], y[0])
  with pytest.raises(ValueError, match="targets"):
    FM.class_aware_threshold_correction(p, y[:, :2])
