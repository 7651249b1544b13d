r"""DSIR: data selection by importance resampling on hashed n-gram features.

DSIR selects from a large raw pool the examples that look like a small target
set. Both are featurised as bags of hashed n-grams; a bag-of-n-grams model is
fit to each (:func:`ngram_log_probs`); each raw example gets the log
importance weight

.. math::
  \log w_i = \sum_b c_{ib}\,\big(\log \hat p_{\mathrm{target}}(b)
    - \log \hat p_{\mathrm{raw}}(b)\big),

and ``k`` examples are drawn without replacement with probability
proportional to :math:`w_i` by the Gumbel top-k trick
(:func:`dsir_resample`). :func:`dsir_kl_reduction` measures how much closer
the selection's feature distribution is to the target than the raw pool's.

Features (:func:`hashed_ngram_features`) reproduce the ``data-selection``
package (1.0.3, ``HashedNgramDSIR``) exactly: the text is lower-cased,
tokenised with NLTK's ``WordPunctTokenizer`` rule (regex ``\w+|[^\w\s]+``),
unigrams and the space-joined 2..n-grams are hashed with SHA-256 modulo
``num_buckets``. The featuriser is host Python (strings); hashes are memoised
per call, which makes it much faster than the package on repetitive text. The
result is a sparse :class:`HashedNgrams` (one bucket id per n-gram occurrence)
so that 10⁶ documents never materialise a dense ``[N, num_buckets]`` matrix;
every function also accepts a dense ``[N, num_buckets]`` count array (fully
jittable and shardable over ``N``).

References:
  Xie, Santurkar, Ma, Liang, `Data Selection for Language Models via Importance
  Resampling <https://arxiv.org/abs/2302.03169>`_, NeurIPS 2023.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import numbers
import re
from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
# Explicit-mode sharded inputs are gathered before a global top-k.
from jaxkit.selection.influence_selection import _check_num_select
from jaxkit.selection.influence_selection import gumbel_topk_select
from jaxkit.divergences import kl as _kl

_TOKEN_RE = re.compile(r"\w+|[^\w\s]+")


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["bucket_ids", "example_ids"],
                   meta_fields=["num_examples", "num_buckets"])
@dataclasses.dataclass(frozen=True)
class HashedNgrams:
  """Sparse hashed n-gram counts of ``num_examples`` documents.

  Attributes:
    bucket_ids: ``int32[T]``, the bucket of every n-gram occurrence.
    example_ids: ``int32[T]``, the document of every occurrence (sorted).
    num_examples: ``N`` (static).
    num_buckets: ``B`` (static).

  Example:
    >>> from jaxkit.selection import hashed_ngram_features
    >>> f = hashed_ngram_features(["a b a", "c"], num_buckets=8)
    >>> print(f.to_dense().sum(axis=1).tolist(), f.num_buckets)
    [5, 1] 8
  """
  bucket_ids: jax.Array
  example_ids: jax.Array
  num_examples: int
  num_buckets: int

  def to_dense(self) -> jax.Array:
    """The dense ``int32[N, B]`` count matrix (small data only)."""
    out = jnp.zeros((self.num_examples, self.num_buckets), jnp.int32)
    return out.at[self.example_ids, self.bucket_ids].add(1)


Features = Union[HashedNgrams, jax.Array]


def hashed_ngram_features(texts: Sequence[str], *, num_buckets: int = 10_000,
                          ngrams: int = 2) -> HashedNgrams:
  r"""Hashed n-gram features of documents, as in the ``data-selection`` package.

  Args:
    texts: a sequence of ``N`` strings.
    num_buckets: number of hash buckets ``B`` (int ≥ 1).
    ngrams: largest n-gram order ``n`` (1 = unigrams only; int ≥ 1).

  Returns:
    A :class:`HashedNgrams` with one entry per n-gram occurrence.

  Raises:
    ValueError: ``num_buckets`` or ``ngrams`` < 1.
    TypeError: an element of ``texts`` that is not a string.

  Examples:
    >>> f = hashed_ngram_features(["a b a", "c"], num_buckets=8)
    >>> print(f.num_examples, f.example_ids.tolist())
    2 [0, 0, 0, 0, 0, 1]

  References:
    Xie, Santurkar, Ma, Liang, `Data Selection for Language Models via
    Importance Resampling`, NeurIPS 2023, arXiv:2302.03169.

    Catalog: seed_002 #14.
  """
  for name, v in (("num_buckets", num_buckets), ("ngrams", ngrams)):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
      raise ValueError(f"`{name}` must be an int >= 1, got {v!r}.")
  cache: dict[str, int] = {}

  def bucket(s: str) -> int:
    b = cache.get(s)
    if b is None:
      b = int(hashlib.sha256(s.encode("utf-8")).hexdigest(), 16) % num_buckets
      cache[s] = b
    return b

  buckets: list[int] = []
  lengths = np.zeros(len(texts), np.int64)
  for i, text in enumerate(texts):
    if not isinstance(text, str):
      raise TypeError(f"`texts`[{i}] must be a str, got {type(text).__name__}.")
    words = _TOKEN_RE.findall(text.lower())
    start = len(buckets)
    buckets.extend(bucket(w) for w in words)
    for order in range(2, ngrams + 1):
      buckets.extend(
          bucket(" ".join(words[j:j + order]))
          for j in range(len(words) - order + 1))
    lengths[i] = len(buckets) - start
  return HashedNgrams(
      bucket_ids=jnp.asarray(np.asarray(buckets, np.int32)),
      example_ids=jnp.asarray(
          np.repeat(np.arange(len(texts), dtype=np.int32), lengths)),
      num_examples=len(texts), num_buckets=int(num_buckets))


def _num_examples(features: Features) -> int:
  if isinstance(features, HashedNgrams):
    return features.num_examples
  return features.shape[0]


def _check_features(features, name: str):
  if isinstance(features, HashedNgrams):
    return features
  features = jnp.asarray(features)
  checks.check_rank(features, 2, name)
  if not (jnp.issubdtype(features.dtype, jnp.integer)
          or jnp.issubdtype(features.dtype, jnp.floating)):
    raise TypeError(f"`{name}` must hold numeric counts, got dtype "
                    f"{features.dtype}.")
  if checks.is_concrete(features) and features.size and float(
      np.min(np.asarray(features))) < 0:
    raise ValueError(f"`{name}` holds negative counts.")
  return features


def _example_mask(where, n: int):
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.shape != (n,):
    raise ValueError(f"`where` must have shape ({n},), one flag per example, "
                     f"got {where.shape}.")
  return where.astype(bool)


def _bucket_totals(features: Features, mask) -> jax.Array:
  """Total count per bucket over the (unmasked) examples, float32 ``[B]``."""
  if isinstance(features, HashedNgrams):
    w = (jnp.ones(features.bucket_ids.shape, jnp.float32) if mask is None
         else mask[features.example_ids].astype(jnp.float32))
    return jnp.zeros((features.num_buckets,), jnp.float32).at[
        features.bucket_ids].add(w)
  c = features.astype(jnp.float32)
  if mask is not None:
    c = jnp.where(mask[:, None], c, 0.0)
  return jnp.sum(c, axis=0)


def ngram_log_probs(features: Features, *, eps: float = 1e-8,
                    where: jax.Array | None = None) -> jax.Array:
  r"""Fits the bag-of-n-grams model: :math:`\log(\hat p_b + \epsilon)`.

  :math:`\hat p_b` is bucket ``b``'s share of all n-gram occurrences of the
  (unmasked) examples; ``eps`` smooths empty buckets as in ``data-selection``
  (``np.log(p + 1e-8)``). With no counts at all (empty or fully masked),
  :math:`\hat p = 0` and the result is :math:`\log\epsilon` everywhere.

  Args:
    features: :class:`HashedNgrams` or dense counts ``[N, B]``.
    eps: smoothing constant (> 0).
    where: optional ``[N]`` bool mask of the examples to fit on.

  Returns:
    ``[B]`` float32 log-probabilities (unnormalised by ``eps``).

  Examples:
    >>> c = jnp.array([[1, 1, 0], [2, 0, 0]])
    >>> print(jnp.round(jnp.exp(ngram_log_probs(c)), 4))
    [0.75 0.25 0.  ]

  References:
    Xie, Santurkar, Ma, Liang, `Data Selection for Language Models via
    Importance Resampling`, NeurIPS 2023, arXiv:2302.03169.

    Catalog: seed_002 #14.
  """
  features = _check_features(features, "features")
  checks.check_scalar(eps, "eps", positive=True)
  mask = _example_mask(where, _num_examples(features))
  totals = _bucket_totals(features, mask)
  p = totals / jnp.maximum(jnp.sum(totals), 1.0)
  return jnp.log(p + eps)


def dsir_importance_weights(raw_features: Features,
                            target_features: Features, *, eps: float = 1e-8,
                            where: jax.Array | None = None) -> jax.Array:
  r"""DSIR log importance weights of raw examples towards a target set.

  .. math::
    \log w_i = \sum_b c_{ib}\,\big(\log(\hat p_{t}(b) + \epsilon)
      - \log(\hat p_{r}(b) + \epsilon)\big),

  :math:`\hat p_r` fit on the (unmasked) raw pool and :math:`\hat p_t` on the
  target set (:func:`ngram_log_probs`), exactly ``HashedNgramDSIR``'s
  ``importance_estimator`` when fit on all tokens. The raw fit is a global
  reduction over the pool, so sharding the dense ``[N, B]`` counts over ``N``
  gives the same weights.

  Args:
    raw_features: :class:`HashedNgrams` or dense counts ``[N, B]`` of the pool.
    target_features: :class:`HashedNgrams` or dense counts ``[M, B]`` of the
      target examples (same ``B``).
    eps: smoothing constant (> 0).
    where: optional ``[N]`` bool mask of pool examples; masked examples are
      left out of the raw fit and get log weight ``-inf`` (never selected).

  Returns:
    ``[N]`` float32 log importance weights (finite for unmasked examples; an
    empty document gets 0).

  Raises:
    ValueError: mismatched bucket counts, wrong ranks, negative counts.

  Examples:
    >>> raw = jnp.array([[3, 0], [0, 3], [1, 1]])
    >>> tgt = jnp.array([[4, 0]])
    >>> w = dsir_importance_weights(raw, tgt)
    >>> print(jnp.argsort(-w).tolist())
    [0, 2, 1]

  References:
    Xie et al., `Data Selection for Language Models via Importance
    Resampling`, NeurIPS 2023, arXiv:2302.03169.

    Catalog: seed_002 #14.
  """
  raw_features = _check_features(raw_features, "raw_features")
  target_features = _check_features(target_features, "target_features")
  b_raw = (raw_features.num_buckets if isinstance(raw_features, HashedNgrams)
           else raw_features.shape[1])
  b_tgt = (target_features.num_buckets
           if isinstance(target_features, HashedNgrams)
           else target_features.shape[1])
  if b_raw != b_tgt:
    raise ValueError(f"`raw_features` and `target_features` must use the same "
                     f"number of buckets, got {b_raw} and {b_tgt}.")
  n = _num_examples(raw_features)
  mask = _example_mask(where, n)
  log_diff = (ngram_log_probs(target_features, eps=eps)
              - ngram_log_probs(raw_features, eps=eps, where=mask))
  if isinstance(raw_features, HashedNgrams):
    logw = jax.ops.segment_sum(log_diff[raw_features.bucket_ids],
                               raw_features.example_ids, num_segments=n,
                               indices_are_sorted=True)
  else:
    logw = raw_features.astype(jnp.float32) @ log_diff
  if mask is not None:
    logw = jnp.where(mask, logw, -jnp.inf)
  return logw


def dsir_resample(key: jax.Array, log_weights: jax.Array, num_samples: int, *,
                  where: jax.Array | None = None,
                  top_k: bool = False) -> jax.Array:
  r"""Draws examples without replacement, proportionally to the weights.

  Gumbel top-k: the indices of the ``num_samples`` largest
  :math:`\log w_i + G_i`, :math:`G_i \sim \mathrm{Gumbel}(0, 1)` i.i.d., which
  is sequential sampling without replacement with probabilities
  :math:`\propto w_i` (Kool et al. 2019): :func:`gumbel_topk_select` at
  ``temperature=1``. ``top_k=True`` drops the noise (deterministic top-k, the
  package's ``top_k`` option). Jittable (``num_samples`` and ``top_k``
  static); a global reduction, so a sharded ``log_weights`` gives the same
  indices.

  Args:
    key: a PRNG key.
    log_weights: ``[N]`` floating log weights (``-inf`` = never selected).
    num_samples: ``k`` (static int, 1 ≤ k ≤ N).
    where: optional ``[N]`` bool mask; masked examples are never selected.
    top_k: deterministic top-k instead of sampling.

  Returns:
    ``int32[k]`` indices, in decreasing order of perturbed weight. If fewer
    than ``k`` examples have finite weight, the rest of the indices point at
    excluded examples (an eager call raises instead).

  Raises:
    ValueError: ``num_samples`` outside [1, N], or (eagerly) fewer selectable
      examples than ``num_samples``.

  Examples:
    >>> logw = jnp.log(jnp.array([0.0, 1.0, 1.0, 0.0]))
    >>> print(sorted(dsir_resample(jax.random.key(0), logw, 2).tolist()))
    [1, 2]

  References:
    Xie, Santurkar, Ma, Liang, `Data Selection for Language Models via
    Importance Resampling`, NeurIPS 2023, arXiv:2302.03169.

    Catalog: seed_002 #14.
  """
  log_weights = checks.check_floating(log_weights, "log_weights")
  checks.check_rank(log_weights, 1, "log_weights")
  n = log_weights.shape[0]
  num_samples = _check_num_select(num_samples, n, "num_samples")
  lw = log_weights.astype(jnp.float32)
  lw = jnp.where(jnp.isnan(lw), -jnp.inf, lw)
  if where is not None:
    lw = jnp.where(_example_mask(where, n), lw, -jnp.inf)
  if checks.is_concrete(lw):
    valid = int(np.sum(np.isfinite(np.asarray(lw)) | (np.asarray(lw) > 0)))
    if valid < num_samples:
      raise ValueError(f"`num_samples`={num_samples} exceeds the {valid} "
                       "examples with a non-zero weight.")
  # Gumbel top-k at temperature 1 (exactly lw + G), or plain top-k.
  return gumbel_topk_select(key, lw, num_samples,
                            temperature=0.0 if top_k else 1.0)


def dsir_kl_reduction(log_p_target: jax.Array, log_p_raw: jax.Array,
                      log_p_selected: jax.Array) -> jax.Array:
  r"""KL reduction of a selection: how much closer to the target it is.

  .. math::
    \mathrm{KLR} = \mathrm{KL}(p_t \,\|\, p_r) - \mathrm{KL}(p_t \,\|\, p_s),

  on hashed n-gram distributions (each input is renormalised, so the
  ``eps``-smoothed output of :func:`ngram_log_probs` can be passed directly).
  Positive = the selection moved towards the target. The DSIR paper reports
  that KL reduction correlates with downstream accuracy (r = 0.89).

  Args:
    log_p_target: ``[B]`` log-probabilities of the target features.
    log_p_raw: ``[B]`` of the raw pool.
    log_p_selected: ``[B]`` of the selected subset.

  Returns:
    A scalar.

  Examples:
    >>> t = jnp.log(jnp.array([0.9, 0.1]))
    >>> r = jnp.log(jnp.array([0.5, 0.5]))
    >>> print(f"{float(dsir_kl_reduction(t, r, t)):.4f}")
    0.3681

  References:
    Xie, Santurkar, Ma, Liang, `Data Selection for Language Models via
    Importance Resampling`, NeurIPS 2023, arXiv:2302.03169.

    Catalog: seed_002 #14.
  """
  arrs = []
  for name, a in (("log_p_target", log_p_target), ("log_p_raw", log_p_raw),
                  ("log_p_selected", log_p_selected)):
    a = checks.check_floating(a, name)
    checks.check_rank(a, 1, name)
    arrs.append(jax.nn.log_softmax(a.astype(jnp.float32)))
  t, r, s = arrs
  checks.check_same_shape(t, r, "log_p_target", "log_p_raw")
  checks.check_same_shape(t, s, "log_p_target", "log_p_selected")
  return _kl(t, r) - _kl(t, s)
