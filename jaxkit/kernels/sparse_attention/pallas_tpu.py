"""Block-sparse flash attention forward as a Pallas TPU (Mosaic) kernel.

Grid ``(B, N, nq, A)``: for each batch row, query head and q-block, the last
axis walks the q-block's *active* kv-blocks only (``A`` = most active tiles in
any q-block). The per-row lists of active kv-block indices, tile kinds and
element-mask indices are scalar-prefetched (``PrefetchScalarGridSpec``) and
drive the K/V ``index_map`` s, so empty tiles are never fetched nor computed;
padded list slots repeat the row's last index (no new DMA) and are skipped
with ``pl.when``. Full tiles take an unmasked path; partial tiles read their
element mask from the deduplicated table. The online softmax state (m, l,
acc) lives in VMEM scratch; dots take the input dtype with float32
accumulation, the softmax is float32.

Backward: XLA, the block-sparse reference (``reference.attention_tiles``)
differentiated by JAX (it recomputes the forward over the same active tiles);
wired with ``jax.custom_vjp`` because grad through ``pallas_call`` does not
work.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxkit.kernels import _registry
from jaxkit.kernels.sparse_attention import masks as masks_lib
from jaxkit.kernels.sparse_attention import reference

MASK_VALUE = reference.MASK_VALUE
LANES = 128


def _round_up(x: int, m: int) -> int:
  return -(-x // m) * m


def _fwd_kernel(kv_idx_ref, kind_ref, mi_ref, q_ref, k_ref, v_ref, mtab_ref,
                valid_ref, o_ref, m_scr, l_scr, acc_scr, *, scale: float,
                num_slots: int, has_padding: bool):
  qi = pl.program_id(2)
  a = pl.program_id(3)
  slot = qi * num_slots + a

  @pl.when(a == 0)
  def _init():
    m_scr[...] = jnp.full(m_scr.shape, MASK_VALUE, jnp.float32)
    l_scr[...] = jnp.zeros(l_scr.shape, jnp.float32)
    acc_scr[...] = jnp.zeros(acc_scr.shape, jnp.float32)

  kind = kind_ref[slot]

  def tile(partial: bool):
    q = q_ref[...]
    k = k_ref[...]
    s = jax.lax.dot_general(q, k, (((1,), (1,)), ((), ())),
                            preferred_element_type=jnp.float32) * scale
    keep = None
    if partial:
      keep = mtab_ref[...] != 0
    if has_padding:
      vk = valid_ref[...] != 0  # [1, bk]
      keep = vk if keep is None else jnp.logical_and(keep, vk)
    if keep is not None:
      s = jnp.where(keep, s, MASK_VALUE)
    m_prev = m_scr[...]  # [bq, LANES], lanes replicated
    m_next = jnp.maximum(m_prev, jnp.max(s, axis=-1, keepdims=True))
    alpha = jnp.exp(m_prev - m_next)
    p = jnp.exp(s - m_next[:, :1])
    if keep is not None:
      p = jnp.where(keep, p, 0.0)
    l_scr[...] = alpha * l_scr[...] + jnp.sum(p, axis=-1, keepdims=True)
    m_scr[...] = m_next
    v = v_ref[...]
    pv = jax.lax.dot_general(p.astype(v.dtype), v, (((1,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)
    acc_scr[...] = alpha[:, :1] * acc_scr[...] + pv

  @pl.when(kind == masks_lib.FULL)
  def _full():
    tile(False)

  @pl.when(kind == masks_lib.PARTIAL)
  def _partial():
    tile(True)

  @pl.when(a == num_slots - 1)
  def _finish():
    l = l_scr[...][:, :1]
    pos = l > 0
    out = acc_scr[...] / jnp.where(pos, l, 1.0)
    o_ref[...] = jnp.where(pos, out, 0.0).astype(o_ref.dtype)


def forward(q, k, v, valid, info: masks_lib.BlockMaskInfo, scale: float,
            interpret: bool):
  """The Pallas forward: q ``[B,T,N,H]``, k/v ``[B,S,K,H]`` -> ``[B,T,N,H]``."""
  b, t, n, h = q.shape
  s, kh = k.shape[1], k.shape[2]
  g = n // kh
  bq, bk = info.block_q, info.block_kv
  nq, nk = info.num_q_blocks, info.num_kv_blocks
  num_slots = info.row_kv.shape[1]
  tp, sp = nq * bq, nk * bk
  qt = jnp.pad(q, ((0, 0), (0, tp - t), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
  kt = jnp.pad(k, ((0, 0), (0, sp - s), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
  vt = jnp.pad(v, ((0, 0), (0, sp - s), (0, 0), (0, 0))).transpose(0, 2, 1, 3)
  has_padding = valid is not None
  if has_padding:
    vin = jnp.pad(valid.astype(jnp.int32), ((0, 0), (0, sp - s)),
                  constant_values=1)[:, None, :]
  else:
    vin = jnp.ones((1, 1, bk), jnp.int32)
  mtab = jnp.asarray(info.partial_masks.astype(np.int32))
  kv_idx = jnp.asarray(info.row_kv.reshape(-1))
  kind = jnp.asarray(info.row_kind.reshape(-1))
  mi = jnp.asarray(info.row_mask_index.reshape(-1))

  def q_map(bi, ni, qi, a, kv_ref, kind_ref, mi_ref):
    return bi, ni, qi, 0

  def kv_map(bi, ni, qi, a, kv_ref, kind_ref, mi_ref):
    return bi, jax.lax.div(ni, g), kv_ref[qi * num_slots + a], 0

  def mtab_map(bi, ni, qi, a, kv_ref, kind_ref, mi_ref):
    return mi_ref[qi * num_slots + a], 0, 0

  def valid_map(bi, ni, qi, a, kv_ref, kind_ref, mi_ref):
    if has_padding:
      return bi, 0, kv_ref[qi * num_slots + a]
    return 0, 0, 0

  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=3,
      grid=(b, n, nq, num_slots),
      in_specs=[
          pl.BlockSpec((None, None, bq, h), q_map),
          pl.BlockSpec((None, None, bk, h), kv_map),
          pl.BlockSpec((None, None, bk, h), kv_map),
          pl.BlockSpec((None, bq, bk), mtab_map),
          pl.BlockSpec((None, 1, bk), valid_map),
      ],
      out_specs=pl.BlockSpec((None, None, bq, h), q_map),
      scratch_shapes=[
          pltpu.VMEM((bq, LANES), jnp.float32),
          pltpu.VMEM((bq, LANES), jnp.float32),
          pltpu.VMEM((bq, h), jnp.float32),
      ])
  kernel = functools.partial(_fwd_kernel, scale=scale, num_slots=num_slots,
                             has_padding=has_padding)
  out = pl.pallas_call(
      kernel,
      grid_spec=grid_spec,
      out_shape=jax.ShapeDtypeStruct((b, n, tp, h), q.dtype),
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "parallel",
                               "arbitrary")),
      interpret=interpret,
      name="jaxkit_sparse_attention_fwd",
  )(kv_idx, kind, mi, qt, kt, vt, mtab, vin)
  return out.transpose(0, 2, 1, 3)[:, :t]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _attention(q, k, v, valid, info, scale, interpret):
  return forward(q, k, v, valid, info, scale, interpret)


def _attention_fwd(q, k, v, valid, info, scale, interpret):
  return forward(q, k, v, valid, info, scale, interpret), (q, k, v, valid)


def _attention_bwd(info, scale, interpret, res, g):
  del interpret
  q, k, v, valid = res
  _, vjp = jax.vjp(
      lambda q_, k_, v_: reference.attention_tiles(q_, k_, v_, valid, info,
                                                   scale), q, k, v)
  dq, dk, dv = vjp(g.astype(jnp.promote_types(g.dtype, jnp.float32)))
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


_attention.defvjp(_attention_fwd, _attention_bwd)


def default_blocks(t: int, s: int, block_q, block_kv):
  """TPU tiles: q 128 (multiple of 8), kv 128 (multiple of 128) or whole."""
  if block_q is None:
    block_q = min(128, _round_up(t, 8))
  if block_kv is None:
    block_kv = min(128, _round_up(s, 8))
  return block_q, block_kv


def sparse_attention_tpu(q, k, v, valid, *, mask, scale, block_q, block_kv,
                         interpret: bool):
  """The ``"pallas_tpu"`` backend (see module docstring)."""
  t, s = q.shape[1], k.shape[1]
  bq, bk = default_blocks(t, s, block_q, block_kv)
  if not interpret:
    sp = _round_up(s, bk)
    if bq % 8 or (bk % 128 and bk != sp):
      raise _registry.BackendUnsupportedError(
          f"pallas_tpu: block_q={bq} must be a multiple of 8 and block_kv="
          f"{bk} a multiple of 128 (or cover all S={s} keys) on TPU.")
  info = masks_lib.block_mask_info(mask, t, s, bq, bk)
  if info.num_active_blocks == 0:
    return jnp.zeros(q.shape, q.dtype)
  return _attention(q, k, v, valid, info, scale, interpret)
