"""Tests for jaxkit.reweighting.distillation (LLKD, WAD) against numpy oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxkit import reweighting as rw


# ----------------------------------------------------------------------------
# Oracles, written from the formulas in float64 numpy.
# ----------------------------------------------------------------------------


def np_signals(lt, ls):
  pt, ps = np.exp(np.asarray(lt, np.float64)), np.exp(np.asarray(ls, np.float64))
  c = pt.max(1)
  y = pt.argmax(1)
  with np.errstate(divide="ignore", invalid="ignore"):
    plogp = np.where(ps > 0, ps * np.log(ps), 0.0)
  u = -plogp.sum(1) / np.log(pt.shape[1])
  return c, u, y


def np_sat(s, y, valid, num_classes):
  """Batch self-adaptive thresholds g * m(y) / max m."""
  g = s[valid].mean()
  m = np.array([s[valid & (y == k)].mean() if (valid & (y == k)).any()
                else np.nan for k in range(num_classes)])
  return g * m / np.nanmax(m)


def np_llkd(lt, ls, mask=None, tt=None, ts=None, weighting="product"):
  c, u, y = np_signals(lt, ls)
  n, k = np.asarray(lt).shape
  valid = np.ones(n, bool) if mask is None else np.asarray(mask, bool)
  out = np.zeros(n)
  if not valid.any():
    return out, np.zeros(n, bool)
  tt = np_sat(c, y, valid, k) if tt is None else np.broadcast_to(tt, (k,))
  ts = np_sat(u, y, valid, k) if ts is None else np.broadcast_to(ts, (k,))
  keep = valid & (c >= tt[y]) & (u >= ts[y])
  raw = c * u if weighting == "product" else np.ones(n)
  raw = np.where(keep, raw, 0.0)
  if raw.sum() > 0:
    out = raw / raw.sum()
  return out, keep


def random_log_probs(rng, b, c, sharp=2.0):
  z = rng.normal(size=(b, c)) * sharp
  return (z - np.log(np.exp(z).sum(1, keepdims=True))).astype(np.float32)


# ----------------------------------------------------------------------------
# LLKD. One batch shape [B=24, C=4] throughout, so the jitted functions compile
# once per variant.
# ----------------------------------------------------------------------------

B, C = 24, 4
_llkd_prod = jax.jit(lambda a, b, m: rw.llkd_sample_weights(a, b, where=m))
_llkd_unif = jax.jit(lambda a, b, m: rw.llkd_sample_weights(
    a, b, where=m, weighting="uniform"))
_llkd_fixed = jax.jit(lambda a, b, m, tt, ts: rw.llkd_sample_weights(
    a, b, where=m, teacher_thresholds=tt, student_thresholds=ts))


def llkd_batch(seed):
  rng = np.random.default_rng(seed)
  lt, ls = random_log_probs(rng, B, C, 2.5), random_log_probs(rng, B, C, 1.0)
  return lt, ls, rng.random(B) > 0.2


def test_llkd_matches_numpy_oracle():
  lt, ls, mask = llkd_batch(0)
  for fn, weighting in ((_llkd_prod, "product"), (_llkd_unif, "uniform")):
    w, keep = fn(lt, ls, mask)
    w_np, keep_np = np_llkd(lt, ls, mask, weighting=weighting)
    np.testing.assert_array_equal(keep, keep_np)
    assert 0 < keep_np.sum() < mask.sum()   # the thresholds bite
    np.testing.assert_allclose(w, w_np, atol=1e-6)
    np.testing.assert_allclose(float(jnp.sum(w)), 1.0, atol=1e-6)
  # Explicit per-class thresholds.
  tt, ts = np.array([0.5, 0.6, 0.7, 0.8]), np.full(C, 0.3)
  w, keep = _llkd_fixed(lt, ls, mask, tt, ts)
  w_np, keep_np = np_llkd(lt, ls, mask, tt, ts)
  np.testing.assert_array_equal(keep, keep_np)
  np.testing.assert_allclose(w, w_np, atol=1e-6)


def test_llkd_hand_case():
  # Rows 3.. are padding. Teacher threshold = mean confidence 0.8167 (one
  # class): keeps 0 and 2; student threshold = mean need (1 + 1 + 0.0808)/3:
  # keeps 0 and 1. Only row 0 passes both.
  lt = np.full((B, C), np.log(1 / C), np.float32)
  ls = lt.copy()
  lt[:3] = np.log([[0.9, 0.1 - 2e-7, 1e-7, 1e-7], [0.6, 0.4 - 2e-7, 1e-7, 1e-7],
                   [0.95, 0.05 - 2e-7, 1e-7, 1e-7]])
  ls[:3] = -np.inf
  ls[:3, :2] = np.log([[0.5, 0.5], [0.5, 0.5], [0.99, 0.01]])
  mask = np.arange(B) < 3
  w, keep = _llkd_prod(lt, ls, mask)
  np.testing.assert_array_equal(keep[:3], [True, False, False])
  np.testing.assert_allclose(w[:3], [1.0, 0.0, 0.0])
  # Fixed thresholds keep all three; weights proportional to c * u with
  # u = H / log C (C = 4 here).
  w, keep = _llkd_fixed(lt, ls, mask, np.full(C, 0.5), np.zeros(C))
  h = -(0.99 * np.log(0.99) + 0.01 * np.log(0.01))
  raw = np.array([0.9 * np.log(2), 0.6 * np.log(2), 0.95 * h]) / np.log(4)
  np.testing.assert_allclose(w[:3], raw / raw.sum(), rtol=1e-5)
  assert not keep[3:].any()


def test_llkd_masks_padding_and_gradients():
  lt, ls, _ = llkd_batch(1)
  mask = np.arange(B) < 16
  garbage_t, garbage_s = lt.copy(), ls.copy()
  garbage_t[~mask] = np.nan
  garbage_s[~mask] = -np.inf
  w_pad, k_pad = _llkd_prod(garbage_t, garbage_s, mask)
  w_np, _ = np_llkd(lt[:16], ls[:16])
  np.testing.assert_allclose(w_pad[:16], w_np, atol=1e-6)
  np.testing.assert_array_equal(w_pad[16:], 0.0)
  assert not k_pad[16:].any()
  w, keep = _llkd_prod(garbage_t, garbage_s, np.zeros(B, bool))
  np.testing.assert_array_equal(w, 0.0)
  assert not keep.any()

  # The objective's gradient through the student is finite; weights carry none.
  def objective(logits, m):
    ls_ = jax.nn.log_softmax(logits)
    w, _ = rw.llkd_sample_weights(lt, ls_, where=m)
    return jnp.stack([jnp.sum(w * -ls_[:, 0]), jnp.sum(w)])
  jac = jax.jit(jax.jacrev(objective))
  logits = jnp.asarray(np.random.default_rng(9).normal(size=(B, C)),
                       jnp.float32)
  for m in (mask, np.zeros(B, bool)):
    g = np.asarray(jac(logits, m))
    assert np.all(np.isfinite(g))
    assert np.any(g[0] != 0) == bool(m.any())
    np.testing.assert_array_equal(g[1], 0.0)


def test_llkd_rule_matches_numpy_ema():
  rng = np.random.default_rng(2)
  lam = 0.7
  rule = rw.llkd(num_classes=C, momentum=lam)
  update = jax.jit(rule.update)
  state = rule.init()
  g = {"t": None, "s": None}
  m = {"t": np.full(C, np.nan), "s": np.full(C, np.nan)}
  for step in range(4):
    lt, ls = random_log_probs(rng, B, C, 2.0), random_log_probs(rng, B, C)
    mask = np.ones(B, bool) if step != 2 else np.arange(B) < 10
    if step == 1:
      lt[:, 2] = -30.0   # class 2 absent from this batch
      lt = lt - np.log(np.exp(lt).sum(1, keepdims=True))
    w, state = update(jnp.zeros(B), state, teacher_log_probs=lt,
                      student_log_probs=ls, where=mask)
    # numpy EMA of the levels.
    conf, need, y = np_signals(lt, ls)
    for key, s in (("t", conf), ("s", need)):
      bm = s[mask].mean()
      g[key] = bm if g[key] is None else lam * g[key] + (1 - lam) * bm
      for k in range(C):
        sel = mask & (y == k)
        if sel.any():
          cm = s[sel].mean()
          m[key][k] = cm if np.isnan(m[key][k]) else (
              lam * m[key][k] + (1 - lam) * cm)
    tt = g["t"] * m["t"] / np.nanmax(m["t"])
    ts = g["s"] * m["s"] / np.nanmax(m["s"])
    w_np, _ = np_llkd(lt, ls, mask, np.nan_to_num(tt), np.nan_to_num(ts))
    np.testing.assert_allclose(w, w_np, atol=1e-5)
    np.testing.assert_allclose(state.teacher_level, g["t"], rtol=1e-5)
    np.testing.assert_allclose(state.student_class_level,
                               np.nan_to_num(m["s"]), rtol=1e-5, atol=1e-7)
  assert int(state.count) == 4
  # A fully masked first batch leaves the levels untouched (finite, zero).
  w, s1 = update(jnp.zeros(B), rule.init(), teacher_log_probs=lt,
                 student_log_probs=ls, where=np.zeros(B, bool))
  np.testing.assert_array_equal(w, 0.0)
  assert float(s1.teacher_level) == 0.0 and int(s1.class_count.sum()) == 0
  # momentum=0 is the stateless batch rule.
  rule0 = rw.llkd(num_classes=C, momentum=0.0, weighting="uniform")
  w0, _ = jax.jit(rule0.update)(jnp.zeros(B), state, teacher_log_probs=lt,
                                student_log_probs=ls, where=mask)
  np.testing.assert_allclose(w0, _llkd_unif(lt, ls, mask)[0], atol=1e-7)


def test_llkd_shard_map_is_global():
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  lt, ls, mask = llkd_batch(3)
  sh = NamedSharding(mesh, P("data"))
  args = [jax.device_put(x, sh) for x in (lt, ls, mask)]
  f = jax.jit(jax.shard_map(
      lambda a, b, m: rw.llkd_sample_weights(a, b, where=m, axis_name="data"),
      mesh=mesh, in_specs=(P("data"), P("data"), P("data")),
      out_specs=(P("data"), P("data"))))
  w, keep = f(*args)
  w_np, keep_np = np_llkd(lt, ls, mask)
  np.testing.assert_array_equal(keep, keep_np)
  np.testing.assert_allclose(w, w_np, atol=1e-6)


def test_llkd_bad_inputs():
  lt = jnp.log(jnp.full((4, 3), 1 / 3))
  with pytest.raises(ValueError, match="same shape"):
    rw.llkd_sample_weights(lt, lt[:, :2])
  with pytest.raises(ValueError, match="rank"):
    rw.llkd_sample_weights(lt[0], lt[0])
  with pytest.raises(ValueError, match="at least 2 classes"):
    rw.llkd_sample_weights(jnp.zeros((4, 1)), jnp.zeros((4, 1)))
  with pytest.raises(TypeError, match="floating"):
    rw.llkd_sample_weights(jnp.zeros((4, 3), jnp.int32), lt)
  with pytest.raises(ValueError, match="normalised"):
    rw.llkd_sample_weights(jnp.zeros((4, 3)), lt)
  with pytest.raises(ValueError, match="teacher_thresholds"):
    rw.llkd_sample_weights(lt, lt, teacher_thresholds=jnp.ones(2) * 0.5)
  with pytest.raises(ValueError, match="student_thresholds"):
    rw.llkd_sample_weights(lt, lt, student_thresholds=1.5)
  with pytest.raises(ValueError, match="weighting"):
    rw.llkd_sample_weights(lt, lt, weighting="softmax")
  with pytest.raises(ValueError, match="where"):
    rw.llkd_sample_weights(lt, lt, where=jnp.ones(3, bool))
  with pytest.raises(ValueError, match="num_classes"):
    rw.llkd(num_classes=1)
  with pytest.raises(ValueError, match="momentum"):
    rw.llkd(num_classes=3, momentum=1.0)
  rule = rw.llkd(num_classes=3)
  with pytest.raises(ValueError, match="teacher_log_probs"):
    rule.update(jnp.zeros(5), rule.init(), teacher_log_probs=lt,
                student_log_probs=lt)


# ----------------------------------------------------------------------------
# WAD.
# ----------------------------------------------------------------------------


def np_wad(feats, anchors, labels, c, mask=None, amask=None, tau=1.0):
  """The authors' scoring loop (per-class max cosine, sum over heads)."""
  f = np.asarray(feats, np.float64)
  a = np.asarray(anchors, np.float64)
  if f.ndim == 2:
    f, a = f[:, None], a[:, None]
  n, k, _ = f.shape
  amask = np.ones(len(a), bool) if amask is None else amask
  w, y = np.zeros(n), np.zeros(n, int)
  for i in range(n):
    s = np.zeros(c)
    for cls in range(c):
      idx = np.where((labels == cls) & amask)[0]
      for h in range(k):
        if len(idx) == 0:
          s[cls] += -1.0
          continue
        u = f[i, h] / np.linalg.norm(f[i, h])
        sims = [u @ (a[j, h] / np.linalg.norm(a[j, h])) for j in idx]
        s[cls] += max(sims)
    srt = np.sort(s)
    w[i] = srt[-1] * (1 - srt[-2] / srt[-1]) / tau   # the code's form
    y[i] = np.argmax(s)
  if mask is not None:
    w = np.where(mask, w, 0.0)
  return w, y


_wad = jax.jit(lambda f, a, l, t: (
    rw.wad_weights(f, a, l, num_classes=3, normalize=False, temperature=t),
    rw.wad_weights(f, a, l, num_classes=3)))
_wad_masked = jax.jit(lambda f, a, l, m, am: rw.wad_weights(
    f, a, l, num_classes=3, where=m, anchor_where=am))
LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])


@pytest.mark.parametrize("heads", [None, 2])
def test_wad_matches_numpy_oracle(heads):
  rng = np.random.default_rng(4)
  shape = (5,) if heads is None else (heads, 5)
  feats = rng.normal(size=(10,) + shape).astype(np.float32)
  anchors = rng.normal(size=(9,) + shape).astype(np.float32)
  (w, y), (w_n, y_n) = _wad(feats, anchors, LABELS, 0.5)
  w_np, y_np = np_wad(feats, anchors, LABELS, 3, tau=0.5)
  np.testing.assert_array_equal(y, y_np)
  np.testing.assert_array_equal(y_n, y_np)
  np.testing.assert_allclose(w, w_np, rtol=1e-5, atol=1e-6)
  # Normalised: the temperature cancels.
  np.testing.assert_allclose(w_n, w_np / w_np.sum(), rtol=1e-5, atol=1e-7)


def test_wad_hand_case_unknown_class_gets_zero():
  protos = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  feats = jnp.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-1.0, -1.0]])
  w, y = jax.jit(lambda f, a: rw.wad_weights(f, a, normalize=False))(
      feats, protos)
  # Margins: 1 - 0; equidistant -> 0; 1 - 0; equidistant (both -0.707) -> 0.
  np.testing.assert_allclose(w, [1.0, 0.0, 1.0, 0.0], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(y)[[0, 2]], [0, 1])


def test_wad_masks_and_anchor_masks():
  rng = np.random.default_rng(5)
  feats = rng.normal(size=(10, 5)).astype(np.float32)
  anchors = rng.normal(size=(9, 5)).astype(np.float32)
  mask = np.arange(10) < 6
  garbage = feats.copy()
  garbage[~mask] = np.nan
  all_a = np.ones(9, bool)
  w, y = _wad_masked(garbage, anchors, LABELS, mask, all_a)
  w_np, y_np = np_wad(feats[:6], anchors, LABELS, 3)
  np.testing.assert_allclose(w[:6], w_np / w_np.sum(), rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(y[:6], y_np)
  np.testing.assert_array_equal(w[6:], 0.0)
  # A masked anchor is the same as a removed one.
  am = np.array([1, 0, 1, 1, 1, 0, 0, 1, 1], bool)
  w, _ = _wad_masked(feats, anchors, LABELS, np.ones(10, bool), am)
  w_np, _ = np_wad(feats, anchors[am], LABELS[am], 3)
  np.testing.assert_allclose(w, w_np / w_np.sum(), rtol=1e-5, atol=1e-7)
  # A class with no valid anchor scores -1 per head (the oracle's rule).
  am = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1], bool)
  w, _ = _wad_masked(feats, anchors, LABELS, np.ones(10, bool), am)
  w_np, _ = np_wad(feats, anchors, LABELS, 3, amask=am)
  np.testing.assert_allclose(w, w_np / w_np.sum(), rtol=1e-5, atol=1e-7)
  # All masked: zeros. Zero feature rows: finite.
  w, _ = _wad_masked(garbage, anchors, LABELS, np.zeros(10, bool), all_a)
  np.testing.assert_array_equal(w, 0.0)
  w, _ = _wad_masked(np.zeros_like(feats), anchors, LABELS, mask, all_a)
  assert np.all(np.isfinite(w))


def test_wad_bad_inputs():
  f, a = jnp.ones((3, 4)), jnp.eye(4)[:3]
  with pytest.raises(ValueError, match="anchors"):
    rw.wad_weights(f, jnp.ones((3, 5)))
  with pytest.raises(ValueError, match="num_classes"):
    rw.wad_weights(f, a, jnp.array([0, 1, 1]))
  with pytest.raises(ValueError, match="num_classes"):
    rw.wad_weights(f, a, num_classes=2)
  with pytest.raises(ValueError, match="anchor_labels"):
    rw.wad_weights(f, a, jnp.array([0, 1, 5]), num_classes=3)
  with pytest.raises(TypeError, match="anchor_labels"):
    rw.wad_weights(f, a, jnp.array([0.0, 1.0, 1.0]), num_classes=3)
  with pytest.raises(ValueError, match="at least 2"):
    rw.wad_weights(f, a[:1])
  with pytest.raises(ValueError, match="temperature"):
    rw.wad_weights(f, a, temperature=0.0)
  with pytest.raises(TypeError, match="floating"):
    rw.wad_weights(jnp.ones((3, 4), jnp.int32), a)
  with pytest.raises(ValueError, match="rank"):
    rw.wad_weights(jnp.ones(4), a)
