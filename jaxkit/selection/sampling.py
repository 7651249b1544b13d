r"""Loss- and gradient-driven example sampling, dynamic pruning, memorisation.

* :func:`grad_norm_probs`, :func:`importance_sample`,
  :func:`last_layer_grad_norm`: importance sampling of training examples with
  probabilities proportional to their gradient norms and unbiased
  :math:`1/(N p_i)` weights (PA&DA; Katharopoulos & Fleuret 2018).
* :func:`infobatch_select`: InfoBatch's dynamic pruning of "well-learned"
  examples with rescaled weights for the kept ones.
* :func:`memorization_scores`: Feldman's subsampled memorisation estimator.

Every function is jittable and works on fixed shapes (selections are masks or
fixed-size index sets); reductions over the data axis (means, normalisers) are
global, so sharded inputs give the same result as unsharded ones.

References:
  Lu et al., `PA&DA: Jointly Sampling PAth and DAta for Consistent NAS
  <https://arxiv.org/abs/2302.14772>`_, CVPR 2023.

  Katharopoulos, Fleuret, `Not All Samples Are Created Equal: Deep Learning
  with Importance Sampling <https://arxiv.org/abs/1803.00942>`_, ICML 2018.

  Qin et al., `InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data
  Pruning <https://arxiv.org/abs/2303.04947>`_, ICLR 2024.

  Feldman, Zhang, `What Neural Networks Memorize and Why: Discovering the Long
  Tail via Influence Estimation <https://arxiv.org/abs/2008.03703>`_, NeurIPS
  2020.
"""

from __future__ import annotations

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
  return x


def _mask(where, n: int):
  if where is None:
    return None
  return checks.check_where(where, (n,), "where")


def grad_norm_probs(grad_norms: jax.Array, *, mix_uniform: float = 0.0,
                    where: jax.Array | None = None) -> jax.Array:
  r"""Sampling probabilities proportional to per-example gradient norms.

  .. math::
    p_i = (1 - \lambda)\,\frac{g_i}{\sum_j g_j} + \frac{\lambda}{N_{valid}},

  the variance-optimal importance distribution for the norm of the averaged
  gradient (:math:`p_i \propto \|g_i\|`), mixed with the uniform distribution
  by ``mix_uniform`` (:math:`\lambda`) for robustness. Masked examples get
  probability 0; if every valid norm is 0 the result is uniform over the
  valid examples; with no valid example it is all zeros.

  Args:
    grad_norms: ``[N]`` non-negative floating norms (e.g. from
      :func:`last_layer_grad_norm` or ``jaxkit.selection.grand_scores``).
    mix_uniform: :math:`\lambda \in [0, 1]`.
    where: optional ``[N]`` bool mask of the examples that can be drawn.

  Returns:
    ``[N]`` float32 probabilities summing to 1 (or all 0, see above).

  Raises:
    ValueError: wrong rank, ``mix_uniform`` outside [0, 1], or (eagerly)
      negative norms.

  Examples:
    >>> print(grad_norm_probs(jnp.array([1., 3., 0.]), mix_uniform=0.25))
    [0.27083334 0.6458333  0.08333334]

  References:
    Lu et al., PA&DA, CVPR 2023, arXiv:2302.14772.

    Catalog: seed_001 #45.
  """
  g = _vector(grad_norms, "grad_norms")
  checks.check_scalar(mix_uniform, "mix_uniform", lower=0.0, upper=1.0)
  if checks.is_concrete(g) and g.size and float(np.min(np.asarray(g))) < 0:
    raise ValueError("`grad_norms` must be >= 0 (they are norms).")
  n = g.shape[0]
  mask = _mask(where, n)
  valid = jnp.ones((n,), bool) if mask is None else mask
  g = jnp.where(valid, jnp.nan_to_num(g.astype(jnp.float32)), 0.0)
  count = jnp.sum(valid)
  uniform = valid / jnp.maximum(count, 1)
  total = jnp.sum(g)
  prop = jnp.where(total > 0, g / jnp.where(total > 0, total, 1.0), uniform)
  return (1.0 - mix_uniform) * prop + mix_uniform * uniform


def importance_sample(key: jax.Array, probs: jax.Array, num_samples: int, *,
                      num_examples: int | None = None
                      ) -> tuple[jax.Array, jax.Array]:
  r"""Draws examples i.i.d. from ``probs`` with unbiased weights 1/(N p_i).

  .. math::
    \mathbb{E}_{i \sim p}\Big[\frac{f_i}{N p_i}\Big]
      = \frac{1}{N} \sum_{i=1}^{N} f_i,

  so ``mean(weights * per_example_loss[idx])`` is an unbiased estimate of the
  full-data mean loss (and of its gradient). Sampling is with replacement.

  Args:
    key: a PRNG key.
    probs: ``[N]`` probabilities (sum 1; zero entries are never drawn).
    num_samples: ``k`` (static int ≥ 1).
    num_examples: the ``N`` of the normaliser (static); default ``probs.shape[0]``.
      Pass the number of valid examples when ``probs`` has masked zeros and the
      target is the mean over valid examples.

  Returns:
    ``(idx int32[k], weights float32[k])``.

  Raises:
    ValueError: wrong rank, ``num_samples`` < 1, or (eagerly) probabilities that
      are negative or do not sum to 1.

  Examples:
    >>> p = jnp.array([0.5, 0.25, 0.25, 0.0])
    >>> idx, w = importance_sample(jax.random.key(0), p, 3)
    >>> print(bool(jnp.all(idx < 3)), jnp.round(w[idx == 0], 2))
    True [0.5...]

  References:
    Katharopoulos, Fleuret, ICML 2018, arXiv:1803.00942; Lu et al., PA&DA, CVPR
    2023, arXiv:2302.14772.

    Catalog: seed_001 #45.
  """
  p = _vector(probs, "probs")
  if (isinstance(num_samples, bool)
      or not isinstance(num_samples, numbers.Integral) or num_samples < 1):
    raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}.")
  if checks.is_concrete(p):
    arr = np.asarray(p, np.float64)
    if arr.size == 0 or arr.min() < 0 or abs(arr.sum() - 1.0) > 1e-3:
      raise ValueError("`probs` must be non-negative and sum to 1, got sum "
                       f"{arr.sum() if arr.size else 0.0:.4g}.")
  n = p.shape[0] if num_examples is None else int(num_examples)
  p = p.astype(jnp.float32)
  logits = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), -jnp.inf)
  idx = jax.random.categorical(key, logits, shape=(num_samples,))
  w = 1.0 / (n * p[idx])
  return idx.astype(jnp.int32), w


def last_layer_grad_norm(features: jax.Array, dlogits: jax.Array, *,
                         bias: bool = False) -> jax.Array:
  r"""Per-example norm of the last linear layer's gradient, in closed form.

  For logits :math:`z = W^\top h + b`, :math:`\partial\ell/\partial W =
  h\,(\partial\ell/\partial z)^\top`, whose Frobenius norm is
  :math:`\|h\|\,\|\partial\ell/\partial z\|`; with the bias it is
  :math:`\sqrt{\|h\|^2 + 1}\,\|\partial\ell/\partial z\|`. For softmax
  cross-entropy :math:`\partial\ell/\partial z = \mathrm{softmax}(z) - e_y`.

  Args:
    features: ``[B, D]`` inputs of the last layer.
    dlogits: ``[B, C]`` loss gradients with respect to the logits.
    bias: include the bias gradient.

  Returns:
    ``[B]`` float32 norms.

  Examples:
    >>> print(last_layer_grad_norm(jnp.array([[3., 4.]]), jnp.array([[0.6, -0.8]])))
    [5.]
  """
  h = checks.check_floating(features, "features")
  d = checks.check_floating(dlogits, "dlogits")
  checks.check_rank(h, 2, "features")
  checks.check_rank(d, 2, "dlogits")
  if h.shape[0] != d.shape[0]:
    raise ValueError(f"`features` and `dlogits` must share the batch axis, got "
                     f"{h.shape} and {d.shape}.")
  h2 = jnp.sum(jnp.square(h.astype(jnp.float32)), -1) + (1.0 if bias else 0.0)
  d2 = jnp.sum(jnp.square(d.astype(jnp.float32)), -1)
  prod = h2 * d2
  return jnp.where(prod > 0, jnp.sqrt(jnp.where(prod > 0, prod, 1.0)), 0.0)


def infobatch_select(key: jax.Array, scores: jax.Array, *, keep_ratio: float,
                     where: jax.Array | None = None
                     ) -> tuple[jax.Array, jax.Array]:
  r"""InfoBatch: randomly prunes well-learned examples, rescales the rest.

  "Well-learned" examples have a score (last-seen loss) below the mean score
  of the valid examples. Of the :math:`n_w` well-learned examples,
  :math:`\lfloor r\,n_w \rfloor` chosen uniformly without replacement are
  kept with weight :math:`1/r` (``r`` = ``keep_ratio``), the others are
  pruned (weight 0); every other valid example is kept with weight 1. This
  keeps the expected gradient unchanged. The count and the rule follow the
  reference ``InfoBatch.prune`` (``np.random.choice(well_learned,
  int(keep_ratio * n_w), replace=False)``); annealing (stop pruning for the
  last epochs) is the caller's schedule.

  Args:
    key: a PRNG key.
    scores: ``[N]`` floating per-example scores (losses).
    keep_ratio: ``r`` in (0, 1].
    where: optional ``[N]`` bool mask; masked examples are never kept.

  Returns:
    ``(keep bool[N], weights float32[N])``; ``weights`` is 0 where not kept.

  Raises:
    ValueError: wrong rank or ``keep_ratio`` outside (0, 1].

  Examples:
    >>> s = jnp.array([0.1, 0.2, 3.0, 4.0])
    >>> keep, w = infobatch_select(jax.random.key(0), s, keep_ratio=0.5)
    >>> print(keep[2:].tolist(), jnp.sum(keep[:2]).item(), w.max().item())
    [True, True] 1 2.0

  References:
    Qin et al., `InfoBatch`, ICLR 2024, arXiv:2303.04947.
  """
  s = _vector(scores, "scores")
  if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, numbers.Real):
    raise TypeError(f"`keep_ratio` must be a float, got {keep_ratio!r}.")
  if not 0.0 < float(keep_ratio) <= 1.0:
    raise ValueError(f"`keep_ratio` must be in (0, 1], got {keep_ratio}.")
  n = s.shape[0]
  mask = _mask(where, n)
  valid = jnp.ones((n,), bool) if mask is None else mask
  s = jnp.where(valid, s.astype(jnp.float32), 0.0)
  mean = jnp.sum(s) / jnp.maximum(jnp.sum(valid), 1)
  well = valid & (s < mean)
  n_keep = jnp.floor(float(keep_ratio) * jnp.sum(well)).astype(jnp.int32)
  u = jnp.where(well, jax.random.uniform(key, (n,)), 2.0)
  rank = jnp.argsort(jnp.argsort(_replicate(u, 0)))
  keep_well = well & (rank < n_keep)
  keep = (valid & ~well) | keep_well
  weights = jnp.where(keep_well, 1.0 / float(keep_ratio),
                      jnp.where(keep, 1.0, 0.0)).astype(jnp.float32)
  return keep, weights


def memorization_scores(correct: jax.Array, included: jax.Array) -> jax.Array:
  r"""Feldman's memorisation estimate from subsampled training runs.

  .. math::
    \mathrm{mem}(i) = \Pr[h(x_i) = y_i \mid i \in S]
      - \Pr[h(x_i) = y_i \mid i \notin S],

  each probability the mean over the ``R`` runs whose random training subset
  ``S`` did (did not) contain example ``i``. Train the ``R`` models with
  ``jax.vmap`` over random masks (e.g. 50 % subsets). If example ``i`` was
  in every run or in none, one conditional is undefined and its score is 0.

  Args:
    correct: ``[R, N]`` bool (or 0/1 / probabilities of the true label) per run
      and example.
    included: ``[R, N]`` bool: was example ``i`` in run ``r``'s training set.

  Returns:
    ``[N]`` float32 scores in [-1, 1].

  Raises:
    ValueError: mismatched shapes or ranks.

  Examples:
    >>> correct = jnp.array([[1, 1], [0, 1], [1, 1], [0, 1]], bool)
    >>> included = jnp.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool)
    >>> print(memorization_scores(correct, included))
    [1. 0.]

  References:
    Feldman, Zhang, NeurIPS 2020, arXiv:2008.03703; Feldman, `Does Learning
    Require Memorization? A Short Tale about a Long Tail`, STOC 2020,
    arXiv:1906.05271.

    Catalog: seed_000 #57.
  """
  c = jnp.asarray(correct)
  inc = jnp.asarray(included)
  checks.check_rank(c, 2, "correct")
  checks.check_rank(inc, 2, "included")
  checks.check_same_shape(c, inc, "correct", "included")
  c = c.astype(jnp.float32)
  inc = inc.astype(bool)
  n_in = jnp.sum(inc, 0)
  n_out = jnp.sum(~inc, 0)
  p_in = jnp.sum(jnp.where(inc, c, 0.0), 0) / jnp.maximum(n_in, 1)
  p_out = jnp.sum(jnp.where(inc, 0.0, c), 0) / jnp.maximum(n_out, 1)
  return jnp.where((n_in > 0) & (n_out > 0), p_in - p_out, 0.0)
