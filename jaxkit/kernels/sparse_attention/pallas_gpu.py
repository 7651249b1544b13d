"""Block-sparse flash attention forward as a Pallas Triton (GPU) kernel.

Grid ``(nq, B * N)``: one program per (q-block, batch row, query head) keeps
its query tile and the online-softmax state in registers and loops
(``lax.fori_loop`` with a data-dependent trip count) over the q-block's
*active* kv-blocks only, read from the per-row block lists of the mask
metadata; empty tiles are never loaded nor computed. Partial tiles load
their element mask from the deduplicated table; full tiles point at its
all-``True`` entry 0 (branch-free: the ``where`` is kept, only the matmuls
matter on GPU). Triton needs power-of-two tiles, so ``block_q``,
``block_kv`` and ``H`` must be powers of two (``H`` is zero-padded to one).

Backward: XLA, the block-sparse reference differentiated by JAX (as the TPU
backend) on tiles of at least 128x128, through ``jax.custom_vjp``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from jaxkit.kernels import _registry
from jaxkit.kernels.sparse_attention import masks as masks_lib
from jaxkit.kernels.sparse_attention import reference

MASK_VALUE = reference.MASK_VALUE


def _next_pow2(x: int) -> int:
  return 1 << max(0, int(x - 1).bit_length())


def _is_pow2(x: int) -> bool:
  return x > 0 and x & (x - 1) == 0


def _fwd_kernel(q_ref, k_ref, v_ref, valid_ref, row_kv_ref, row_kind_ref,
                row_mi_ref, count_ref, mtab_ref, o_ref, *, scale: float,
                block_q: int, block_kv: int, has_padding: bool):
  qi = pl.program_id(0)
  q = q_ref[...]  # [bq, H]
  h = q.shape[-1]
  count = count_ref[qi]

  def body(a, carry):
    acc, m_prev, l_prev = carry
    kv = row_kv_ref[qi, a]
    kind = row_kind_ref[qi, a]
    mi = row_mi_ref[qi, a]
    start = pl.multiple_of(kv * block_kv, block_kv)
    k = k_ref[pl.ds(start, block_kv), :]
    s = jax.lax.dot_general(q, k, (((1,), (1,)), ((), ())),
                            preferred_element_type=jnp.float32) * scale
    keep = mtab_ref[mi, :, :] != 0
    keep = jnp.logical_or(keep, kind == masks_lib.FULL)
    if has_padding:
      vk = valid_ref[pl.ds(start, block_kv)] != 0
      keep = jnp.logical_and(keep, vk[None, :])
    s = jnp.where(keep, s, MASK_VALUE)
    m_next = jnp.maximum(m_prev, jnp.max(s, axis=-1))
    alpha = jnp.exp(m_prev - m_next)
    p = jnp.where(keep, jnp.exp(s - m_next[:, None]), 0.0)
    l_next = alpha * l_prev + jnp.sum(p, axis=-1)
    v = v_ref[pl.ds(start, block_kv), :]
    pv = jax.lax.dot_general(p.astype(v.dtype), v, (((1,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)
    return alpha[:, None] * acc + pv, m_next, l_next

  init = (jnp.zeros((block_q, h), jnp.float32),
          jnp.full((block_q,), MASK_VALUE, jnp.float32),
          jnp.zeros((block_q,), jnp.float32))
  acc, _, l = jax.lax.fori_loop(0, count, body, init)
  pos = l > 0
  out = acc / jnp.where(pos, l, 1.0)[:, None]
  o_ref[...] = jnp.where(pos[:, None], out, 0.0).astype(o_ref.dtype)


def forward(q, k, v, valid, info: masks_lib.BlockMaskInfo, scale: float,
            interpret: bool, num_warps: int = 4, num_stages: int = 2):
  """The Triton forward: q ``[B,T,N,H]``, k/v ``[B,S,K,H]`` -> ``[B,T,N,H]``."""
  b, t, n, h = q.shape
  s, kh = k.shape[1], k.shape[2]
  g = n // kh
  bq, bk = info.block_q, info.block_kv
  nq, nk = info.num_q_blocks, info.num_kv_blocks
  tp, sp = nq * bq, nk * bk
  hp = _next_pow2(h)
  qp = jnp.pad(q, ((0, 0), (0, tp - t), (0, 0), (0, hp - h)))
  kp = jnp.pad(k, ((0, 0), (0, sp - s), (0, 0), (0, hp - h)))
  vp = jnp.pad(v, ((0, 0), (0, sp - s), (0, 0), (0, hp - h)))
  has_padding = valid is not None
  if has_padding:
    vin = jnp.pad(valid.astype(jnp.int32), ((0, 0), (0, sp - s)),
                  constant_values=1)
  else:
    vin = jnp.ones((1, sp), jnp.int32)
  row_kv = jnp.asarray(info.row_kv)
  row_kind = jnp.asarray(info.row_kind)
  row_mi = jnp.asarray(info.row_mask_index)
  count = jnp.asarray(info.row_count)
  mtab = jnp.asarray(info.partial_masks.astype(np.int32))

  def full(arr):
    return pl.BlockSpec(arr.shape, lambda qi, bn: (0,) * arr.ndim)

  in_specs = [
      pl.BlockSpec((None, bq, None, hp), lambda qi, bn: (bn // n, qi, bn % n, 0)),
      pl.BlockSpec((None, sp, None, hp),
                   lambda qi, bn: (bn // n, 0, (bn % n) // g, 0)),
      pl.BlockSpec((None, sp, None, hp),
                   lambda qi, bn: (bn // n, 0, (bn % n) // g, 0)),
      pl.BlockSpec((None, sp),
                   (lambda qi, bn: (bn // n, 0)) if has_padding else
                   (lambda qi, bn: (0, 0))),
      full(row_kv), full(row_kind), full(row_mi), full(count), full(mtab),
  ]
  kernel = functools.partial(_fwd_kernel, scale=scale, block_q=bq,
                             block_kv=bk, has_padding=has_padding)
  out = pl.pallas_call(
      kernel,
      grid=(nq, b * n),
      in_specs=in_specs,
      out_specs=pl.BlockSpec((None, bq, None, hp),
                             lambda qi, bn: (bn // n, qi, bn % n, 0)),
      out_shape=jax.ShapeDtypeStruct((b, tp, n, hp), q.dtype),
      compiler_params=plgpu.CompilerParams(num_warps=num_warps,
                                           num_stages=num_stages),
      interpret=interpret,
      name="jaxkit_sparse_attention_fwd_triton",
  )(qp, kp, vp, vin, row_kv, row_kind, row_mi, count, mtab)
  return out[:, :t, :, :h]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _attention(q, k, v, valid, info, bwd_info, scale, interpret):
  del bwd_info
  return forward(q, k, v, valid, info, scale, interpret)


def _attention_fwd(q, k, v, valid, info, bwd_info, scale, interpret):
  del bwd_info
  return forward(q, k, v, valid, info, scale, interpret), (q, k, v, valid)


def _attention_bwd(info, bwd_info, scale, interpret, res, g):
  del info, interpret
  q, k, v, valid = res
  _, vjp = jax.vjp(
      lambda q_, k_, v_: reference.attention_tiles(q_, k_, v_, valid,
                                                   bwd_info, scale), q, k, v)
  dq, dk, dv = vjp(g.astype(jnp.promote_types(g.dtype, jnp.float32)))
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


_attention.defvjp(_attention_fwd, _attention_bwd)


def default_blocks(t: int, s: int, block_q, block_kv):
  """GPU tiles: powers of two, 64 or the next power of two when shorter."""
  if block_q is None:
    block_q = min(64, max(16, _next_pow2(t)))
  if block_kv is None:
    block_kv = min(64, max(16, _next_pow2(s)))
  return block_q, block_kv


def sparse_attention_gpu(q, k, v, valid, *, mask, scale, block_q, block_kv,
                         interpret: bool):
  """The ``"pallas_gpu"`` backend (see module docstring)."""
  t, s = q.shape[1], k.shape[1]
  bq, bk = default_blocks(t, s, block_q, block_kv)
  if not (_is_pow2(bq) and _is_pow2(bk)):
    raise _registry.BackendUnsupportedError(
        f"pallas_gpu: Triton needs power-of-two tiles, got block_q={bq}, "
        f"block_kv={bk}.")
  info = masks_lib.block_mask_info(mask, t, s, bq, bk)
  if info.num_active_blocks == 0:
    return jnp.zeros(q.shape, q.dtype)
  # The XLA backward works on (at least) 128-wide tiles: fewer, larger tiles
  # (XLA:GPU compiles the backward of ~2000 64x64 tiles very slowly).
  bwd_info = masks_lib.block_mask_info(mask, t, s, max(bq, 128),
                                       max(bk, 128))
  return _attention(q, k, v, valid, info, bwd_info, scale, interpret)
