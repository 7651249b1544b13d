r"""Per-example data scores (EL2N, GraNd) and pruning by score.

Scores are per example (``[N]``); a higher score means a harder / more
informative (or more likely mislabelled) example. :func:`prune_by_score` turns
scores into the indices of the examples to keep.

References:
  Paul, Ganguli, Dziugaite, `Deep Learning on a Data Diet: Finding Important
  Examples Early in Training <https://arxiv.org/abs/2107.07075>`_, NeurIPS
  2021.

  Sorscher et al., `Beyond neural scaling laws: beating power law scaling via
  data pruning <https://arxiv.org/abs/2206.14486>`_, NeurIPS 2022.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
# Explicit-mode sharded inputs are gathered before a global top-k.
from jaxkit.divergences.kernel import _replicate_sample_axes as _replicate


def _seed_mean(values: jax.Array, mask: jax.Array | None, seeded: bool):
  """Mean over the leading seed axis (masked); 0 where no seed is valid."""
  if not seeded:
    return values if mask is None else jnp.where(mask, values, 0.0)
  if mask is None:
    return jnp.mean(values, axis=0)
  num = jnp.sum(jnp.where(mask, values, 0.0), axis=0)
  den = jnp.sum(mask, axis=0)
  return num / jnp.maximum(den, 1)


def el2n_scores(logits: jax.Array, labels: jax.Array, *,
                where: jax.Array | None = None) -> jax.Array:
  r"""EL2N: the L2 norm of the error vector, averaged over runs.

  .. math::
    \mathrm{EL2N}(x, y) = \mathbb{E}_s\,
      \big\|\mathrm{softmax}(f_s(x)) - e_y\big\|_2,

  with :math:`f_s` the network of run (seed) ``s`` early in training. The
  softmax is computed in float32 (stable for extreme logits).

  Args:
    logits: ``[N, C]`` (one run) or ``[S, N, C]`` (``S`` runs) floating logits.
    labels: ``[N]`` integer labels in ``[0, C)``.
    where: optional bool mask of shape ``logits.shape[:-1]`` (``[N]`` or
      ``[S, N]``): masked entries are ignored; for ``[S, N]`` the mean runs over
      the valid runs of each example. An example with no valid entry scores 0.

  Returns:
    ``[N]`` float32 scores in :math:`[0, \sqrt{2}]`.

  Raises:
    ValueError: wrong ranks / shapes, or (eagerly) labels out of range.
    TypeError: non-floating logits or non-integer labels.

  Examples:
    >>> logits = jnp.array([[10., -10.], [0., 0.], [-10., 10.]])
    >>> print(jnp.round(el2n_scores(logits, jnp.array([0, 0, 0])), 4))
    [0.     0.7071 1.4142]

  References:
    Paul, Ganguli, Dziugaite, `Deep Learning on a Data Diet`, NeurIPS 2021,
    arXiv:2107.07075.

    Catalog: seed_002 #36.
  """
  logits = checks.check_floating(logits, "logits")
  checks.check_rank(logits, (2, 3), "logits")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"`labels` must be integer, got dtype {labels.dtype}.")
  checks.check_rank(labels, 1, "labels")
  if labels.shape[0] != logits.shape[-2]:
    raise ValueError(f"`labels` must have shape [{logits.shape[-2]}] (the "
                     f"example axis of `logits` {logits.shape}), got "
                     f"{labels.shape}.")
  num_classes = logits.shape[-1]
  if checks.is_concrete(labels):
    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
      raise ValueError(f"`labels` must be in [0, {num_classes}), got values in "
                       f"[{lab.min()}, {lab.max()}].")
  mask = None
  if where is not None:
    where = jnp.asarray(where)
    if where.shape != logits.shape[:-1]:
      raise ValueError(f"`where` must have shape {logits.shape[:-1]} "
                       f"(logits.shape[:-1]), got {where.shape}.")
    mask = where.astype(bool)
  z = logits.astype(checks.compute_dtype(logits))
  if mask is not None:
    z = jnp.where(mask[..., None], z, 0.0)
  probs = jax.nn.softmax(z, axis=-1)
  err = probs - jax.nn.one_hot(labels, num_classes, dtype=probs.dtype)
  norm = jnp.sqrt(jnp.sum(err * err, axis=-1))
  return _seed_mean(norm, mask, logits.ndim == 3)


def grand_scores(per_example_grads, *, seed_axis: bool = False,
                 where: jax.Array | None = None) -> jax.Array:
  r"""GraNd: the norm of each example's loss gradient, averaged over runs.

  .. math::
    \mathrm{GraNd}(x, y) = \mathbb{E}_s\,\big\|\nabla_\theta
      \ell(f_{\theta_s}(x), y)\big\|_2,

  the norm taken over *all* leaves of the gradient pytree together. Compute
  ``per_example_grads`` with ``jax.vmap(jax.grad(loss), in_axes=(None, 0,
  0))`` (the paper uses the full network; a last-layer gradient is a common
  cheaper approximation).

  Args:
    per_example_grads: a pytree of floating arrays with leading axes ``[N, ...]``
      (or ``[S, N, ...]`` when ``seed_axis=True``).
    seed_axis: whether the leaves carry a leading run axis ``S`` to average
      over (static).
    where: optional bool mask ``[N]`` (``[S, N]`` with ``seed_axis``); masked
      entries are ignored, an example with no valid entry scores 0.

  Returns:
    ``[N]`` float32 scores (≥ 0).

  Raises:
    ValueError: an empty pytree, leaves whose leading axes disagree, or a
      ``where`` of the wrong shape.

  Examples:
    >>> g = {"w": jnp.array([[3., 0.], [0., 0.]]), "b": jnp.array([4., 1.])}
    >>> print(grand_scores(g))
    [5. 1.]

  References:
    Paul, Ganguli, Dziugaite, `Deep Learning on a Data Diet`, NeurIPS 2021,
    arXiv:2107.07075.

    Catalog: seed_002 #36.
  """
  leaves = jax.tree.leaves(per_example_grads)
  if not leaves:
    raise ValueError("`per_example_grads` is an empty pytree.")
  lead = 2 if seed_axis else 1
  leaves = [checks.check_floating(l, "per_example_grads") for l in leaves]
  shape = leaves[0].shape[:lead]
  for l in leaves:
    if l.ndim < lead or l.shape[:lead] != shape:
      raise ValueError(
          "every leaf of `per_example_grads` must share the leading axes "
          f"{'[S, N]' if seed_axis else '[N]'}; got shapes "
          f"{[x.shape for x in leaves]}.")
  mask = None
  if where is not None:
    where = jnp.asarray(where)
    if where.shape != shape:
      raise ValueError(f"`where` must have shape {shape}, got {where.shape}.")
    mask = where.astype(bool)
  total = 0.0
  for l in leaves:
    l = l.astype(checks.compute_dtype(l))
    if mask is not None:
      l = jnp.where(mask.reshape(shape + (1,) * (l.ndim - lead)), l, 0.0)
    total = total + jnp.sum(l * l, axis=tuple(range(lead, l.ndim)))
  # sqrt with a zero-safe gradient.
  safe = jnp.where(total > 0, total, 1.0)
  norm = jnp.where(total > 0, jnp.sqrt(safe), 0.0)
  return _seed_mean(norm, mask, seed_axis)


def prune_by_score(scores: jax.Array, *, keep_fraction: float,
                   keep: str = "hard", where: jax.Array | None = None
                   ) -> jax.Array:
  r"""Indices of the examples to keep after score-based pruning.

  Keeps the :math:`\lceil f N \rceil` highest-scoring (``keep='hard'``) or
  lowest-scoring (``keep='easy'``) examples, ordered from most to least
  extreme. Masked examples are never kept unless fewer valid examples exist
  than the budget, in which case they fill the tail (check with ``where``).
  Jittable (``keep_fraction`` and ``keep`` are static).

  Args:
    scores: ``[N]`` floating scores.
    keep_fraction: ``f`` in (0, 1] (static).
    keep: ``'hard'`` (keep high scores, the data-diet rule) or ``'easy'``.
    where: optional ``[N]`` bool mask of prunable-and-keepable examples.

  Returns:
    ``int32[ceil(f N)]`` indices.

  Raises:
    ValueError: ``keep_fraction`` outside (0, 1], unknown ``keep``, wrong rank.

  Examples:
    >>> s = jnp.array([0.1, 0.9, 0.5, 0.3])
    >>> print(prune_by_score(s, keep_fraction=0.5))
    [1 2]
    >>> print(prune_by_score(s, keep_fraction=0.5, keep="easy"))
    [0 3]

  References:
    Paul et al., NeurIPS 2021, arXiv:2107.07075; Sorscher et al., NeurIPS 2022,
    arXiv:2206.14486.

    Catalog: seed_002 #11, seed_002 #36.
  """
  scores = checks.check_floating(scores, "scores")
  checks.check_rank(scores, 1, "scores")
  if isinstance(keep_fraction, bool) or not isinstance(keep_fraction,
                                                       numbers.Real):
    raise TypeError(f"`keep_fraction` must be a static float, got "
                    f"{keep_fraction!r}.")
  if not 0.0 < float(keep_fraction) <= 1.0:
    raise ValueError(f"`keep_fraction` must be in (0, 1], got {keep_fraction}.")
  if keep not in ("hard", "easy"):
    raise ValueError(f"`keep` must be 'hard' or 'easy', got {keep!r}.")
  n = scores.shape[0]
  if n == 0:
    raise ValueError("`scores` is empty.")
  k = min(n, max(1, math.ceil(float(keep_fraction) * n - 1e-9)))
  s = scores.astype(jnp.float32)
  s = s if keep == "hard" else -s
  s = jnp.where(jnp.isnan(s), -jnp.inf, s)
  if where is not None:
    mask = checks.check_where(where, scores.shape, "where")
    s = jnp.where(mask, s, -jnp.inf)
  return jax.lax.top_k(_replicate(s, 0), k)[1].astype(jnp.int32)

