r"""XLA block-sparse attention: the oracle of the kernels and the CPU path.

Only the active ``(q-block, kv-block)`` tiles of the mask's
:class:`~jaxkit.kernels.sparse_attention.masks.BlockMaskInfo` are computed:
the ``P`` active tiles are gathered into a flat tile list (queries ``[P, bq]``
against keys ``[P, bk]``), so time and memory scale with the number of active
tiles, not with ``T * S``. The softmax over each query row is assembled across
the row's tiles with segment reductions (max, then sum of ``exp``), which is
the two-pass form of the flash online softmax. Full tiles are not masked;
partial tiles gather their element mask from the deduplicated table. The
backward pass is JAX autodiff of this function, which is itself block-sparse
(gathers become scatter-adds over the same tile list).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit.kernels.sparse_attention import masks as masks_lib

# Finite "minus infinity": avoids inf - inf = nan in fully masked rows.
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)


def _blocked(q, k, v, valid, info):
  """Pads to block multiples; returns block-major views."""
  b, t, n, h = q.shape
  s, kh = k.shape[1], k.shape[2]
  g = n // kh
  hv = v.shape[-1]
  bq, bk = info.block_q, info.block_kv
  nq, nk = info.num_q_blocks, info.num_kv_blocks
  q = jnp.pad(q, ((0, 0), (0, nq * bq - t), (0, 0), (0, 0)))
  k = jnp.pad(k, ((0, 0), (0, nk * bk - s), (0, 0), (0, 0)))
  v = jnp.pad(v, ((0, 0), (0, nk * bk - s), (0, 0), (0, 0)))
  qb = q.reshape(b, nq, bq, kh, g, h).transpose(1, 0, 3, 4, 2, 5)
  kb = k.reshape(b, nk, bk, kh, h).transpose(1, 0, 3, 2, 4)
  vb = v.reshape(b, nk, bk, kh, hv).transpose(1, 0, 3, 2, 4)
  validb = None
  if valid is not None:
    valid = jnp.pad(valid, ((0, 0), (0, nk * bk - s)), constant_values=True)
    validb = valid.reshape(b, nk, bk).transpose(1, 0, 2)
  return qb, kb, vb, validb


def attention_tiles(q, k, v, valid, info: masks_lib.BlockMaskInfo,
                    scale: float) -> jax.Array:
  """Block-sparse attention over the active tiles (traceable, no jit).

  Args:
    q: ``[B, T, N, H]`` (any float dtype; computed in ``promote(dtype, f32)``).
    k: ``[B, S, K, H]``.
    v: ``[B, S, K, Hv]``.
    valid: ``None`` or bool ``[B, S]`` (``True`` = real key).
    info: the mask's block metadata for ``(T, S)``.
    scale: logits scale.

  Returns:
    ``[B, T, N, Hv]`` in the compute dtype; rows with no visible key are 0.
  """
  b, t, n, _ = q.shape
  kh = k.shape[2]
  g = n // kh
  hv = v.shape[-1]
  nq, bq = info.num_q_blocks, info.block_q
  cdt = jnp.promote_types(q.dtype, jnp.float32)
  q, k, v = q.astype(cdt), k.astype(cdt), v.astype(cdt)
  if info.num_active_blocks == 0:
    return jnp.zeros((b, t, n, hv), cdt)
  qb, kb, vb, validb = _blocked(q, k, v, valid, info)
  # The barrier keeps XLA from constant-folding the [P, bq, bk] element-mask
  # gather at compile time (very slow for long sequences).
  table = jax.lax.optimization_barrier(jnp.asarray(info.partial_masks))

  groups = []
  for full in (True, False):
    sel = np.nonzero(info.tile_full == full)[0]
    if sel.size == 0:
      continue
    tq = info.tile_q[sel]
    tk = info.tile_kv[sel]
    s = jnp.einsum("pbkgqh,pbksh->pbkgqs", qb[tq], kb[tk],
                   preferred_element_type=cdt) * scale
    keep = None
    if not full:
      keep = table[info.tile_mask_index[sel]][:, None, None, None]
    if validb is not None:
      vk = validb[tk][:, :, None, None, None, :]
      keep = vk if keep is None else keep & vk
    if keep is not None:
      s = jnp.where(keep, s, MASK_VALUE)
    groups.append((tq, tk, s, keep))

  m = None
  for tq, _, s, _ in groups:
    mg = jax.ops.segment_max(jnp.max(s, axis=-1), tq, num_segments=nq,
                             indices_are_sorted=True)
    m = mg if m is None else jnp.maximum(m, mg)
  m = jax.lax.stop_gradient(jnp.maximum(m, MASK_VALUE))  # [nq, B, K, G, bq]

  l = o = 0.0
  for tq, tk, s, keep in groups:
    p = jnp.exp(s - m[tq][..., None])
    if keep is not None:
      p = jnp.where(keep, p, 0.0)
    l = l + jax.ops.segment_sum(jnp.sum(p, axis=-1), tq, num_segments=nq,
                                indices_are_sorted=True)
    pv = jnp.einsum("pbkgqs,pbksh->pbkgqh", p, vb[tk],
                    preferred_element_type=cdt)
    o = o + jax.ops.segment_sum(pv, tq, num_segments=nq,
                                indices_are_sorted=True)
  pos = l > 0
  out = o / jnp.where(pos, l, 1.0)[..., None]
  out = jnp.where(pos[..., None], out, 0.0)  # [nq, B, K, G, bq, Hv]
  out = out.transpose(1, 0, 4, 2, 3, 5).reshape(b, nq * bq, n, hv)
  return out[:, :t]


@functools.partial(jax.jit, static_argnames=("info", "scale"))
def sparse_attention_reference(q, k, v, valid, *, info, scale):
  """Jitted :func:`attention_tiles`, output in ``q.dtype``."""
  return attention_tiles(q, k, v, valid, info, scale).astype(q.dtype)


def sparse_attention_xla(q, k, v, valid, *, mask_info, scale,
                         interpret: bool = False):
  """The ``"xla"`` backend (``interpret`` is ignored)."""
  del interpret
  return sparse_attention_reference(q, k, v, valid, info=mask_info,
                                    scale=scale)
