r"""Class rebalancing (SMOTE, random over/under-sampling) and RS2 subsets.

These are data-preparation functions: they take a whole (host-sized) data set
``x [N, ...]`` with integer labels ``y [N]`` and return a new one. Class counts
decide output shapes, so :func:`smote`, :func:`random_oversample` and
:func:`random_undersample` run eagerly (not under ``jit``); the heavy parts
(blocked exact k-nearest-neighbour search, gathers, interpolation) are jitted
JAX programs. :func:`rs2_indices` is fully jittable (``epoch`` may be traced).

``sampling_strategy`` follows imbalanced-learn exactly:

* oversampling (``smote``, ``random_oversample``): ``'auto'`` = ``'not
  majority'`` (every class but the majority is brought to the majority count),
  ``'minority'``, ``'not minority'``, ``'all'``; a float ``r`` in (0, 1] (two
  classes only: the minority is brought to ``int(r · N_majority)``); or a dict
  ``{class: target_count}``.
* undersampling (``random_undersample``): ``'auto'`` = ``'not minority'``
  (every class but the minority is cut to the minority count), ``'majority'``,
  ``'not majority'``, ``'all'``; a float ``r`` in (0, 1] (two classes only: the
  majority is cut to ``int(N_minority / r)``); or a dict
  ``{class: target_count}``.

The originals come first (oversampling), then the new samples class by class
in increasing label order, as in imbalanced-learn.

References:
  Chawla, Bowyer, Hall, Kegelmeyer, `SMOTE: Synthetic Minority Over-sampling
  Technique <https://arxiv.org/abs/1106.1813>`_, JAIR 2002.

  Lemaître, Nogueira, Aridas, `Imbalanced-learn: A Python Toolbox to Tackle
  the Curse of Imbalanced Datasets in Machine Learning`, JMLR 2017.

  Okanovic et al., `Repeated Random Sampling for Minimizing the Time-to-Accuracy
  of Learning <https://arxiv.org/abs/2305.18424>`_, ICLR 2024.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks

_STRINGS_OVER = ("auto", "not majority", "minority", "not minority", "all")
_STRINGS_UNDER = ("auto", "not minority", "majority", "not majority", "all")


# ----------------------------------------------------------------------------
# Shared helpers.
# ----------------------------------------------------------------------------


def _prepare_xy(x, y, where, *, min_rank: int = 1):
  """Validates and returns host numpy (x, y) with masked rows removed."""
  if not checks.is_concrete(x) or not checks.is_concrete(y):
    raise TypeError(
        "`x` and `y` must be concrete arrays: resampling changes the number "
        "of rows, so it runs eagerly (outside jax.jit).")
  x = np.asarray(x)
  y = np.asarray(y)
  if x.ndim < min_rank:
    raise ValueError(f"`x` must have rank >= {min_rank} ([N, ...]), got shape "
                     f"{x.shape}.")
  if y.ndim != 1:
    raise ValueError(f"`y` must have rank 1 ([N] labels), got shape {y.shape}.")
  if not np.issubdtype(y.dtype, np.integer):
    raise TypeError(f"`y` must hold integer class labels, got dtype {y.dtype}.")
  if x.shape[0] != y.shape[0]:
    raise ValueError(f"`x` and `y` must have the same number of rows, got "
                     f"{x.shape[0]} and {y.shape[0]}.")
  if where is not None:
    where = np.asarray(where)
    if where.shape != y.shape:
      raise ValueError(f"`where` must have shape {y.shape} (one flag per row), "
                       f"got {where.shape}.")
    x, y = x[where.astype(bool)], y[where.astype(bool)]
  if y.shape[0] == 0:
    raise ValueError("`x` is empty (no rows, or every row masked by `where`): "
                     "there is nothing to resample.")
  return x, y


def _class_targets(y: np.ndarray, sampling_strategy, *, over: bool
                   ) -> dict[int, int]:
  """imbalanced-learn's sampling-strategy semantics.

  Returns ``{class: n}`` where ``n`` is the number of samples to *add*
  (oversampling) or to *keep* (undersampling), for the classes to resample.
  """
  classes, counts = np.unique(y, return_counts=True)
  count = dict(zip(classes.tolist(), counts.tolist()))
  n_max, n_min = int(counts.max()), int(counts.min())
  c_max = int(classes[np.argmax(counts)])
  c_min = int(classes[np.argmin(counts)])
  name = "sampling_strategy"
  if isinstance(sampling_strategy, str):
    allowed = _STRINGS_OVER if over else _STRINGS_UNDER
    if sampling_strategy not in allowed:
      raise ValueError(f"`{name}` must be one of {allowed}, a float in (0, 1] "
                       f"or a dict, got {sampling_strategy!r}.")
    s = sampling_strategy
    if s == "auto":
      s = "not majority" if over else "not minority"
    chosen = {
        "not majority": [c for c in count if c != c_max],
        "minority": [c_min],
        "not minority": [c for c in count if c != c_min],
        "majority": [c_max],
        "all": list(count),
    }[s]
    if over:
      return {c: n_max - count[c] for c in chosen}
    return {c: n_min for c in chosen}
  if isinstance(sampling_strategy, dict):
    out = {}
    for c, target in sampling_strategy.items():
      if c not in count:
        raise ValueError(f"`{name}` names class {c!r}, which is not in `y` "
                         f"(classes {sorted(count)}).")
      if not isinstance(target, numbers.Integral) or target < 0:
        raise ValueError(f"`{name}`[{c!r}] must be a non-negative int, got "
                         f"{target!r}.")
      if over and target < count[c]:
        raise ValueError(
            f"`{name}`[{c!r}]={target} is below the class count {count[c]}; "
            "oversampling only adds samples.")
      if not over and target > count[c]:
        raise ValueError(
            f"`{name}`[{c!r}]={target} is above the class count {count[c]}; "
            "undersampling only removes samples.")
      out[int(c)] = int(target) - count[c] if over else int(target)
    return out
  if isinstance(sampling_strategy, numbers.Real) and not isinstance(
      sampling_strategy, bool):
    r = float(sampling_strategy)
    if not 0.0 < r <= 1.0:
      raise ValueError(f"`{name}` as a float must be in (0, 1], got {r}.")
    if len(count) != 2:
      raise ValueError(f"`{name}` as a float needs exactly two classes, got "
                       f"{len(count)}; pass a dict instead.")
    if over:
      n_new = int(r * n_max - n_min)
      if n_new < 0:
        raise ValueError(
            f"`{name}`={r} asks for fewer minority samples ({int(r * n_max)}) "
            f"than there are ({n_min}); oversampling only adds samples.")
      return {c_min: n_new}
    n_keep = int(n_min / r)
    if n_keep > n_max:
      raise ValueError(
          f"`{name}`={r} asks for more majority samples ({n_keep}) than there "
          f"are ({n_max}); undersampling only removes samples.")
    return {c_max: n_keep}
  raise TypeError(f"`{name}` must be a str, a float or a dict, got "
                  f"{type(sampling_strategy).__name__}.")


def _check_int(value, name: str, *, lower: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"`{name}` must be an int, got {value!r}.")
  if value < lower:
    raise ValueError(f"`{name}` must be >= {lower}, got {value}.")
  return int(value)


# ----------------------------------------------------------------------------
# Exact k nearest neighbours within one set (blocked, jitted).
# ----------------------------------------------------------------------------


def _bucket(n: int) -> int:
  """Pads a size up to one of 8 steps per octave (≥ 64, ≤ 12.5 % padding).

  Shapes, hence compilations, repeat across classes and calls of similar size.
  """
  n = int(n)
  if n <= 64:
    return 64
  g = 1 << max(0, (n - 1).bit_length() - 3)
  return -(-n // g) * g


def _top_k_chunked(s: jax.Array, k: int, chunk: int = 128) -> jax.Array:
  """Exact ``lax.top_k(s, k)[1]`` along the last axis, in two cheap stages.

  The row is cut into chunks of ``chunk``; the top ``k`` elements lie in the
  ``k`` chunks with the largest maxima (a chunk holding one of them has a
  maximum at least the k-th largest value), so only those ``k · chunk``
  candidates go through ``top_k``. A max-reduction replaces most of the
  sorting work, several times faster than a plain ``top_k`` on XLA:CPU for
  long rows. Falls back to ``lax.top_k`` for short rows.
  """
  n = s.shape[-1]
  if n % chunk or n // chunk < 4 * k:
    return jax.lax.top_k(s, k)[1]
  lead = s.shape[:-1]
  sc = s.reshape(*lead, n // chunk, chunk)
  ci = jax.lax.top_k(jnp.max(sc, axis=-1), k)[1]                 # [..., k]
  cand = jnp.take_along_axis(sc, ci[..., None], axis=-2)          # [..., k, C]
  j = jax.lax.top_k(cand.reshape(*lead, k * chunk), k)[1]
  return jnp.take_along_axis(ci, j // chunk, axis=-1) * chunk + j % chunk


@functools.partial(jax.jit, static_argnames=("k", "block"))
def _knn_within(x: jax.Array, m: jax.Array, *, k: int, block: int
                ) -> jax.Array:
  """Indices ``[M_pad, k]`` of each row's k nearest other rows (squared L2).

  Only the first ``m`` rows of ``x`` (traced; the rest is padding) are
  candidates. Queries run in blocks of ``block`` rows so that the score tile
  ``[block, M_pad]`` stays small. Ranking uses ``2 q·x_j − |x_j|²`` (the
  squared distance up to the per-query constant ``|q|²``), one GEMM and one
  exact top-(k + 1) per tile (:func:`_top_k_chunked`); the query itself is then removed from its
  ``k + 1`` candidates (or, if an exact duplicate outranked it, the last
  candidate is dropped), so a row is never its own neighbour. Exact ties
  may be broken in any order.
  """
  m_pad = x.shape[0]
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1)
  neg_sq = jnp.where(jnp.arange(m_pad) < m, -sq, -jnp.inf)
  x2t = (2.0 * x).T
  nb = -(-m_pad // block)
  pad = nb * block - m_pad
  q = jnp.pad(x, ((0, pad), (0, 0))).reshape(nb, block, -1)
  starts = jnp.arange(nb) * block
  kk = min(k + 1, m_pad)

  def one(args):
    qb, start = args
    idx = _top_k_chunked(qb @ x2t + neg_sq[None, :], kk)        # [block, k+1]
    rows = start + jnp.arange(block)
    is_self = idx == rows[:, None]
    # Stable removal of the self column (or of the last one if self absent).
    drop = jnp.where(jnp.any(is_self, axis=1), jnp.argmax(is_self, axis=1),
                     kk - 1)
    keep = jnp.arange(kk)[None, :] != drop[:, None]
    order = jnp.argsort(~keep, axis=1, stable=True)[:, :k]
    return jnp.take_along_axis(idx, order, axis=1)

  idx = jax.lax.map(one, (q, starts))
  return idx.reshape(nb * block, k)[:m_pad].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("n_new", "k"))
def _smote_class(key, x_c, m, nn, *, n_new: int, k: int):
  """``n_new`` synthetic rows of one class (imbalanced-learn's draw).

  ``x_c`` holds the class's ``m`` members (traced) followed by padding.
  """
  k_idx, k_u = jax.random.split(key)
  flat = jax.random.randint(k_idx, (n_new,), 0, m * k)
  rows, cols = flat // k, flat % k
  u = jax.random.uniform(k_u, (n_new, 1), dtype=jnp.float32)
  base = x_c[rows].astype(jnp.float32)
  other = x_c[nn[rows, cols]].astype(jnp.float32)
  return (base + u * (other - base)).astype(x_c.dtype)


def _knn_block(m: int, budget: int = 1 << 22) -> int:
  """Query-block size whose [block, M] float32 tile holds ~16 MB."""
  return int(max(1, min(m, budget // max(m, 1))))


# ----------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------


def smote(key: jax.Array, x, y, *, k_neighbors: int = 5,
          sampling_strategy="auto", where=None) -> tuple[jax.Array, jax.Array]:
  r"""SMOTE: oversamples minority classes by interpolating between neighbours.

  For each class ``c`` to oversample (by default every class but the majority,
  brought to the majority count), ``n_c`` synthetic points are drawn as in
  imbalanced-learn: a flat index uniform in ``[0, M_c · k)`` picks a class
  member :math:`x_i` and one of its ``k`` nearest same-class neighbours
  :math:`x_{nn}` (exact squared-Euclidean kNN, the point itself excluded),
  and

  .. math::
    x_{new} = x_i + u\,(x_{nn} - x_i), \qquad u \sim U[0, 1).

  The kNN search is exact, blocked over queries (a ``[block, M_c]`` distance
  tile, ``lax.top_k``) and jitted; memory stays ``O(M_c · k + block · M_c)``.

  Args:
    key: a PRNG key.
    x: ``[N, D]`` floating features (numpy or jax; concrete).
    y: ``[N]`` integer labels.
    k_neighbors: number of nearest neighbours to interpolate towards (static
      int ≥ 1). Every oversampled class needs at least ``k_neighbors + 1``
      members.
    sampling_strategy: which classes to oversample and to what count
      (imbalanced-learn semantics, see the module docstring).
    where: optional ``[N]`` bool mask; masked rows are dropped (they are neither
      returned nor used as neighbours).

  Returns:
    ``(x_resampled [N' + S, D], y_resampled [N' + S])``: the ``N'`` unmasked
    originals in their order, then the ``S`` synthetic rows class by class in
    increasing label order. ``x_resampled`` keeps ``x``'s dtype; ``y`` keeps its
    dtype.

  Raises:
    ValueError: empty input, wrong ranks, a class with ``≤ k_neighbors``
      members that must be oversampled, an invalid ``sampling_strategy``.
    TypeError: non-floating ``x``, non-integer ``y``, traced inputs.

  Examples:
    >>> x = jnp.array([[0., 0.], [1., 0.], [0., 1.], [5., 5.], [5., 6.],
    ...                [6., 5.], [6., 6.], [5.5, 5.5]])
    >>> y = jnp.array([0, 0, 0, 1, 1, 1, 1, 1])
    >>> xr, yr = smote(jax.random.key(0), x, y, k_neighbors=2)
    >>> print(xr.shape, np.bincount(np.asarray(yr)).tolist())
    (10, 2) [5, 5]
    >>> bool(jnp.all(xr[8:].sum(-1) <= 1.0))  # new points in the triangle
    True

  References:
    Chawla et al., `SMOTE: Synthetic Minority Over-sampling Technique`, JAIR
    2002, arXiv:1106.1813.

    Catalog: seed_001 #5.
  """
  k_neighbors = _check_int(k_neighbors, "k_neighbors", lower=1)
  x_np, y_np = _prepare_xy(x, y, where, min_rank=2)
  if x_np.ndim != 2:
    raise ValueError(f"`x` must have rank 2 ([N, D]), got shape {x_np.shape}.")
  if not np.issubdtype(x_np.dtype, np.floating) and x_np.dtype != jnp.bfloat16:
    raise TypeError(f"`x` must be floating, got dtype {x_np.dtype}.")
  targets = _class_targets(y_np, sampling_strategy, over=True)
  xs, ys = [jnp.asarray(x_np)], [jnp.asarray(y_np)]
  for c in sorted(targets):
    n_new = targets[c]
    if n_new == 0:
      continue
    x_c = jnp.asarray(x_np[y_np == c])
    m = x_c.shape[0]
    if m <= k_neighbors:
      raise ValueError(
          f"`k_neighbors`={k_neighbors} needs at least {k_neighbors + 1} "
          f"samples per oversampled class, but class {c} has {m}. Lower "
          "`k_neighbors` or drop the class from `sampling_strategy`.")
    m_pad = _bucket(m)
    x_c = jnp.pad(x_c, ((0, m_pad - m), (0, 0)))
    nn = _knn_within(x_c, m, k=k_neighbors, block=_knn_block(m_pad))
    new = _smote_class(jax.random.fold_in(key, c), x_c, m, nn,
                       n_new=_bucket(n_new), k=k_neighbors)
    xs.append(new[:n_new])
    ys.append(jnp.full((n_new,), c, dtype=ys[0].dtype))
  return jnp.concatenate(xs), jnp.concatenate(ys)


def random_oversample(key: jax.Array, x, y, *, sampling_strategy="auto",
                      where=None) -> tuple[jax.Array, jax.Array]:
  r"""Random oversampling: duplicates random members of minority classes.

  For each class ``c`` to oversample, ``n_c`` indices are drawn uniformly
  *with replacement* from the class's members and those rows are appended
  (imbalanced-learn's ``RandomOverSampler`` without shrinkage).

  Args:
    key: a PRNG key.
    x: ``[N, ...]`` features (any dtype; concrete).
    y: ``[N]`` integer labels.
    sampling_strategy: imbalanced-learn semantics (module docstring).
    where: optional ``[N]`` bool mask; masked rows are dropped.

  Returns:
    ``(x_resampled, y_resampled)``: originals first, then the copies class by
    class in increasing label order.

  Raises:
    ValueError: empty input or an invalid ``sampling_strategy``.

  Examples:
    >>> x = jnp.arange(5.)[:, None]
    >>> y = jnp.array([0, 0, 0, 1, 1])
    >>> xr, yr = random_oversample(jax.random.key(0), x, y)
    >>> print(yr.tolist(), bool(xr[5, 0] >= 3))
    [0, 0, 0, 1, 1, 1] True

  References:
    Lemaître et al., `Imbalanced-learn`, JMLR 2017.
  """
  x_np, y_np = _prepare_xy(x, y, where)
  targets = _class_targets(y_np, sampling_strategy, over=True)
  idx = [np.arange(y_np.shape[0])]
  for c in sorted(targets):
    members = np.flatnonzero(y_np == c)
    pick = jax.random.randint(jax.random.fold_in(key, c), (targets[c],), 0,
                              members.shape[0])
    idx.append(members[np.asarray(pick)])
  idx = np.concatenate(idx)
  return jnp.asarray(x_np)[idx], jnp.asarray(y_np)[idx]


def random_undersample(key: jax.Array, x, y, *, sampling_strategy="auto",
                       where=None) -> tuple[jax.Array, jax.Array]:
  r"""Random undersampling: keeps a random subset of the larger classes.

  Each class to undersample keeps ``n_c`` of its members drawn uniformly
  *without replacement* (in their original relative order); other classes are
  kept whole (imbalanced-learn's ``RandomUnderSampler``).

  Args:
    key: a PRNG key.
    x: ``[N, ...]`` features (any dtype; concrete).
    y: ``[N]`` integer labels.
    sampling_strategy: imbalanced-learn semantics (module docstring); by default
      every class but the minority is cut to the minority count.
    where: optional ``[N]`` bool mask; masked rows are dropped.

  Returns:
    ``(x_resampled, y_resampled)``, grouped by class in increasing label order.

  Raises:
    ValueError: empty input or an invalid ``sampling_strategy`` (e.g. a negative
      or too large target count).

  Examples:
    >>> x = jnp.arange(6.)[:, None]
    >>> y = jnp.array([0, 0, 0, 0, 1, 1])
    >>> xr, yr = random_undersample(jax.random.key(0), x, y)
    >>> print(yr.tolist())
    [0, 0, 1, 1]

  References:
    Lemaître et al., `Imbalanced-learn`, JMLR 2017.

    Catalog: seed_001 #5.
  """
  x_np, y_np = _prepare_xy(x, y, where)
  targets = _class_targets(y_np, sampling_strategy, over=False)
  idx = []
  for c in np.unique(y_np).tolist():
    members = np.flatnonzero(y_np == c)
    if c in targets:
      perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, c),
                                               members.shape[0]))
      members = np.sort(members[perm[:targets[c]]])
    idx.append(members)
  idx = np.concatenate(idx)
  return jnp.asarray(x_np)[idx], jnp.asarray(y_np)[idx]


def rs2_indices(key: jax.Array, num_examples: int, *, fraction: float,
                epoch) -> jax.Array:
  r"""RS2 without replacement: the indices of one epoch's random subset.

  Let :math:`s = \lceil f N \rceil` and :math:`C = \lceil N / s \rceil`. Epoch
  ``e`` belongs to round :math:`r = \lfloor e / C \rfloor`; round ``r``
  shuffles the data once (``permutation(fold_in(key, r), N)``) and its
  ``C`` epochs walk through that permutation in consecutive chunks of ``s``.
  The last chunk of a round, when ``N`` is not a multiple of ``s``, wraps
  around to the round's first indices so every epoch has exactly ``s`` distinct
  indices. Hence: no index repeats within an epoch, every example is seen once
  per round (a few ``s·C − N`` twice), and then the data are reshuffled — the
  "walk through a random permutation, reshuffle when exhausted" rule of RS2.

  Jittable; ``epoch`` may be traced, ``num_examples`` and ``fraction`` are
  static.

  Args:
    key: a PRNG key (the same for every epoch of a run).
    num_examples: ``N`` (static int ≥ 1).
    fraction: ``f`` in (0, 1] (static).
    epoch: the epoch number (int ≥ 0, may be traced).

  Returns:
    ``int32[s]`` indices into the data set.

  Raises:
    ValueError: ``num_examples < 1``, ``fraction`` outside (0, 1], or a
      concrete negative ``epoch``.

  Examples:
    >>> key = jax.random.key(0)
    >>> idx = jnp.concatenate([rs2_indices(key, 10, fraction=0.2, epoch=e)
    ...                        for e in range(5)])
    >>> sorted(idx.tolist())
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

  References:
    Okanovic et al., `Repeated Random Sampling for Minimizing the
    Time-to-Accuracy of Learning`, ICLR 2024, arXiv:2305.18424.

    Catalog: seed_001 #15.
  """
  n = _check_int(num_examples, "num_examples", lower=1)
  if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
    raise TypeError(f"`fraction` must be a static float, got {fraction!r}.")
  if not 0.0 < float(fraction) <= 1.0:
    raise ValueError(f"`fraction` must be in (0, 1], got {fraction}.")
  if checks.is_concrete(epoch) and int(np.asarray(epoch)) < 0:
    raise ValueError(f"`epoch` must be >= 0, got {int(np.asarray(epoch))}.")
  s = min(n, max(1, math.ceil(float(fraction) * n - 1e-9)))
  return _rs2(key, jnp.asarray(epoch, jnp.int32), n=n, s=s)


@functools.partial(jax.jit, static_argnames=("n", "s"))
def _rs2(key, epoch, *, n: int, s: int):
  chunks = -(-n // s)
  rnd, j = epoch // chunks, epoch % chunks
  perm = jax.random.permutation(jax.random.fold_in(key, rnd), n)
  pos = (j * s + jnp.arange(s, dtype=jnp.int32)) % n
  return perm[pos].astype(jnp.int32)
