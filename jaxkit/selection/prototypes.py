r"""Self-supervised prototype pruning scores (Beyond neural scaling laws).

Sorscher et al. (2022) rank a data set for pruning without labels: cluster
the embeddings of a self-supervised model with k-means and call an example
*hard* when it lies far from its nearest cluster centroid (prototype) and
*easy* when it lies close to one.

* :func:`nearest_prototype_distance`: the distance of every embedding to its
  nearest prototype (cosine or Euclidean), for any set of prototypes;
* :func:`ssl_prototype_scores`: k-means (:func:`jaxkit.selection.kmeans`)
  on the embeddings, then the distance to the nearest centroid;
* :func:`ssl_prototype_prune`: the indices to keep — the hardest examples
  (abundant data) or the easiest (scarce data) — via
  :func:`jaxkit.selection.prune_by_score`.

References:
  Sorscher, Geirhos, Shekhar, Ganguli, Morcos, `Beyond neural scaling laws:
  beating power law scaling via data pruning
  <https://arxiv.org/abs/2206.14486>`_, NeurIPS 2022. Per-example ImageNet
  scores: ``github.com/rgeirhos/dataset-pruning-metrics``.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit.selection.lifelong import kmeans
from jaxkit.selection.scores import prune_by_score

_METRICS = ("cosine", "euclidean")
_EPS = 1e-12


def _check_metric(metric) -> str:
  if metric not in _METRICS:
    raise ValueError(f"`metric` must be one of {_METRICS}, got {metric!r}.")
  return metric


def _embeddings(x) -> jax.Array:
  x = checks.check_floating(x, "embeddings")
  checks.check_rank(x, 2, "embeddings")
  return x


def _row_mask(where, n: int):
  if where is None:
    return jnp.ones((n,), bool)
  w = jnp.asarray(where)
  if w.shape != (n,):
    raise ValueError(f"`where` must be a mask of shape [{n}] (one entry per "
                     f"embedding), got {w.shape}.")
  return checks.check_where(w, (n,), "where")


def _unit(x):
  """Rows scaled to unit norm; a zero row stays 0 (finite gradient)."""
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _EPS))


def nearest_prototype_distance(embeddings: jax.Array, prototypes: jax.Array,
                               *, metric: str = "cosine",
                               where: jax.Array | None = None
                               ) -> tuple[jax.Array, jax.Array]:
  r"""Distance of every embedding to its nearest prototype, and which one.

  .. math::
    d_i = \min_k \Big(1 - \frac{\langle x_i, c_k\rangle}
      {\|x_i\|\,\|c_k\|}\Big)\ \ (\text{cosine}),\qquad
    d_i = \min_k \|x_i - c_k\|_2\ \ (\text{euclidean}).

  The cosine distance lies in :math:`[0, 2]`; a zero embedding or prototype
  counts as orthogonal to everything (distance 1). Computed in float32 for
  bf16 inputs; differentiable in ``embeddings`` with finite gradients at
  :math:`x_i = c_k` and :math:`x_i = 0`.

  Args:
    embeddings: ``[N, D]`` floating embeddings.
    prototypes: ``[K, D]`` floating prototypes (e.g. k-means centroids).
    metric: ``'cosine'`` (the paper's) or ``'euclidean'``.
    where: optional ``bool[N]`` mask; masked rows get distance 0 and label 0.

  Returns:
    ``(distances float32[N], labels int32[N])`` — ``labels`` is the index of
    the nearest prototype (the first one on ties).

  Raises:
    ValueError: wrong ranks, ``K = 0``, mismatched ``D``, unknown
      ``metric``, a ``where`` of the wrong shape.
    TypeError: non-floating inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import selection
    >>> x = jnp.array([[1., 0.], [1., 1.], [0., 2.]])
    >>> c = jnp.array([[1., 0.], [0., 1.]])
    >>> d, lab = selection.nearest_prototype_distance(x, c)
    >>> print(jnp.round(d, 4), lab)
    [0.     0.2929 0.    ] [0 0 1]
    >>> d, _ = selection.nearest_prototype_distance(x, c, metric="euclidean")
    >>> print(jnp.round(d, 4))
    [0. 1. 1.]

  References:
    Sorscher et al., `Beyond neural scaling laws: beating power law scaling
    via data pruning`, NeurIPS 2022, arXiv:2206.14486.

    Catalog: seed_002 #11.
  """
  x = _embeddings(embeddings)
  c = checks.check_floating(prototypes, "prototypes")
  checks.check_rank(c, 2, "prototypes")
  if c.shape[0] == 0:
    raise ValueError("`prototypes` is empty; it needs at least one row.")
  if c.shape[1] != x.shape[1]:
    raise ValueError(f"`prototypes` must have D={x.shape[1]} columns (as "
                     f"`embeddings` {x.shape}), got {c.shape}.")
  metric = _check_metric(metric)
  mask = _row_mask(where, x.shape[0])
  dtype = checks.compute_dtype(x, c)
  x = jnp.where(mask[:, None], x.astype(dtype), 0.0)
  c = c.astype(dtype)
  if metric == "cosine":
    d = 1.0 - _unit(x) @ _unit(c).T
  else:
    sq = (jnp.sum(x * x, axis=1)[:, None] - 2.0 * x @ c.T
          + jnp.sum(c * c, axis=1)[None, :])
    # Exact difference for the nearest prototype (no cancellation error),
    # with a zero-safe square root.
    lab = jnp.argmin(sq, axis=1)
    diff = x - c[lab]
    sq_min = jnp.sum(diff * diff, axis=1)
    safe = jnp.where(sq_min > 0, sq_min, 1.0)
    dist = jnp.where(sq_min > 0, jnp.sqrt(safe), 0.0)
    return (jnp.where(mask, dist, 0.0).astype(jnp.float32),
            jnp.where(mask, lab, 0).astype(jnp.int32))
  lab = jnp.argmin(d, axis=1)
  dist = jnp.take_along_axis(d, lab[:, None], axis=1)[:, 0]
  return (jnp.where(mask, dist, 0.0).astype(jnp.float32),
          jnp.where(mask, lab, 0).astype(jnp.int32))


def _check_k(num_clusters) -> int:
  if (isinstance(num_clusters, bool)
      or not isinstance(num_clusters, numbers.Integral) or num_clusters < 1):
    raise ValueError(f"`num_clusters` must be a static int >= 1, got "
                     f"{num_clusters!r}.")
  return int(num_clusters)


def ssl_prototype_scores(embeddings: jax.Array, key: jax.Array, *,
                         num_clusters: int, num_iters: int = 25,
                         metric: str = "cosine",
                         where: jax.Array | None = None) -> jax.Array:
  r"""Self-supervised prototype difficulty: distance to the nearest centroid.

  Runs k-means with ``num_clusters`` clusters (k-means++ seeding and
  ``num_iters`` Lloyd steps, :func:`jaxkit.selection.kmeans`) on the
  embeddings of a self-supervised model and scores every example by

  .. math::
    s_i = \min_k d(x_i, c_k),

  its :func:`nearest_prototype_distance`: high = far from every prototype =
  *hard* (atypical), low = *easy* (prototypical). With ``metric='cosine'``
  (the paper's) the embeddings are first scaled to unit norm, so the
  clustering is k-means on the sphere's chords and the score is a cosine
  distance; ``'euclidean'`` clusters and measures the raw embeddings.
  Jittable (``num_clusters``, ``num_iters``, ``metric`` static).

  The paper clusters SwAV ImageNet embeddings with :math:`k` in the order of
  the number of classes (it reports robustness to :math:`k`); the authors'
  released scores (``rgeirhos/dataset-pruning-metrics``) contain no
  clustering code, so this follows the paper's text. The paper's scores come
  from one k-means run; average several keys for a smoother score.

  Args:
    embeddings: ``[N, D]`` floating embeddings.
    key: PRNG key of the k-means++ seeding.
    num_clusters: ``k`` (static int >= 1).
    num_iters: Lloyd steps (static int >= 0).
    metric: ``'cosine'`` or ``'euclidean'``.
    where: optional ``bool[N]`` mask: masked rows neither move a centroid nor
      get a score (0). With no valid row every score is 0.

  Returns:
    ``float32[N]`` scores (cosine: in :math:`[0, 2]`; euclidean: ``>= 0``).

  Raises:
    ValueError: wrong rank, bad ``num_clusters`` / ``num_iters`` / ``metric``
      / ``where``.
    TypeError: non-floating embeddings.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit import selection
    >>> x = jnp.array([[1., 0.], [1., .1], [1., -.1], [0., 1.], [.1, 1.],
    ...                [-.1, 1.], [1., 1.]])
    >>> s = selection.ssl_prototype_scores(x, jax.random.key(0),
    ...                                    num_clusters=2)
    >>> print(int(jnp.argmax(s)))   # the point between the two clusters
    6

  References:
    Sorscher et al., `Beyond neural scaling laws: beating power law scaling
    via data pruning`, NeurIPS 2022, arXiv:2206.14486.

    Catalog: seed_002 #11.
  """
  x = _embeddings(embeddings)
  k = _check_k(num_clusters)
  metric = _check_metric(metric)
  mask = _row_mask(where, x.shape[0])
  if x.shape[0] == 0:
    return jnp.zeros((0,), jnp.float32)
  pts = x.astype(checks.compute_dtype(x))
  pts = jnp.where(mask[:, None], pts, 0.0)
  if metric == "cosine":
    pts = _unit(pts)
  centroids, _ = kmeans(pts, key, num_clusters=k, num_iters=num_iters,
                        where=mask)
  dist, _ = nearest_prototype_distance(pts, centroids, metric=metric,
                                       where=mask)
  return jax.lax.stop_gradient(dist)


def ssl_prototype_prune(embeddings: jax.Array, key: jax.Array, *,
                        num_clusters: int, keep_fraction: float,
                        keep: str = "hard", num_iters: int = 25,
                        metric: str = "cosine",
                        where: jax.Array | None = None) -> jax.Array:
  r"""Indices kept by self-supervised prototype pruning.

  Scores every example with :func:`ssl_prototype_scores` and keeps the
  :math:`\lceil fN \rceil` hardest (``keep='hard'``: farthest from their
  prototype) or easiest (``keep='easy'``) ones with
  :func:`jaxkit.selection.prune_by_score`, most extreme first.

  Which end to keep depends on how much data there is. In the paper's
  teacher-student theory (and its CIFAR-10 / ImageNet checks) the best
  strategy keeps **easy** examples when the data set is small relative to
  the model (aggressive pruning of scarce data) and **hard** ones when data
  is abundant; the crossover has to be found per problem (e.g. by training
  on both subsets at a few sizes), so ``keep`` is the caller's choice.

  .. math::
    \mathcal{I} = \operatorname{top}_{\lceil fN \rceil}(\pm s),\qquad
    s_i = \min_k d(x_i, c_k).

  Args:
    embeddings: ``[N, D]`` floating embeddings (``N >= 1``).
    key: PRNG key of the k-means seeding.
    num_clusters: ``k`` (static int >= 1).
    keep_fraction: ``f`` in (0, 1] (static).
    keep: ``'hard'`` or ``'easy'``.
    num_iters: Lloyd steps (static int >= 0).
    metric: ``'cosine'`` or ``'euclidean'``.
    where: optional ``bool[N]`` mask of the examples that may be kept;
      masked ones only fill the tail when fewer valid examples than
      :math:`\lceil fN \rceil` exist (see :func:`prune_by_score`).

  Returns:
    ``int32[ceil(f N)]`` indices.

  Raises:
    ValueError: as :func:`ssl_prototype_scores` and :func:`prune_by_score`
      (``keep_fraction`` outside (0, 1], unknown ``keep``, empty input).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit import selection
    >>> x = jnp.array([[1., 0.], [1., .3], [1., -.1], [0., 1.], [.1, 1.],
    ...                [-.1, 1.], [1., 1.]])
    >>> idx = selection.ssl_prototype_prune(x, jax.random.key(0),
    ...     num_clusters=2, keep_fraction=0.15, keep="hard")
    >>> print(idx)   # [1, 1] and then [1, -.1] (the outlier pulls its centroid)
    [6 2]

  References:
    Sorscher et al., `Beyond neural scaling laws: beating power law scaling
    via data pruning`, NeurIPS 2022, arXiv:2206.14486.

    Catalog: seed_002 #11.
  """
  x = _embeddings(embeddings)
  if x.shape[0] == 0:
    raise ValueError("`embeddings` is empty; nothing to prune.")
  scores = ssl_prototype_scores(x, key, num_clusters=num_clusters,
                                num_iters=num_iters, metric=metric,
                                where=where)
  return prune_by_score(scores, keep_fraction=keep_fraction, keep=keep,
                        where=where)
