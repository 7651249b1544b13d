r"""Weight / direction decomposition of reranking losses (SFT vs CL).

Dai et al. (2025) compare two ways to train an LLM reranker on a list of one
relevant and :math:`M` irrelevant documents, scored by the logits
:math:`z^{\mathrm{yes}}_m, z^{\mathrm{no}}_m` of the "yes" / "no" tokens:

* SFT — per-document cross-entropy over {yes, no}
  (:func:`jaxkit.losses.yes_no_pointwise_loss`, summed over the list), whose
  score is :math:`d_m = z^{\mathrm{yes}}_m - z^{\mathrm{no}}_m`;
* CL — listwise InfoNCE over the "yes" logits
  (:func:`jaxkit.losses.listwise_contrastive_loss`).

By the chain rule the gradient of either loss with respect to a document's
hidden state is a scalar **weight** :math:`W_m \ge 0` (how hard the update
pushes) times a **direction** :math:`\pm\,\partial s_m / \partial h_m`
(where it pushes: up for the relevant document, down for the others), with
:math:`s_m` the objective's score. :func:`reranking_gradient_weights` returns
the weights of either objective and :func:`unified_reranking_loss` recombines
any weight with any direction (the paper's unified framework: SFT weight with
CL direction and vice versa), which is how the paper attributes SFT's
advantage to its weighting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike

_OBJECTIVES = ("sft", "cl")


def _check_objective(value, name):
  if value not in _OBJECTIVES:
    raise ValueError(f"`{name}` must be 'sft' or 'cl', got {value!r}.")


def _prepare(logit_yes, logit_no, need_no, temperature, where):
  zy = checks.check_floating(logit_yes, "logit_yes")
  if zy.ndim < 1 or zy.shape[-1] < 2:
    raise ValueError(
        f"`logit_yes` must be [..., 1 + M] (relevant document first, M >= 1 "
        f"irrelevant ones), got shape {zy.shape}.")
  arrays = [zy]
  zn = None
  if logit_no is not None:
    zn = checks.check_floating(logit_no, "logit_no")
    checks.check_same_shape(zy, zn, "logit_yes", "logit_no")
    arrays.append(zn)
  elif need_no:
    raise ValueError("`logit_no` is required for the 'sft' weight or "
                     "direction (its score is logit_yes - logit_no).")
  checks.check_scalar(temperature, "temperature", positive=True)
  mask = checks.check_where(where, zy.shape, "where")
  dtype = checks.compute_dtype(*arrays)
  zy = zy.astype(dtype)
  zn = None if zn is None else zn.astype(dtype)
  if mask is not None:
    zy = jnp.where(mask, zy, 0.0)
    zn = None if zn is None else jnp.where(mask, zn, 0.0)
  return zy, zn, mask


def _weights(zy, zn, mask, objective, temperature):
  m = zy.shape[-1]
  is_pos = jnp.arange(m) == 0
  if objective == "sft":
    d = zy - zn
    w = jnp.where(is_pos, jax.nn.sigmoid(-d), jax.nn.sigmoid(d))
  else:
    z = zy / temperature
    if mask is not None:
      z = jnp.where(mask, z, -jnp.inf)
      z = jnp.where(mask[..., :1], z, 0.0)   # a row without its positive
    p = jax.nn.softmax(z, axis=-1)
    w = jnp.where(is_pos, 1.0 - p, p) / temperature
  if mask is not None:
    w = jnp.where(mask & mask[..., :1], w, 0.0)
  return w


def reranking_gradient_weights(
    logit_yes: ArrayLike,
    logit_no: ArrayLike | None = None,
    *,
    objective: str,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Per-document gradient weights :math:`W_m` of the SFT or CL reranking loss.

  For a list whose first document is the relevant one,

  .. math::
    W^{\mathrm{SFT}}_0 = 1 - \sigma(d_0),\quad
    W^{\mathrm{SFT}}_{m \ge 1} = \sigma(d_m),
    \qquad d_m = z^{\mathrm{yes}}_m - z^{\mathrm{no}}_m;

  .. math::
    W^{\mathrm{CL}}_0 = \frac{1 - p_0}{\tau},\quad
    W^{\mathrm{CL}}_{m \ge 1} = \frac{p_m}{\tau},
    \qquad p = \operatorname{softmax}(z^{\mathrm{yes}} / \tau),

  i.e. the magnitudes of :math:`\partial\ell/\partial s_m` for the objective's
  own score :math:`s_m` (:math:`d_m` for SFT, :math:`z^{\mathrm{yes}}_m` for
  CL), so that :math:`\partial\ell/\partial h_m = -W_m\,\epsilon_m\,\partial
  s_m/\partial h_m` with :math:`\epsilon_0 = +1`, :math:`\epsilon_{m\ge1} =
  -1`. SFT weighs each document by its own error, independently of the list;
  CL's weights share one softmax, so they sum to :math:`2(1-p_0)/\tau` and
  vanish for all documents once the positive wins.

  The CL score here is the "yes" logit (the paper writes the CL score as the
  "yes" token's probability; with the logit, this weight is exactly the
  gradient of :func:`jaxkit.losses.listwise_contrastive_loss`). The derivation
  is the chain rule on the two losses as the paper defines them (its code is
  not public).

  Args:
    logit_yes: ``[..., 1 + M]`` "yes" logits, relevant document first.
    logit_no: ``[..., 1 + M]`` "no" logits (required for ``'sft'``).
    objective: ``'sft'`` or ``'cl'`` (static).
    temperature: CL temperature :math:`\tau > 0` (unused by SFT).
    where: optional ``[..., 1 + M]`` mask of valid documents; masked ones,
      and whole lists whose relevant document is masked, get weight 0.

  Returns:
    ``[..., 1 + M]`` non-negative weights (float32 or wider, not
    differentiated through by :func:`unified_reranking_loss`).

  Raises:
    ValueError: unknown ``objective``, shapes, ``temperature <= 0``, missing
      ``logit_no`` for SFT.
    TypeError: non-floating logits.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.reranking_gradients import (
    ...     reranking_gradient_weights)
    >>> zy, zn = jnp.array([[2.0, 0.0, 0.0]]), jnp.zeros((1, 3))
    >>> print(jnp.round(reranking_gradient_weights(zy, zn, objective="sft"), 4))
    [[0.1192 0.5    0.5   ]]
    >>> print(jnp.round(reranking_gradient_weights(zy, objective="cl"), 4))
    [[0.213  0.1065 0.1065]]

  References:
    Dai et al., `Supervised Fine-Tuning or Contrastive Learning? Towards
    Better Multimodal LLM Reranking <https://arxiv.org/abs/2510.14824>`_,
    2025.

    Catalog: seed_001 #43.
  """
  _check_objective(objective, "objective")
  zy, zn, mask = _prepare(logit_yes, logit_no, objective == "sft",
                          temperature, where)
  return _weights(zy, zn, mask, objective, temperature)


def unified_reranking_loss(
    logit_yes: ArrayLike,
    logit_no: ArrayLike | None = None,
    *,
    weight: str = "sft",
    direction: str = "sft",
    temperature: float = 1.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Reranking loss with one objective's gradient weight, another's direction.

  .. math::
    \nabla \ell = -\sum_{m=0}^{M} W^{\mathrm{w}}_m\, \epsilon_m\,
      \nabla s^{\mathrm{d}}_m,
    \qquad \epsilon_0 = +1,\; \epsilon_{m \ge 1} = -1,

  with :math:`W^{\mathrm{w}}` the weights of objective ``weight`` (see
  :func:`reranking_gradient_weights`, held constant) and :math:`s^{\mathrm{d}}`
  the score of objective ``direction`` (:math:`z^{\mathrm{yes}} -
  z^{\mathrm{no}}` for SFT, :math:`z^{\mathrm{yes}}` for CL). With
  ``weight == direction`` the gradient is exactly that of the original loss
  (``'sft'``: the sum over the list of
  :func:`jaxkit.losses.yes_no_pointwise_loss` with label 1 for the first
  document and 0 for the rest; ``'cl'``:
  :func:`jaxkit.losses.listwise_contrastive_loss` on ``logit_yes``); the
  mixed settings are the paper's probes (e.g. SFT weight with CL direction).

  The returned value is the loss of the ``weight`` objective (so it can be
  monitored), and its gradient is the recombined one above (a
  straight-through construction: value ``sg(L_w) + (S - sg(S))`` with
  :math:`S = -\sum_m \mathrm{sg}(W_m)\,\epsilon_m\, s^{\mathrm{d}}_m`).

  Args:
    logit_yes: ``[..., 1 + M]`` "yes" logits, relevant document first.
    logit_no: ``[..., 1 + M]`` "no" logits (required if either objective is
      ``'sft'``).
    weight: objective whose weights are used, ``'sft'`` or ``'cl'`` (static).
    direction: objective whose score gives the direction (static).
    temperature: CL temperature :math:`\tau > 0`.
    where: optional ``[..., 1 + M]`` mask of valid documents (a list whose
      relevant document is masked gives 0).

  Returns:
    ``[...]`` per-list losses.

  Raises:
    ValueError: unknown objectives, shapes, ``temperature <= 0``, missing
      ``logit_no``.
    TypeError: non-floating logits.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.losses.reranking_gradients import unified_reranking_loss
    >>> zy, zn = jnp.array([[2.0, 0.0, 0.0]]), jnp.zeros((1, 3))
    >>> f = lambda zy: unified_reranking_loss(zy, zn, weight="sft",
    ...                                       direction="cl").sum()
    >>> print(jnp.round(f(zy), 4))  # the SFT loss value
    1.5132
    >>> print(jnp.round(jax.grad(f)(zy), 4))  # -W_sft * eps
    [[-0.1192  0.5     0.5   ]]

  References:
    Dai et al., `Supervised Fine-Tuning or Contrastive Learning? Towards
    Better Multimodal LLM Reranking <https://arxiv.org/abs/2510.14824>`_,
    2025.

    Catalog: seed_001 #43.
  """
  _check_objective(weight, "weight")
  _check_objective(direction, "direction")
  zy, zn, mask = _prepare(logit_yes, logit_no,
                          "sft" in (weight, direction), temperature, where)
  w = jax.lax.stop_gradient(_weights(zy, zn, mask, weight, temperature))
  m = zy.shape[-1]
  eps = jnp.where(jnp.arange(m) == 0, 1.0, -1.0).astype(zy.dtype)
  s = zy - zn if direction == "sft" else zy
  surrogate = -jnp.sum(w * eps * s, axis=-1)
  # Value of the weight objective (masked documents left out).
  if weight == "sft":
    d = zy - zn
    per_doc = jnp.where(jnp.arange(m) == 0, jax.nn.softplus(-d),
                        jax.nn.softplus(d))
    if mask is not None:
      per_doc = jnp.where(mask, per_doc, 0.0)
    value = jnp.sum(per_doc, axis=-1)
  else:
    z = zy / temperature
    if mask is None:
      value = jax.nn.logsumexp(z, axis=-1) - z[..., 0]
    else:
      lse = jax.nn.logsumexp(jnp.where(mask, z, -jnp.inf), axis=-1,
                             where=mask)
      value = jnp.where(mask[..., 0], lse, z[..., 0]) - z[..., 0]
  if mask is not None:
    value = jnp.where(mask[..., 0], value, 0.0)
  value = jax.lax.stop_gradient(value)
  return value + (surrogate - jax.lax.stop_gradient(surrogate))
