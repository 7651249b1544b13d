"""Tests for jaxkit.quantization.awq against a brute-force numpy search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import quantization as Q
from tests.quantization._oracles import np_rtn


def _layer(seed=0, n_in=32, n_out=12, n=96):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(n_in, n_out))
  x = rng.normal(size=(n, n_in)) * np.exp(rng.normal(size=n_in) * 1.5)
  return w.astype(np.float32), x.astype(np.float32)


def _brute_scales(w, x, bits, group, grid=20):
  """llm-awq's search, literally: run the layer for every ratio (numpy)."""
  w = w.astype(np.float64)
  x = x.astype(np.float64)
  org = x @ w
  x_max = np.abs(x).mean(0)
  best, best_s, losses = np.inf, None, []
  for k in range(grid):
    s = np.maximum(x_max ** (k / grid), 1e-4)
    s = s / np.sqrt(s.max() * s.min())
    wq = np_rtn(w * s[:, None], bits, group, 0, False)[0] / s[:, None]
    loss = np.mean((org - x @ wq) ** 2)
    losses.append(loss)
    if loss < best:
      best, best_s = loss, s
  return best_s, np.array(losses)


@pytest.mark.parametrize("bits,group", [(3, 8), (4, 16), (2, None)])
def test_scales_match_brute_force(bits, group):
  w, x = _layer(bits)
  s, losses = Q.awq_scales(w, x, bits=bits, group_size=group,
                           return_losses=True)
  ref_s, ref_losses = _brute_scales(w, x, bits, group)
  np.testing.assert_allclose(np.asarray(losses) / (x.shape[0] * w.shape[1]),
                             ref_losses, rtol=2e-3)
  np.testing.assert_allclose(s, ref_s, rtol=1e-4)


def _brute_clip(w, x, bits, group, n_grid=20, max_shrink=0.5, sym=False):
  # float32 throughout: a clip to [-m, m] makes the zero point an exact
  # rounding tie (m / s = 3.5), decided by the last bit, as in llm-awq.
  w = w.astype(np.float32)
  x64 = x.astype(np.float64)
  n_in, n_out = w.shape
  out = np.zeros((n_in // group, n_out))
  for gi in range(n_in // group):
    sl = slice(gi * group, (gi + 1) * group)
    for o in range(n_out):
      wg = w[sl, o]
      m0 = np.abs(wg).max()
      best = np.inf
      for k in range(int(max_shrink * n_grid)):
        m = m0 * (np.float32(1) - np.float32(k) / np.float32(n_grid))
        qw = np_rtn(np.clip(wg, -m, m), bits, None, 0, sym, np.float32)[0]
        err = np.mean((x64[:, sl] @ (qw - wg)) ** 2)
        if err < best:
          best, out[gi, o] = err, m
  return out


def test_clip_matches_brute_force_symmetric():
  w, x = _layer(7, n_in=16, n_out=6)
  m = Q.awq_clip(w, x, bits=3, group_size=8, symmetric=True)
  np.testing.assert_allclose(m, _brute_clip(w, x, 3, 8, sym=True), rtol=1e-5)


def test_clip_asymmetric_never_worse_than_no_clip():
  # With zero points a clip to [-m, m] puts the zero point on an exact
  # rounding tie (decided by the last float bit in llm-awq as here), so
  # thresholds are compared through their error, not bit for bit.
  w, x = _layer(7, n_in=16, n_out=6)
  m = np.asarray(Q.awq_clip(w, x, bits=3, group_size=8))
  ours = np.clip(w, -np.repeat(m, 8, 0), np.repeat(m, 8, 0))
  qo = np.asarray(Q.dequantize(Q.quantize(jnp.asarray(ours), bits=3,
                                          group_size=8, axis=0,
                                          symmetric=False)))
  q0 = np_rtn(w, 3, 8, 0, False)[0]
  for gi in range(2):
    sl = slice(gi * 8, gi * 8 + 8)
    e_ours = np.mean((x[:, sl] @ (qo[sl] - w[sl])) ** 2, 0)
    e_none = np.mean((x[:, sl] @ (q0[sl] - w[sl])) ** 2, 0)
    assert np.all(e_ours <= e_none * (1 + 1e-4))
  assert np.any(m < np.abs(w).reshape(2, 8, 6).max(1))


def test_awq_quantize_folding_and_beats_rtn():
  w, x = _layer(3, n_in=64, n_out=16, n=256)
  q, s = Q.awq_quantize(w, x, bits=3, group_size=16)
  assert q.shape == w.shape and q.axis == 0 and s.shape == (64,)
  # q quantizes the clipped weight * s: every code dequantizes within s/2.
  ref = x @ w
  awq_err = np.mean((np.asarray((x / s) @ Q.dequantize(q)) - ref) ** 2)
  rtn = np_rtn(w, 3, 16, 0, False)[0]
  rtn_err = np.mean((x @ rtn - ref) ** 2)
  assert awq_err < rtn_err
  q0, s0 = Q.awq_quantize(w, x, bits=3, group_size=16, clip=False)
  np.testing.assert_allclose(Q.dequantize(q0),
                             np_rtn(w * np.asarray(s0)[:, None], 3, 16, 0,
                                    False)[0], rtol=1e-4, atol=1e-5)


def test_uniform_activations_give_alpha_zero_candidate_one():
  c = Q.awq_candidate_scales(jnp.ones((4, 5)) * 3.0, grid=4)
  np.testing.assert_allclose(c, np.ones((4, 5)), rtol=1e-6)


def test_bad_inputs():
  w, x = _layer(0)
  with pytest.raises(ValueError, match="bits"):
    Q.awq_scales(w, x, bits=1, group_size=8)
  with pytest.raises(ValueError, match="group_size"):
    Q.awq_scales(w, x, bits=4, group_size=5)
  with pytest.raises(ValueError, match="empty"):
    Q.awq_scales(w, x[:0], bits=4, group_size=8)
  with pytest.raises(ValueError, match="activations"):
    Q.awq_scales(w, x[:, :5], bits=4, group_size=8)
  xb = x.copy(); xb[0, 0] = np.nan
  with pytest.raises(ValueError, match="activations"):
    Q.awq_quantize(w, xb, bits=4, group_size=8)
  wb = w.copy(); wb[1, 1] = np.inf
  with pytest.raises(ValueError, match="weight"):
    Q.awq_quantize(wb, x, bits=4, group_size=8)
  with pytest.raises(ValueError, match="weight"):
    Q.awq_scales(w[0], x, bits=4, group_size=8)


def _np_duo_candidates(w, x, group, grid=20):
  """AutoAWQ's duo_scaling candidates, from its formula (numpy float64)."""
  w = np.abs(np.asarray(w, np.float64))
  n_in, n_out = w.shape
  wg = w.reshape(n_in // group, group, n_out)
  w_mean = (wg / (wg.max(1, keepdims=True) + 1e-6)).reshape(n_in, n_out)
  w_mean = w_mean.mean(1)
  x_mean = np.abs(np.asarray(x, np.float64)).mean(0)
  out = []
  for k in range(grid):
    a = k / grid
    s = np.maximum(x_mean ** a / (w_mean ** (1 - a) + 1e-4), 1e-4)
    out.append(s / np.sqrt(s.max() * s.min()))
  return np.array(out)


def test_duo_candidates_match_formula():
  w, x = _layer(4, n_in=16, n_out=6)
  c = Q.awq_candidate_scales(x, weight=w, group_size=8)
  np.testing.assert_allclose(c, _np_duo_candidates(w, x, 8), rtol=1e-4)
  s = Q.awq_scales(w, x, bits=3, group_size=8, duo_scaling=True)
  assert any(np.allclose(s, r, rtol=1e-4) for r in np.asarray(c))


def test_block_scales_match_brute_force_on_mlp():
  # AutoAWQ's loop, literally (numpy float64): a SwiGLU block whose gate/up
  # share one scale, scored on the block output (down stays float).
  rng = np.random.default_rng(5)
  n_in, hid, n = 16, 8, 48
  x = (rng.normal(size=(n, n_in)) * np.exp(rng.normal(size=n_in))
       ).astype(np.float32)
  wg, wu = (rng.normal(size=(n_in, hid)).astype(np.float32)
            for _ in range(2))
  wd = rng.normal(size=(hid, 5)).astype(np.float32)

  def np_mlp(g, u):
    h = x.astype(np.float64) @ g
    return ((h / (1 + np.exp(-h))) * (x.astype(np.float64) @ u)) @ wd

  ref = np_mlp(wg, wu)
  cands = _np_duo_candidates(np.concatenate([wg, wu], 1), x, 8)
  losses = []
  for s in cands:
    q = [np_rtn(w * s[:, None], 3, 8, 0, False)[0] / s[:, None]
         for w in (wg, wu)]
    losses.append(np.mean((np_mlp(*q) - ref) ** 2))
  fn = jax.jit(lambda g, u: Q.awq_block_scales(
      lambda a, b: (jax.nn.silu(x @ a) * (x @ b)) @ wd, [g, u], x, bits=3,
      group_size=8, return_losses=True))
  s, ours = fn(wg, wu)
  np.testing.assert_allclose(ours, losses, rtol=2e-3)
  np.testing.assert_allclose(s, cands[int(np.argmin(losses))], rtol=1e-4)


def test_block_scales_bad_inputs():
  w, x = _layer(0)
  f = lambda a: x @ a
  with pytest.raises(ValueError, match="at least one"):
    Q.awq_block_scales(f, [], x, bits=3, group_size=8)
  with pytest.raises(ValueError, match="same input size"):
    Q.awq_block_scales(f, [w, w[:16]], x, bits=3, group_size=8)
  with pytest.raises(TypeError, match="callable"):
    Q.awq_block_scales(None, [w], x, bits=3, group_size=8)
  with pytest.raises(TypeError, match="list/tuple"):
    Q.awq_block_scales(f, w, x, bits=3, group_size=8)
  with pytest.raises(ValueError, match="group_size"):
    Q.awq_block_scales(f, [w], x, bits=3, group_size=5)
