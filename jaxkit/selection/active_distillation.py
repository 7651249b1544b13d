r"""Active distillation: which points to send to a costly, fallible teacher.

* :func:`rad_query_distribution`: Robust Active Distillation's minimax query
  distribution, trading the informativeness of a point against the risk that
  the teacher labels it wrongly.
* :func:`rad_select`: draws a fixed-size query set from that distribution.

Both are jittable on fixed shapes; masks (``where``) exclude padding.

References:
  Baykal, Trinh, Iliopoulos, Menghani, Vee, `Robust Active Distillation
  <https://arxiv.org/abs/2210.01213>`_, ICLR 2023.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
# Explicit-mode sharded inputs are gathered before a global sort.
from jaxkit.divergences.kernel import _replicate_sample_axes as _replicate

# Gains below this fraction of the largest gain count as 0 (never queried):
# keeps the sums of 1/g finite in float32.
_REL_TINY = 1e-30


def _prepare(gains, teacher_correct_probs, num_mistakes, where):
  """Validates inputs; returns (gains float32 [N], valid mask, k scalar)."""
  g = checks.check_floating(gains, "gains")
  checks.check_rank(g, 1, "gains")
  n = g.shape[0]
  if checks.is_concrete(g) and n:
    arr = np.asarray(g, np.float64)
    if not np.all(np.isfinite(arr)) or arr.min() < 0:
      raise ValueError("`gains` must be finite and non-negative "
                       "(informativeness scores), got values in "
                       f"[{arr.min()}, {arr.max()}].")
  mask = checks.check_where(where, (n,), "where")
  valid = jnp.ones((n,), bool) if mask is None else mask
  if (teacher_correct_probs is None) == (num_mistakes is None):
    raise ValueError("Pass exactly one of `teacher_correct_probs` (per-point "
                     "probability that the teacher labels it correctly) and "
                     "`num_mistakes` (the adversary's budget k).")
  if teacher_correct_probs is not None:
    q = checks.check_floating(teacher_correct_probs, "teacher_correct_probs")
    if q.shape != (n,):
      raise ValueError(f"`teacher_correct_probs` must have shape ({n},) (one "
                       f"per point), got {q.shape}.")
    if checks.is_concrete(q) and n:
      arr = np.asarray(q, np.float64)
      if np.any(np.isnan(arr)) or arr.min() < 0 or arr.max() > 1:
        raise ValueError("`teacher_correct_probs` must lie in [0, 1].")
    q = jnp.clip(jnp.nan_to_num(q.astype(jnp.float32)), 0.0, 1.0)
    k = jnp.sum(jnp.where(valid, 1.0 - q, 0.0))
  else:
    checks.check_scalar(num_mistakes, "num_mistakes", nonnegative=True)
    k = jnp.asarray(num_mistakes, jnp.float32)
  g = g.astype(jnp.float32)
  g = jnp.where(valid & jnp.isfinite(g), jnp.maximum(g, 0.0), 0.0)
  return g, valid, jax.lax.stop_gradient(k)


def rad_query_distribution(gains: jax.Array, *,
                           teacher_correct_probs: jax.Array | None = None,
                           num_mistakes: float | None = None,
                           where: jax.Array | None = None) -> jax.Array:
  r"""RAD's minimax distribution over the points to query from the teacher.

  The learner draws a point :math:`i` from :math:`p` and gains
  :math:`g_i \ge 0` (its informativeness for the student, e.g. the student's
  uncertainty :math:`1 - \text{margin}`) if the teacher labels it correctly
  and nothing otherwise. An adversary decides which points the teacher gets
  wrong, with a budget of :math:`k` mistakes (fractional corruptions
  :math:`c_i \in [0, 1]`, :math:`\sum_i c_i \le k`). RAD plays the zero-sum
  game

  .. math::
    \max_{p \in \Delta_N}\ \min_{c \in [0,1]^N,\ \sum_i c_i \le k}\
      \sum_i p_i\, g_i\, (1 - c_i).

  The adversary removes the :math:`k` largest :math:`p_i g_i`, so the learner
  equalises :math:`p_i g_i` on the :math:`m` most informative points; with
  the gains sorted decreasingly, :math:`g_{(1)} \ge g_{(2)} \ge \dots`,

  .. math::
    m^\star = \arg\max_{m} \frac{m - k}{\sum_{j \le m} 1/g_{(j)}}, \qquad
    p_{(i)} = \frac{1/g_{(i)}}{\sum_{j \le m^\star} 1/g_{(j)}}
      \ \ (i \le m^\star), \qquad p_{(i)} = 0 \ \ (i > m^\star),

  and the game value is the maximised ratio. Within the support *less*
  informative points get *more* mass (a hedge: points the adversary would
  target first are down-weighted). With :math:`k = 0` RAD queries the most
  informative point; as :math:`k` grows it spreads over more points.
  Parameter-free: :math:`k` is the expected number of teacher mistakes,
  :math:`k = \sum_i (1 - q_i)` over the valid points when the per-point
  probabilities :math:`q_i` that the teacher is correct are given (e.g. the
  teacher's calibrated confidence), or ``num_mistakes`` directly.

  The closed form above was derived here from the game (the inner
  minimisation is the LP dual of a top-:math:`k` sum; the outer optimum is a
  vertex with equal :math:`p_i g_i` on a top set) and is checked in the tests
  against a brute-force search over the simplex; it reproduces the
  structure described by the paper (sort by gain, :math:`p \propto 1/g` on
  the top :math:`m^\star`). The authors' code was not found. Ties between
  equal gains are broken by index. If :math:`k` is at least the number of
  points with a positive gain, every strategy has value 0 and the
  distribution is :math:`p \propto 1/g` over all of them.

  Args:
    gains: ``[N]`` non-negative informativeness scores. Gains below
      ``1e-30`` times the largest one count as 0 (never queried); under
      ``jit`` (no value check) negative or non-finite gains count as 0.
    teacher_correct_probs: ``[N]`` probabilities in ``[0, 1]`` that the
      teacher's label is correct; gives :math:`k = \sum (1 - q_i)`.
    num_mistakes: :math:`k \ge 0` directly (float, may be traced). Pass
      exactly one of the two.
    where: optional ``[N]`` mask of candidate points.

  Returns:
    ``[N]`` float32 probabilities summing to 1 over the valid points (all 0
    when no valid point has a positive gain).

  Raises:
    ValueError: wrong rank / shape, negative gains or probabilities outside
      ``[0, 1]`` (eagerly), both or neither of ``teacher_correct_probs`` and
      ``num_mistakes``, negative ``num_mistakes``.
    TypeError: non-floating inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import selection
    >>> g = jnp.array([1.0, 0.5, 0.25, 0.0])
    >>> print(selection.rad_query_distribution(g, num_mistakes=0.0))
    [1. 0. 0. 0.]
    >>> print(selection.rad_query_distribution(g, num_mistakes=1.0))
    [0.33333334 0.6666667  0.         0.        ]

  References:
    Baykal, Trinh, Iliopoulos, Menghani, Vee. "Robust Active Distillation",
    ICLR 2023, arXiv:2210.01213 (2022).

    Catalog: seed_000 #19.
  """
  g, valid, k = _prepare(gains, teacher_correct_probs, num_mistakes, where)
  n = g.shape[0]
  if n == 0:
    return jnp.zeros((0,), jnp.float32)
  g, valid = _replicate(g, 0), _replicate(valid, 0)
  top = jnp.max(g, initial=0.0)
  rel = g / jnp.where(top > 0, top, 1.0)
  pos = valid & (rel > _REL_TINY)
  key = jnp.where(pos, rel, -1.0)
  order = jnp.argsort(-key, stable=True)
  rs, ps = rel[order], pos[order]
  inv = jnp.where(ps, 1.0 / jnp.where(ps, rs, 1.0), 0.0)
  csum = jnp.cumsum(inv)
  m = jnp.arange(1, n + 1, dtype=jnp.float32)
  value = jnp.where(ps, (m - k) / jnp.where(ps, csum, 1.0), -jnp.inf)
  best = jnp.argmax(value)
  member = ps & (jnp.arange(n) <= best)
  total = csum[best]
  p_sorted = jnp.where(member & (total > 0),
                       inv / jnp.where(total > 0, total, 1.0), 0.0)
  p = jnp.zeros((n,), jnp.float32).at[order].set(p_sorted)
  return jax.lax.stop_gradient(p)


def rad_select(key: jax.Array, gains: jax.Array, *, budget: int,
               teacher_correct_probs: jax.Array | None = None,
               num_mistakes: float | None = None,
               where: jax.Array | None = None) -> jax.Array:
  r"""Draws ``budget`` distinct points to query with RAD's distribution.

  Samples without replacement from :func:`rad_query_distribution` with the
  Gumbel-top-:math:`b` trick (keys :math:`\log p_i + G_i`, :math:`G_i`
  standard Gumbel), so the first draw follows :math:`p` exactly and later
  ones follow :math:`p` renormalised over the points not yet drawn. When the
  support of :math:`p` has fewer than :math:`b` points, the remaining queries
  go to the other valid points in decreasing order of gain (points with zero
  gain last); when :math:`b` exceeds the number of valid points the tail holds
  masked indices (check them against ``where``), as in
  :func:`prune_by_score`. The paper queries its budget from the same
  distribution; whether with or without replacement was not checked.

  Args:
    key: a PRNG key.
    gains: ``[N]`` non-negative informativeness scores.
    budget: :math:`b`, the number of queries (static int in ``[1, N]``).
    teacher_correct_probs: as in :func:`rad_query_distribution`.
    num_mistakes: as in :func:`rad_query_distribution`.
    where: optional ``[N]`` mask of candidate points.

  Returns:
    ``int32[budget]`` distinct indices, support draws first.

  Raises:
    ValueError: as :func:`rad_query_distribution`, and ``budget`` outside
      ``[1, N]``.
    TypeError: non-int ``budget`` or non-floating inputs.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jaxkit import selection
    >>> g = jnp.array([1.0, 0.5, 0.25, 0.0])
    >>> idx = selection.rad_select(jax.random.key(0), g, budget=3,
    ...                            num_mistakes=1.0)
    >>> print(sorted(idx.tolist()))
    [0, 1, 2]

  References:
    Baykal, Trinh, Iliopoulos, Menghani, Vee. "Robust Active Distillation",
    ICLR 2023, arXiv:2210.01213 (2022).

    Catalog: seed_000 #19.
  """
  if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
    raise TypeError(f"`budget` must be a static int, got {budget!r}.")
  n = jnp.shape(gains)[0] if jnp.ndim(gains) else 0
  if not 1 <= budget <= n:
    raise ValueError(f"`budget` must be in [1, N={n}], got {budget}.")
  p = rad_query_distribution(gains, teacher_correct_probs=teacher_correct_probs,
                             num_mistakes=num_mistakes, where=where)
  g, valid, _ = _prepare(gains, teacher_correct_probs, num_mistakes, where)
  g = _replicate(g, 0)
  valid = _replicate(valid, 0)
  top = jnp.max(g, initial=0.0)
  rel = g / jnp.where(top > 0, top, 1.0)
  gumbel = jax.random.gumbel(key, (n,), jnp.float32)
  logp = jnp.log(jnp.where(p > 0, p, 1.0))
  # Three tiers: support (perturbed log p, > -1e4), other valid points by
  # gain (in [-3e4, -2e4]), masked points last.
  score = jnp.where(p > 0, jnp.maximum(logp + gumbel, -1e4),
                    jnp.where(valid, -3e4 + 1e4 * rel, -jnp.inf))
  return jax.lax.top_k(score, budget)[1].astype(jnp.int32)
