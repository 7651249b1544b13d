r"""Scaling laws for data filtering: utility decay and the quality-quantity trade-off.

Goyal, Maini et al. (CVPR 2024) model the error of a model trained on ``n``
samples drawn (with repetition) from a finite data pool of size ``S``. A
fresh pool follows a power law :math:`y \propto n^{b}` whose exponent
:math:`b < 0` is the pool's *utility* (high-quality data: steeper decay); each
repetition of the pool has less utility,

.. math::
  b_k = b \cdot 2^{-(k-1)/\tau}

for the :math:`k`-th pass over the pool, with half-life :math:`\tau` (in
passes). The error continues multiplicatively from pass to pass: pass
:math:`k` covers samples :math:`((k-1)S, kS]` and multiplies the error by
:math:`(n_k / n_{k-1})^{b_k}`. Combining pools (uniform sampling from their
union) gives an *effective utility*, the size-weighted mean of the pools'
decayed utilities. Hence the quality-quantity trade-off (QQT): a small
top-quality pool wins at small compute, while at large compute its repeated
passes are worth less than fresh lower-quality data, so the best filter
(how many quality buckets to keep, :func:`best_bucket_count`) depends on the
training budget.

* :func:`repeated_data_utility`: :math:`b_k`.
* :func:`repeated_data_error`: predicted error of one pool after ``n`` samples.
* :func:`pool_mixture_error`: predicted error of a union of pools.
* :func:`best_bucket_count`: error of the top-``p`` quality buckets for every
  ``p`` and the best ``p`` at a compute budget.

All predictions are jittable and differentiable in ``a, b, tau, d`` (fit them
to measured curves with ``jax.grad`` / optax); the sample counts and pool sizes
are static (they fix the number of passes).

References:
  Goyal, Maini, Lipton, Raghunathan, Kolter, `Scaling Laws for Data
  Filtering -- Data Curation cannot be Compute Agnostic
  <https://arxiv.org/abs/2404.07177>`_, CVPR 2024. Code:
  ``github.com/locuslab/scaling_laws_data_filtering`` (``objective.py``,
  ``estimate_best_pool.py``).
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks


def _static_positive(value, name: str) -> float:
  if (isinstance(value, bool) or not isinstance(value, numbers.Real)
      or not math.isfinite(float(value)) or float(value) <= 0):
    raise ValueError(f"`{name}` must be a static number > 0, got {value!r}.")
  return float(value)


def _num_passes(n, size: float, max_repetitions) -> tuple[jax.Array, int]:
  """``n`` as float32 and the (static) number of passes to model."""
  if max_repetitions is not None:
    if (isinstance(max_repetitions, bool)
        or not isinstance(max_repetitions, numbers.Integral)
        or max_repetitions < 1):
      raise ValueError(f"`max_repetitions` must be a static int >= 1, got "
                       f"{max_repetitions!r}.")
    passes = int(max_repetitions)
  elif not checks.is_concrete(n):
    raise ValueError("`num_samples` is traced; pass a static "
                     "`max_repetitions` (the number of passes to model).")
  else:
    arr = np.asarray(n, np.float64)
    needed = max(1, int(np.ceil(arr.max() / size))) if arr.size else 1
    passes = 1 << (needed - 1).bit_length()  # a power of 2: fewer compiles
  if checks.is_concrete(n):
    arr = np.asarray(n, np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() > 0):
      raise ValueError("`num_samples` must be finite and > 0.")
  return jnp.asarray(n, jnp.float32), passes


def _check_params(a, tau) -> None:
  checks.check_scalar(a, "a", positive=True)
  if checks.is_concrete(tau):
    t = np.asarray(tau, np.float64)
    if t.size and not (np.all(np.isfinite(t)) and t.min() > 0):
      raise ValueError(f"`tau` (the half-life) must be > 0, got {t}.")


def _decay(j: jax.Array, tau) -> jax.Array:
  """``2^{-(j-1)/tau}`` for passes ``j`` (1-based)."""
  return jnp.exp2(-(j - 1.0) / tau)


def _error(n: jax.Array, size: float, a, d, b_rep: jax.Array) -> jax.Array:
  """The multiplicative pass-by-pass law for per-pass utilities ``b_rep``."""
  passes = b_rep.shape[-1]
  j = jnp.arange(1, passes + 1, dtype=jnp.float32)
  start = (j - 1.0) * size
  n_ = n[..., None]
  later = (j > 1) & (n_ > start)
  seg = jnp.where(later, jnp.minimum(n_ - start, size), 0.0)
  log_ratio = jnp.log1p(seg / jnp.where(j > 1, start, 1.0))
  tail = jnp.sum(b_rep[1:] * log_ratio[..., 1:], -1)
  first = b_rep[0] * jnp.log(a * jnp.minimum(n, size))
  return (d + jnp.exp(first)) * jnp.exp(tail)


@functools.partial(jax.jit, static_argnames=("passes",))
def _mixture(n, size, a, d, b, tau, frac, *, passes):
  j = jnp.arange(1, passes + 1, dtype=jnp.float32)[:, None]
  b_rep = jnp.sum(frac * b * _decay(j, tau), -1)
  return _error(n, size, a, d, b_rep)


@functools.partial(jax.jit, static_argnames=("passes", "scale"))
def _buckets(n, size, a, d, b, tau, *, passes, scale):
  order = jnp.argsort(b, stable=True)
  b, tau = b[order], tau[order]
  errors = []
  for p in range(1, b.shape[0] + 1):
    j = jnp.arange(1, -(-passes // p) + 1, dtype=jnp.float32)[:, None]
    t = tau[:p] * p if scale else tau[:p]
    errors.append(_error(n, p * size, a, d, jnp.mean(b[:p] * _decay(j, t), -1)))
  errors = jnp.stack(errors)
  return errors, (jnp.argmin(errors) + 1).astype(jnp.int32)


def _f32(x) -> jax.Array:
  return jnp.asarray(x, jnp.float32)


def repeated_data_utility(b, repetition, *, tau) -> jax.Array:
  r"""Utility (scaling exponent) of a data pool at its ``k``-th repetition.

  .. math::
    b_k = b \cdot 2^{-(k-1)/\tau},

  so the utility halves every :math:`\tau` passes (``tau``, the half-life);
  :math:`b_1 = b` is the fresh pool's utility. Follows the authors' code
  (``delta = 0.5 ** (epoch / c)`` with 0-based ``epoch = k - 1``).

  Args:
    b: the fresh pool's utility (negative for a decreasing error); scalar or
      array, may be traced.
    repetition: the pass number :math:`k \geq 1` (int or array).
    tau: the half-life :math:`\tau > 0` in passes (may be traced).

  Returns:
    float32 :math:`b_k`, broadcast over ``b``, ``repetition`` and ``tau``.

  Raises:
    ValueError: (eagerly) ``repetition`` < 1 or ``tau`` <= 0.

  Examples:
    >>> print(repeated_data_utility(-0.2, jnp.array([1, 2, 3]), tau=2.0))
    [-0.2        -0.14142136 -0.1       ]

  References:
    Goyal et al., `Scaling Laws for Data Filtering`, CVPR 2024,
    arXiv:2404.07177.

    Catalog: seed_002 #18.
  """
  _check_params(1.0, tau)
  if checks.is_concrete(repetition):
    k = np.asarray(repetition)
    if k.size and k.min() < 1:
      raise ValueError(f"`repetition` must be >= 1 (1 = first pass), got {k}.")
  k = jnp.asarray(repetition, jnp.float32)
  return jnp.asarray(b, jnp.float32) * _decay(k, jnp.asarray(tau, jnp.float32))


def repeated_data_error(num_samples, *, pool_size, a, b, tau, d=0.0,
                        max_repetitions: int | None = None) -> jax.Array:
  r"""Predicted error after ``n`` samples drawn in passes over a pool of size S.

  With :math:`n_k = \min(n, kS)` and :math:`b_k` from
  :func:`repeated_data_utility`,

  .. math::
    y(n) = \big(d + (a\,n_1)^{b_1}\big)
      \prod_{k=2}^{\lceil n/S \rceil} \Big(\frac{n_k}{n_{k-1}}\Big)^{b_k},

  i.e. a power law :math:`d + (a n)^{b}` during the first pass, then each
  pass continues the curve with its decayed utility. This is the authors'
  ``func_effective_utility`` (they measure ``n`` in units of 10⁵ samples:
  their ``a`` is ours times 10⁵). As in their code, ``d`` is added before the
  repetition factors, so after the first pass it is scaled with them.

  Args:
    num_samples: ``n > 0`` (scalar or array of sample counts). Static unless
      ``max_repetitions`` is given.
    pool_size: ``S`` (static number > 0).
    a: sample-scale :math:`a > 0` (may be traced).
    b: fresh utility :math:`b` (typically < 0; may be traced).
    tau: half-life :math:`\tau > 0` in passes (may be traced).
    d: offset (the error floor of the first pass; may be traced).
    max_repetitions: number of passes to model (static); required when
      ``num_samples`` is traced, passes beyond it are dropped.

  Returns:
    float32 errors with the shape of ``num_samples``.

  Raises:
    ValueError: non-positive ``pool_size`` / ``a`` / ``tau`` /
      ``num_samples``, or a traced ``num_samples`` without
      ``max_repetitions``.

  Examples:
    >>> n = jnp.array([500., 1000., 2000., 4000.])
    >>> print(repeated_data_error(n, pool_size=1000, a=1.0, b=-0.5, tau=1.0))
    [0.04472136 0.03162277 0.02659148 0.0248269 ]

  References:
    Goyal et al., `Scaling Laws for Data Filtering`, CVPR 2024,
    arXiv:2404.07177.

    Catalog: seed_002 #18.
  """
  size = _static_positive(pool_size, "pool_size")
  _check_params(a, tau)
  n, passes = _num_passes(num_samples, size, max_repetitions)
  for name, v in (("a", a), ("b", b), ("tau", tau), ("d", d)):
    if jnp.ndim(v) != 0:
      raise ValueError(f"`{name}` must be a scalar, got shape {jnp.shape(v)}.")
  return _mixture(n, _f32(size), _f32(a), _f32(d), _f32(b)[None],
                  _f32(tau)[None], _f32([1.0]), passes=passes)


def _pool_vectors(b, tau, num_pools: int):
  b = jnp.asarray(b, jnp.float32)
  tau = jnp.asarray(tau, jnp.float32)
  for name, v in (("b", b), ("tau", tau)):
    if v.shape != (num_pools,):
      raise ValueError(f"`{name}` must have one entry per pool, shape "
                       f"({num_pools},), got {v.shape}.")
  return b, tau


def pool_mixture_error(num_samples, *, pool_sizes, a, b, tau, d=0.0,
                       max_repetitions: int | None = None) -> jax.Array:
  r"""Predicted error when training on the union of several data pools.

  Sampling uniformly from the union (size :math:`S = \sum_i S_i`), every
  pass over the union is a pass over each pool, and the union's utility at
  pass :math:`k` is the size-weighted mean of the pools' decayed utilities

  .. math::
    b^{\mathrm{eff}}_k = \sum_i \frac{S_i}{S}\, b_i\, 2^{-(k-1)/\tau_i},

  which then drives the law of :func:`repeated_data_error` with pool size
  :math:`S`. This predicts a combination from per-pool fits, without
  training on it. For equal pool sizes it is the authors'
  ``func_effective_utility_aggregation`` (a plain mean); the size weighting
  of unequal pools is our generalisation.

  Args:
    num_samples: ``n > 0`` (static unless ``max_repetitions`` is given).
    pool_sizes: ``[P]`` static pool sizes :math:`S_i > 0`.
    a: sample-scale :math:`a > 0` shared by the pools (may be traced).
    b: ``[P]`` fresh utilities (may be traced).
    tau: ``[P]`` half-lives (may be traced).
    d: offset, as in :func:`repeated_data_error`.
    max_repetitions: passes over the union to model (static).

  Returns:
    float32 errors with the shape of ``num_samples``.

  Raises:
    ValueError: empty or non-positive ``pool_sizes``, ``b`` / ``tau`` not of
      shape ``[P]``, and the errors of :func:`repeated_data_error`.

  Examples:
    >>> y = pool_mixture_error(4000., pool_sizes=[1000, 1000], a=1.0,
    ...                        b=[-0.5, -0.3], tau=[1.0, 3.0])
    >>> print(y)
    0.0403757

  References:
    Goyal et al., `Scaling Laws for Data Filtering`, CVPR 2024,
    arXiv:2404.07177.

    Catalog: seed_002 #18.
  """
  sizes = np.asarray(pool_sizes, np.float64)
  if sizes.ndim != 1 or sizes.size == 0 or not np.all(sizes > 0):
    raise ValueError(f"`pool_sizes` must be a non-empty 1-D list of static "
                     f"sizes > 0, got {pool_sizes!r}.")
  b, tau = _pool_vectors(b, tau, sizes.size)
  _check_params(a, tau)
  total = float(sizes.sum())
  n, passes = _num_passes(num_samples, total, max_repetitions)
  return _mixture(n, _f32(total), _f32(a), _f32(d), b, tau,
                  _f32(sizes / total), passes=passes)


def best_bucket_count(num_samples, *, bucket_size, a, b, tau, d=0.0,
                      scale_half_life: bool = True
                      ) -> tuple[jax.Array, jax.Array]:
  r"""QQT bucket selection: how many top-quality buckets to train on.

  The data are split into quality buckets of equal size :math:`S` (e.g. the
  top 10 %, 10-20 %, ... of a filter's scores), each with a fitted utility
  :math:`b_i` and half-life :math:`\tau_i`. Sorting the buckets by utility
  (most negative :math:`b` first), the pool of the top :math:`p` buckets has
  size :math:`pS` and, by :func:`pool_mixture_error`, the predicted error

  .. math::
    y_p(n) \text{ with } b^{\mathrm{eff}}_k = \frac{1}{p}\sum_{i \le p}
      b_i\, 2^{-(k-1)/(p\,\tau_i)} .

  The half-lives are multiplied by :math:`p` as in the authors'
  ``estimate_best_pool.py`` (``scale_half_life=False`` uses them as given).
  The best filter for a budget of ``n`` samples is :math:`\arg\min_p y_p(n)`:
  few buckets at small ``n``, more as ``n`` grows.

  Args:
    num_samples: the training budget ``n > 0`` (static scalar).
    bucket_size: ``S`` (static number > 0).
    a: sample-scale :math:`a > 0` (may be traced).
    b: ``[P]`` bucket utilities (may be traced).
    tau: ``[P]`` bucket half-lives (may be traced).
    d: offset, as in :func:`repeated_data_error`.
    scale_half_life: multiply the half-lives by :math:`p` (static bool).

  Returns:
    ``(errors float32[P], best int32)``: ``errors[p - 1]`` is :math:`y_p(n)`
    and ``best`` the minimising :math:`p` (ties: the smallest).

  Raises:
    ValueError: a non-scalar or non-positive ``num_samples``, ``b`` and
      ``tau`` of different lengths, and the errors of
      :func:`pool_mixture_error`.

  Examples:
    >>> b, tau = [-0.16, -0.125, -0.1, -0.085], [6.7, 8.5, 5.3, 2.3]
    >>> for n in (3.2e7, 1.28e8, 3e9):   # buckets of 10% of 128M samples
    ...   err, best = best_bucket_count(n, bucket_size=1.28e7, a=2.5e-7,
    ...                                 b=b, tau=tau, d=0.1)
    ...   print(int(best))
    1
    2
    3

  References:
    Goyal et al., `Scaling Laws for Data Filtering`, CVPR 2024,
    arXiv:2404.07177.

    Catalog: seed_002 #18.
  """
  size = _static_positive(bucket_size, "bucket_size")
  if not checks.is_concrete(num_samples) or np.ndim(num_samples) != 0:
    raise ValueError("`num_samples` must be a static scalar budget, got "
                     f"{num_samples!r}.")
  b = jnp.asarray(b, jnp.float32)
  tau = jnp.asarray(tau, jnp.float32)
  if b.ndim != 1 or b.shape != tau.shape or b.shape[0] == 0:
    raise ValueError(f"`b` and `tau` must be non-empty 1-D arrays of the same "
                     f"length, got shapes {b.shape} and {tau.shape}.")
  _check_params(a, tau)
  n, passes = _num_passes(num_samples, size, None)
  return _buckets(n, _f32(size), _f32(a), _f32(d), b, tau, passes=passes,
                  scale=bool(scale_half_life))
