r"""Filtering an image-text pool with a data filtering network (DFN).

A *data filtering network* is a CLIP-style model whose only job is to score
candidate pairs; the training set is the top fraction of the pool by that
score. The DFN paper's finding is about *which* network to use — a filter
trained on a small, high-quality set induces better datasets than a filter
with higher downstream (ImageNet) accuracy trained on noisy data — not about
the scoring rule, which is the usual CLIP score:

* :func:`clip_filter_scores` — cosine similarity of the filter's image and
  text embeddings of each pair;
* :func:`filter_top_fraction` — keep the highest-scoring fraction of the
  (valid part of the) pool.

References:
  Fang, Madappally Jose, Jain, Schmidt, Toshev, Shankar, `Data Filtering
  Networks <https://arxiv.org/abs/2309.17425>`_, ICLR 2024.

  Gadre et al., `DataComp: In search of the next generation of multimodal
  datasets <https://arxiv.org/abs/2304.14108>`_, NeurIPS 2023 (CLIP-score
  filtering baseline).
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp

from jaxkit._src import checks
# Explicit-mode sharded inputs are gathered before a global sort.
from jaxkit.divergences.kernel import _replicate_sample_axes as _replicate

_NORM_EPS = 1e-12


def _unit_rows(x: jax.Array) -> jax.Array:
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _NORM_EPS**2))


def clip_filter_scores(image_embeddings: jax.Array,
                       text_embeddings: jax.Array, *,
                       where: jax.Array | None = None) -> jax.Array:
  r"""DFN / CLIP filtering score: cosine similarity of each image-text pair.

  .. math::
    s_i = \frac{u_i^\top v_i}{\max(\|u_i\|, \epsilon)\,\max(\|v_i\|,
      \epsilon)},

  with :math:`u_i, v_i` the *filtering* network's image and text embeddings
  of pair :math:`i` (:math:`\epsilon = 10^{-12}`, as
  ``torch.nn.functional.normalize``; a zero embedding scores 0 with finite
  gradients). Computed in float32 for bf16 / f16 embeddings. The DFN paper
  scores the pool with a CLIP model trained on high-quality pairs (its DFN)
  and keeps the top fraction (:func:`filter_top_fraction`). The CLIP logit
  scale does not change the ranking and is not applied.

  Args:
    image_embeddings: ``[N, D]`` floating image embeddings.
    text_embeddings: ``[N, D]`` floating text embeddings (same shape).
    where: optional ``[N]`` mask; masked pairs (even ``nan``) score 0.

  Returns:
    ``[N]`` float32 (or wider) scores in ``[-1, 1]``.

  Raises:
    ValueError: shapes that are not equal ``[N, D]``; a bad ``where``.
    TypeError: non-floating embeddings.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import selection
    >>> img = jnp.array([[1., 0.], [0., 2.], [3., 4.]])
    >>> txt = jnp.array([[2., 0.], [1., 0.], [4., 3.]])
    >>> print(selection.clip_filter_scores(img, txt))
    [1.   0.   0.96]

  References:
    Fang et al., `Data Filtering Networks`, ICLR 2024, arXiv:2309.17425.

    Catalog: seed_002 #67.
  """
  u = checks.check_floating(image_embeddings, "image_embeddings")
  v = checks.check_floating(text_embeddings, "text_embeddings")
  checks.check_rank(u, 2, "image_embeddings")
  checks.check_same_shape(u, v, "image_embeddings", "text_embeddings")
  mask = checks.check_where(where, (u.shape[0],), "where")
  dtype = checks.compute_dtype(u, v)
  u, v = u.astype(dtype), v.astype(dtype)
  if mask is not None:
    u = jnp.where(mask[:, None], u, 0.0)
    v = jnp.where(mask[:, None], v, 0.0)
  return jnp.sum(_unit_rows(u) * _unit_rows(v), axis=-1)


def filter_top_fraction(scores: jax.Array, *, keep_fraction: float,
                        where: jax.Array | None = None) -> jax.Array:
  r"""Mask of the highest-scoring fraction of the valid examples of a pool.

  Keeps the :math:`m = \lceil f\,N_{\mathrm{valid}} \rceil` valid examples
  with the largest scores (ties broken towards the lower index, ``nan``
  scores rank last): the DFN / DataComp "top-x % by CLIP score" filter
  (DFN-2B is roughly the top 15 % of DataComp's 12.8B pool under the DFN
  score). :math:`m` depends on the number of valid examples, so the result
  is a mask, not a fixed-size index set (for a
  static count use :func:`jaxkit.selection.prune_by_score`). Jittable;
  ``keep_fraction`` is static. With no valid example nothing is kept.

  Args:
    scores: ``[N]`` floating scores, e.g. from :func:`clip_filter_scores`.
    keep_fraction: ``f`` in ``(0, 1]`` (static float).
    where: optional ``[N]`` mask of the examples that may be kept.

  Returns:
    ``bool[N]``: True for the kept examples.

  Raises:
    ValueError: ``keep_fraction`` outside ``(0, 1]``, wrong rank.
    TypeError: non-floating scores, non-number ``keep_fraction``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import selection
    >>> s = jnp.array([0.31, 0.12, 0.27, 0.05, 0.22])
    >>> print(selection.filter_top_fraction(s, keep_fraction=0.4))
    [ True False  True False False]
    >>> m = jnp.array([True, True, False, True, True])
    >>> print(selection.filter_top_fraction(s, keep_fraction=0.5, where=m))
    [ True False False False  True]

  References:
    Fang et al., `Data Filtering Networks`, ICLR 2024, arXiv:2309.17425;
    Gadre et al., `DataComp`, NeurIPS 2023, arXiv:2304.14108.

    Catalog: seed_002 #67.
  """
  s = checks.check_floating(scores, "scores")
  checks.check_rank(s, 1, "scores")
  if isinstance(keep_fraction, bool) or not isinstance(keep_fraction,
                                                       numbers.Real):
    raise TypeError(f"`keep_fraction` must be a static float, got "
                    f"{keep_fraction!r}.")
  if not 0.0 < float(keep_fraction) <= 1.0:
    raise ValueError(f"`keep_fraction` must be in (0, 1], got "
                     f"{keep_fraction}.")
  n = s.shape[0]
  mask = checks.check_where(where, (n,), "where")
  valid = jnp.ones((n,), bool) if mask is None else mask
  return _top_fraction(s, valid, float(keep_fraction))


@functools.partial(jax.jit, static_argnames="keep_fraction")
def _top_fraction(s, valid, keep_fraction: float):
  n = s.shape[0]
  s = s.astype(checks.compute_dtype(s))
  neg = jnp.where(jnp.isnan(s), jnp.inf, -s)
  # Valid examples first, then by descending score; lexsort is stable, so
  # ties keep index order. Rank 0 is the best.
  order = jnp.lexsort((_replicate(neg, 0), _replicate(~valid, 0)))
  rank = jnp.zeros((n,), jnp.int32).at[order].set(
      jnp.arange(n, dtype=jnp.int32))
  n_valid = jnp.sum(valid).astype(jnp.float32)
  # ceil(f * n) with the same 1e-9 slack as prune_by_score.
  m = jnp.ceil(float(keep_fraction) * n_valid - 1e-9).astype(jnp.int32)
  return valid & (rank < m)
