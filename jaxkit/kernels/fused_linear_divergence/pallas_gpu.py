"""Pallas GPU (Triton) forward kernel of the fused linear divergence.

One Triton program per block of ``bt`` tokens (grid ``(ceil(T / bt),)``). It
sweeps the vocabulary in chunks of ``bv`` columns twice — online
log-sum-exp of both models, then the per-token loss :math:`\\ell` and
:math:`A = \\sum_k a_k` — computing each ``[bt, bv]`` logit tile with an
inner loop over the hidden size in steps of ``bk`` (so the operands of each
``tl.dot`` stay in shared memory). Nothing is padded: ragged tokens, hidden
sizes and vocabularies are handled with masked loads, so block sizes are
powers of two as Triton requires while the shapes are arbitrary.

**Backward: XLA.** The VJP (gradients w.r.t. ``h_student`` and
``w_student``) runs the ``chunked_xla`` gradient sweep (token blocks, logits
recomputed per block), which is memory-lean and uses cuBLAS for the three
matmuls per block; the teacher gets zero gradients.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from jaxkit.kernels import _registry
from jaxkit.kernels.fused_linear_divergence import chunked_xla
from jaxkit.kernels.fused_linear_divergence.chunked_xla import Config
from jaxkit.kernels.fused_linear_divergence.chunked_xla import Spec

_DEFAULT_BT = 64
_DEFAULT_BV = 128
_BK = 64


def _pow2(x: int) -> bool:
  return x >= 1 and (x & (x - 1)) == 0


def _blocks(cfg: Config) -> tuple[int, int]:
  return cfg.token_chunk_size or _DEFAULT_BT, cfg.chunk_size or _DEFAULT_BV


def _check(cfg: Config):
  bt, bv = _blocks(cfg)
  for name, val in (("token_chunk_size", bt), ("chunk_size", bv)):
    if not _pow2(val) or val < 16:
      raise _registry.BackendUnsupportedError(
          f"pallas_gpu: `{name}` must be a power of two >= 16 (Triton block "
          f"shapes), got {val}.")


def _fwd_kernel(*refs, spec: Spec, t, v, ds, dt, bt, bv, bk):
  kd = spec.kind == "kd"
  if kd:
    hs_ref, ws_ref, ht_ref, wt_ref, loss_ref, asum_ref, lses_ref, lset_ref = refs
    lab_ref = None
  else:
    hs_ref, ws_ref, lab_ref, loss_ref, asum_ref, lses_ref = refs
    ht_ref = wt_ref = lset_ref = None
  i = pl.program_id(0)
  rows = i * bt + jnp.arange(bt)
  row_ok = rows < t
  tau = spec.temperature
  nv = pl.cdiv(v, bv)

  def logits(h_ref, w_ref, d, j):
    cols = j * bv + jnp.arange(bv)
    col_ok = cols < v

    def body(k, acc):
      kk = k * bk + jnp.arange(bk)
      k_ok = kk < d
      h = plgpu.load(h_ref.at[pl.ds(i * bt, bt), pl.ds(k * bk, bk)],
                     mask=row_ok[:, None] & k_ok[None, :], other=0.0)
      w = plgpu.load(w_ref.at[pl.ds(k * bk, bk), pl.ds(j * bv, bv)],
                     mask=k_ok[:, None] & col_ok[None, :], other=0.0)
      return acc + jnp.dot(h, w, preferred_element_type=jnp.float32)

    z = jax.lax.fori_loop(0, pl.cdiv(d, bk), body,
                          jnp.zeros((bt, bv), jnp.float32))
    if tau != 1.0:
      z = z * (1.0 / tau)
    return z, cols, jnp.broadcast_to(col_ok[None, :], (bt, bv))

  def online(m, l, z, valid):
    z = jnp.where(valid, z, -jnp.inf)
    m_new = jnp.maximum(m, jnp.max(z, axis=1))
    l = l * jnp.exp(m - m_new) + jnp.sum(jnp.exp(z - m_new[:, None]), axis=1)
    return m_new, l

  def p1(j, carry):
    ms, ls, mt, lt = carry
    us, _, valid = logits(hs_ref, ws_ref, ds, j)
    ms, ls = online(ms, ls, us, valid)
    if kd:
      ut, _, _ = logits(ht_ref, wt_ref, dt, j)
      mt, lt = online(mt, lt, ut, valid)
    return ms, ls, mt, lt

  neg = jnp.full((bt,), -jnp.inf, jnp.float32)
  zero = jnp.zeros((bt,), jnp.float32)
  ms, ls, mt, lt = jax.lax.fori_loop(0, nv, p1, (neg, zero, neg, zero))
  lse_s = (ms + jnp.log(ls))[:, None]
  lse_t = (mt + jnp.log(lt))[:, None] if kd else None
  lab = None
  if not kd:
    lab = plgpu.load(lab_ref.at[pl.ds(i * bt, bt)], mask=row_ok, other=0)

  def p2(j, carry):
    loss, asum = carry
    us, cols, valid = logits(hs_ref, ws_ref, ds, j)
    ut = hit = None
    if kd:
      ut, _, _ = logits(ht_ref, wt_ref, dt, j)
      ut = jnp.where(valid, ut, 0.0)
    else:
      hit = cols[None, :] == lab[:, None]
    val, a, _ = chunked_xla.terms(spec, jnp.where(valid, us, 0.0), lse_s, ut,
                                  lse_t, hit, valid)
    return loss + jnp.sum(val, axis=1), asum + jnp.sum(a, axis=1)

  loss, asum = jax.lax.fori_loop(0, nv, p2, (zero, zero))
  out = pl.ds(i * bt, bt)
  plgpu.store(loss_ref.at[out], tau * tau * loss, mask=row_ok)
  plgpu.store(asum_ref.at[out], asum, mask=row_ok)
  plgpu.store(lses_ref.at[out], lse_s[:, 0], mask=row_ok)
  if kd:
    plgpu.store(lset_ref.at[out], lse_t[:, 0], mask=row_ok)


def forward(spec: Spec, cfg: Config, interpret: bool, hs, ws, ht, wt, lab):
  """Per-token loss [T] (and A, log-sum-exps) from the Triton kernel."""
  kd = spec.kind == "kd"
  t, ds = hs.shape
  v = ws.shape[1]
  dt = ht.shape[1] if kd else 0
  bt, bv = _blocks(cfg)
  row = chunked_xla.out_struct((t,), jnp.float32, hs, ws, ht, wt, lab)
  n_out = 4 if kd else 3
  args = (hs, ws, ht, wt) if kd else (hs, ws, lab)
  outs = pl.pallas_call(
      functools.partial(_fwd_kernel, spec=spec, t=t, v=v, ds=ds, dt=dt, bt=bt,
                        bv=bv, bk=_BK),
      grid=(pl.cdiv(t, bt),),
      out_shape=[row] * n_out,
      compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=2),
      interpret=interpret,
      name="fld_fwd_triton",
  )(*args)
  return outs[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def per_token_loss(spec, cfg, interpret, hs, ws, ht, wt, lab):
  """Per-token losses [T] (Triton forward, chunked-XLA backward)."""
  return forward(spec, cfg, interpret, hs, ws, ht, wt, lab)


def _fwd(spec, cfg, interpret, hs, ws, ht, wt, lab):
  return (forward(spec, cfg, interpret, hs, ws, ht, wt, lab),
          (hs, ws, ht, wt, lab))


def _bwd(spec, cfg, interpret, res, g):
  del interpret
  hs, ws, ht, wt, lab = res
  _, dh, dw = chunked_xla._run(spec, Config(), True, hs, ws, ht, wt, lab,  # pylint: disable=protected-access
                               g.astype(jnp.float32))
  zeros = lambda x: None if x is None else jnp.zeros_like(x)
  return (chunked_xla.cotangent_like(dh.astype(hs.dtype), hs),
          chunked_xla.cotangent_like(dw.astype(ws.dtype), ws), zeros(ht),
          zeros(wt), None)


per_token_loss.defvjp(_fwd, _bwd)


def run(hs, ws, ht, wt, lab, c, *, interpret: bool, spec: Spec, cfg: Config,
        per_token: bool):
  """Backend entry (see api.py)."""
  _check(cfg)
  loss = per_token_loss(spec, cfg, interpret, hs, ws, ht, wt, lab)
  if per_token:
    return loss
  return jnp.sum(c * loss)
