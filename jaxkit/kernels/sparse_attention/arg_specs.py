"""Named realistic workloads of ``sparse_attention`` and the AOT compile cases.

``aot_cases(platform)`` feeds ``tools/aot_check.py`` (deviceless compiles for
TPU v5e / v6e and H100): each case calls the Pallas backend directly with
``interpret=False``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxkit.kernels.sparse_attention import masks as masks_lib
from jaxkit.kernels.sparse_attention import pallas_gpu
from jaxkit.kernels.sparse_attention import pallas_tpu


@dataclasses.dataclass(frozen=True)
class Workload:
  """One attention shape: q ``[B, T, N, H]``, k/v ``[B, S, K, H]``."""
  name: str
  batch: int
  seq: int
  heads: int
  kv_heads: int
  head_dim: int
  mask: masks_lib.Mask
  padding: bool = False
  dtype: str = "bfloat16"

  def avals(self):
    q = jax.ShapeDtypeStruct((self.batch, self.seq, self.heads,
                              self.head_dim), jnp.dtype(self.dtype))
    kv = jax.ShapeDtypeStruct((self.batch, self.seq, self.kv_heads,
                               self.head_dim), jnp.dtype(self.dtype))
    out = [q, kv, kv]
    if self.padding:
      out.append(jax.ShapeDtypeStruct((self.batch, self.seq), jnp.bool_))
    return tuple(out)


WORKLOADS = (
    # Llama-3-8B-like GQA head layout, 4k context, causal.
    Workload("llama_gqa_causal_4k", 1, 4096, 8, 2, 128, masks_lib.CausalMask()),
    # Mistral-style sliding window 1024 at 8k with per-row key padding.
    Workload("mistral_local1024_8k_padded", 1, 8192, 8, 2, 128,
             masks_lib.LocalMask(1024), padding=True),
)


def _estimate(w: Workload, block_q: int, block_kv: int, grad: bool) -> dict:
  info = masks_lib.block_mask_info(w.mask, w.seq, w.seq, block_q, block_kv)
  p = info.num_active_blocks
  item = jnp.dtype(w.dtype).itemsize
  flops = 4.0 * w.batch * w.heads * p * block_q * block_kv * w.head_dim
  nbytes = item * w.batch * w.heads * (
      2 * info.num_q_blocks * block_q * w.head_dim  # q in, o out
      + 2 * p * block_kv * w.head_dim)  # k, v tiles per active tile
  if grad:  # XLA backward: recompute (2 matmuls) + 4 gradient matmuls.
    flops *= 4.0
    nbytes *= 3.0
  return {"flops": flops, "bytes": nbytes}


def _make_fn(backend: Callable, w: Workload, block_q: int, block_kv: int,
             grad: bool):
  def attend(q, k, v, valid=None):
    return backend(q, k, v, valid, mask=w.mask, scale=w.head_dim**-0.5,
                   block_q=block_q, block_kv=block_kv, interpret=False)

  if not grad:
    return attend

  def loss(q, k, v, *valid):
    return jnp.sum(attend(q, k, v, *valid).astype(jnp.float32))

  return jax.value_and_grad(loss, argnums=(0, 1, 2))


def aot_cases(platform: str):
  """``[(case_name, fn, avals, estimate)]`` for ``"tpu"`` or ``"cuda"``."""
  if platform == "tpu":
    backend, bq, bk = pallas_tpu.sparse_attention_tpu, 128, 128
  elif platform in ("cuda", "gpu"):
    backend, bq, bk = pallas_gpu.sparse_attention_gpu, 64, 64
  else:
    raise ValueError(f"`platform` must be 'tpu' or 'cuda', got {platform!r}.")
  cases = []
  for w in WORKLOADS:
    for grad in (False, True):
      name = f"{w.name}_{'value_and_grad' if grad else 'fwd'}"
      cases.append((name, _make_fn(backend, w, bq, bk, grad), w.avals(),
                    _estimate(w, bq, bk, grad)))
  return cases
