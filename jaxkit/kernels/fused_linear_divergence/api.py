"""Public entry points of the fused linear divergence and their dispatch."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.divergences import generators as gen_lib
from jaxkit.kernels import _registry
from jaxkit.kernels.fused_linear_divergence import chunked_xla
from jaxkit.kernels.fused_linear_divergence import pallas_gpu
from jaxkit.kernels.fused_linear_divergence import pallas_tpu
from jaxkit.kernels.fused_linear_divergence import reference

BACKENDS: tuple[_registry.Backend, ...] = (
    _registry.Backend("pallas_tpu", ("tpu",), pallas_tpu.run),
    _registry.Backend("pallas_gpu", ("gpu",), pallas_gpu.run),
    _registry.Backend("chunked_xla", None, chunked_xla.run),
    _registry.Backend("xla", None, reference.run),
)

_REDUCTIONS = ("mean", "sum", "none")


def _check_hidden_and_weight(h, w, h_name, w_name):
  h = checks.check_floating(h, h_name)
  w = checks.check_floating(w, w_name)
  if h.ndim < 1:
    raise ValueError(f"`{h_name}` must have rank >= 1 ([..., D]), got shape "
                     f"{h.shape}.")
  if w.ndim != 2:
    raise ValueError(f"`{w_name}` must be a [D, V] matrix, got shape "
                     f"{w.shape}.")
  if h.shape[-1] != w.shape[0]:
    raise ValueError(
        f"The hidden size of `{h_name}` (last dim, {h.shape[-1]}) must equal "
        f"the first dim of `{w_name}` ({w.shape[0]}); got shapes {h.shape} "
        f"and {w.shape}.")
  if w.shape[1] < 1:
    raise ValueError(f"`{w_name}` must have at least one column (V >= 1), "
                     f"got shape {w.shape}.")
  return h, w


def _check_block(value, name):
  if value is None:
    return None
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or value < 1):
    raise ValueError(f"`{name}` must be an int >= 1 or None, got {value!r}.")
  return int(value)


def _check_common(where, lead, reduction, chunk_size, token_chunk_size):
  if reduction not in _REDUCTIONS:
    raise ValueError(f"`reduction` must be one of {_REDUCTIONS}, got "
                     f"{reduction!r}.")
  cfg = chunked_xla.Config(_check_block(chunk_size, "chunk_size"),
                           _check_block(token_chunk_size, "token_chunk_size"))
  mask = checks.check_where(where, lead, "where")
  return cfg, mask


def _static_float(value, name):
  if not checks.is_concrete(value):
    raise TypeError(
        f"`{name}` must be a concrete Python number (it is compiled into the "
        "kernels), got a traced value; pass it as a static argument.")
  checks.check_scalar(value, name)
  return float(value)


def _finish(backend_args, *, mask, lead, reduction, spec, cfg, implementation,
            interpret):
  """Masks rows, dispatches, reduces."""
  hs, ws, ht, wt, lab = backend_args
  t = hs.shape[0]
  if mask is None:
    valid = jnp.ones((t,), bool)
  else:
    valid = mask.reshape(t)
    # Double-where: junk (even nan) rows never reach the value or gradient.
    hs = jnp.where(valid[:, None], hs, jnp.zeros((), hs.dtype))
    if ht is not None:
      ht = jnp.where(valid[:, None], ht, jnp.zeros((), ht.dtype))
    if lab is not None:
      lab = jnp.where(valid, lab, 0)
  per_token = reduction == "none"
  if per_token:
    c = None
  else:
    w = valid.astype(jnp.float32)
    if reduction == "mean":
      w = w / jnp.maximum(jnp.sum(w), 1.0)
    c = jax.lax.stop_gradient(w)
  out = _registry.dispatch(
      "fused_linear_divergence", BACKENDS, implementation, interpret, hs, ws,
      ht, wt, lab, c, spec=spec, cfg=cfg, per_token=per_token)
  if per_token:
    return jnp.where(valid, out, 0.0).reshape(lead)
  return out


def fused_linear_divergence(
    h_student: ArrayLike,
    w_student: ArrayLike,
    h_teacher: ArrayLike,
    w_teacher: ArrayLike,
    *,
    divergence: str | gen_lib.FGenerator = "kl",
    alpha: float | None = None,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    token_chunk_size: int | None = None,
    implementation: str | None = None,
    interpret: bool | None = None,
) -> jax.Array:
  r"""Token-level distillation loss computed from hidden states, never from logits.

  With student logits :math:`z_S = h_S W_S` and teacher logits
  :math:`z_T = h_T W_T` (per token; never materialised as ``[T, V]``),

  .. math::
    \ell_t = \tau^2\, D_f\big(\mathrm{softmax}(z_{T,t}/\tau)\,\big\|\,
      \mathrm{softmax}(z_{S,t}/\tau)\big)
      = \tau^2 \sum_k q_k\, f(p_k / q_k),

  the same value and conventions as :func:`jaxkit.losses.kd_loss` on the
  materialised logits: the teacher is the target (first slot), ``'kl'`` is
  :math:`\mathrm{KL}(p_T\|p_S)`, ``'reverse_kl'`` is :math:`\mathrm{KL}(p_S\|
  p_T)`, any generator of :func:`jaxkit.divergences.get_generator` works, and
  the :math:`\tau^2` factor is included. The loss is evaluated tile by tile
  (tokens x vocabulary chunks) with float32 accumulation, so bf16 hidden
  states and weights are fine; see ``chunked_xla`` for the loop structure.

  Gradients flow into ``h_student`` and ``w_student`` (a custom VJP that
  recomputes or fuses the per-tile softmax). **The teacher gets zero
  gradients** (it is treated as frozen, like ``stop_gradient``).

  Args:
    h_student: ``[..., Ds]`` student hidden states (f32 / bf16).
    w_student: ``[Ds, V]`` student unembedding.
    h_teacher: ``[..., Dt]`` teacher hidden states, same leading shape.
    w_teacher: ``[Dt, V]`` teacher unembedding, same ``V``.
    divergence: a generator name (``'kl'``, ``'reverse_kl'``, ``'js'``,
      ``'tv'``, ``'amari_alpha'``, ...) or an :class:`~jaxkit.divergences.FGenerator`.
    alpha: the order of ``'amari_alpha'`` (a concrete float).
    temperature: :math:`\tau > 0`, a concrete Python number.
    where: optional ``[...]`` token mask (dims of 1 broadcast). Masked tokens
      contribute exactly 0 with zero gradients, even if their hidden states
      are junk.
    reduction: ``'mean'`` (over valid tokens; 0 when none is valid),
      ``'sum'`` or ``'none'`` (per-token ``[...]``, 0 at masked tokens).
    chunk_size: vocabulary columns per chunk (``None``: automatic — the whole
      vocabulary up to 2^18 columns in ``chunked_xla``, 512 in the Pallas
      kernels).
    token_chunk_size: tokens per block (``None``: automatic; the
      ``chunked_xla`` default keeps one f32 tile at about 128 MiB, e.g.
      256 tokens at V = 128k; larger blocks are faster on CPU because the
      ``[D, V]`` gradient accumulator is updated once per block).
    implementation: ``None`` (best for the device: ``pallas_tpu`` on TPU,
      ``pallas_gpu`` on GPU, ``chunked_xla`` elsewhere), or one of
      ``'pallas_tpu'``, ``'pallas_gpu'``, ``'chunked_xla'``, ``'xla'`` (the
      materialised reference).
    interpret: run a Pallas backend with the Pallas interpreter (CPU tests).

  Returns:
    A float32 scalar (``'mean'`` / ``'sum'``) or ``[...]`` per-token losses.

  Raises:
    ValueError: mismatched hidden sizes or vocabularies, bad mask, unknown
      divergence or reduction, a block size < 1, ``temperature <= 0``.
    TypeError: traced ``temperature`` / ``alpha``, non-floating inputs.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.kernels.fused_linear_divergence import fused_linear_divergence
    >>> ks = jax.random.split(jax.random.key(0), 4)
    >>> hs = jax.random.normal(ks[0], (6, 4)); ws = jax.random.normal(ks[1], (4, 10))
    >>> ht = jax.random.normal(ks[2], (6, 8)); wt = jax.random.normal(ks[3], (8, 10))
    >>> loss = fused_linear_divergence(hs, ws, ht, wt, chunk_size=4)
    >>> ref = fused_linear_divergence(hs, ws, ht, wt, implementation='xla')
    >>> bool(jnp.allclose(loss, ref, rtol=1e-5))
    True

  References:
    Hinton, Vinyals, Dean, `Distilling the Knowledge in a Neural Network
    <https://arxiv.org/abs/1503.02531>`_, 2015.

    Wen, Li, Du, Mou, `f-Divergence Minimization for Sequence-Level Knowledge
    Distillation <https://arxiv.org/abs/2307.15190>`_, 2023.

    Wijmans et al., `Cut Your Losses in Large-Vocabulary Language Models
    <https://arxiv.org/abs/2411.09009>`_, 2024 (fused linear cross-entropy).
  """
  hs, ws = _check_hidden_and_weight(h_student, w_student, "h_student",
                                    "w_student")
  ht, wt = _check_hidden_and_weight(h_teacher, w_teacher, "h_teacher",
                                    "w_teacher")
  if hs.shape[:-1] != ht.shape[:-1]:
    raise ValueError(
        "`h_student` and `h_teacher` must have the same leading (token) shape, "
        f"got {hs.shape} and {ht.shape}.")
  if ws.shape[1] != wt.shape[1]:
    raise ValueError(
        "`w_student` and `w_teacher` must have the same vocabulary size V "
        f"(last dim), got {ws.shape} and {wt.shape}.")
  if isinstance(divergence, gen_lib.FGenerator):
    if alpha is not None:
      raise ValueError("Pass `alpha` inside the FGenerator, not both.")
    name, alpha = divergence.name, divergence.alpha
  else:
    name = divergence
    params = {} if alpha is None else {"alpha": alpha}
    try:
      gen_lib.get_generator(name, **params)
    except ValueError as e:
      raise ValueError(f"`divergence`: {e}") from None
  if alpha is not None:
    alpha = _static_float(alpha, "alpha")
  tau = _static_float(temperature, "temperature")
  checks.check_scalar(tau, "temperature", positive=True)
  lead = hs.shape[:-1]
  cfg, mask = _check_common(where, lead, reduction, chunk_size,
                            token_chunk_size)
  spec = chunked_xla.Spec("kd", name, alpha, tau)
  args = (hs.reshape(-1, hs.shape[-1]), ws, ht.reshape(-1, ht.shape[-1]), wt,
          None)
  return _finish(args, mask=mask, lead=lead, reduction=reduction, spec=spec,
                 cfg=cfg, implementation=implementation, interpret=interpret)


def fused_linear_cross_entropy(
    h: ArrayLike,
    w: ArrayLike,
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    token_chunk_size: int | None = None,
    implementation: str | None = None,
    interpret: bool | None = None,
) -> jax.Array:
  r"""Cross-entropy of ``h @ w`` against integer labels, without ``[T, V]`` logits.

  .. math::
    \ell_t = \mathrm{LSE}_k(z_{t,k}) - z_{t,y_t}, \qquad z = h W,

  the special case of :func:`fused_linear_divergence` with ``'kl'``,
  :math:`\tau = 1` and a one-hot teacher; same kernels, tiles and options.

  Args:
    h: ``[..., D]`` hidden states (f32 / bf16).
    w: ``[D, V]`` unembedding.
    labels: ``[...]`` integer labels in ``[0, V)``. Entries at masked tokens
      may hold anything (e.g. ``-100``); an out-of-range label at a valid
      token gives ``LSE`` alone (no target entry) — mask such tokens.
    where: optional ``[...]`` token mask.
    reduction: ``'mean'`` (over valid tokens), ``'sum'`` or ``'none'``.
    chunk_size: vocabulary columns per chunk (see
      :func:`fused_linear_divergence`).
    token_chunk_size: tokens per block.
    implementation: as in :func:`fused_linear_divergence`.
    interpret: run a Pallas backend with the Pallas interpreter.

  Returns:
    A float32 scalar or ``[...]`` per-token losses.

  Raises:
    ValueError: mismatched shapes, bad mask or reduction, a block size < 1.
    TypeError: non-integer labels.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxkit.kernels.fused_linear_divergence import fused_linear_cross_entropy
    >>> h = jax.random.normal(jax.random.key(0), (5, 4))
    >>> w = jax.random.normal(jax.random.key(1), (4, 9))
    >>> y = jnp.array([0, 3, 8, 2, 2])
    >>> loss = fused_linear_cross_entropy(h, w, y, chunk_size=4)
    >>> ref = optax.softmax_cross_entropy_with_integer_labels(h @ w, y).mean()
    >>> bool(jnp.allclose(loss, ref, rtol=1e-5))
    True
  """
  hs, ws = _check_hidden_and_weight(h, w, "h", "w")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"`labels` must be integers, got dtype {labels.dtype}.")
  lead = hs.shape[:-1]
  if labels.shape != lead:
    raise ValueError(f"`labels` must have the leading shape of `h` {lead}, "
                     f"got {labels.shape}.")
  cfg, mask = _check_common(where, lead, reduction, chunk_size,
                            token_chunk_size)
  spec = chunked_xla.Spec("ce")
  args = (hs.reshape(-1, hs.shape[-1]), ws, None, None,
          labels.reshape(-1).astype(jnp.int32))
  return _finish(args, mask=mask, lead=lead, reduction=reduction, spec=spec,
                 cfg=cfg, implementation=implementation, interpret=interpret)
