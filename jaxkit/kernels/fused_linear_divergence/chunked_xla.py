r"""Chunked XLA implementation of the fused linear divergence (CPU default).

Also home of the math shared by every backend (:class:`Spec`, :func:`terms`),
so that the Pallas kernels evaluate exactly the same per-entry formulas.

**Math.** With tempered logits :math:`u = z/\tau`, :math:`\log q = u_S -
\mathrm{LSE}(u_S)`, :math:`\log p = u_T - \mathrm{LSE}(u_T)` and
:math:`\log r = \log p - \log q`, the per-token loss is

.. math::
  \ell = \tau^2 \sum_k q_k f(r_k),

each entry evaluated as :math:`q f(r)` for :math:`r \le 1` and as
:math:`p\,f(r)/r` for :math:`r > 1` (as :func:`jaxkit.divergences.f_divergence`
does). Its gradient with respect to the raw student logits is

.. math::
  \frac{\partial \ell}{\partial z_{S,j}} = \tau\,(a_j - q_j A), \qquad
  a_k = -q_k\,\psi(r_k),\quad \psi(r) = r f'(r) - f(r),\quad A = \sum_k a_k,

(:math:`\psi` is the generator's ``pseudo_reward``; for KL, :math:`a = -p` and
:math:`A = -1`, giving the familiar :math:`\tau (q - p)`). Cross-entropy is
KL with a one-hot target: :math:`a = -\mathrm{onehot}(y)`, :math:`A = -1`,
:math:`\ell = \mathrm{LSE}(z) - z_y`.

**Loop structure.** Tokens are processed in blocks of ``token_chunk_size``
rows (a :func:`jax.lax.scan`); inside a block, the vocabulary is either taken
whole (``chunk_size >= V``: one pass, the logits of the block are ``[Tc, V]``)
or in chunks of ``chunk_size`` columns (a :func:`jax.lax.fori_loop`, two or
three passes: online log-sum-exp, then — for divergences other than KL and
CE — the row sums :math:`\ell` and :math:`A`, then the gradient pass that
recomputes each chunk's logits). Peak memory is one block's logits, never
``[T, V]``.

**Gradients.** Under differentiation of a reduced (``'sum'`` / ``'mean'``)
loss the forward pass computes the value *and* the gradients with respect to
``h_student`` and ``w_student`` in the same sweep (the backward only scales
them by the cotangent), so value-and-grad costs four ``T·D·V`` matmuls in the
single-pass mode — the same as materialised logits. With
``reduction='none'`` the backward recomputes (six matmuls). The teacher
receives zero gradients.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from jaxkit.divergences import generators as gen_lib

# Elements of one f32 [token block, vocabulary chunk] tile in the automatic
# block sizes (2^25 * 4 B = 128 MiB per tile: 256 tokens at V = 128k).
_TILE_ELEMENTS = 1 << 25
_MAX_AUTO_VOCAB = 1 << 18


@dataclasses.dataclass(frozen=True)
class Spec:
  """Static description of the loss (hashable; shared by all backends).

  Attributes:
    kind: ``'kd'`` (teacher distribution) or ``'ce'`` (one-hot labels).
    divergence: generator name (``'kl'`` for ``'ce'``).
    alpha: the Amari order, else ``None``.
    temperature: :math:`\\tau` (a Python float; 1.0 for ``'ce'``).
  """
  kind: str
  divergence: str = "kl"
  alpha: float | None = None
  temperature: float = 1.0

  @property
  def generator(self) -> gen_lib.FGenerator:
    params = {} if self.alpha is None else {"alpha": self.alpha}
    return gen_lib.get_generator(self.divergence, **params)

  @property
  def known_a_sum(self) -> float | None:
    """:math:`A = \\sum_k a_k` when it is a constant (KL, CE), else None."""
    if self.kind == "ce" or self.divergence == "kl":
      return -1.0
    return None


@dataclasses.dataclass(frozen=True)
class Config:
  """Block sizes (static). ``None`` means automatic."""
  chunk_size: int | None = None
  token_chunk_size: int | None = None


def terms(spec: Spec, us, lse_s, ut=None, lse_t=None, hit=None, valid=None,
          expm1=None):
  """Per-entry loss terms for one tile.

  Args:
    spec: the loss.
    us: tempered student logits ``[bt, bv]`` f32.
    lse_s: ``[bt, 1]`` log-sum-exp of the tempered student logits.
    ut: tempered teacher logits (``'kd'``).
    lse_t: ``[bt, 1]`` (``'kd'``).
    hit: ``[bt, bv]`` bool, the label's column (``'ce'``).
    valid: ``[bt, bv]`` bool (or None): real vocabulary columns.
    expm1: replacement for ``jnp.expm1`` (Mosaic TPU has no expm1 lowering).

  Returns:
    ``(val, a, q)``: ``sum(val)`` over the row is :math:`\\ell/\\tau^2`;
    :math:`a` and :math:`q` as in the module docstring; all 0 off ``valid``.
  """
  lq = us - lse_s
  if valid is not None:
    lq = jnp.where(valid, lq, 0.0)
  q = jnp.exp(lq)
  if spec.kind == "ce":
    val = jnp.where(hit, -lq, 0.0)
    a = jnp.where(hit, -1.0, 0.0)
  else:
    lp = ut - lse_t
    if valid is not None:
      lp = jnp.where(valid, lp, 0.0)
    lr = lp - lq
    name = spec.divergence
    if name == "kl":
      p = jnp.exp(lp)
      val = p * lr
      a = -p
    elif name == "reverse_kl":
      val = -q * lr
      a = q * (1.0 - lr)
    else:
      gen = spec.generator
      if expm1 is not None:
        f, fp = _without_expm1(gen.f, expm1), _without_expm1(gen.f_prime, expm1)
      else:
        f, fp = gen.f, gen.f_prime
      small = lr <= 0
      lo = jnp.where(small, lr, 0.0)
      hi = jnp.where(small, 0.0, lr)
      f_lo, f_hi = f(lo), f(hi)
      e_hi = jnp.exp(-hi)
      p = jnp.exp(lp)
      val = jnp.where(small, q * f_lo, p * (f_hi * e_hi))
      # psi(r) = r f'(r) - f(r); q psi(r) for r <= 1, p (f'(r) - f(r)/r) else.
      a = -jnp.where(small, q * (jnp.exp(lo) * fp(lo) - f_lo),
                     p * (fp(hi) - f_hi * e_hi))
  if valid is not None:
    val = jnp.where(valid, val, 0.0)
    a = jnp.where(valid, a, 0.0)
    q = jnp.where(valid, q, 0.0)
  return val, a, q


def kahan_expm1(x):
  """expm1 from exp and log only (Kahan's trick), accurate near 0."""
  u = jnp.exp(x)
  um1 = u - 1.0
  ok = (um1 != 0.0) & (u != jnp.inf)
  safe_log = jnp.log(jnp.where(ok, u, 2.0))
  return jnp.where(ok, um1 * x / jnp.where(ok, safe_log, 1.0),
                   jnp.where(u == jnp.inf, u, x))


def _without_expm1(fn, expm1):
  """``fn`` evaluated with every ``expm1`` primitive replaced by ``expm1``."""

  def wrapped(x):
    closed = jax.make_jaxpr(fn)(x)
    (out,) = _eval_jaxpr(closed.jaxpr, closed.consts, [x], expm1)
    return out

  return wrapped


def _eval_jaxpr(jaxpr, consts, args, expm1):
  env = {}

  def read(v):
    return v.val if isinstance(v, jex_core.Literal) else env[v]

  for v, c in zip(jaxpr.constvars, consts):
    env[v] = c
  for v, a in zip(jaxpr.invars, args):
    env[v] = a
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name == "expm1":
      outs = [expm1(invals[0])]
    elif "jaxpr" in eqn.params or "call_jaxpr" in eqn.params:
      sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
      if hasattr(sub, "jaxpr"):
        outs = _eval_jaxpr(sub.jaxpr, sub.consts, invals, expm1)
      else:
        outs = _eval_jaxpr(sub, [], invals, expm1)
    else:
      outs = eqn.primitive.bind(*invals, **eqn.params)
      if not eqn.primitive.multiple_results:
        outs = [outs]
    for v, o in zip(eqn.outvars, outs):
      env[v] = o
  return [read(v) for v in jaxpr.outvars]


# ----------------------------------------------------------------------------
# Block sizes.
# ----------------------------------------------------------------------------


def block_sizes(cfg: Config, t: int, v: int) -> tuple[int, int]:
  """(token block, vocabulary chunk) actually used for ``t`` tokens, ``v`` classes."""
  bv = cfg.chunk_size
  if bv is None:
    bv = v if v <= _MAX_AUTO_VOCAB else 32768
  bv = min(bv, v)
  bt = cfg.token_chunk_size
  if bt is None:
    bt = max(8, (_TILE_ELEMENTS // bv) // 8 * 8)
  bt = max(1, min(bt, t))
  return bt, bv


def _varying(a) -> frozenset:
  """The manual mesh axes ``a`` varies over inside ``jax.shard_map``."""
  aval = jax.typeof(a)
  mat = getattr(aval, "manual_axis_type", None)  # jax 0.10
  if mat is not None:
    return frozenset(mat.varying)
  return frozenset(getattr(aval, "vma", ()))  # older jax


def cotangent_like(ct, primal):
  """Sums a cotangent over the manual axes its (replicated) primal lacks.

  Inside ``jax.shard_map`` a replicated weight used by token-sharded work gets
  one partial gradient per shard; the true gradient is their sum (what the
  transpose of JAX's implicit ``pcast`` does for ordinary ops).
  """
  axes = _varying(ct) - _varying(primal)
  return jax.lax.psum(ct, tuple(sorted(axes))) if axes else ct


def out_struct(shape, dtype, *inputs) -> jax.ShapeDtypeStruct:
  """A ``pallas_call`` output type varying over the inputs' manual axes.

  Needed for ``pallas_call`` inside ``jax.shard_map(check_vma=True)``.
  """
  mats = [getattr(jax.typeof(x), "manual_axis_type", None)
          for x in inputs if x is not None]
  mats = [m for m in mats if m is not None]
  if not mats:
    return jax.ShapeDtypeStruct(shape, dtype)
  union = frozenset().union(*[m.varying for m in mats])
  return jax.ShapeDtypeStruct(shape, dtype,
                              manual_axis_type=mats[0].update(varying=union))


def _like(x, ref):
  """``x`` with the varying manual axes of ``ref`` (loop carries in shard_map)."""
  vma = _varying(ref) - _varying(x)
  return jax.lax.pcast(x, tuple(vma), to="varying") if vma else x


def _logits(h, w, tau):
  z = jnp.dot(h, w, preferred_element_type=jnp.float32)
  return z if tau == 1.0 else z / tau


def _lse(z):
  m = jnp.max(z, axis=-1, keepdims=True)
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  return m + jnp.log(jnp.sum(jnp.exp(z - m), axis=-1, keepdims=True))


# ----------------------------------------------------------------------------
# One token block.
# ----------------------------------------------------------------------------


def _block(spec: Spec, bv: int, want_grad: bool, hs, ws, ht, wt, lab, c):
  """Loss [bt] and, if ``want_grad``, (dh [bt, D] f32, dw [D, V] f32) of a block.

  ``c`` [bt] weights the gradient rows (cotangent x mask / count).
  """
  tau = spec.temperature
  v = ws.shape[1]
  kd = spec.kind == "kd"
  ce = not kd
  if bv >= v:  # One pass: the block's whole rows.
    us = _logits(hs, ws, tau)
    lse_s = _lse(us)
    ut = lse_t = hit = None
    if kd:
      ut = _logits(ht, wt, tau)
      lse_t = _lse(ut)
    else:
      hit = jnp.arange(v)[None, :] == lab[:, None]
    val, a, q = terms(spec, us, lse_s, ut, lse_t, hit)
    loss = tau * tau * jnp.sum(val, axis=-1)
    if not want_grad:
      return loss, None, None
    big_a = spec.known_a_sum
    if big_a is None:
      big_a = jnp.sum(a, axis=-1, keepdims=True)
    delta = (tau * c)[:, None] * (a - q * big_a)
    dh = jnp.dot(delta.astype(ws.dtype), ws.T,
                 preferred_element_type=jnp.float32)
    dw = jnp.dot(hs.T, delta.astype(hs.dtype),
                 preferred_element_type=jnp.float32)
    return loss, dh, dw

  nv = -(-v // bv)
  bt = hs.shape[0]

  def chunk(j):
    """Tempered logits of chunk j (start clamped so it stays in range)."""
    start = jnp.minimum(j * bv, v - bv)
    cols = start + jnp.arange(bv)
    valid = jnp.broadcast_to((cols >= j * bv)[None, :], (bt, bv))
    wsc = jax.lax.dynamic_slice_in_dim(ws, start, bv, axis=1)
    us = _logits(hs, wsc, tau)
    ut = hit = None
    if kd:
      ut = _logits(ht, jax.lax.dynamic_slice_in_dim(wt, start, bv, axis=1), tau)
    else:
      hit = cols[None, :] == lab[:, None]
    return start, valid, wsc, us, ut, hit

  # Pass 1: online log-sum-exp of both models.
  def p1(j, carry):
    ms, ls, mt, lt = carry
    _, valid, _, us, ut, _ = chunk(j)
    ms, ls = _online(ms, ls, jnp.where(valid, us, -jnp.inf))
    if kd:
      mt, lt = _online(mt, lt, jnp.where(valid, ut, -jnp.inf))
    return ms, ls, mt, lt

  neg = _like(jnp.full((bt, 1), -jnp.inf, jnp.float32), hs)
  zero = _like(jnp.zeros((bt, 1), jnp.float32), hs)
  ms, ls, mt, lt = jax.lax.fori_loop(0, nv, p1, (neg, zero, neg, zero))
  lse_s = ms + jnp.log(ls)
  lse_t = mt + jnp.log(lt) if kd else None

  def tile_terms(j):
    start, valid, wsc, us, ut, hit = chunk(j)
    val, a, q = terms(spec, jnp.where(valid, us, 0.0), lse_s,
                      None if ce else jnp.where(valid, ut, 0.0), lse_t, hit,
                      valid)
    return start, wsc, val, a, q

  big_a = spec.known_a_sum
  if not want_grad or big_a is None:
    # Pass 2: row sums of the loss and of a.
    def p2(j, carry):
      loss, asum = carry
      _, _, val, a, _ = tile_terms(j)
      return loss + jnp.sum(val, -1), asum + jnp.sum(a, -1)

    z = _like(jnp.zeros((bt,), jnp.float32), hs)
    loss, asum = jax.lax.fori_loop(0, nv, p2, (z, z))
    if not want_grad:
      return tau * tau * loss, None, None
    big_a = asum[:, None]

  # Pass 3: gradient (and the loss when pass 2 was skipped).
  d = hs.shape[1]

  def p3(j, carry):
    loss, dh, dw = carry
    start, wsc, val, a, q = tile_terms(j)
    delta = (tau * c)[:, None] * (a - q * big_a)
    dh = dh + jnp.dot(delta.astype(ws.dtype), wsc.T,
                      preferred_element_type=jnp.float32)
    contrib = jnp.dot(hs.T, delta.astype(hs.dtype),
                      preferred_element_type=jnp.float32)
    old = jax.lax.dynamic_slice_in_dim(dw, start, bv, axis=1)
    dw = jax.lax.dynamic_update_slice_in_dim(dw, old + contrib, start, axis=1)
    return loss + jnp.sum(val, -1), dh, dw

  loss, dh, dw = jax.lax.fori_loop(
      0, nv, p3, (_like(jnp.zeros((bt,), jnp.float32), hs),
                  _like(jnp.zeros((bt, d), jnp.float32), hs),
                  _like(jnp.zeros((d, v), jnp.float32), hs)))
  return tau * tau * loss, dh, dw


def _online(m, l, z):
  m_new = jnp.maximum(m, jnp.max(z, axis=-1, keepdims=True))
  m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
  l = l * jnp.exp(jnp.where(jnp.isfinite(m), m - m_safe, -jnp.inf)) + jnp.sum(
      jnp.exp(z - m_safe), axis=-1, keepdims=True)
  return m_new, l


# ----------------------------------------------------------------------------
# All tokens.
# ----------------------------------------------------------------------------


def _run(spec: Spec, cfg: Config, want_grad: bool, hs, ws, ht, wt, lab, c):
  """Per-token loss [T] and optionally (dh [T, Ds], dw [Ds, V]) in f32."""
  t, v = hs.shape[0], ws.shape[1]
  bt, bv = block_sizes(cfg, t, v)
  nt = -(-t // bt)
  pad = nt * bt - t

  def blocks(x):
    if x is None:
      return None
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((nt, bt) + x.shape[1:])

  hs_b, ht_b, lab_b, c_b = blocks(hs), blocks(ht), blocks(lab), blocks(c)
  if not want_grad:
    def body(_, xs):
      h1, h2, l1 = xs
      loss, _, _ = _block(spec, bv, False, h1, ws, h2, wt, l1, None)
      return None, loss

    _, loss = jax.lax.scan(body, None, (hs_b, ht_b, lab_b))
    return loss.reshape(-1)[:t], None, None

  def body(dw, xs):
    h1, h2, l1, c1 = xs
    loss, dh, dw_b = _block(spec, bv, True, h1, ws, h2, wt, l1, c1)
    return dw + dw_b, (loss, dh)

  dw0 = _like(jnp.zeros(ws.shape, jnp.float32), hs)
  dw, (loss, dh) = jax.lax.scan(body, dw0, (hs_b, ht_b, lab_b, c_b))
  return loss.reshape(-1)[:t], dh.reshape(-1, hs.shape[1])[:t], dw


def _zeros_like_or_none(x):
  return None if x is None else jnp.zeros_like(x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def weighted_loss(spec, cfg, hs, ws, ht, wt, lab, c):
  r""":math:`\sum_t c_t \ell_t` with a fused forward-and-gradient VJP."""
  loss, _, _ = _run(spec, cfg, False, hs, ws, ht, wt, lab, None)
  return jnp.sum(c * loss)


def _weighted_fwd(spec, cfg, hs, ws, ht, wt, lab, c):
  loss, dh, dw = _run(spec, cfg, True, hs, ws, ht, wt, lab, c)
  return jnp.sum(c * loss), (dh, dw, hs, ws, ht, wt, lab, c)


def _weighted_bwd(spec, cfg, res, g):
  dh, dw, hs, ws, ht, wt, lab, c = res
  return (cotangent_like((g * dh).astype(hs.dtype), hs),
          cotangent_like((g * dw).astype(ws.dtype), ws),
          _zeros_like_or_none(ht), _zeros_like_or_none(wt), None,
          jnp.zeros_like(c))


weighted_loss.defvjp(_weighted_fwd, _weighted_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def per_token_loss(spec, cfg, hs, ws, ht, wt, lab):
  """Per-token losses [T]; the backward recomputes the logits."""
  loss, _, _ = _run(spec, cfg, False, hs, ws, ht, wt, lab, None)
  return loss


def _per_token_fwd(spec, cfg, hs, ws, ht, wt, lab):
  return per_token_loss(spec, cfg, hs, ws, ht, wt, lab), (hs, ws, ht, wt, lab)


def _per_token_bwd(spec, cfg, res, g):
  hs, ws, ht, wt, lab = res
  _, dh, dw = _run(spec, cfg, True, hs, ws, ht, wt, lab, g.astype(jnp.float32))
  return (cotangent_like(dh.astype(hs.dtype), hs),
          cotangent_like(dw.astype(ws.dtype), ws), _zeros_like_or_none(ht),
          _zeros_like_or_none(wt), None)


per_token_loss.defvjp(_per_token_fwd, _per_token_bwd)


def run(hs, ws, ht, wt, lab, c, *, interpret: bool, spec: Spec, cfg: Config,
        per_token: bool):
  """Backend entry (see api.py): per-token losses or :math:`\\sum_t c_t\\ell_t`."""
  del interpret
  if per_token:
    return per_token_loss(spec, cfg, hs, ws, ht, wt, lab)
  return weighted_loss(spec, cfg, hs, ws, ht, wt, lab, c)
