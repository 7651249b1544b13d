"""Tests for jaxkit.selection.benchmark_targeted (BETR).

Oracles: a numpy loop over benchmark examples (argsort per example, rank
value log2(N / r), max / mean over examples) for the scores; numpy float64
Newton (IRLS with the exact Hessian) for the L2-regularised logistic
regression and the gradient-is-zero optimality condition; and an end-to-end
synthetic corpus (two "domains" of word lists, the benchmark a held-out slice
of one domain) in which the selected top fraction must be the target domain.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.selection import benchmark_targeted as B
from jaxkit.selection import hashed_ngram_features
from jaxkit.selection import prune_by_score


def _oracle_scores(docs, bench, aggregation, rank_based):
  d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
  b = bench / np.linalg.norm(bench, axis=1, keepdims=True)
  sim = d @ b.T
  n, m = sim.shape
  vals = np.zeros((n, m))
  for j in range(m):
    if rank_based:
      order = np.argsort(-sim[:, j], kind="stable")
      rank = np.empty(n)
      rank[order] = np.arange(1, n + 1)
      vals[:, j] = np.log2(n / rank)
    else:
      vals[:, j] = sim[:, j]
  return vals.max(1) if aggregation == "max" else vals.mean(1)


@pytest.mark.parametrize("aggregation", ["max", "mean"])
@pytest.mark.parametrize("rank_based", [True, False])
def test_scores_match_numpy_and_masks(aggregation, rank_based):
  rng = np.random.default_rng(0)
  docs = rng.normal(size=(25, 5)).astype(np.float32)
  bench = rng.normal(size=(4, 5)).astype(np.float32)
  want = _oracle_scores(docs.astype(np.float64), bench.astype(np.float64),
                        aggregation, rank_based)
  fn = jax.jit(lambda d, b, dw=None, bw=None: B.benchmark_similarity_scores(
      d, b, aggregation=aggregation, rank_based=rank_based, doc_where=dw,
      benchmark_where=bw))
  np.testing.assert_allclose(fn(docs, bench), want, rtol=1e-5, atol=1e-5)
  # NaN padding (masked) on both sides changes nothing; masked docs -> -inf.
  dp = np.concatenate([docs, np.full((3, 5), np.nan, np.float32)])
  bp = np.concatenate([bench, np.full((2, 5), np.nan, np.float32)])
  dw, bw = np.arange(28) < 25, np.arange(6) < 4
  got = np.asarray(fn(dp, bp, dw, bw))
  np.testing.assert_allclose(got[:25], want, rtol=1e-5, atol=1e-5)
  assert np.all(got[25:] == -np.inf)
  # No valid benchmark example: 0 for valid documents, never NaN.
  got0 = np.asarray(fn(docs, bench, None, np.zeros(4, bool)))
  assert np.all(got0 == 0)
  if not rank_based:  # cosine aggregation is differentiable, padding too
    g = jax.grad(lambda d: jnp.sum(jnp.where(dw, fn(d, bp, dw, bw), 0.0)))(
        np.nan_to_num(dp))
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[25:] == 0)


def _np_logreg(x, y, l2, iters=50):
  n, f = x.shape
  xa = np.concatenate([x, np.ones((n, 1))], axis=1)
  reg = np.r_[np.ones(f), 0.0]
  th = np.zeros(f + 1)
  for _ in range(iters):
    p = 1 / (1 + np.exp(-(xa @ th)))
    grad = xa.T @ (p - y) / n + l2 * reg * th
    hess = (xa.T * (p * (1 - p))) @ xa / n + l2 * np.diag(reg)
    th = th - np.linalg.solve(hess, grad)
  return th


# One compiled fit for every test ([40, 64] features).
_fit = jax.jit(lambda x, s, l2, w: B.fit_benchmark_scorer(
    x, s, positive_fraction=0.3, l2=l2, where=w))


def test_scorer_matches_newton_oracle_and_masks():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(40, 64)) / 4
  s = x[:, :4] @ np.array([4.0, -2.0, 1.0, 1.0]) + 0.5 * rng.normal(size=40)
  keep = np.arange(40) >= 4               # rows 0..3: masked garbage
  xg, sg = x.copy(), s.copy()
  xg[~keep], sg[~keep] = 1e3, 1e3
  for mask in (np.ones(40, bool), keep):
    xs, ss = x[mask], s[mask]
    y = np.zeros(len(ss))
    y[np.argsort(-ss)[:int(np.ceil(0.3 * len(ss)))]] = 1.0
    want = _np_logreg(xs, y, 0.05)
    xin, sin = (x, s) if mask.all() else (xg, sg)
    model = _fit(xin.astype(np.float32), sin.astype(np.float32), 0.05, mask)
    np.testing.assert_allclose(model.weights, want[:-1], atol=5e-4)
    np.testing.assert_allclose(model.bias, want[-1], atol=5e-4)
    np.testing.assert_allclose(
        B.benchmark_scorer_logits(model, xs.astype(np.float32)),
        xs @ want[:-1] + want[-1], atol=2e-3)
  # All rows masked: defined and finite.
  m0 = _fit(x.astype(np.float32), s.astype(np.float32), 0.05,
            np.zeros(40, bool))
  assert np.all(np.isfinite(m0.weights)) and np.isfinite(m0.bias)


def test_betr_pipeline_selects_target_domain():
  rng = np.random.default_rng(0)
  words_a = ["atom", "energy", "mass", "force", "quantum", "field", "wave"]
  words_b = ["recipe", "butter", "oven", "sugar", "flour", "bake", "salt"]
  def doc(words):
    return " ".join(rng.choice(words, size=rng.integers(5, 12)))
  is_a = rng.random(120) < 0.3
  corpus = [doc(words_a if a else words_b) for a in is_a]
  bench = [doc(words_a) for _ in range(6)]      # held-out slice of domain A
  feats = hashed_ngram_features(corpus + bench, num_buckets=64, ngrams=1)
  dense = np.asarray(feats.to_dense(), np.float32)
  dense /= np.linalg.norm(dense, axis=1, keepdims=True)
  emb, emb_bench = dense[:120], dense[120:]
  # 1) score a sample of 40 documents; 2) fit the scorer on it; 3) score all.
  scores = jax.jit(B.benchmark_similarity_scores)(emb[:40], emb_bench)
  model = _fit(emb[:40], scores, 1e-2, np.ones(40, bool))
  keep = np.asarray(jax.jit(lambda m, x: prune_by_score(
      B.benchmark_scorer_logits(m, x), keep_fraction=0.25))(model, emb))
  assert is_a[keep].mean() > 0.95 and is_a.mean() < 0.4


def test_bad_inputs():
  d, b = jnp.ones((4, 3)), jnp.ones((2, 3))
  with pytest.raises(ValueError, match="aggregation"):
    B.benchmark_similarity_scores(d, b, aggregation="sum")
  with pytest.raises(ValueError, match="embedding dimension"):
    B.benchmark_similarity_scores(d, jnp.ones((2, 4)))
  with pytest.raises(TypeError, match="doc_where"):
    B.benchmark_similarity_scores(d, b, doc_where=jnp.ones(4))
  with pytest.raises(ValueError, match="positive_fraction"):
    B.fit_benchmark_scorer(d, jnp.ones(4), positive_fraction=1.0)
  with pytest.raises(ValueError, match="scores"):
    B.fit_benchmark_scorer(d, jnp.ones(3), positive_fraction=0.5)
  with pytest.raises(TypeError, match="features"):
    B.fit_benchmark_scorer(jnp.ones((4, 3), bool), jnp.ones(4),
                           positive_fraction=0.5)
  with pytest.raises(ValueError, match="weights"):
    B.benchmark_scorer_logits(B.BenchmarkScorer(jnp.ones(2), jnp.zeros(())), d)


def test_sharded_documents_match_single_device():
  # Issue 5: with the documents sharded over the 8-device mesh, the ranks,
  # the valid-document count N and the classifier's mean loss stay global.
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  rows = jax.sharding.NamedSharding(mesh, jax.P("data"))
  rng = np.random.default_rng(2)
  docs = rng.normal(size=(64, 5)).astype(np.float32)
  bench = rng.normal(size=(4, 5)).astype(np.float32)
  dw = np.arange(64) >= 5          # the masked documents all sit on shard 0
  score = jax.jit(lambda d, dw: B.benchmark_similarity_scores(
      d, bench, doc_where=dw))
  x = (rng.normal(size=(40, 64)) / 4).astype(np.float32)
  s = (x[:, :4] @ np.array([4.0, -2.0, 1.0, 1.0])).astype(np.float32)
  keep = np.arange(40) >= 4
  want, model_want = score(docs, dw), _fit(x, s, 0.05, keep)
  with jax.set_mesh(mesh):
    put = lambda a: jax.device_put(a, rows)
    got = score(put(docs), put(dw))
    model = _fit(put(x), put(s), 0.05, put(keep))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(got)[dw], _oracle_scores(
      docs[dw].astype(np.float64), bench.astype(np.float64), "max", True),
                             rtol=1e-5, atol=1e-5)    # log2(59 / rank)
  assert np.all(np.asarray(got)[~dw] == -np.inf)
  np.testing.assert_allclose(model.weights, model_want.weights, atol=1e-5)
  np.testing.assert_allclose(model.bias, model_want.bias, atol=1e-5)
