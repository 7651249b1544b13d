"""Tests of the attention mask objects and their block metadata."""

from __future__ import annotations

import numpy as np
import pytest

from jaxkit import nn
from jaxkit.kernels.sparse_attention import masks


def _pos(t, s):
  return np.arange(t)[:, None] + (s - t), np.arange(s)[None, :]


def _hand(kind, t, s):
  """Hand-written loops (independent of masks.py)."""
  out = np.zeros((t, s), bool)
  for a in range(t):
    p = a + s - t
    for j in range(s):
      if kind == "causal":
        out[a, j] = j <= p
      elif kind == "local3":
        out[a, j] = p - 3 < j <= p
      elif kind == "local3_noncausal":
        out[a, j] = abs(p - j) < 3
      elif kind == "local2_shift2":
        out[a, j] = p - 2 - 2 < j <= p - 2
      elif kind == "swin4_shift2":
        out[a, j] = (p + 2) // 4 == (j + 2) // 4
      elif kind == "global_local":  # window 2, global {0, 5}, causal
        g = {0, 5}
        out[a, j] = (abs(p - j) < 2 or j in g or p in g) and j <= p
      elif kind == "dilated":  # window 3, dilation 2, causal
        d = p - j
        out[a, j] = d >= 0 and d % 2 == 0 and d < 6
      elif kind == "chunked4":
        out[a, j] = p // 4 == j // 4 and j <= p
  return out


MASKS = {
    "causal": masks.CausalMask(),
    "local3": masks.LocalMask(3),
    "local3_noncausal": masks.LocalMask(3, causal=False),
    "local2_shift2": masks.LocalMask(2, shift=2),
    "swin4_shift2": masks.ShiftedWindowMask(4, shift=2),
    "global_local": masks.GlobalLocalMask(2, (0, 5)),
    "dilated": masks.DilatedMask(3, 2),
    "chunked4": masks.ChunkedMask(4),
}


@pytest.mark.parametrize("kind", sorted(MASKS))
@pytest.mark.parametrize("t,s", [(9, 9), (5, 11)])
def test_materialize_matches_hand_written(kind, t, s):
  np.testing.assert_array_equal(MASKS[kind].materialize(t, s),
                                _hand(kind, t, s))


def test_matches_jaxkit_nn_builders():
  np.testing.assert_array_equal(masks.CausalMask().materialize(5, 8),
                                np.asarray(nn.causal_mask(5, 8)))
  np.testing.assert_array_equal(masks.LocalMask(3).materialize(6, 9),
                                np.asarray(nn.local_mask(6, 9, window=3)))
  np.testing.assert_array_equal(
      masks.GlobalLocalMask(2, 2).materialize(7, 7),
      np.asarray(nn.global_local_mask(7, window=2, global_tokens=2)))
  np.testing.assert_array_equal(
      masks.GlobalLocalMask(2, (1, 4), causal=False).materialize(7, 7),
      np.asarray(nn.global_local_mask(7, window=2, global_tokens=[1, 4],
                                      causal=False)))


def test_random_block_mask_is_seeded_and_blockwise():
  m = masks.RandomBlockMask(4, 4, 0.5, seed=3)
  a = m.materialize(16, 16)
  np.testing.assert_array_equal(a, masks.RandomBlockMask(4, 4, 0.5, 3)
                                .materialize(16, 16))
  blocks = a.reshape(4, 4, 4, 4)
  assert np.all(blocks.all(axis=(1, 3)) == blocks.any(axis=(1, 3)))
  expected = np.random.default_rng(3).random((4, 4)) < 0.5
  np.testing.assert_array_equal(blocks.any(axis=(1, 3)), expected)
  assert not np.array_equal(a, masks.RandomBlockMask(4, 4, 0.5, 4)
                            .materialize(16, 16))


def test_union_intersection_and_numpy_mask():
  t = s = 8
  c = masks.CausalMask()
  l = masks.LocalMask(2, causal=False)
  user = np.random.default_rng(0).random((t, s)) < 0.3
  u = masks.NumpyMask(user)
  np.testing.assert_array_equal((c | u).materialize(t, s),
                                _hand("causal", t, s) | user)
  np.testing.assert_array_equal((c & l).materialize(t, s),
                                _hand("causal", t, s) & (np.abs(
                                    np.arange(t)[:, None] - np.arange(s)) < 2))
  np.testing.assert_array_equal(((c & l) | u).materialize(t, s),
                                ((c & l).materialize(t, s) | user))
  assert masks.NumpyMask(user.copy()) == u
  assert hash(masks.NumpyMask(user.copy())) == hash(u)


def test_masks_are_frozen_and_hashable():
  assert masks.LocalMask(4) == masks.LocalMask(4)
  assert hash(masks.LocalMask(4)) == hash(masks.LocalMask(4))
  assert hash(masks.CausalMask() | masks.LocalMask(2)) == hash(
      masks.CausalMask() | masks.LocalMask(2))
  with pytest.raises(Exception):
    masks.LocalMask(4).window = 3  # frozen
  assert masks.CausalMask().materialize(4, 4).flags.writeable is False


def test_mask_argument_errors():
  with pytest.raises(ValueError, match="window"):
    masks.LocalMask(0)
  with pytest.raises(ValueError, match="shift"):
    masks.ShiftedWindowMask(4, shift=4)
  with pytest.raises(ValueError, match="density"):
    masks.RandomBlockMask(4, 4, 1.5)
  with pytest.raises(TypeError, match="boolean"):
    masks.NumpyMask(np.zeros((3, 3)))
  with pytest.raises(ValueError, match="expected \\(4, 5\\)"):
    masks.NumpyMask(np.zeros((4, 4), bool)).materialize(4, 5)
  with pytest.raises(ValueError, match="global_tokens"):
    masks.GlobalLocalMask(2, (9,)).materialize(4, 4)


def test_block_info_causal_counts_and_cache():
  info = masks.block_mask_info(masks.CausalMask(), 256, 256, 64, 64)
  assert info.num_active_blocks == 10  # 4 * 5 / 2
  assert info.num_partial_blocks == 4  # the diagonal
  np.testing.assert_array_equal(info.row_count, [1, 2, 3, 4])
  assert info.partial_masks.shape == (2, 64, 64)  # all-True + one diagonal
  np.testing.assert_array_equal(info.partial_masks[1],
                                np.tril(np.ones((64, 64), bool)))
  assert masks.block_mask_info(masks.CausalMask(), 256, 256, 64, 64) is info


def test_block_info_empty_tiles_are_not_listed():
  t = s = 256
  info = masks.block_mask_info(masks.LocalMask(32), t, s, 32, 32)
  dense = masks.LocalMask(32).materialize(t, s)
  tiles = dense.reshape(8, 32, 8, 32).any(axis=(1, 3))
  assert info.num_active_blocks == tiles.sum() == 8 + 7
  assert info.row_kv.shape == (8, 2)
  r = masks.RandomBlockMask(32, 32, 0.25, seed=1)
  rinfo = masks.block_mask_info(r, t, s, 32, 32)
  expected = np.random.default_rng(1).random((8, 8)) < 0.25
  assert rinfo.num_active_blocks == expected.sum()
  assert rinfo.num_partial_blocks == 0
  np.testing.assert_array_equal(rinfo.block_kind != 0, expected)
  empty = masks.block_mask_info(masks.NumpyMask(np.zeros((40, 40), bool)),
                                40, 40, 16, 16)
  assert empty.num_active_blocks == 0


def test_block_info_unaligned_pads_and_marks_partial():
  info = masks.block_mask_info(masks.FullMask(), 40, 70, 32, 32)
  assert (info.num_q_blocks, info.num_kv_blocks) == (2, 3)
  # Only tile (0, 0) and (0, 1) are full; the ragged edge tiles are partial.
  np.testing.assert_array_equal(info.block_kind,
                                [[2, 2, 1], [1, 1, 1]])
  for qi, ki in zip(info.tile_q, info.tile_kv):
    m = info.partial_masks[info.mask_index[qi, ki]]
    rows = np.arange(32) + 32 * qi < 40
    cols = np.arange(32) + 32 * ki < 70
    np.testing.assert_array_equal(m, rows[:, None] & cols[None, :])
