"""Tests for jaxkit.reweighting.adversarial (SRAT).

Oracles: numpy transcriptions of the formulas — per-example weights
c[y_i] / sum_valid c[y_j] with the deferred switch, the supervised
contrastive loss written as explicit loops over anchors / positives /
partners, and the SRAT objective (weighted cross-entropy + lambda * mean
separation) from numpy log-softmax.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import reweighting as rw

_sep = jax.jit(rw.feature_separation_loss)


def _np_weights(cw, labels, valid):
  w = np.where(valid, cw[labels], 0.0)
  return w / w.sum() if w.sum() > 0 else w


def test_srat_rule_weights_deferral_and_masks():
  cw = np.array([0.2, 1.0, 3.0], np.float32)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 10)
  losses = rng.random(10).astype(np.float32)
  valid = rng.random(10) > 0.3
  rule = rw.srat(cw, defer_steps=2)
  update = jax.jit(rule.update)
  state = rule.init()
  for t in range(4):
    w, state = update(losses, state, where=valid, group_ids=labels)
    c = cw if t >= 2 else np.ones(3)
    np.testing.assert_allclose(w, _np_weights(c, labels, valid), rtol=1e-5,
                               atol=1e-7)
  assert int(state.count) == 4
  # An explicit step overrides the counter.
  w, _ = update(losses, rule.init(), group_ids=labels, step=5)
  np.testing.assert_allclose(w, _np_weights(cw, labels, np.ones(10, bool)),
                             rtol=1e-5)
  w, _ = update(losses, state, where=np.zeros(10, bool), group_ids=labels)
  np.testing.assert_array_equal(w, 0.0)
  with pytest.raises(ValueError, match="group_ids"):
    rule.update(losses, state)
  with pytest.raises(ValueError, match="group_ids"):
    rule.update(losses, state, group_ids=np.full(10, 3))
  with pytest.raises(ValueError, match="class_weights"):
    rw.srat(np.array([1.0, -1.0]))
  with pytest.raises(ValueError, match="defer_steps"):
    rw.srat(cw, defer_steps=-1)


def test_srat_rule_sharded_batch_is_global():
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 3, 16)
  valid = rng.random(16) > 0.3
  cw = np.array([0.5, 1.0, 2.0], np.float32)
  rule = rw.srat(cw)
  w, _ = jax.jit(rule.update)(
      jax.device_put(np.ones(16, np.float32), sh), rule.init(),
      where=jax.device_put(valid, sh), group_ids=jax.device_put(labels, sh))
  np.testing.assert_allclose(w, _np_weights(cw, labels, valid), rtol=1e-5,
                             atol=1e-7)


def _np_supcon(f, labels, valid, tau):
  z = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
  out = np.zeros(len(f))
  for i in range(len(f)):
    if not valid[i]:
      continue
    others = [a for a in range(len(f)) if a != i and valid[a]]
    pos = [p for p in others if labels[p] == labels[i]]
    if not pos:
      continue
    den = np.log(sum(np.exp(z[i] @ z[a] / tau) for a in others))
    out[i] = -np.mean([z[i] @ z[p] / tau - den for p in pos])
  return out


def test_feature_separation_matches_numpy_supcon_with_masks():
  rng = np.random.default_rng(1)
  f = rng.normal(size=(9, 4)).astype(np.float32)
  labels = np.array([0, 0, 1, 1, 1, 2, 0, 2, 3])
  valid = np.array([1, 1, 1, 0, 1, 1, 1, 1, 1], bool)
  got = _sep(np.where(valid[:, None], f, np.nan).astype(np.float32), labels,
             temperature=0.5, where=valid)
  np.testing.assert_allclose(got, _np_supcon(f, labels, valid, 0.5),
                             rtol=1e-5, atol=1e-6)
  assert float(got[8]) == 0.0 and float(got[3]) == 0.0  # no positive / masked
  # Separated classes have a lower loss than mixed ones.
  sep = np.repeat(np.eye(3), 3, axis=0).astype(np.float32)
  lab3 = np.repeat(np.arange(3), 3)
  mixed = _sep(sep, np.tile(np.arange(3), 3))
  assert float(_sep(sep, lab3).mean()) < float(mixed.mean())


def test_feature_separation_gradients_edges_and_errors():
  rng = np.random.default_rng(2)
  f = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  labels = jnp.array([0, 0, 1, 1, 0])
  total = lambda x, w: jnp.sum(rw.feature_separation_loss(x, labels, where=w))
  val_grad = jax.jit(jax.value_and_grad(total))
  ones = np.ones(5, bool)
  # Directional derivative against a central finite difference.
  d = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  h = 1e-2
  fd = (val_grad(f + h * d, ones)[0] - val_grad(f - h * d, ones)[0]) / (2 * h)
  np.testing.assert_allclose(jnp.sum(val_grad(f, ones)[1] * d), fd, rtol=2e-2,
                             atol=2e-3)
  fz = f.at[1].set(0.0)
  assert np.isfinite(np.asarray(val_grad(fz, ones)[1])).all()
  v0, g0 = val_grad(f, np.zeros(5, bool))
  assert float(v0) == 0.0 and np.all(np.asarray(g0) == 0)
  with pytest.raises(ValueError, match="temperature"):
    rw.feature_separation_loss(f, labels, temperature=0.0)
  with pytest.raises(ValueError, match="labels"):
    rw.feature_separation_loss(f, labels[:3])
  with pytest.raises(TypeError, match="labels"):
    rw.feature_separation_loss(f, labels.astype(jnp.float32))


def _np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_srat_loss_matches_numpy_objective():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(8, 3)).astype(np.float32)
  feats = rng.normal(size=(8, 4)).astype(np.float32)
  labels = rng.integers(0, 3, 8)
  cw = np.array([0.5, 1.0, 4.0], np.float32)
  valid = rng.random(8) > 0.25
  ce = -_np_log_softmax(logits.astype(np.float64))[np.arange(8), labels]
  w = _np_weights(cw, labels, valid)
  sep = _np_supcon(feats, labels, valid, 0.2)
  want = np.sum(w * ce) + 0.7 * sep[valid].mean()
  vg = jax.jit(jax.value_and_grad(
      lambda z, h, m: rw.srat_loss(z, h, labels, class_weights=cw,
                                   sep_weight=0.7, temperature=0.2, where=m),
      argnums=(0, 1)))
  loss, g = vg(logits, feats, valid)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert all(np.isfinite(np.asarray(x)).all() for x in g)
  loss0, g0 = vg(logits, feats, np.zeros(8, bool))
  assert float(loss0) == 0.0 and all(np.all(np.asarray(x) == 0) for x in g0)
  with pytest.raises(ValueError, match="class_weights"):
    rw.srat_loss(logits, feats, labels, class_weights=cw[:2], sep_weight=1.0)
  with pytest.raises(ValueError, match="sep_weight"):
    rw.srat_loss(logits, feats, labels, class_weights=cw, sep_weight=-1.0)
  with pytest.raises(ValueError, match="labels"):
    rw.srat_loss(logits, feats, np.full(8, 3), class_weights=cw,
                 sep_weight=1.0)
