"""Materialised-logits reference (``implementation='xla'``): the oracle.

Computes the ``[T, V]`` logits of both models in float32 and evaluates
:func:`jaxkit.losses.kd_loss` on them (cross-entropy: ``log_softmax`` and the
label's entry); gradients come from plain autodiff, with the teacher behind
:func:`jax.lax.stop_gradient`. Memory grows as ``T x V``: use it as the
reference and for small vocabularies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit.kernels.fused_linear_divergence.chunked_xla import Config
from jaxkit.kernels.fused_linear_divergence.chunked_xla import Spec
from jaxkit.losses import distillation


def logits(h: jax.Array, w: jax.Array) -> jax.Array:
  """``h @ w`` accumulated (and returned) in float32."""
  return jnp.dot(h, w, preferred_element_type=jnp.float32)


def per_token_losses(spec: Spec, hs, ws, ht, wt, lab) -> jax.Array:
  """Per-token losses ``[T]`` from materialised logits."""
  zs = logits(hs, ws)
  if spec.kind == "ce":
    lq = jax.nn.log_softmax(zs, axis=-1)
    return -jnp.take_along_axis(lq, lab[:, None], axis=-1)[:, 0]
  zt = jax.lax.stop_gradient(logits(ht, wt))
  return distillation.kd_loss(zs, zt, temperature=spec.temperature,
                              divergence=spec.divergence, alpha=spec.alpha)


def run(hs, ws, ht, wt, lab, c, *, interpret: bool, spec: Spec, cfg: Config,
        per_token: bool):
  """Backend entry (see api.py)."""
  del interpret, cfg
  loss = per_token_losses(spec, hs, ws, ht, wt, lab)
  if per_token:
    return loss
  return jnp.sum(jax.lax.stop_gradient(c) * loss)
