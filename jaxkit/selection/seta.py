r"""SeTa: scale-efficient training by loss-clustered dynamic sample pruning.

Each epoch SeTa (Zhou, Gao, Wang, CVPR 2025)

1. keeps a uniformly random ``keep_ratio`` share of the data (removes
   redundancy),
2. clusters the kept examples into ``num_groups`` groups by their last-seen
   loss with 1-D k-means and sorts the groups by mean loss (easy → hard),
3. trains only on a window of ``w = round(num_groups * window_scale)``
   consecutive groups that slides from the easy end to the hard end as the
   epochs pass (an easy-to-hard curriculum that drops both the too-easy and
   the too-hard groups), and
4. for the last ``1 - delta`` share of the epochs ("partial annealing") trains
   on the random subset of step 1 alone.

* :func:`kmeans_1d`: jittable 1-D k-means (Lloyd's algorithm on sorted
  centres) with deterministic quantile initialisation.
* :func:`seta_select`: one epoch's SeTa selection as a fixed-shape mask.

The per-example losses are the caller's state (scatter each step's losses into
an ``[N]`` vector, e.g. ``scores.at[idx].set(losses)``), exactly like the
``scores`` buffer of InfoBatch (:func:`jaxkit.selection.infobatch_select`).

References:
  Zhou, Gao, Wang, `Scale Efficient Training for Large Datasets
  <https://arxiv.org/abs/2503.13385>`_, CVPR 2025. Code:
  ``github.com/mrazhou/SeTa`` (``seta.py``).
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
# Explicit-mode sharded inputs are gathered before a global sort.
from jaxkit.divergences.kernel import _replicate_sample_axes as _replicate


def _vector(x, name: str) -> jax.Array:
  x = checks.check_floating(x, name)
  checks.check_rank(x, 1, name)
  if x.shape[0] == 0:
    raise ValueError(f"`{name}` is empty; it needs at least one example.")
  return x


def _check_int(value, name: str, *, lower: int) -> int:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or value < lower):
    raise ValueError(f"`{name}` must be a static int >= {lower}, got {value!r}.")
  return int(value)


def _check_fraction(value, name: str) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f"`{name}` must be a static float, got {value!r}.")
  if not 0.0 < float(value) <= 1.0:
    raise ValueError(f"`{name}` must be in (0, 1], got {value}.")
  return float(value)


def _lloyd_1d(x: jax.Array, valid: jax.Array, k: int, num_iters: int):
  """Sorted centres [k] and labels [N] (-1 where not valid)."""
  x, valid = _replicate(x, 0), _replicate(valid, 0)  # global over the data
  n_valid = jnp.sum(valid)
  xs = jnp.sort(jnp.where(valid, x, jnp.inf))
  pos = jnp.floor((jnp.arange(k, dtype=jnp.float32) + 0.5)
                  * n_valid.astype(jnp.float32) / k).astype(jnp.int32)
  pos = jnp.clip(pos, 0, jnp.maximum(n_valid - 1, 0))
  centers = jnp.where(n_valid > 0, xs[pos], 0.0)
  xv = jnp.where(valid, x, 0.0)

  def assign(c):
    # Sorted centres: the nearest one is found between the midpoints; a point
    # on a midpoint goes to the lower centre (argmin's first-index rule).
    return jnp.searchsorted(0.5 * (c[1:] + c[:-1]), xv, side="left")

  def update(c):
    lab = assign(c)
    sums = jax.ops.segment_sum(xv, lab, num_segments=k)
    cnts = jax.ops.segment_sum(valid.astype(jnp.float32), lab, num_segments=k)
    new = jnp.where(cnts > 0, sums / jnp.maximum(cnts, 1.0), c)
    return jnp.sort(new)

  def cond(state):
    i, _, moved = state
    return (i < num_iters) & moved

  def body(state):
    i, c, _ = state
    new = update(c)
    return i + 1, new, jnp.any(new != c)

  _, centers, _ = jax.lax.while_loop(cond, body, (0, centers, jnp.array(True)))
  labels = jnp.where(valid, assign(centers), -1).astype(jnp.int32)
  return labels, centers


@functools.partial(jax.jit, static_argnames=("k", "num_iters"))
def _kmeans_1d(x, valid, *, k, num_iters):
  return _lloyd_1d(x, valid, k, num_iters)


def kmeans_1d(values: jax.Array, num_clusters: int, *, num_iters: int = 100,
              where: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  r"""1-D k-means: clusters scalar values, clusters numbered by their mean.

  Lloyd's algorithm for

  .. math::
    \min_{c_1 \le \dots \le c_K} \sum_i \min_k (x_i - c_k)^2 .

  The centres start at the ``(k + 1/2)/K`` quantiles of the valid values
  (deterministic; scikit-learn's ``KMeans`` uses random k-means++ seeding, so
  on ambiguous data the two may stop in different local optima), are kept
  sorted, and every iteration assigns each value to its nearest centre
  (between the midpoints of consecutive centres; a value on a midpoint goes
  to the lower centre) and moves each centre to its cluster's mean. An empty
  cluster keeps its centre. It stops when no centre moves or after
  ``num_iters`` iterations. Because the centres are sorted, label ``k`` is the
  ``k``-th cluster from the low end: the clusters are already ordered by mean.

  Args:
    values: ``[N]`` floating values.
    num_clusters: ``K`` (static int ≥ 1).
    num_iters: maximum number of Lloyd iterations (static int ≥ 1).
    where: optional ``[N]`` bool mask; masked values are ignored (label -1).

  Returns:
    ``(labels int32[N], centers float32[K])``: ascending centres and each
    value's cluster in ``0 .. K-1`` (``-1`` where masked).

  Raises:
    ValueError: wrong rank, empty ``values``, or a non-positive
      ``num_clusters`` / ``num_iters``.

  Examples:
    >>> x = jnp.array([5.1, 0.1, 9.8, 0.0, 5.0, 10.0])
    >>> labels, centers = kmeans_1d(x, 3)
    >>> print(labels, centers)
    [1 0 2 0 1 2] [0.05 5.05 9.9 ]

  References:
    Lloyd, `Least squares quantization in PCM`, IEEE Trans. Inf. Theory 1982.
    Used by SeTa (Zhou et al., CVPR 2025, arXiv:2503.13385) to group
    examples by loss.
  """
  x = _vector(values, "values")
  k = _check_int(num_clusters, "num_clusters", lower=1)
  iters = _check_int(num_iters, "num_iters", lower=1)
  n = x.shape[0]
  mask = checks.check_where(where, (n,), "where")
  valid = jnp.ones((n,), bool) if mask is None else mask
  return _kmeans_1d(x.astype(jnp.float32), valid, k=k, num_iters=iters)


@functools.partial(jax.jit, static_argnames=("num_groups", "num_iters"))
def _seta(key, s, valid, epoch, count_table, window, stop_epoch, *, num_groups,
          num_iters):
  n = s.shape[0]
  g = num_groups
  # 1. Uniform random subset of m = int(r * n_valid) valid examples.
  m = count_table[jnp.sum(valid)]
  u = jnp.where(valid, jax.random.uniform(key, (n,)), 2.0)
  rank = jnp.argsort(jnp.argsort(_replicate(u, 0))).astype(jnp.int32)
  subset = valid & (rank < m)
  # 2. Loss groups, sorted easy -> hard. If every kept loss is equal the
  #    groups are equal random chunks (the reference's `torch.chunk`).
  labels, _ = _lloyd_1d(s, subset, g, num_iters)
  lo = jnp.min(jnp.where(subset, s, jnp.inf))
  hi = jnp.max(jnp.where(subset, s, -jnp.inf))
  chunks = (rank * g) // jnp.maximum(m, 1)
  labels = jnp.where(lo == hi, chunks, labels)
  # 3. Sliding window of `window` groups; epoch 0 keeps every group.
  start = epoch % (g - window + 1)
  in_window = (labels >= start) & (labels < start + window)
  keep = subset & (in_window | (epoch == 0))
  # An empty selection falls back to one random valid example.
  keep = keep | (~jnp.any(keep) & valid & (rank == 0))
  # 4. Partial annealing (epoch + 1 > delta * num_epochs): the random subset.
  return jnp.where(epoch.astype(jnp.float32) + 1.0 > stop_epoch, subset, keep)


def seta_select(key: jax.Array, scores: jax.Array, *, epoch,
                keep_ratio: float, num_groups: int = 10,
                window_scale: float = 0.5, num_epochs: int | None = None,
                delta: float = 0.875, where: jax.Array | None = None,
                kmeans_iters: int = 100) -> jax.Array:
  r"""SeTa: one epoch's selection by random pruning and a sliding loss window.

  With :math:`N_v` valid examples, ratio :math:`r` (``keep_ratio``),
  :math:`G` groups and window :math:`w = \mathrm{round}(G s)` (``s`` =
  ``window_scale``, Python's round-half-to-even as in the reference):

  1. :math:`m = \lfloor r N_v \rfloor` examples are drawn uniformly without
     replacement;
  2. their scores (last-seen losses) are clustered by :func:`kmeans_1d` into
     groups :math:`g_0, \dots, g_{G-1}` sorted by mean score;
  3. at epoch :math:`e` the kept examples are those of the groups

     .. math::
       g_j,\quad j_0 \le j < j_0 + w,\qquad j_0 = e \bmod (G - w + 1),

     and every group at :math:`e = 0`;
  4. with ``num_epochs`` :math:`E`, every epoch with :math:`e + 1 > \delta E`
     keeps the random subset of step 1 alone ("partial annealing").

  This is the reference ``SeTa.prune`` / ``no_prune`` / ``slide_easy2hard``
  with the reference sampler's epoch counter (0-based ``epoch`` here), checked
  against the authors' code; where the paper differs we follow the code (the
  paper writes :math:`w = \lceil s G \rceil` and anneals with a Bernoulli(r)
  draw per example, the code uses ``round`` and an exact-size random subset).
  Deviations from the code: the keep ratio is used as given (the
  reference clamps ``1 - prune_ratio`` to at least 0.1); k-means is the
  deterministic :func:`kmeans_1d`, not scikit-learn's seeded k-means++, so on
  ambiguous losses the groups may differ; when all kept losses are equal the
  groups are :math:`G` random chunks whose sizes differ by at most one
  (``torch.chunk`` may make fewer, larger chunks); and an empty selection
  falls back to one random *valid* example. Pass a new ``key`` every epoch
  (e.g. ``jax.random.fold_in(key, epoch)``): the random subset, and hence
  the annealing subset, is a function of the key. Kept examples have weight 1
  (SeTa does not rescale losses). Jittable; ``epoch`` may be traced, the
  other hyperparameters are static Python numbers (only ``num_groups`` and
  ``kmeans_iters`` change the compiled program).

  Args:
    key: a PRNG key.
    scores: ``[N]`` floating per-example scores (last-seen losses).
    epoch: the 0-based epoch number (int ≥ 0, may be traced).
    keep_ratio: ``r`` in (0, 1] (static); SeTa's ``1 - prune_ratio``.
    num_groups: ``G`` (static int ≥ 1).
    window_scale: ``s`` in (0, 1] (static), with ``round(G s) ≥ 1``.
    num_epochs: total epochs ``E`` (static int ≥ 1) to enable annealing, or
      ``None`` for no annealing (the caller's schedule).
    delta: the pruned share :math:`\delta` of the epochs (static float ≥ 0).
    where: optional ``[N]`` bool mask; masked examples are never kept.
    kmeans_iters: maximum Lloyd iterations (static int ≥ 1).

  Returns:
    ``bool[N]``: the examples to train on this epoch.

  Raises:
    ValueError: wrong rank, empty ``scores``, ``keep_ratio`` or
      ``window_scale`` outside (0, 1], ``round(G s) = 0``, fewer than
      ``G + 1`` kept examples (``floor(r N) <= G``; the reference asserts
      the same), a concrete negative ``epoch``, bad ``num_epochs`` /
      ``delta``.
    TypeError: non-float ``keep_ratio`` / ``window_scale``.

  Examples:
    >>> losses = jnp.array([0.1, 0.2, 1.0, 1.1, 3.0, 3.2, 9.0, 9.5])
    >>> key = jax.random.key(0)
    >>> for e in range(4):
    ...   keep = seta_select(key, losses, epoch=e, keep_ratio=1.0,
    ...                      num_groups=4, window_scale=0.5)
    ...   print(e, jnp.flatnonzero(keep).tolist())
    0 [0, 1, 2, 3, 4, 5, 6, 7]
    1 [2, 3, 4, 5]
    2 [4, 5, 6, 7]
    3 [0, 1, 2, 3]

  References:
    Zhou, Gao, Wang, `Scale Efficient Training for Large Datasets`, CVPR 2025,
    arXiv:2503.13385.

    Catalog: seed_001 #49, seed_002 #61.
  """
  s = _vector(scores, "scores")
  r = _check_fraction(keep_ratio, "keep_ratio")
  g = _check_int(num_groups, "num_groups", lower=1)
  ws = _check_fraction(window_scale, "window_scale")
  iters = _check_int(kmeans_iters, "kmeans_iters", lower=1)
  window = round(g * ws)
  if window < 1:
    raise ValueError(f"`window_scale`={ws} gives round(num_groups * "
                     f"window_scale) = 0 groups; use a larger window_scale.")
  n = s.shape[0]
  if int(n * r) <= g:
    raise ValueError(f"SeTa needs more kept examples than groups: "
                     f"floor(keep_ratio * N) = {int(n * r)} <= num_groups = {g}.")
  if checks.is_concrete(epoch) and int(np.asarray(epoch)) < 0:
    raise ValueError(f"`epoch` must be >= 0, got {int(np.asarray(epoch))}.")
  stop_epoch = np.inf
  if num_epochs is not None:
    e_total = _check_int(num_epochs, "num_epochs", lower=1)
    if (isinstance(delta, bool) or not isinstance(delta, numbers.Real)
        or not float(delta) >= 0.0):
      raise ValueError(f"`delta` must be a static float >= 0, got {delta!r}.")
    stop_epoch = e_total * float(delta)
  mask = checks.check_where(where, (n,), "where")
  valid = jnp.ones((n,), bool) if mask is None else mask
  # int(n_valid * r) exactly as the reference's Python arithmetic, for every
  # possible count (a traced mask has a traced count).
  table = np.floor(np.arange(n + 1, dtype=np.float64) * r).astype(np.int32)
  x = jnp.where(valid, s.astype(jnp.float32), 0.0)
  return _seta(key, x, valid, jnp.asarray(epoch, jnp.int32), table,
               np.int32(window), np.float32(stop_epoch), num_groups=g,
               num_iters=iters)
