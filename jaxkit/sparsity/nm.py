r"""N:M semi-structured sparsity: masks, candidate patterns and 2:4 storage.

An N:M pattern keeps ``n`` of every ``m`` consecutive weights along the
*reduction* axis of a matmul (NVIDIA's sparse tensor cores run 2:4 along K).
jaxkit's Flax kernels are ``[in, out]`` (``y = x @ W``), so the reduction axis
is ``axis=0`` — the default everywhere here. (qwix's
``get_sparsity_mask(..., order='C')`` uses the same direction for a 2-D
weight; its default ``order='R'`` groups along the last axis.)

* :func:`nm_mask` — the top-``n`` of every group of ``m`` scores.
* :func:`nm_candidate_masks` — all :math:`\binom{m}{n}` patterns of one group
  (what MaskLLM learns a distribution over).
* :func:`pack_nm` / :func:`unpack_nm` / :func:`packed_nbytes` — compressed
  storage: the kept values plus ``ceil(log2 m)``-bit in-group indices (2 bits
  for 2:4, four indices per byte), the layout of NVIDIA's sparse tensor core
  metadata up to the interleaving of the bytes.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.sparsity import _common


def _grouped(x: jax.Array, ax: int, m: int) -> jax.Array:
  """Moves ``ax`` last and splits it: ``[..., L] -> [..., L // m, m]``."""
  x = jnp.moveaxis(x, ax, -1)
  return x.reshape(*x.shape[:-1], x.shape[-1] // m, m)


def _ungrouped(x: jax.Array, ax: int) -> jax.Array:
  """Inverse of :func:`_grouped`."""
  x = x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])
  return jnp.moveaxis(x, -1, ax)


def nm_mask(scores: ArrayLike, *, n: int = 2, m: int = 4,
            axis: int = 0) -> jax.Array:
  r"""Boolean N:M mask: the ``n`` largest scores of every ``m`` consecutive ones.

  The array is cut along ``axis`` into groups of ``m`` consecutive entries
  (positions ``[g·m, (g+1)·m)``); in each group exactly ``n`` entries are
  kept — those with the largest scores:

  .. math::
    M_{i} = [\,\mathrm{rank}_{\text{group}(i)}(s_i) < n\,].

  **Axis convention.** The default ``axis=0`` is the *input* (reduction) axis
  of a Flax ``[in, out]`` kernel, the direction of hardware 2:4 sparsity. Pass
  ``axis=-1`` for a PyTorch-style ``[out, in]`` weight.

  **Ties** are broken deterministically: among equal scores the entry with the
  lower index inside its group is kept (the order of :func:`jax.lax.top_k`).
  NaN scores count as the smallest.

  Args:
    scores: ``[..., L, ...]`` real scores (e.g. ``|W|`` or Wanda scores);
      ``scores.shape[axis]`` must be divisible by ``m``.
    n: kept entries per group (static int, ``1 <= n < m``).
    m: group size (static int).
    axis: the grouping axis (static int).

  Returns:
    ``bool`` array of ``scores``' shape with exactly ``n`` ``True`` per group.

  Raises:
    ValueError: ``n >= m``, ``n < 1``, or the axis length not divisible by
      ``m``.
    TypeError: non-integer ``n`` / ``m`` or a non-real ``scores``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import nm_mask
    >>> w = jnp.array([[0.1], [-3.0], [2.0], [0.5]])  # [in=4, out=1]
    >>> nm_mask(jnp.abs(w), n=2, m=4)[:, 0]
    Array([False,  True,  True, False], dtype=bool)
    >>> nm_mask(jnp.ones((4, 1)))[:, 0]  # ties: the lower indices win
    Array([ True,  True, False, False], dtype=bool)

  References:
    Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021,
    arXiv:2104.08378 (2:4 sparse tensor cores).
  """
  s = _common.check_real(scores, "scores")
  n, m = _common.check_nm(n, m)
  if s.ndim == 0:
    raise ValueError("`scores` must have rank >= 1, got a scalar.")
  ax = _common.check_axis_divisible(s.shape, axis, m, "scores")
  g = _grouped(s, ax, m)
  if jnp.issubdtype(g.dtype, jnp.floating):
    g = jnp.where(jnp.isnan(g), -jnp.inf, g)
  _, idx = jax.lax.top_k(g, n)
  keep = jnp.any(jax.nn.one_hot(idx, m, dtype=jnp.bool_), axis=-2)
  return _ungrouped(keep, ax)


def nm_candidate_masks(n: int = 2, m: int = 4) -> jax.Array:
  r"""All :math:`\binom{m}{n}` N:M patterns of one group, in lexicographic order.

  Row ``c`` marks the kept positions of candidate ``c``; candidates are in the
  order of :func:`itertools.combinations` (for 2:4: ``1100, 1010, 1001, 0110,
  0101, 0011`` — the order of MaskLLM's reference code).

  Args:
    n: kept entries per group (static int, ``1 <= n < m``).
    m: group size (static int).

  Returns:
    ``[C(m, n), m]`` float32 array of 0/1 (float so it can be contracted with
    soft candidate probabilities).

  Examples:
    >>> from jaxkit.sparsity import nm_candidate_masks
    >>> print(nm_candidate_masks(2, 4).astype(int))
    [[1 1 0 0]
     [1 0 1 0]
     [1 0 0 1]
     [0 1 1 0]
     [0 1 0 1]
     [0 0 1 1]]

  References:
    Fang et al., "MaskLLM: Learnable Semi-Structured Sparsity for Large
    Language Models", NeurIPS 2024, arXiv:2409.17481.

    Catalog: seed_000 #38.
  """
  n, m = _common.check_nm(n, m)
  rows = [[1.0 if i in c else 0.0 for i in range(m)]
          for c in itertools.combinations(range(m), n)]
  return jnp.asarray(np.asarray(rows, np.float32))


def _index_bits(m: int) -> int:
  """Bits per stored in-group index: ceil(log2 m) rounded up to 1/2/4/8."""
  need = max(1, math.ceil(math.log2(m)))
  for b in (1, 2, 4, 8):
    if need <= b:
      return b
  raise ValueError(f"`m` must be <= 256 for packed storage, got m={m}.")


def pack_nm(w: ArrayLike, *, mask: ArrayLike | None = None, n: int = 2,
            m: int = 4, axis: int = 0) -> tuple[jax.Array, jax.Array]:
  r"""Compresses an N:M-sparse array to (kept values, packed index metadata).

  Along ``axis``, every group of ``m`` entries stores its ``n`` kept values in
  increasing position order and their in-group positions as
  ``b = ceil(log2 m)`` -bit unsigned ints (``b`` rounded up to 1, 2, 4 or 8),
  packed little-end-first into ``uint8`` bytes (``8 / b`` indices per byte;
  for 2:4 that is the 2-bit metadata of sparse tensor cores, 4 per byte). The
  stored length along ``axis`` is ``L·n/m`` values and
  ``ceil(L·n/m · b / 8)`` metadata bytes.

  Args:
    w: ``[..., L, ...]`` array to compress (any dtype; values are copied
      bit-exactly).
    mask: optional boolean N:M mask of ``w``'s shape (e.g. from
      :func:`nm_mask`). ``None`` computes ``nm_mask(|w|, n=n, m=m,
      axis=axis)``. A concrete mask with a group that does not hold exactly
      ``n`` kept entries raises.
    n: kept entries per group (static).
    m: group size (static).
    axis: the grouping axis (static; default 0, the input axis of an
      ``[in, out]`` kernel).

  Returns:
    ``(values, metadata)``: ``values`` has ``w``'s shape with ``L·n/m`` along
    ``axis`` and ``w``'s dtype; ``metadata`` is ``uint8`` with
    ``ceil(L·n/m·b/8)`` along ``axis``.

  Raises:
    ValueError: bad ``n``/``m``, length not divisible by ``m``, a mask of the
      wrong shape or (when concrete) not N:M.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import pack_nm, unpack_nm
    >>> w = jnp.array([[0.0], [5.0], [0.0], [-2.0]])
    >>> values, meta = pack_nm(w)
    >>> print(values[:, 0], meta[:, 0])
    [ 5. -2.] [13]
    >>> print(unpack_nm(values, meta)[:, 0])
    [ 0.  5.  0. -2.]

  References:
    Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021,
    arXiv:2104.08378 (compressed 2:4 format: values + 2-bit indices).
  """
  w = jnp.asarray(w)
  n, m = _common.check_nm(n, m)
  if w.ndim == 0:
    raise ValueError("`w` must have rank >= 1, got a scalar.")
  ax = _common.check_axis_divisible(w.shape, axis, m, "w")
  bits = _index_bits(m)
  if mask is None:
    mask = nm_mask(jnp.abs(w.astype(jnp.float32)), n=n, m=m, axis=ax)
  mask = jnp.asarray(mask)
  if mask.shape != w.shape:
    raise ValueError(
        f"`mask` must have `w`'s shape {w.shape}, got {mask.shape}.")
  mask = mask.astype(bool)
  if checks.is_concrete(mask):
    mnp = np.moveaxis(np.asarray(mask), ax, -1)
    counts = mnp.reshape(*mnp.shape[:-1], -1, m).sum(-1)
    if np.any(counts != n):
      raise ValueError(
          f"`mask` is not {n}:{m} along axis={axis}: found groups with "
          f"{sorted(set(np.unique(counts).tolist()))} kept entries.")
  gm = _grouped(mask, ax, m)
  # Positions of the kept entries, ascending (kept first, lowest index first).
  key = jnp.where(gm, jnp.arange(m), m + jnp.arange(m))
  pos = jnp.sort(key, axis=-1)[..., :n]                      # [..., G, n]
  vals = jnp.take_along_axis(_grouped(w, ax, m), pos, axis=-1)
  values = _ungrouped(vals, ax)
  idx = _ungrouped(pos.astype(jnp.uint8), ax)
  idx = jnp.moveaxis(idx, ax, -1)
  per = 8 // bits
  count = idx.shape[-1]
  pad = (-count) % per
  idx = jnp.pad(idx, [(0, 0)] * (idx.ndim - 1) + [(0, pad)])
  idx = idx.reshape(*idx.shape[:-1], -1, per)
  shifts = (jnp.arange(per, dtype=jnp.uint8) * bits).astype(jnp.uint8)
  # The bit fields are disjoint, so their sum is their bitwise or.
  meta = jnp.sum(jnp.left_shift(idx, shifts), axis=-1, dtype=jnp.uint8)
  meta = jnp.moveaxis(meta.astype(jnp.uint8), -1, ax)
  return values, meta


def unpack_nm(values: ArrayLike, metadata: ArrayLike, *, n: int = 2,
              m: int = 4, axis: int = 0) -> jax.Array:
  r"""Expands :func:`pack_nm`'s ``(values, metadata)`` back to the dense array.

  Inverse of :func:`pack_nm`: pruned positions are exact zeros and kept values
  are bit-identical, so ``unpack_nm(*pack_nm(w * mask, mask=mask)) == w *
  mask``.

  Args:
    values: ``[..., L·n/m, ...]`` kept values.
    metadata: ``uint8`` packed in-group indices, as returned by
      :func:`pack_nm`.
    n: kept entries per group (static; as packed).
    m: group size (static; as packed).
    axis: the grouping axis (static; as packed).

  Returns:
    The dense array, ``values``' shape with ``L`` along ``axis``, ``values``'
    dtype.

  Raises:
    ValueError: bad ``n``/``m``, a values length not divisible by ``n``, or a
      metadata shape that does not match.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import nm_mask, pack_nm, unpack_nm
    >>> w = jnp.arange(1.0, 9.0).reshape(8, 1)
    >>> mask = nm_mask(jnp.abs(w))
    >>> bool(jnp.all(unpack_nm(*pack_nm(w, mask=mask)) == w * mask))
    True

  References:
    Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021,
    arXiv:2104.08378.
  """
  values = jnp.asarray(values)
  metadata = jnp.asarray(metadata)
  n, m = _common.check_nm(n, m)
  if values.ndim == 0:
    raise ValueError("`values` must have rank >= 1, got a scalar.")
  (ax,) = checks.normalize_axis(axis, values.ndim, "axis")
  if values.shape[ax] % n:
    raise ValueError(
        f"`values` has length {values.shape[ax]} along axis={axis}, not a "
        f"multiple of n={n}.")
  bits = _index_bits(m)
  per = 8 // bits
  count = values.shape[ax]
  want = list(values.shape)
  want[ax] = -(-count // per)
  if metadata.dtype != jnp.uint8 or list(metadata.shape) != want:
    raise ValueError(
        f"`metadata` must be uint8 of shape {tuple(want)}, got "
        f"{metadata.dtype} {metadata.shape}.")
  meta = jnp.moveaxis(metadata, ax, -1)
  shifts = (jnp.arange(per, dtype=jnp.uint8) * bits).astype(jnp.uint8)
  idx = jnp.right_shift(meta[..., None], shifts) & jnp.uint8((1 << bits) - 1)
  idx = idx.reshape(*idx.shape[:-2], -1)[..., :count].astype(jnp.int32)
  idx = idx.reshape(*idx.shape[:-1], count // n, n)           # [..., G, n]
  vals = jnp.moveaxis(values, ax, -1)
  vals = vals.reshape(*vals.shape[:-1], count // n, n)
  onehot = jax.nn.one_hot(idx, m, dtype=jnp.bool_)             # [..., G, n, m]
  dense = jnp.sum(jnp.where(onehot, vals[..., None], jnp.zeros((), vals.dtype)),
                  axis=-2, dtype=vals.dtype)
  return _ungrouped(dense, ax)


def packed_nbytes(values: ArrayLike, metadata: ArrayLike) -> int:
  """Bytes of a packed N:M array: values plus metadata.

  For 2:4 this is ``L·n/m · itemsize + L/8`` per column: bf16 weights take
  ``1.125`` bytes per dense entry instead of 2 (56.25 %); f32 take 2.125
  instead of 4 (53.1 %).

  Args:
    values: packed values from :func:`pack_nm`.
    metadata: packed metadata from :func:`pack_nm`.

  Returns:
    Python ``int``: ``values.nbytes + metadata.nbytes``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import pack_nm, packed_nbytes
    >>> w = jnp.ones((64, 32), jnp.bfloat16)
    >>> packed_nbytes(*pack_nm(w)), w.nbytes
    (2304, 4096)
  """
  return int(jnp.asarray(values).nbytes) + int(jnp.asarray(metadata).nbytes)
