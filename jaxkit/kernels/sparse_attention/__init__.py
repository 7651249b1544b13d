"""Block-sparse attention: ``sparse_attention`` and its mask objects."""

from jaxkit.kernels.sparse_attention import masks
from jaxkit.kernels.sparse_attention.api import sparse_attention
from jaxkit.kernels.sparse_attention.masks import (
    BlockMaskInfo, CausalMask, ChunkedMask, DilatedMask, FullMask,
    GlobalLocalMask, IntersectionMask, LocalMask, Mask, NumpyMask,
    RandomBlockMask, ShiftedWindowMask, UnionMask, block_mask_info)

__all__ = [
    "sparse_attention", "masks", "Mask", "FullMask", "CausalMask",
    "LocalMask", "ShiftedWindowMask", "GlobalLocalMask", "DilatedMask",
    "RandomBlockMask", "ChunkedMask", "NumpyMask", "UnionMask",
    "IntersectionMask", "BlockMaskInfo", "block_mask_info",
]
