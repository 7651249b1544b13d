r"""Discrete key-value bottleneck (DKVB) lookup.

A frozen encoder's feature is split into :math:`C` heads; each head is
snapped to its nearest key in a per-head codebook of :math:`K` **frozen** keys
(initialised by k-means / EMA on encoder outputs) and replaced by that key's
**trainable** value vector. Only the values (and the decoder after them)
learn, and each example updates only the values it selects — which is what
limits forgetting in class-incremental streams.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


def dkvb_lookup(z: ArrayLike, keys: ArrayLike,
                values: ArrayLike) -> tuple[jax.Array, jax.Array]:
  r"""Nearest-key lookup of a discrete key-value bottleneck.

  .. math::
    k^\star_{bc} = \arg\min_k \|z_{bc} - \kappa_{ck}\|_2^2, \qquad
    v_{bc} = V_{c\,k^\star_{bc}}.

  The keys :math:`\kappa` and the input :math:`z` receive no gradient (the
  encoder and keys are frozen, as in the paper); gradients flow only into the
  selected values.

  Args:
    z: ``[B, C, d]`` per-head encoder features.
    keys: ``[C, K, d]`` per-head key codebooks.
    values: ``[C, K, dv]`` per-head value codebooks.

  Returns:
    ``(v, idx)``: ``v [B, C, dv]`` selected values and ``idx [B, C]`` int32
    key indices.

  Raises:
    ValueError: mismatched head counts, codebook sizes or key dimensions.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.bottleneck import dkvb_lookup
    >>> keys = jnp.array([[[0.0], [10.0]]])          # C=1, K=2, d=1
    >>> vals = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])  # dv=2
    >>> v, idx = dkvb_lookup(jnp.array([[[9.0]], [[1.0]]]), keys, vals)
    >>> print(idx.ravel(), v[:, 0])
    [1 0] [[0. 1.]
     [1. 0.]]

  References:
    Träuble, Goyal, Rahaman, et al., `Discrete Key-Value Bottleneck
    <https://arxiv.org/abs/2207.11240>`_, ICML 2023.

    Catalog: seed_002 #19.
  """
  z = checks.check_floating(z, "z")
  k = checks.check_floating(keys, "keys")
  v = checks.check_floating(values, "values")
  checks.check_rank(z, 3, "z")
  checks.check_rank(k, 3, "keys")
  checks.check_rank(v, 3, "values")
  if z.shape[1] != k.shape[0] or z.shape[2] != k.shape[2]:
    raise ValueError(f"`keys` must have shape (C, K, d) = ({z.shape[1]}, K, "
                     f"{z.shape[2]}) for `z` of shape {z.shape}, got "
                     f"{k.shape}.")
  if v.shape[:2] != k.shape[:2]:
    raise ValueError(f"`values` must have shape (C, K, dv) with (C, K) = "
                     f"{k.shape[:2]}, got {v.shape}.")
  dtype = checks.compute_dtype(z, k)
  zs = jax.lax.stop_gradient(z.astype(dtype))
  ks = jax.lax.stop_gradient(k.astype(dtype))
  # ||z - k||^2 = ||z||^2 - 2 z.k + ||k||^2; ||z||^2 does not change argmin.
  d2 = (jnp.sum(ks * ks, -1)[None] -
        2.0 * jnp.einsum("bcd,ckd->bck", zs, ks))
  idx = jnp.argmin(d2, axis=-1).astype(jnp.int32)
  heads = jnp.arange(k.shape[0])[None, :]
  return v[heads, idx], idx
