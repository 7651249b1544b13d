"""Pallas TPU (Mosaic) kernels of the fused linear divergence.

Four ``pallas_call`` s over a (token block, vocabulary block) grid; the
``[T, V]`` logits only ever exist one ``[bt, bv]`` tile at a time in VMEM:

1. ``lse``: online log-sum-exp of both models' tempered logits
   (grid ``(nt, nv)``, vocabulary axis ``"arbitrary"``).
2. ``loss``: per-token :math:`\\ell` and :math:`A = \\sum_k a_k` (residual for
   the backward), accumulated over the vocabulary axis.
3. ``dh`` (backward): :math:`\\partial/\\partial h_S = \\delta W_S^\\top`
   with :math:`\\delta = \\tau g (a - qA)`, accumulated over vocabulary blocks.
4. ``dw`` (backward): :math:`\\partial/\\partial W_S = h_S^\\top \\delta`, grid
   ``(nv, nt)`` accumulating over token blocks.

The backward is Pallas too (kernels 3 and 4, recomputing the tile logits from
the saved log-sum-exps). The token axis is padded to the block; a ragged last
vocabulary block is masked in-kernel (its weight columns are zeroed before
they touch a gradient). Mosaic has no ``expm1`` lowering: generator formulas
that use it are evaluated with Kahan's ``exp``/``log`` form.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxkit.kernels import _registry
from jaxkit.kernels.fused_linear_divergence import chunked_xla
from jaxkit.kernels.fused_linear_divergence.chunked_xla import Config
from jaxkit.kernels.fused_linear_divergence.chunked_xla import Spec

_DEFAULT_BT = 256
_DEFAULT_BV = 512
_VMEM_LIMIT = 96 * 1024 * 1024


def _round_up(x, m):
  return -(-x // m) * m


def _blocks(cfg: Config, t: int, v: int, dtype) -> tuple[int, int]:
  sub = 16 if jnp.dtype(dtype).itemsize < 4 else 8
  bt = cfg.token_chunk_size or _DEFAULT_BT
  bt = _round_up(min(bt, _round_up(t, sub)), sub)
  bv = cfg.chunk_size or _DEFAULT_BV
  bv = _round_up(min(bv, _round_up(v, 128)), 128)
  return bt, bv


def _check(spec: Spec, cfg: Config, hs, ws):
  if cfg.chunk_size is not None and cfg.chunk_size % 128:
    raise _registry.BackendUnsupportedError(
        f"pallas_tpu: `chunk_size` must be a multiple of 128 (the TPU lane "
        f"width), got {cfg.chunk_size}.")
  if cfg.token_chunk_size is not None and cfg.token_chunk_size % 8:
    raise _registry.BackendUnsupportedError(
        "pallas_tpu: `token_chunk_size` must be a multiple of 8, got "
        f"{cfg.token_chunk_size}.")
  del spec, hs, ws


def _tile(spec, hs_ref, ws_ref, ht_ref, wt_ref, j, bv, v):
  """(valid cols, tempered student logits, teacher logits, masked ws block)."""
  bt = hs_ref.shape[0]
  cols = j * bv + jax.lax.broadcasted_iota(jnp.int32, (bt, bv), 1)
  valid = cols < v
  tau = spec.temperature
  wcols = j * bv + jax.lax.broadcasted_iota(jnp.int32, ws_ref.shape, 1)
  ws = jnp.where(wcols < v, ws_ref[...], jnp.zeros((), ws_ref.dtype))
  us = jnp.dot(hs_ref[...], ws, preferred_element_type=jnp.float32)
  if tau != 1.0:
    us = us * (1.0 / tau)
  ut = None
  if ht_ref is not None:
    tcols = j * bv + jax.lax.broadcasted_iota(jnp.int32, wt_ref.shape, 1)
    wt = jnp.where(tcols < v, wt_ref[...], jnp.zeros((), wt_ref.dtype))
    ut = jnp.dot(ht_ref[...], wt, preferred_element_type=jnp.float32)
    if tau != 1.0:
      ut = ut * (1.0 / tau)
  return cols, valid, us, ut, ws


def _split(refs, kd):
  """hs, ws, ht, wt, rest."""
  if kd:
    return refs[0], refs[1], refs[2], refs[3], refs[4:]
  return refs[0], refs[1], None, None, refs[2:]


def _lse_kernel(*refs, spec, v, bv, jaxis):
  kd = spec.kind == "kd"
  hs_ref, ws_ref, ht_ref, wt_ref, rest = _split(refs, kd)
  if kd:
    lse_s_ref, lse_t_ref, ms, ls, mt, lt = rest
  else:
    lse_s_ref, ms, ls = rest
  j = pl.program_id(jaxis)
  nv = pl.num_programs(jaxis)

  @pl.when(j == 0)
  def _():
    ms[...] = jnp.full(ms.shape, -jnp.inf, jnp.float32)
    ls[...] = jnp.zeros(ls.shape, jnp.float32)
    if kd:
      mt[...] = jnp.full(mt.shape, -jnp.inf, jnp.float32)
      lt[...] = jnp.zeros(lt.shape, jnp.float32)

  _, valid, us, ut, _ = _tile(spec, hs_ref, ws_ref, ht_ref, wt_ref, j, bv, v)

  def update(m_ref, l_ref, z):
    z = jnp.where(valid, z, -jnp.inf)
    m_old = m_ref[...]
    m_new = jnp.maximum(m_old, jnp.max(z, axis=1, keepdims=True))
    l_ref[...] = l_ref[...] * jnp.exp(m_old - m_new) + jnp.sum(
        jnp.exp(z - m_new), axis=1, keepdims=True)
    m_ref[...] = m_new

  update(ms, ls, us)
  if kd:
    update(mt, lt, ut)

  @pl.when(j == nv - 1)
  def _():
    lse_s_ref[...] = ms[...] + jnp.log(ls[...])
    if kd:
      lse_t_ref[...] = mt[...] + jnp.log(lt[...])


def _tile_terms(spec, refs_in, j, bv, v):
  hs_ref, ws_ref, ht_ref, wt_ref, lse_s_ref, lse_t_ref, lab_ref = refs_in
  cols, valid, us, ut, ws = _tile(spec, hs_ref, ws_ref, ht_ref, wt_ref, j, bv, v)
  hit = None if lab_ref is None else cols == lab_ref[...]
  us = jnp.where(valid, us, 0.0)
  if ut is not None:
    ut = jnp.where(valid, ut, 0.0)
  val, a, q = chunked_xla.terms(
      spec, us, lse_s_ref[...], ut,
      None if lse_t_ref is None else lse_t_ref[...], hit, valid,
      expm1=chunked_xla.kahan_expm1)
  return val, a, q, ws


def _inputs(refs, kd):
  if kd:
    hs, ws, ht, wt, lse_s, lse_t = refs[:6]
    return (hs, ws, ht, wt, lse_s, lse_t, None), refs[6:]
  hs, ws, lse_s, lab = refs[:4]
  return (hs, ws, None, None, lse_s, None, lab), refs[4:]


def _loss_kernel(*refs, spec, v, bv):
  kd = spec.kind == "kd"
  ins, (loss_ref, asum_ref) = _inputs(refs, kd)
  j = pl.program_id(1)

  @pl.when(j == 0)
  def _():
    loss_ref[...] = jnp.zeros(loss_ref.shape, jnp.float32)
    asum_ref[...] = jnp.zeros(asum_ref.shape, jnp.float32)

  val, a, _, _ = _tile_terms(spec, ins, j, bv, v)
  tau2 = spec.temperature * spec.temperature
  loss_ref[...] += tau2 * jnp.sum(val, axis=1, keepdims=True)
  asum_ref[...] += jnp.sum(a, axis=1, keepdims=True)


def _delta(spec, ins, rest, j, bv, v):
  asum_ref, g_ref = rest[0], rest[1]
  val, a, q, ws = _tile_terms(spec, ins, j, bv, v)
  del val
  big_a = spec.known_a_sum
  if big_a is None:
    big_a = asum_ref[...]
  delta = (spec.temperature * g_ref[...]) * (a - q * big_a)
  return delta, ws


def _dh_kernel(*refs, spec, v, bv):
  kd = spec.kind == "kd"
  ins, rest = _inputs(refs, kd)
  dh_ref = rest[2]
  j = pl.program_id(1)

  @pl.when(j == 0)
  def _():
    dh_ref[...] = jnp.zeros(dh_ref.shape, jnp.float32)

  delta, ws = _delta(spec, ins, rest, j, bv, v)
  dh_ref[...] += jax.lax.dot_general(
      delta.astype(ws.dtype), ws, (((1,), (1,)), ((), ())),
      preferred_element_type=jnp.float32)


def _dw_kernel(*refs, spec, v, bv):
  kd = spec.kind == "kd"
  ins, rest = _inputs(refs, kd)
  dw_ref = rest[2]
  j = pl.program_id(0)
  i = pl.program_id(1)

  @pl.when(i == 0)
  def _():
    dw_ref[...] = jnp.zeros(dw_ref.shape, jnp.float32)

  delta, _ = _delta(spec, ins, rest, j, bv, v)
  hs = ins[0][...]
  dw_ref[...] += jax.lax.dot_general(
      hs, delta.astype(hs.dtype), (((0,), (0,)), ((), ())),
      preferred_element_type=jnp.float32)


def _params(sem):
  return pltpu.CompilerParams(dimension_semantics=sem,
                              vmem_limit_bytes=_VMEM_LIMIT)


def _in_specs(kd, bt, bv, ds, dt, order, extra_rows):
  """BlockSpecs for (hs, ws, [ht, wt], per-row extras...)."""
  if order == "tv":  # grid (i, j)
    row = lambda i, j: (i, 0)
    col = lambda i, j: (0, j)
  else:  # grid (j, i)
    row = lambda j, i: (i, 0)
    col = lambda j, i: (0, j)
  specs = [pl.BlockSpec((bt, ds), row), pl.BlockSpec((ds, bv), col)]
  if kd:
    specs += [pl.BlockSpec((bt, dt), row), pl.BlockSpec((dt, bv), col)]
  specs += [pl.BlockSpec((bt, 1), row) for _ in range(extra_rows)]
  return specs


def _forward(spec, cfg, interpret, hs, ws, ht, wt, lab):
  """Padded-token forward: (loss [Tp,1], lse_s, lse_t, asum, bt, bv)."""
  kd = spec.kind == "kd"
  t, ds = hs.shape
  v = ws.shape[1]
  dt = ht.shape[1] if kd else 0
  bt, bv = _blocks(cfg, t, v, hs.dtype)
  tp = _round_up(t, bt)
  nt, nv = tp // bt, pl.cdiv(v, bv)
  row = chunked_xla.out_struct((tp, 1), jnp.float32, hs, ws, ht, wt, lab)
  big = (hs, ws, ht, wt) if kd else (hs, ws)
  n_lse = 2 if kd else 1
  scratch = [pltpu.VMEM((bt, 1), jnp.float32)] * (2 * n_lse)
  lses = pl.pallas_call(
      functools.partial(_lse_kernel, spec=spec, v=v, bv=bv, jaxis=1),
      grid=(nt, nv),
      in_specs=_in_specs(kd, bt, bv, ds, dt, "tv", 0),
      out_specs=[pl.BlockSpec((bt, 1), lambda i, j: (i, 0))] * n_lse,
      out_shape=[row] * n_lse,
      scratch_shapes=scratch,
      compiler_params=_params(("parallel", "arbitrary")),
      interpret=interpret,
      name="fld_lse",
  )(*big)
  lse_s = lses[0]
  lse_t = lses[1] if kd else None
  extras = (lse_s, lse_t) if kd else (lse_s, lab)
  loss, asum = pl.pallas_call(
      functools.partial(_loss_kernel, spec=spec, v=v, bv=bv),
      grid=(nt, nv),
      in_specs=_in_specs(kd, bt, bv, ds, dt, "tv", 2),
      out_specs=[pl.BlockSpec((bt, 1), lambda i, j: (i, 0))] * 2,
      out_shape=[row] * 2,
      compiler_params=_params(("parallel", "arbitrary")),
      interpret=interpret,
      name="fld_loss",
  )(*big, *extras)
  return loss, lse_s, lse_t, asum, bt, bv


def _pad_rows(x, tp):
  if x is None:
    return None
  return jnp.pad(x, [(0, tp - x.shape[0])] + [(0, 0)] * (x.ndim - 1))


def _prepare(spec, cfg, hs, ws, ht, wt, lab):
  t = hs.shape[0]
  bt, _ = _blocks(cfg, t, ws.shape[1], hs.dtype)
  tp = _round_up(t, bt)
  lab2 = None if lab is None else _pad_rows(lab, tp)[:, None]
  return tp, _pad_rows(hs, tp), _pad_rows(ht, tp), lab2


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def per_token_loss(spec, cfg, interpret, hs, ws, ht, wt, lab):
  """Per-token losses [T] (Pallas forward, Pallas backward)."""
  return _fwd(spec, cfg, interpret, hs, ws, ht, wt, lab)[0]


def _fwd(spec, cfg, interpret, hs, ws, ht, wt, lab):
  t = hs.shape[0]
  _, hsp, htp, labp = _prepare(spec, cfg, hs, ws, ht, wt, lab)
  loss, lse_s, lse_t, asum, _, _ = _forward(spec, cfg, interpret, hsp, ws, htp,
                                            wt, labp)
  return loss[:t, 0], (hs, ws, ht, wt, lab, lse_s, lse_t, asum)


def _bwd(spec, cfg, interpret, res, g):
  hs, ws, ht, wt, lab, lse_s, lse_t, asum = res
  kd = spec.kind == "kd"
  t, ds = hs.shape
  v = ws.shape[1]
  dt = ht.shape[1] if kd else 0
  tp, hsp, htp, labp = _prepare(spec, cfg, hs, ws, ht, wt, lab)
  bt, bv = _blocks(cfg, t, v, hs.dtype)
  nt, nv = tp // bt, pl.cdiv(v, bv)
  gp = _pad_rows(g.astype(jnp.float32), tp)[:, None]
  big = (hsp, ws, htp, wt) if kd else (hsp, ws)
  extras = (lse_s, lse_t, asum, gp) if kd else (lse_s, labp, asum, gp)
  dh = pl.pallas_call(
      functools.partial(_dh_kernel, spec=spec, v=v, bv=bv),
      grid=(nt, nv),
      in_specs=_in_specs(kd, bt, bv, ds, dt, "tv", 4),
      out_specs=pl.BlockSpec((bt, ds), lambda i, j: (i, 0)),
      out_shape=chunked_xla.out_struct((tp, ds), jnp.float32, *big, *extras),
      compiler_params=_params(("parallel", "arbitrary")),
      interpret=interpret,
      name="fld_dh",
  )(*big, *extras)
  dw = pl.pallas_call(
      functools.partial(_dw_kernel, spec=spec, v=v, bv=bv),
      grid=(nv, nt),
      in_specs=_in_specs(kd, bt, bv, ds, dt, "vt", 4),
      out_specs=pl.BlockSpec((ds, bv), lambda j, i: (0, j)),
      out_shape=chunked_xla.out_struct((ds, v), jnp.float32, *big, *extras),
      compiler_params=_params(("parallel", "arbitrary")),
      interpret=interpret,
      name="fld_dw",
  )(*big, *extras)
  zeros = lambda x: None if x is None else jnp.zeros_like(x)
  return (chunked_xla.cotangent_like(dh[:t].astype(hs.dtype), hs),
          chunked_xla.cotangent_like(dw.astype(ws.dtype), ws), zeros(ht),
          zeros(wt), None)


per_token_loss.defvjp(_fwd, _bwd)


def run(hs, ws, ht, wt, lab, c, *, interpret: bool, spec: Spec, cfg: Config,
        per_token: bool):
  """Backend entry (see api.py)."""
  _check(spec, cfg, hs, ws)
  loss = per_token_loss(spec, cfg, interpret, hs, ws, ht, wt, lab)
  if per_token:
    return loss
  return jnp.sum(c * loss)
