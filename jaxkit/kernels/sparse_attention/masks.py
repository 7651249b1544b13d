r"""Attention mask objects and their block-sparse metadata (splash-attention style).

A mask says which keys each query may attend. Every mask is a frozen, hashable
dataclass; :meth:`Mask.materialize` gives the dense boolean ``[T, S]`` array
(``True`` = may attend) and :func:`block_mask_info` compiles a mask, once per
``(T, S, block_q, block_kv)`` (cached), into the block metadata the kernels
iterate over: which ``(q-block, kv-block)`` tiles are empty (skipped), full
(no element masking) or partial (an element mask, deduplicated into a small
table).

**Positions.** Query ``i`` sits at absolute position ``i + S - T`` (queries are
the last ``T`` of ``S`` positions, as in decoding with a cache), exactly as the
mask builders of :mod:`jaxkit.nn.attention`; for ``T == S`` query ``i`` is at
position ``i``. Key ``j`` is at position ``j``.

Masks combine with ``|`` (union) and ``&`` (intersection), e.g.
``CausalMask() & (LocalMask(256, causal=False) | GlobalMask([0]))``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Sequence

import numpy as np

__all__ = [
    "Mask", "FullMask", "CausalMask", "LocalMask", "ShiftedWindowMask",
    "GlobalLocalMask", "DilatedMask", "RandomBlockMask", "ChunkedMask",
    "NumpyMask", "UnionMask", "IntersectionMask", "BlockMaskInfo",
    "block_mask_info", "as_mask",
]


def _check_int(value, name: str, *, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"`{name}` must be an int, got {value!r}.")
  if value < minimum:
    raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
  return int(value)


def _positions(q_len: int, kv_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Absolute query positions ``[T, 1]`` and key positions ``[1, S]``."""
  q_len = _check_int(q_len, "q_len", minimum=1)
  kv_len = _check_int(kv_len, "kv_len", minimum=1)
  i = np.arange(q_len, dtype=np.int64)[:, None] + (kv_len - q_len)
  j = np.arange(kv_len, dtype=np.int64)[None, :]
  return i, j


class Mask:
  """Base class of attention masks (subclasses are frozen dataclasses).

  Subclasses implement ``_dense(q_len, kv_len) -> bool [T, S]``;
  :meth:`materialize` caches it.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> m = masks.CausalMask() & masks.LocalMask(2)
    >>> print(type(m).__name__, m.materialize(3, 3).astype(int).tolist())
    IntersectionMask [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
  """

  def _dense(self, q_len: int, kv_len: int) -> np.ndarray:
    msg = (f"{type(self).__name__} must implement _dense(q_len, kv_len); "
           "use a concrete mask (CausalMask, LocalMask, ...) instead.")
    raise NotImplementedError(msg)

  def materialize(self, q_len: int, kv_len: int) -> np.ndarray:
    """The dense boolean ``[q_len, kv_len]`` mask (read-only, cached).

    Args:
      q_len: number of queries ``T``.
      kv_len: number of keys ``S``.

    Returns:
      A read-only numpy bool array ``[T, S]``; ``True`` = may attend.

    Example:
      >>> from jaxkit.kernels.sparse_attention import masks
      >>> print(masks.CausalMask().materialize(3, 3).astype(int))
      [[1 0 0]
       [1 1 0]
       [1 1 1]]
    """
    return _materialize(self, int(q_len), int(kv_len))

  def __or__(self, other: "Mask") -> "Mask":
    if not isinstance(other, Mask):
      return NotImplemented
    return UnionMask((self, other))

  def __and__(self, other: "Mask") -> "Mask":
    if not isinstance(other, Mask):
      return NotImplemented
    return IntersectionMask((self, other))


@functools.lru_cache(maxsize=128)
def _materialize(mask: Mask, q_len: int, kv_len: int) -> np.ndarray:
  _check_int(q_len, "q_len", minimum=1)
  _check_int(kv_len, "kv_len", minimum=1)
  out = np.asarray(mask._dense(q_len, kv_len), dtype=bool)  # pylint: disable=protected-access
  out = np.broadcast_to(out, (q_len, kv_len)).copy()
  out.setflags(write=False)
  return out


@dataclasses.dataclass(frozen=True)
class FullMask(Mask):
  """Every query attends every key (use with a padding mask only).

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> print(masks.FullMask().materialize(2, 3).astype(int))
    [[1 1 1]
     [1 1 1]]
  """

  def _dense(self, q_len, kv_len):
    return np.ones((q_len, kv_len), bool)


@dataclasses.dataclass(frozen=True)
class CausalMask(Mask):
  """Causal mask: query at position ``p`` attends keys ``j <= p``.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> print(masks.CausalMask().materialize(2, 4).astype(int))  # last 2 queries
    [[1 1 1 0]
     [1 1 1 1]]
  """

  def _dense(self, q_len, kv_len):
    i, j = _positions(q_len, kv_len)
    return j <= i


@dataclasses.dataclass(frozen=True)
class LocalMask(Mask):
  """Sliding window: ``|p - j| < window`` (and ``j <= p`` when causal).

  With ``causal=True`` each query sees itself and the ``window - 1`` previous
  keys (Mistral / Longformer local attention), as
  :func:`jaxkit.nn.local_mask`. ``shift`` moves the window into the past: the
  query at ``p`` looks around ``p - shift`` instead (a shifted window).

  Attributes:
    window: window size (positive).
    causal: also apply the causal constraint (relative to ``p - shift``).
    shift: offset of the window centre into the past (``>= 0``).

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> print(masks.LocalMask(2).materialize(4, 4).astype(int))
    [[1 0 0 0]
     [1 1 0 0]
     [0 1 1 0]
     [0 0 1 1]]
  """
  window: int
  causal: bool = True
  shift: int = 0

  def __post_init__(self):
    _check_int(self.window, "window", minimum=1)
    _check_int(self.shift, "shift", minimum=0)

  def _dense(self, q_len, kv_len):
    i, j = _positions(q_len, kv_len)
    c = i - self.shift
    m = np.abs(c - j) < self.window
    if self.causal:
      m &= j <= c
    return m


@dataclasses.dataclass(frozen=True)
class ShiftedWindowMask(Mask):
  """Non-overlapping windows (Swin style), optionally shifted.

  Query at ``p`` attends key ``j`` iff ``(p + shift) // window == (j + shift)
  // window``; ``shift = window // 2`` is the shifted-window layer of Swin.

  Attributes:
    window: window size (positive).
    shift: shift of the window boundaries, ``0 <= shift < window``.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> print(masks.ShiftedWindowMask(2, shift=1).materialize(4, 4).astype(int))
    [[1 0 0 0]
     [0 1 1 0]
     [0 1 1 0]
     [0 0 0 1]]
  """
  window: int
  shift: int = 0

  def __post_init__(self):
    _check_int(self.window, "window", minimum=1)
    _check_int(self.shift, "shift", minimum=0)
    if self.shift >= self.window:
      raise ValueError(f"`shift` must be < `window`={self.window}, got "
                       f"{self.shift}.")

  def _dense(self, q_len, kv_len):
    i, j = _positions(q_len, kv_len)
    return (i + self.shift) // self.window == (j + self.shift) // self.window


@dataclasses.dataclass(frozen=True)
class GlobalLocalMask(Mask):
  """Global tokens + local window (Longformer / BigBird).

  Every query attends its local window (:class:`LocalMask` without shift);
  global tokens attend every key and are attended by every query; with
  ``causal=True`` the causal constraint is applied last (as
  :func:`jaxkit.nn.global_local_mask`).

  Attributes:
    window: local window size.
    global_tokens: an int ``g`` (the first ``g`` positions are global) or a
      tuple of absolute positions.
    causal: apply the causal constraint last.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> m = masks.GlobalLocalMask(window=1, global_tokens=1, causal=False)
    >>> print(m.materialize(4, 4).astype(int))
    [[1 1 1 1]
     [1 1 0 0]
     [1 0 1 0]
     [1 0 0 1]]
  """
  window: int
  global_tokens: int | tuple[int, ...] = 1
  causal: bool = True

  def __post_init__(self):
    _check_int(self.window, "window", minimum=1)
    g = self.global_tokens
    if isinstance(g, (int, np.integer)) and not isinstance(g, bool):
      _check_int(g, "global_tokens", minimum=0)
      object.__setattr__(self, "global_tokens", int(g))
    else:
      idx = tuple(int(x) for x in np.asarray(g, np.int64).reshape(-1))
      if any(x < 0 for x in idx):
        raise ValueError(f"`global_tokens` positions must be >= 0, got {idx}.")
      object.__setattr__(self, "global_tokens", idx)

  def _dense(self, q_len, kv_len):
    i, j = _positions(q_len, kv_len)
    g = self.global_tokens
    if isinstance(g, int):
      if g > kv_len:
        raise ValueError(
            f"`global_tokens`={g} must be in [0, kv_len={kv_len}].")
      glob = np.arange(kv_len) < g
    else:
      if g and max(g) >= kv_len:
        raise ValueError(
            f"`global_tokens` positions must be in [0, {kv_len}), got {g}.")
      glob = np.zeros(kv_len, bool)
      glob[list(g)] = True
    m = np.abs(i - j) < self.window
    m = m | glob[None, :] | glob[i[:, 0]][:, None]
    if self.causal:
      m &= j <= i
    return m


@dataclasses.dataclass(frozen=True)
class DilatedMask(Mask):
  """Dilated sliding window (Longformer): ``window`` keys spaced ``dilation``.

  Query at ``p`` attends ``j`` iff ``(p - j) % dilation == 0`` and
  ``|p - j| < window * dilation`` (and ``j <= p`` when causal).

  Attributes:
    window: keys per side (positive).
    dilation: spacing (positive; 1 is :class:`LocalMask`).
    causal: also apply the causal constraint.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> print(masks.DilatedMask(window=2, dilation=2).materialize(5, 5)[4]
    ...       .astype(int))
    [0 0 1 0 1]
  """
  window: int
  dilation: int = 2
  causal: bool = True

  def __post_init__(self):
    _check_int(self.window, "window", minimum=1)
    _check_int(self.dilation, "dilation", minimum=1)

  def _dense(self, q_len, kv_len):
    i, j = _positions(q_len, kv_len)
    d = i - j
    m = (d % self.dilation == 0) & (np.abs(d) < self.window * self.dilation)
    if self.causal:
      m &= d >= 0
    return m


@dataclasses.dataclass(frozen=True)
class RandomBlockMask(Mask):
  """Random block-sparse mask (BigBird random attention), seeded.

  The ``[T, S]`` plane is cut into ``block_q x block_kv`` blocks (in query
  index space, the last ones ragged); each block is kept with probability
  ``density``, drawn with ``numpy.random.default_rng(seed)``.

  Attributes:
    block_q: query block size of the pattern.
    block_kv: key block size of the pattern.
    density: fraction of blocks kept, in ``[0, 1]``.
    seed: the RNG seed.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> m = masks.RandomBlockMask(block_q=2, block_kv=2, density=1.0)
    >>> print(bool(m.materialize(4, 4).all()), m == masks.RandomBlockMask(2, 2, 1.0))
    True True
  """
  block_q: int
  block_kv: int
  density: float
  seed: int = 0

  def __post_init__(self):
    _check_int(self.block_q, "block_q", minimum=1)
    _check_int(self.block_kv, "block_kv", minimum=1)
    if not 0.0 <= float(self.density) <= 1.0:
      raise ValueError(f"`density` must be in [0, 1], got {self.density}.")
    _check_int(self.seed, "seed", minimum=0)

  def _dense(self, q_len, kv_len):
    nq = -(-q_len // self.block_q)
    nk = -(-kv_len // self.block_kv)
    rng = np.random.default_rng(self.seed)
    blocks = rng.random((nq, nk)) < float(self.density)
    m = np.repeat(np.repeat(blocks, self.block_q, 0), self.block_kv, 1)
    return m[:q_len, :kv_len]


@dataclasses.dataclass(frozen=True)
class ChunkedMask(Mask):
  """Chunked attention (Llama 4): attend only within the same chunk.

  Query at ``p`` attends ``j`` iff ``p // chunk == j // chunk`` (and
  ``j <= p`` when causal).

  Attributes:
    chunk: chunk size (positive).
    causal: also apply the causal constraint.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> print(masks.ChunkedMask(2, causal=False).materialize(4, 4).astype(int))
    [[1 1 0 0]
     [1 1 0 0]
     [0 0 1 1]
     [0 0 1 1]]
  """
  chunk: int
  causal: bool = True

  def __post_init__(self):
    _check_int(self.chunk, "chunk", minimum=1)

  def _dense(self, q_len, kv_len):
    i, j = _positions(q_len, kv_len)
    m = i // self.chunk == j // self.chunk
    if self.causal:
      m &= j <= i
    return m


@dataclasses.dataclass(frozen=True, eq=False)
class NumpyMask(Mask):
  """A user boolean ``[T, S]`` array (hashed by content).

  Attributes:
    array: boolean ``[T, S]`` (numpy or concrete jax array); it must have
      exactly the attention's ``(T, S)`` shape.

  Example:
    >>> import numpy as np
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> a = np.array([[True, False], [True, True]])
    >>> m = masks.NumpyMask(a)
    >>> print(m == masks.NumpyMask(a.copy()), m.materialize(2, 2).astype(int).tolist())
    True [[1, 0], [1, 1]]
  """
  array: np.ndarray

  def __post_init__(self):
    arr = np.asarray(self.array)
    if arr.dtype != np.bool_:
      raise TypeError(f"`mask` array must be boolean, got dtype {arr.dtype}.")
    if arr.ndim != 2:
      raise ValueError(f"`mask` array must be [T, S], got shape {arr.shape}.")
    arr = arr.copy()
    arr.setflags(write=False)
    object.__setattr__(self, "array", arr)
    digest = hashlib.sha1(np.packbits(arr).tobytes()).hexdigest()
    object.__setattr__(self, "_key", (arr.shape, digest))

  def __hash__(self):
    return hash(self._key)

  def __eq__(self, other):
    return isinstance(other, NumpyMask) and self._key == other._key

  def _dense(self, q_len, kv_len):
    if self.array.shape != (q_len, kv_len):
      raise ValueError(
          f"`mask` array has shape {self.array.shape} but the attention has "
          f"T={q_len} queries and S={kv_len} keys; expected ({q_len}, "
          f"{kv_len}).")
    return self.array


@dataclasses.dataclass(frozen=True)
class UnionMask(Mask):
  """Logical or of masks (``a | b``).

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> m = masks.LocalMask(1) | masks.GlobalLocalMask(1, global_tokens=1)
    >>> print(type(m).__name__, m.materialize(3, 3).astype(int).tolist())
    UnionMask [[1, 0, 0], [1, 1, 0], [1, 0, 1]]
  """
  masks: tuple[Mask, ...]

  def _dense(self, q_len, kv_len):
    out = np.zeros((q_len, kv_len), bool)
    for m in self.masks:
      out |= m.materialize(q_len, kv_len)
    return out


@dataclasses.dataclass(frozen=True)
class IntersectionMask(Mask):
  """Logical and of masks (``a & b``).

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> m = masks.ChunkedMask(2, causal=False) & masks.CausalMask()
    >>> print(type(m).__name__, m.materialize(3, 3).astype(int).tolist())
    IntersectionMask [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
  """
  masks: tuple[Mask, ...]

  def _dense(self, q_len, kv_len):
    out = np.ones((q_len, kv_len), bool)
    for m in self.masks:
      out &= m.materialize(q_len, kv_len)
    return out


def as_mask(mask) -> Mask:
  """Returns ``mask`` as a :class:`Mask`; a bool array becomes a NumpyMask.

  Raises:
    TypeError: for ``None``, a traced array, or anything else.

  Example:
    >>> import numpy as np
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> print(type(masks.as_mask(np.eye(2, dtype=bool))).__name__)
    NumpyMask
    >>> masks.as_mask(masks.CausalMask()) == masks.CausalMask()
    True
  """
  if isinstance(mask, Mask):
    return mask
  if mask is None:
    raise TypeError(
        "`mask` is required: pass a jaxkit.kernels.masks object (e.g. "
        "masks.CausalMask(), masks.FullMask()) or a boolean [T, S] numpy "
        "array.")
  try:
    import jax  # pylint: disable=g-import-not-at-top
    if isinstance(mask, jax.core.Tracer):
      raise TypeError(
          "`mask` must be static (a mask object or a concrete boolean [T, S] "
          "array) because it is compiled into block metadata at trace time; "
          "got a traced array. Per-batch padding goes in `padding_mask`.")
  except ImportError:  # pragma: no cover
    pass
  if isinstance(mask, (np.ndarray,)) or hasattr(mask, "__array__"):
    return NumpyMask(np.asarray(mask))
  raise TypeError(f"`mask` must be a Mask object or a boolean [T, S] array, "
                  f"got {type(mask).__name__}.")


# Kinds of a (q-block, kv-block) tile.
EMPTY, PARTIAL, FULL = 0, 1, 2


@dataclasses.dataclass(frozen=True, eq=False)
class BlockMaskInfo:
  """Block metadata of a mask for one ``(T, S, block_q, block_kv)``.

  The ``[T, S]`` plane is padded to ``[nq * block_q, nk * block_kv]`` (padded
  rows / columns are masked out). Arrays are read-only numpy.

  Attributes:
    q_len, kv_len, block_q, block_kv: the sizes it was compiled for.
    num_q_blocks, num_kv_blocks: ``nq``, ``nk``.
    block_kind: ``int8 [nq, nk]``: 0 empty (skipped), 1 partial (element mask),
      2 full (no masking).
    partial_masks: ``bool [U, block_q, block_kv]``, the distinct element masks
      of partial tiles; entry 0 is all ``True`` (used by full tiles).
    mask_index: ``int32 [nq, nk]`` index into ``partial_masks``.
    tile_q, tile_kv, tile_mask_index, tile_full: ``[P]``, the active tiles
      (row-major order), ``P`` = number of active tiles.
    row_kv, row_kind, row_mask_index: ``int32 [nq, A]``: per q-block the active
      kv-blocks padded to ``A = max(1, max active per row)``; padded slots have
      kind 0 and repeat the row's last kv index (so no new DMA is issued).
    row_count: ``int32 [nq]`` active tiles per q-block.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> info = masks.block_mask_info(masks.CausalMask(), 4, 4, 2, 2)
    >>> print(info.block_kind.tolist(), info.row_count.tolist())
    [[1, 0], [2, 1]] [1, 2]
    >>> print(info.num_active_blocks, info.block_density)
    3 0.75
  """
  q_len: int
  kv_len: int
  block_q: int
  block_kv: int
  num_q_blocks: int
  num_kv_blocks: int
  block_kind: np.ndarray
  partial_masks: np.ndarray
  mask_index: np.ndarray
  tile_q: np.ndarray
  tile_kv: np.ndarray
  tile_mask_index: np.ndarray
  tile_full: np.ndarray
  row_kv: np.ndarray
  row_kind: np.ndarray
  row_mask_index: np.ndarray
  row_count: np.ndarray

  @property
  def num_active_blocks(self) -> int:
    """Tiles that are computed (partial + full)."""
    return int(self.tile_q.size)

  @property
  def num_partial_blocks(self) -> int:
    return int(np.sum(self.block_kind == PARTIAL))

  @property
  def block_density(self) -> float:
    """Active tiles / all tiles."""
    return self.num_active_blocks / (self.num_q_blocks * self.num_kv_blocks)


def _ro(a):
  a = np.ascontiguousarray(a)
  a.setflags(write=False)
  return a


@functools.lru_cache(maxsize=64)
def block_mask_info(mask: Mask, q_len: int, kv_len: int, block_q: int,
                    block_kv: int) -> BlockMaskInfo:
  """Compiles ``mask`` into block metadata (cached per arguments).

  Args:
    mask: a :class:`Mask`.
    q_len: number of queries ``T``.
    kv_len: number of keys ``S``.
    block_q: query tile size.
    block_kv: key tile size.

  Returns:
    A :class:`BlockMaskInfo`.

  Example:
    >>> from jaxkit.kernels.sparse_attention import masks
    >>> info = masks.block_mask_info(masks.CausalMask(), 256, 256, 64, 64)
    >>> info.num_active_blocks, info.num_partial_blocks
    (10, 4)
  """
  if not isinstance(mask, Mask):
    raise TypeError(f"`mask` must be a Mask, got {type(mask).__name__}.")
  block_q = _check_int(block_q, "block_q", minimum=1)
  block_kv = _check_int(block_kv, "block_kv", minimum=1)
  dense = mask.materialize(q_len, kv_len)
  nq, nk = -(-q_len // block_q), -(-kv_len // block_kv)
  padded = np.zeros((nq * block_q, nk * block_kv), bool)
  padded[:q_len, :kv_len] = dense
  tiles = padded.reshape(nq, block_q, nk, block_kv).transpose(0, 2, 1, 3)
  any_ = tiles.any(axis=(2, 3))
  all_ = tiles.all(axis=(2, 3))
  kind = np.where(all_, FULL, np.where(any_, PARTIAL, EMPTY)).astype(np.int8)
  mask_index = np.zeros((nq, nk), np.int32)
  part = kind == PARTIAL
  if part.any():
    flat = tiles[part].reshape(-1, block_q * block_kv)
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    mask_index[part] = inv.reshape(-1).astype(np.int32) + 1
    table = np.concatenate(
        [np.ones((1, block_q, block_kv), bool),
         uniq.reshape(-1, block_q, block_kv)], axis=0)
  else:
    table = np.ones((1, block_q, block_kv), bool)
  tq, tk = np.nonzero(kind != EMPTY)
  count = (kind != EMPTY).sum(axis=1).astype(np.int32)
  a = max(1, int(count.max()) if count.size else 1)
  row_kv = np.zeros((nq, a), np.int32)
  row_kind = np.zeros((nq, a), np.int32)
  row_mi = np.zeros((nq, a), np.int32)
  for r in range(nq):
    cols = np.nonzero(kind[r] != EMPTY)[0]
    c = cols.size
    if c:
      row_kv[r, :c] = cols
      row_kv[r, c:] = cols[-1]
      row_kind[r, :c] = kind[r, cols]
      row_mi[r, :c] = mask_index[r, cols]
  return BlockMaskInfo(
      q_len=int(q_len), kv_len=int(kv_len), block_q=block_q,
      block_kv=block_kv, num_q_blocks=nq, num_kv_blocks=nk,
      block_kind=_ro(kind), partial_masks=_ro(table),
      mask_index=_ro(mask_index), tile_q=_ro(tq.astype(np.int32)),
      tile_kv=_ro(tk.astype(np.int32)),
      tile_mask_index=_ro(mask_index[tq, tk]),
      tile_full=_ro(kind[tq, tk] == FULL), row_kv=_ro(row_kv),
      row_kind=_ro(row_kind), row_mask_index=_ro(row_mi),
      row_count=_ro(count))
