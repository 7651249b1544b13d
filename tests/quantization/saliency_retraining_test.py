"""Tests for jaxkit.quantization.saliency_retraining (seed_002 #6).

Oracles: a numpy transcription of the authors' ``UniformAffineQuantizer``
(torch ``[out, in]`` layout, groups along the last axis, round-half-even like
``torch.round``), numpy formulas of the squared-gradient saliency, the
``calculate_regularization_term`` sum and the per-token MSE, the hand
derivative ``2 F (Q - W)`` of the regulariser, and the stage coefficients of
``get_coefficients``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import quantization as Q

D_IN, D_OUT, RANK, GS = 8, 3, 2, 4


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_lwc(w_in_out, up, low, bits, gs, symmetric):
  """The authors' quantizer on the torch layout, returned as [in, out]."""
  w = np.asarray(w_in_out, np.float64).T             # [out, in]
  x = w.reshape(-1, gs)                               # row-major groups
  upf = np.asarray(up, np.float64).T.reshape(-1, 1)   # [out * G, 1]
  lowf = np.asarray(low, np.float64).T.reshape(-1, 1)
  xmax = _sigmoid(upf) * x.max(1, keepdims=True)
  xmin = _sigmoid(lowf) * x.min(1, keepdims=True)
  if symmetric:
    amax = np.maximum(np.abs(xmax), np.abs(xmin))
    scale = np.clip(amax / (2 ** (bits - 1) - 1), 1e-5, 1e4)
    zp = (2 ** (bits - 1) - 1) * np.ones_like(scale)
  else:
    scale = np.clip((xmax - xmin) / (2**bits - 1), 1e-5, 1e4)
    zp = np.round(np.clip(-xmin / scale, -1e4, 1e4))
  q = np.clip(np.round(x / scale) + zp, 0, 2**bits - 1)
  return ((q - zp) * scale).reshape(w.shape).T


def _layer(seed=0):
  rng = np.random.RandomState(seed)
  w = rng.randn(D_IN, D_OUT).astype(np.float32)
  up = rng.uniform(0.5, 4.0, (D_IN // GS, D_OUT)).astype(np.float32)
  low = rng.uniform(0.5, 4.0, (D_IN // GS, D_OUT)).astype(np.float32)
  return rng, w, up, low


def test_lwc_fake_quant_matches_authors_quantizer():
  _, w, up, low = _layer()
  f = jax.jit(Q.lwc_fake_quant,
              static_argnames=("bits", "group_size", "symmetric"))
  for bits, sym in ((2, False), (3, True), (4, False), (2, True)):
    np.testing.assert_allclose(
        f(w, up, low, bits=bits, group_size=GS, symmetric=sym),
        np_lwc(w, up, low, bits, GS, sym), rtol=1e-5, atol=1e-6)
  # group_size=None: one group per output channel.
  np.testing.assert_allclose(
      Q.lwc_fake_quant(w, up[:1], low[:1], bits=2),
      np_lwc(w, up[:1], low[:1], 2, D_IN, False), rtol=1e-5, atol=1e-6)
  g_up, g_low = jax.jit(jax.grad(lambda u, l: jnp.sum(jnp.sin(
      3 * Q.lwc_fake_quant(w, u, l, bits=2, group_size=GS))),
                                  argnums=(0, 1)))(up, low)
  assert np.all(np.isfinite(g_up)) and np.any(g_up != 0)
  assert np.all(np.isfinite(g_low)) and np.any(g_low != 0)


def test_squared_gradient_saliency_with_padding():
  rng = np.random.RandomState(1)
  g = rng.randn(5, D_IN, D_OUT).astype(np.float32)
  np.testing.assert_allclose(Q.squared_gradient_saliency(g),
                             (g.astype(np.float64) ** 2).mean(0), rtol=1e-5)
  valid = np.array([True, False, True, True, False])
  g_pad = g.copy()
  g_pad[~valid] = np.nan  # padded samples never leak
  got = jax.jit(Q.squared_gradient_saliency)(g_pad, where=valid)
  np.testing.assert_allclose(got, (g[valid].astype(np.float64) ** 2).mean(0),
                             rtol=1e-5)
  np.testing.assert_array_equal(
      Q.squared_gradient_saliency(g, where=np.zeros(5, bool)), 0.0)
  with pytest.raises(ValueError, match="where"):
    Q.squared_gradient_saliency(g, where=np.ones((5, 1), bool))


def test_regulariser_value_and_gradient():
  rng, w, up, low = _layer(2)
  sal = rng.uniform(0, 3, (D_IN, D_OUT)).astype(np.float32)
  q = np_lwc(w, up, low, 2, GS, False).astype(np.float32)
  a = rng.randn(D_IN, RANK).astype(np.float32)
  b = rng.randn(RANK, D_OUT).astype(np.float32)
  w64 = w.astype(np.float64)
  np.testing.assert_allclose(Q.saliency_quant_reg(w, q, sal),
                             (sal * (q - w64) ** 2).sum(), rtol=1e-5)
  np.testing.assert_allclose(Q.saliency_quant_reg(w, q, None),
                             ((q - w64) ** 2).sum(), rtol=1e-5)
  eff = q + 0.5 * a @ b
  np.testing.assert_allclose(
      Q.saliency_quant_reg(w, q, sal, lora_a=a, lora_b=b, lora_scale=0.5),
      (sal * (eff - w64) ** 2).sum(), rtol=1e-5)
  gw, gq, gs = jax.jit(jax.grad(Q.saliency_quant_reg, argnums=(0, 1, 2)))(
      w, q, sal)
  np.testing.assert_allclose(gq, 2 * sal * (q - w64), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(gw, 0.0)
  np.testing.assert_array_equal(gs, 0.0)
  with pytest.raises(ValueError, match=">= 0"):
    Q.saliency_quant_reg(w, q, -sal)
  with pytest.raises(ValueError, match="both"):
    Q.saliency_quant_reg(w, q, sal, lora_a=a)
  with pytest.raises(ValueError, match="lora_a"):
    Q.saliency_quant_reg(w, q, sal, lora_a=a.T, lora_b=b)
  with pytest.raises(ValueError, match="saliency"):
    Q.saliency_quant_reg(w, q, sal[:2])


def test_activation_loss_and_staged_objective_with_token_masks():
  rng, w, up, low = _layer(3)
  q = Q.lwc_fake_quant(w, up, low, bits=2, group_size=GS)
  x = rng.randn(2, 5, D_IN).astype(np.float32)
  a = 0.1 * rng.randn(D_IN, RANK).astype(np.float32)
  b = 0.1 * rng.randn(RANK, D_OUT).astype(np.float32)
  eff = np.asarray(q, np.float64) + 2.0 * a @ b
  want = ((x @ (w - eff)) ** 2).mean(-1)
  got = Q.activation_preservation_loss(x, w, q, lora_a=a, lora_b=b,
                                       lora_scale=2.0)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  valid = np.ones((2, 5), bool)
  valid[1, 3:] = False
  x_pad = x.copy()
  x_pad[~valid] = np.inf  # garbage in padded tokens
  sal = rng.uniform(0, 2, (D_IN, D_OUT)).astype(np.float32)
  reg = (sal * (np.asarray(q, np.float64) - w) ** 2).sum()
  reg_after = (sal * (eff - w) ** 2).sum()
  act = want[valid].mean()
  obj = jax.jit(Q.saliency_retraining_loss,
                static_argnames=("stage", "reg_after_lora"))
  kw = dict(lora_a=a, lora_b=b, lora_scale=2.0, where=valid)
  for stage, val in (("opt", act), ("wpt", 0.3 * reg),
                     ("mixed", act + 0.3 * reg)):
    np.testing.assert_allclose(obj(x_pad, w, q, sal, lambda_reg=0.3,
                                   stage=stage, **kw), val, rtol=1e-4)
  np.testing.assert_allclose(
      obj(x_pad, w, q, sal, lambda_reg=0.3, reg_after_lora=True, **kw),
      act + 0.3 * reg_after, rtol=1e-4)
  # Gradients of the trainable parts only; all-masked tokens stay finite.
  def total(up, low, a, b, where):
    qq = Q.lwc_fake_quant(w, up, low, bits=2, group_size=GS)
    return Q.saliency_retraining_loss(x_pad, w, qq, sal, lambda_reg=0.3,
                                      lora_a=a, lora_b=b, where=where)
  for where in (valid, np.zeros((2, 5), bool)):
    grads = jax.jit(jax.grad(total, argnums=(0, 1, 2, 3)))(up, low, a, b,
                                                          where)
    assert all(np.all(np.isfinite(g)) for g in grads)
  with pytest.raises(ValueError, match="stage"):
    Q.saliency_retraining_loss(x, w, q, sal, lambda_reg=0.1, stage="qat")
  with pytest.raises(ValueError, match="lambda_reg"):
    Q.saliency_retraining_loss(x, w, q, sal, lambda_reg=-1.0)
  with pytest.raises(ValueError, match="where"):
    Q.activation_preservation_loss(x, w, q, where=valid[0])
  with pytest.raises(ValueError, match="`x`"):
    Q.activation_preservation_loss(x[..., :3], w, q)


def test_lwc_bad_inputs():
  _, w, up, low = _layer()
  with pytest.raises(ValueError, match="up_logit"):
    Q.lwc_fake_quant(w, up[:1], low, bits=2, group_size=GS)
  with pytest.raises(ValueError, match="group_size"):
    Q.lwc_fake_quant(w, up, low, bits=2, group_size=3)
  with pytest.raises(ValueError, match="bits"):
    Q.lwc_fake_quant(w, up, low, bits=1, group_size=GS)
  with pytest.raises(ValueError, match="rank"):
    Q.lwc_fake_quant(w[0], up, low, bits=2)
  with pytest.raises(ValueError, match="NaN"):
    Q.lwc_fake_quant(np.full_like(w, np.nan), up, low, bits=2, group_size=GS)


def test_saliency_weighting_protects_salient_weights():
  """Mixed-stage partial training: the half marked salient ends closer to W."""
  rng, w, up, low = _layer(3)
  x = rng.randn(64, D_IN).astype(np.float32)
  first = np.zeros((D_IN, D_OUT), np.float32)
  first[: D_IN // 2] = 1.0

  def loss(params, saliency):
    up, low, a, b = params
    q = Q.lwc_fake_quant(w, up, low, bits=2, group_size=GS)
    return Q.saliency_retraining_loss(x, w, q, saliency, lambda_reg=2.0,
                                      lora_a=a, lora_b=b, reg_after_lora=True)

  @jax.jit
  def train(params, saliency):
    def step(p, _):
      g = jax.grad(loss)(p, saliency)
      return jax.tree.map(lambda v, d: v - 0.05 * d, p, g), None
    p = jax.lax.scan(step, params, None, length=150)[0]
    eff = Q.lwc_fake_quant(w, p[0], p[1], bits=2, group_size=GS) + p[2] @ p[3]
    err = (eff - w) ** 2
    return err[: D_IN // 2].sum(), err[D_IN // 2:].sum(), loss(p, saliency)

  p0 = (up, low, 0.01 * np.ones((D_IN, RANK), np.float32),
        np.zeros((RANK, D_OUT), np.float32))
  top_a, bottom_a, end_a = train(p0, first)
  top_b, bottom_b, _ = train(p0, 1.0 - first)
  assert float(end_a) < 0.5 * float(loss(p0, first))
  assert top_a < 0.5 * top_b and bottom_b < 0.5 * bottom_a
