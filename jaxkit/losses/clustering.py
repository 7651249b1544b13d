r"""Deep-clustering losses: DEPICT's balanced targets and relative-entropy loss.

DEPICT (Dizaji et al., 2017) trains a soft cluster assignment
:math:`p_{ik}` (softmax of a clustering head on an embedding) by alternating
two steps: compute auxiliary targets :math:`q` that sharpen :math:`p` while
keeping the clusters balanced (:func:`depict_targets`), then minimise the
relative entropy :math:`\mathrm{KL}(q_i \| p_i)` with :math:`q` held fixed
(:func:`depict_clustering_loss`). The KL is
:func:`jaxkit.divergences.kl` (never re-derived here).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit import divergences as dv
from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


def _check_assignments(x, name):
  x = checks.check_floating(x, name)
  checks.check_rank(x, 2, name)
  return x


def depict_targets(
    probs: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""DEPICT's auxiliary cluster targets (balanced, sharpened, no gradient).

  .. math::
    q_{ik} = \frac{p_{ik} / \big(\sum_{i'} p_{i'k}\big)^{1/2}}
      {\sum_{k'} p_{ik'} / \big(\sum_{i'} p_{i'k'}\big)^{1/2}},

  the closed-form minimiser of DEPICT's objective
  :math:`\frac1N\sum_i \mathrm{KL}(q_i\|p_i) + \mathrm{KL}(f\|u)` over
  :math:`q` with a uniform cluster prior :math:`u` (:math:`f_k` the empirical
  cluster frequency of :math:`q`): dividing by the square root of the soft
  cluster size discourages degenerate, all-in-one-cluster solutions. (DEC
  uses :math:`p_{ik}^2 / f_k` instead.) The column sums run over the valid
  rows of the batch (or the whole data set when called on it), so the targets
  couple examples; they are ``stop_gradient``-ed.

  Args:
    probs: ``[N, C]`` soft assignments (rows sum to 1).
    where: optional ``[N]`` mask of valid rows.

  Returns:
    ``[N, C]`` targets (rows sum to 1; masked rows are uniform).

  Raises:
    ValueError: ``probs`` not ``[N, C]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.clustering import depict_targets
    >>> p = jnp.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    >>> for row in depict_targets(p):
    ...   print(" ".join(f"{v:.4f}" for v in row))
    0.8324 0.1676
    0.6882 0.3118
    0.4528 0.5472

  References:
    Dizaji, Herandi, Deng, Cai, Huang, `Deep Clustering via Joint
    Convolutional Autoencoder Embedding and Relative Entropy Minimization
    <https://arxiv.org/abs/1704.06327>`_, ICCV 2017.

    Catalog: seed_003 #3.
  """
  p = _check_assignments(probs, "probs")
  n, c = p.shape
  mask = checks.check_where(where, (n,), "where")
  dtype = checks.compute_dtype(p)
  p = jax.lax.stop_gradient(p.astype(dtype))
  if mask is not None:
    p = jnp.where(mask[:, None], p, 1.0 / c)
    col = jnp.sum(jnp.where(mask[:, None], p, 0.0), axis=0)
  else:
    col = jnp.sum(p, axis=0)
  w = p * jax.lax.rsqrt(jnp.maximum(col, jnp.finfo(dtype).tiny))
  q = w / jnp.maximum(jnp.sum(w, axis=1, keepdims=True), jnp.finfo(dtype).tiny)
  if mask is not None:
    q = jnp.where(mask[:, None], q, 1.0 / c)
  return q


def depict_clustering_loss(
    log_probs: ArrayLike,
    targets: ArrayLike,
    *,
    prior: ArrayLike | None = None,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""DEPICT's relative-entropy clustering objective (a scalar).

  .. math::
    \mathcal L = \frac1N\sum_{i=1}^N \mathrm{KL}(q_i \,\|\, p_i)
      + \mathrm{KL}(f \,\|\, u),\qquad f_k = \frac1N\sum_i q_{ik},

  with fixed targets :math:`q` (from :func:`depict_targets`), model
  assignments :math:`p_i` = ``exp(log_probs)`` and the cluster prior
  :math:`u` (uniform by default). Since :math:`q` is held fixed, only the
  first term carries gradient (a cross-entropy to the targets); the prior
  term reports how balanced the targets are. Both KLs are
  :func:`jaxkit.divergences.kl`. The reconstruction losses of DEPICT's
  autoencoder are model-level and not part of this function.

  Args:
    log_probs: ``[N, C]`` model log-assignments (log-softmax of the head).
    targets: ``[N, C]`` target assignments (stop-gradiented here).
    prior: optional ``[C]`` cluster prior (sums to 1).
    where: optional ``[N]`` mask of valid rows.

  Returns:
    A scalar (0 when no row is valid).

  Raises:
    ValueError: shape mismatches.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.losses.clustering import depict_clustering_loss
    >>> from jaxkit.losses.clustering import depict_targets
    >>> p = jnp.array([[0.9, 0.1], [0.2, 0.8]])
    >>> loss = depict_clustering_loss(jnp.log(p), depict_targets(p))
    >>> print(f"{loss:.4f}")
    0.0034

  References:
    Dizaji, Herandi, Deng, Cai, Huang, `Deep Clustering via Joint
    Convolutional Autoencoder Embedding and Relative Entropy Minimization
    <https://arxiv.org/abs/1704.06327>`_, ICCV 2017.

    Catalog: seed_003 #3.
  """
  lp = _check_assignments(log_probs, "log_probs")
  q = _check_assignments(targets, "targets")
  checks.check_same_shape(lp, q, "log_probs", "targets")
  n, c = lp.shape
  mask = checks.check_where(where, (n,), "where")
  dtype = checks.compute_dtype(lp, q)
  lp = lp.astype(dtype)
  q = jax.lax.stop_gradient(q.astype(dtype))
  if prior is None:
    log_u = jnp.full((c,), -jnp.log(float(c)), dtype)
  else:
    u = checks.check_floating(prior, "prior")
    if u.shape != (c,):
      raise ValueError(f"`prior` must be [C] = [{c}], got shape {u.shape}.")
    log_u = jnp.log(u.astype(dtype))
  if mask is not None:
    lp = jnp.where(mask[:, None], lp, -jnp.log(float(c)))
    q = jnp.where(mask[:, None], q, 1.0 / c)
  log_q = jnp.log(q)
  per_row = dv.kl(log_q, lp)
  if mask is None:
    nv = jnp.asarray(n, dtype)
    f = jnp.mean(q, axis=0)
    fit = jnp.mean(per_row)
  else:
    nv = jnp.sum(mask).astype(dtype)
    safe = jnp.maximum(nv, 1.0)
    f = jnp.sum(jnp.where(mask[:, None], q, 0.0), axis=0) / safe
    fit = jnp.sum(jnp.where(mask, per_row, 0.0)) / safe
  balance = dv.kl(jnp.log(f), log_u)
  return jnp.where(nv > 0, fit + balance, 0.0)
