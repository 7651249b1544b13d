"""Tests for jaxkit.selection.filtering (DFN).

Oracles: numpy cosine similarities; for the top-fraction filter a numpy
stable argsort over the valid scores with m = ceil(f * n_valid); a toy pool of
matched / mismatched pairs for the filter's intent.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import selection

_scores = jax.jit(selection.clip_filter_scores)
_top = jax.jit(selection.filter_top_fraction, static_argnames="keep_fraction")

def test_scores_match_numpy_cosine_bf16_zero_rows_and_masks():
  rng = np.random.default_rng(0)
  u = rng.normal(size=(7, 5)).astype(np.float32)
  v = rng.normal(size=(7, 5)).astype(np.float32)
  want = np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v,
                                                                       axis=1)
  np.testing.assert_allclose(_scores(u, v), want,
                             rtol=1e-5, atol=1e-6)
  out = _scores(jnp.asarray(u, jnp.bfloat16), jnp.asarray(v, jnp.bfloat16))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, want, atol=2e-2)
  u0 = u.copy()
  u0[2] = 0.0
  m = np.arange(7) != 4
  un = np.where(m[:, None], u0, np.nan).astype(np.float32)
  got = _scores(un, v, where=m)
  assert float(got[2]) == 0.0 and float(got[4]) == 0.0
  np.testing.assert_allclose(np.asarray(got)[[0, 1, 3, 5, 6]],
                             want[[0, 1, 3, 5, 6]], rtol=1e-5, atol=1e-6)
  g = jax.jit(jax.grad(lambda a: jnp.sum(_scores(a, v, where=m))))(
      jnp.asarray(un))
  assert np.isfinite(np.asarray(g)).all()
  with pytest.raises(ValueError, match="same shape"):
    selection.clip_filter_scores(u, v[:, :3])
  with pytest.raises(TypeError, match="image_embeddings"):
    selection.clip_filter_scores(u.astype(np.int32), v)


def _np_top_fraction(s, f, valid):
  idx = np.flatnonzero(valid)
  m = math.ceil(f * len(idx) - 1e-9)
  key = np.where(np.isnan(s[idx]), -np.inf, s[idx])
  order = idx[np.argsort(-key, kind="stable")]
  keep = np.zeros(len(s), bool)
  keep[order[:m]] = True
  return keep


def test_top_fraction_matches_numpy_with_ties_nan_and_masks():
  rng = np.random.default_rng(1)
  f = _top
  for trial in range(4):
    s = np.round(rng.normal(size=23), 1).astype(np.float32)  # many ties
    s[3] = np.nan
    valid = rng.random(23) > 0.25
    for frac in (0.15, 0.5, 1.0):
      got = f(s, keep_fraction=frac, where=valid)
      np.testing.assert_array_equal(got, _np_top_fraction(s, frac, valid))
  s = np.arange(5, dtype=np.float32)
  np.testing.assert_array_equal(_top(s, keep_fraction=0.2), [0, 0, 0, 0, 1])
  np.testing.assert_array_equal(
      _top(s, keep_fraction=0.5, where=np.zeros(5, bool)), np.zeros(5))


def test_top_fraction_sharded_pool_counts_globally():
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(5)
  s = rng.normal(size=24).astype(np.float32)
  valid = rng.random(24) > 0.3
  got = _top(jax.device_put(s, sh), keep_fraction=0.25,
             where=jax.device_put(valid, sh))
  np.testing.assert_array_equal(got, _np_top_fraction(s, 0.25, valid))


def test_top_fraction_filters_mismatched_pairs():
  # Half the pool has matching image/text embeddings, half is mismatched.
  rng = np.random.default_rng(2)
  img = rng.normal(size=(40, 16)).astype(np.float32)
  txt = img + 0.3 * rng.normal(size=(40, 16)).astype(np.float32)
  txt[20:] = rng.normal(size=(20, 16))
  keep = _top(_scores(img, txt), keep_fraction=0.5)
  assert int(keep[:20].sum()) == 20 and int(keep[20:].sum()) == 0


def test_top_fraction_bad_inputs():
  s = jnp.zeros(4)
  with pytest.raises(ValueError, match="keep_fraction"):
    selection.filter_top_fraction(s, keep_fraction=0.0)
  with pytest.raises(ValueError, match="keep_fraction"):
    selection.filter_top_fraction(s, keep_fraction=1.5)
  with pytest.raises(TypeError, match="keep_fraction"):
    selection.filter_top_fraction(s, keep_fraction=jnp.array(0.5))
  with pytest.raises(ValueError, match="scores"):
    selection.filter_top_fraction(jnp.zeros((2, 2)), keep_fraction=0.5)
  with pytest.raises(ValueError, match="where"):
    selection.filter_top_fraction(s, keep_fraction=0.5, where=np.ones(3, bool))
