r"""AdaWAC: per-example weights between a supervised and a consistency loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


def adawac_init(num_examples: int) -> jax.Array:
  """Initial AdaWAC weights: ``[N, 2]`` all ½ (the reference's init).

  Examples:
    >>> from jaxkit import reweighting as rw
    >>> print(rw.adawac_init(2))
    [[0.5 0.5]
     [0.5 0.5]]

  References:
    Dong, Xie, Ward. "Adaptively Weighted Data Augmentation Consistency
    Regularization for Robust Optimization under Concept Shift", ICML
    2023, arXiv:2210.01891.

    Catalog: seed_002 #70.
  """
  if isinstance(num_examples, bool) or not isinstance(
      num_examples, (int, np.integer)) or num_examples < 1:
    raise ValueError(
        f"`num_examples` must be an int >= 1, got {num_examples!r}.")
  return jnp.full((int(num_examples), 2), 0.5, jnp.float32)


def adawac_update(beta: ArrayLike, sup_losses: ArrayLike,
                  cons_losses: ArrayLike, indices: ArrayLike, *,
                  step_size: float) -> tuple[jax.Array, jax.Array]:
  r"""One AdaWAC mirror-ascent step on the per-example simplex weights.

  Every training example :math:`i` owns :math:`\beta_i \in \Delta^1` that
  splits its objective between the supervised loss :math:`\ell^{s}_i` and the
  augmentation-consistency loss :math:`\ell^{c}_i`. AdaWAC solves
  :math:`\min_\theta \max_\beta \sum_i \beta_{i,0}\ell^s_i +
  \beta_{i,1}\ell^c_i` with exponentiated-gradient ascent on :math:`\beta`:

  .. math::
    \beta_i \leftarrow \frac{\beta_i \odot
      \exp(\eta\,[\ell^s_i, \ell^c_i])}{\|\beta_i \odot
      \exp(\eta\,[\ell^s_i, \ell^c_i])\|_1},

  then the model minimises ``mean(w[:, 0] * sup + w[:, 1] * cons)`` with the
  returned batch weights ``w`` (stop-gradient). Checked against the authors'
  code (``gail-yxie/adawac``, ``UNETS_AW_AC.forward``): same init ½, same
  multiplicative step and L1 renormalisation, same objective (their loss
  also adds a Dice term, which is not reweighted). Computed in log space.
  Duplicate ``indices`` in one batch: the last write wins in ``beta``.
  **Scale:** each row of ``w`` sums to 1 (a split, not a batch weighting);
  reduce with the batch mean.

  Args:
    beta: ``[N, 2]`` current weights (rows on the simplex).
    sup_losses: ``[B]`` supervised losses of the batch.
    cons_losses: ``[B]`` consistency losses of the batch.
    indices: ``[B]`` int dataset indices of the batch examples.
    step_size: :math:`\eta \ge 0`.

  Returns:
    ``(new_beta [N, 2], batch_weights [B, 2])``.

  Raises:
    ValueError: shape mismatches, negative ``step_size``, out-of-range
      ``indices`` (when concrete).

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> beta, w = rw.adawac_update(rw.adawac_init(3), jnp.array([1.0]),
    ...                            jnp.array([0.0]), jnp.array([1]),
    ...                            step_size=1.0)
    >>> print(np.round(np.asarray(w), 4))
    [[0.7311 0.2689]]

  References:
    Dong, Xie, Ward. "Adaptively Weighted Data Augmentation Consistency
    Regularization for Robust Optimization under Concept Shift", ICML 2023,
    arXiv:2210.01891.

    Catalog: seed_002 #70.
  """
  checks.check_scalar(step_size, "step_size", nonnegative=True)
  b = checks.check_floating(beta, "beta")
  if b.ndim != 2 or b.shape[1] != 2:
    raise ValueError(f"`beta` must have shape [N, 2], got {b.shape}.")
  s = checks.check_floating(sup_losses, "sup_losses")
  c = checks.check_floating(cons_losses, "cons_losses")
  checks.check_rank(s, 1, "sup_losses")
  checks.check_same_shape(s, c, "sup_losses", "cons_losses")
  idx = jnp.asarray(indices)
  if idx.shape != s.shape or not jnp.issubdtype(idx.dtype, jnp.integer):
    raise ValueError(f"`indices` must be ints of shape {s.shape}, got "
                     f"{idx.dtype}{idx.shape}.")
  if checks.is_concrete(idx) and idx.size:
    i = np.asarray(idx)
    if i.min() < 0 or i.max() >= b.shape[0]:
      raise ValueError(f"`indices` must lie in [0, {b.shape[0]}), got "
                       f"[{i.min()}, {i.max()}].")
  dtype = checks.compute_dtype(b, s, c)
  losses = jax.lax.stop_gradient(jnp.stack([s, c], -1).astype(dtype))
  logb = jnp.log(jnp.maximum(b[idx].astype(dtype), jnp.finfo(dtype).tiny))
  w = jax.nn.softmax(logb + step_size * losses, axis=-1)
  w = jax.lax.stop_gradient(w)
  return b.at[idx].set(w.astype(b.dtype)), w
