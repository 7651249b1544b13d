"""Tests for jaxkit.quantization.awq against a brute-force numpy search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import quantization as Q
from jaxkit.quantization import awq as awq_lib
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


@pytest.mark.parametrize("zero_in_range", [True, False])
def test_block_scales_match_brute_force_on_mlp(zero_in_range):
  # AutoAWQ's loop, literally (numpy float64): a SwiGLU block whose gate/up
  # share one scale, scored on the block output (down stays float); with
  # jaxkit's zero-in-range quantizer and with AutoAWQ's min/max one.
  rng = np.random.default_rng(5 if zero_in_range else 6)
  n_in, hid, n = 16, 8, 48 if zero_in_range else 40
  x = (rng.normal(size=(n, n_in)) * np.exp(rng.normal(size=n_in))
       ).astype(np.float32)
  wg, wu = (rng.normal(size=(n_in, hid)).astype(np.float32)
            for _ in range(2))
  wd = rng.normal(size=(hid, 5)).astype(np.float32)

  def np_mlp(g, u):
    h = x.astype(np.float64) @ g
    return ((h / (1 + np.exp(-h))) * (x.astype(np.float64) @ u)) @ wd

  def np_q(w):
    if zero_in_range:
      return np_rtn(w, 3, 8, 0, False)[0]
    return np_autoawq_rtn(w, 3, 8)

  ref = np_mlp(wg, wu)
  cands = _np_duo_candidates(np.concatenate([wg, wu], 1), x, 8)
  losses = [np.mean((np_mlp(*[np_q(w * s[:, None]) / s[:, None]
                               for w in (wg, wu)]) - ref) ** 2)
            for s in cands]
  fn = jax.jit(lambda g, u: Q.awq_block_scales(
      lambda a, b: (jax.nn.silu(x @ a) * (x @ b)) @ wd, [g, u], x, bits=3,
      group_size=8, zero_in_range=zero_in_range, return_losses=True))
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


# --------------------------------------------------------------------------
# AutoAWQ's quantizer (group min/max as is, 0 not forced into the range).
# --------------------------------------------------------------------------


def np_autoawq_rtn(w, bits, group, dtype=np.float64):
  """AutoAWQ ``pseudo_quantize_tensor`` (zero_point=True), written from its
  formula in numpy; groups along axis 0 of a ``[in, out]`` kernel."""
  w = np.asarray(w, dtype)
  n_in, n_out = w.shape
  g = n_in if group is None else group
  wg = w.T.reshape(n_out, n_in // g, g)
  mx = wg.max(-1, keepdims=True)
  mn = wg.min(-1, keepdims=True)
  hi = 2**bits - 1
  s = np.maximum(mx - mn, 1e-5) / hi
  z = np.clip(-np.round(mn / s), 0, hi)
  deq = (np.clip(np.round(wg / s) + z, 0, hi) - z) * s
  return deq.reshape(n_out, n_in).T


def test_minmax_quantize_matches_autoawq_formula():
  rng = np.random.default_rng(11)
  w = rng.normal(size=(32, 6)).astype(np.float32)
  w[:8, 0] = np.abs(w[:8, 0]) + 0.5   # one-signed groups: all > 0 ...
  w[8:16, 1] = -np.abs(w[8:16, 1]) - 0.2  # ... and all < 0
  for bits, group in ((3, 8), (4, 16), (2, None)):
    q = awq_lib.awq_minmax_quantize(w, bits=bits, group_size=group)
    assert q.axis == 0 and q.codes.dtype == np.uint8
    assert int(np.max(q.codes)) <= 2**bits - 1
    np.testing.assert_allclose(Q.dequantize(q), np_autoawq_rtn(w, bits, group),
                               rtol=1e-5, atol=1e-6)
    # The private fake quantizer used by the searches agrees.
    np.testing.assert_allclose(
        awq_lib._fq(jnp.asarray(w), bits, group or 32, False, False),
        np_autoawq_rtn(w, bits, group), rtol=1e-5, atol=1e-6)


def test_minmax_quantize_float16_scales_round_with_stored_scale():
  w = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
  q = awq_lib.awq_minmax_quantize(w, bits=3, group_size=8,
                                  dtype=jnp.float16)
  assert q.scales.dtype == jnp.float16 and q.zero_points.dtype == jnp.float16
  s = np.asarray(q.scales, np.float32)  # [2, 4]
  z = np.asarray(q.zero_points, np.float32)
  codes = np.clip(np.round(w / np.repeat(s, 8, 0)) + np.repeat(z, 8, 0), 0, 7)
  np.testing.assert_array_equal(np.asarray(q.codes), codes)


def test_minmax_no_widening_is_finer_on_one_signed_group():
  # [1, 2, 3, 8]: AutoAWQ's step is (8 - 1) / 3; the widened range [0, 8]
  # has step 8 / 3. Both dequantizations against the hand computation.
  w = np.array([[1.0], [2.0], [3.0], [8.0]], np.float32)
  ours = np.asarray(awq_lib._fq(jnp.asarray(w), 2, 4, False, False)).ravel()
  np.testing.assert_allclose(ours, np.array([0, 7 / 3, 7 / 3, 7]),
                             rtol=1e-6)
  wide = np.asarray(awq_lib._fq(jnp.asarray(w), 2, 4, False, True)).ravel()
  np.testing.assert_allclose(wide, np.array([0, 8 / 3, 8 / 3, 8]),
                             rtol=1e-6)


def test_minmax_quantize_bad_inputs():
  w = np.ones((16, 4), np.float32)
  with pytest.raises(ValueError, match="bits"):
    awq_lib.awq_minmax_quantize(w, bits=1, group_size=8)
  with pytest.raises(ValueError, match="group_size"):
    awq_lib.awq_minmax_quantize(w, bits=3, group_size=5)
  with pytest.raises(ValueError, match="weight"):
    awq_lib.awq_minmax_quantize(w[0], bits=3, group_size=8)


@pytest.mark.parametrize("duo", [False, True])
def test_scales_autoawq_quantizer_match_brute_force(duo):
  w, x = _layer(21, n_in=32, n_out=10)
  w[:8, :3] = np.abs(w[:8, :3]) + 0.3  # some one-signed groups
  org = x.astype(np.float64) @ w
  cands = (_np_duo_candidates(w, x, 8) if duo else
           _np_candidates(x))
  losses = []
  for s in cands:
    wq = np_autoawq_rtn(w * s[:, None], 3, 8) / s[:, None]
    losses.append(np.mean((org - x.astype(np.float64) @ wq) ** 2))
  s, ours = Q.awq_scales(w, x, bits=3, group_size=8, duo_scaling=duo,
                         zero_in_range=False, return_losses=True)
  np.testing.assert_allclose(np.asarray(ours) / (x.shape[0] * w.shape[1]),
                             losses, rtol=2e-3)
  np.testing.assert_allclose(s, cands[int(np.argmin(losses))], rtol=1e-4)


def test_scales_scored_with_stored_scale_dtype_match_brute_force():
  # dtype=float16: each candidate is scored with float16-rounded scales
  # (zero points from the rounded scales); numpy brute force, groups of 8.
  w, x = _layer(22, n_in=32, n_out=10)
  w = w * 37.0
  org = x.astype(np.float64) @ w
  cands = _np_duo_candidates(w, x, 8)

  def q16(v):  # [in, out], groups of 8 rows, float16 stored scales
    return np.concatenate([_np_rtn_stored_scale(v[i:i + 8], 3, np.float16)
                           for i in range(0, v.shape[0], 8)])

  losses = [np.mean((org - x.astype(np.float64)
                     @ (q16((w * c[:, None]).astype(np.float32))
                        / c[:, None])) ** 2) for c in cands]
  s, ours = Q.awq_scales(w, x, bits=3, group_size=8, duo_scaling=True,
                         zero_in_range=False, return_losses=True,
                         dtype=jnp.float16)
  np.testing.assert_allclose(np.asarray(ours) / (x.shape[0] * w.shape[1]),
                             losses, rtol=2e-3)
  np.testing.assert_allclose(s, cands[int(np.argmin(losses))], rtol=1e-4)


def _np_candidates(x, grid=20):
  x_mean = np.abs(np.asarray(x, np.float64)).mean(0)
  out = []
  for k in range(grid):
    s = np.maximum(x_mean ** (k / grid), 1e-4)
    out.append(s / np.sqrt(s.max() * s.min()))
  return np.array(out)


def _assert_clip_is_brute_force_best(m, w, x, quantizer, group=8):
  """Each (group, column) threshold ``m`` has the least output error of the
  10 AWQ shrinks under ``quantizer`` (numpy; ties: compare errors)."""
  x64 = x.astype(np.float64)
  for gi in range(w.shape[0] // group):
    sl = slice(gi * group, gi * group + group)
    for o in range(w.shape[1]):
      wg = w[sl, o:o + 1]
      m0 = np.abs(wg).max()
      def err(mv, wg=wg, sl=sl):
        qw = quantizer(np.clip(wg, -mv, mv))
        return np.mean((x64[:, sl] @ (qw - wg)) ** 2)
      best = min(err(m0 * (np.float32(1) - np.float32(k) / np.float32(20)))
                 for k in range(10))
      assert err(np.float32(m[gi, o])) <= best * (1 + 1e-4) + 1e-12


def test_clip_autoawq_quantizer_matches_brute_force():
  # AutoAWQ's clip loop with its quantizer (float32 like the library; a tie
  # in the error between two shrinks may be decided differently, so the
  # errors of the chosen thresholds are compared).
  w, x = _layer(8, n_in=16, n_out=6)
  m = np.asarray(Q.awq_clip(w, x, bits=3, group_size=8, zero_in_range=False))
  _assert_clip_is_brute_force_best(
      m, w, x, lambda v: np_autoawq_rtn(v, 3, None, np.float32))


def _np_rtn_stored_scale(w, bits, scale_dtype):
  """AutoAWQ's quantizer (one group = all rows) with the scale rounded to
  ``scale_dtype`` and the zero point derived from the rounded scale, as
  ``awq_minmax_quantize(dtype=...)`` stores it (numpy, float64)."""
  w = np.asarray(w, np.float64)
  hi = 2**bits - 1
  s = np.maximum(w.max(0) - w.min(0), 1e-5) / hi
  s = s.astype(np.float32).astype(scale_dtype).astype(np.float64)
  z = np.clip(-np.round(w.min(0) / s), 0, hi)
  return (np.clip(np.round(w / s) + z, 0, hi) - z) * s


def test_clip_scored_with_stored_scale_dtype_matches_brute_force():
  # dtype=float16: each shrink is scored with float16-rounded scales (the
  # quantizer applied afterwards); brute force over the 10 shrinks with the
  # numpy quantizer above. (With dtype=None the choice differs for one
  # (group, column) of this layer.)
  w, x = _layer(13, n_in=16, n_out=6)
  w = w * 37.0  # scales where float16 rounding moves the zero-point ties
  m = np.asarray(Q.awq_clip(w, x, bits=3, group_size=8,
                            zero_in_range=False, dtype=jnp.float16))
  _assert_clip_is_brute_force_best(
      m, w, x, lambda v: _np_rtn_stored_scale(v.astype(np.float32), 3,
                                              np.float16))


def test_awq_quantize_autoawq_quantizer_without_clip():
  w, x = _layer(3, n_in=64, n_out=16, n=256)
  q, s = Q.awq_quantize(w, x, bits=3, group_size=16, clip=False,
                        duo_scaling=True, zero_in_range=False)
  np.testing.assert_allclose(
      Q.dequantize(q), np_autoawq_rtn(w * np.asarray(s)[:, None], 3, 16),
      rtol=1e-4, atol=1e-5)
  ref = x @ w
  err = np.mean((np.asarray((x / s) @ Q.dequantize(q)) - ref) ** 2)
  assert err < np.mean((x @ np_autoawq_rtn(w, 3, 16) - ref) ** 2)


def test_precomputed_gram_matrix_gives_same_result():
  w, x = _layer(9, n_in=16, n_out=6)
  g = x.astype(np.float64).T @ x.astype(np.float64)  # numpy oracle Gram
  s0, l0 = Q.awq_scales(w, x, bits=3, group_size=8, return_losses=True)
  s1, l1 = Q.awq_scales(w, x, bits=3, group_size=8, return_losses=True,
                        gram_matrix=g)
  np.testing.assert_allclose(l1, l0, rtol=1e-4)
  np.testing.assert_allclose(s1, s0, rtol=1e-6)
  # Clip search on scaled inputs x / s: Gram g / (s s^T), exactly.
  s = np.asarray(s0, np.float64)
  ws = w * s[:, None].astype(np.float32)
  m0 = Q.awq_clip(ws, x / s[None, :].astype(np.float32), bits=3, group_size=8)
  m1 = Q.awq_clip(ws, x / s[None, :].astype(np.float32), bits=3, group_size=8,
                  gram_matrix=g / np.outer(s, s))
  np.testing.assert_allclose(m1, m0, rtol=1e-6)
  with pytest.raises(ValueError, match="gram_matrix"):
    Q.awq_scales(w, x, bits=3, group_size=8, gram_matrix=g[:8])
