r"""Knowledge-distillation losses, as compositions of :mod:`jaxkit.divergences`.

Every loss here takes raw **student logits first, teacher logits second** (the
order of the usual ``loss(model_output, target)`` call) and evaluates a
divergence from :mod:`jaxkit.divergences` with the **teacher as the target**
(first slot), e.g. :math:`\tau^2\,\mathrm{KL}(p_T^\tau \| p_S^\tau)` for
:func:`kd_loss`. No divergence is re-derived here.

* :func:`kd_loss` — temperature-scaled KD with any f-divergence generator
  (Hinton et al., 2015, and its KL / reverse-KL / JS / TV / α variants),
  per example or per token, with an optional token mask and token chunking.
* :func:`bd_kd_loss` — BD-KD's per-sample mix of forward and reverse KL.
* :func:`sinkhorn_kd_loss` — SinKD: entropic optimal transport between the
  student's and the teacher's probability rows of a batch (couples examples).
* :func:`pld_loss` — Plackett–Luce list-wise distillation (a ranking loss,
  not a divergence).

Shapes: logits are ``[..., V]`` (``V`` the class / vocabulary axis, always the
last one); per-example losses are ``[...]``. Token masks ``where`` are
``[...]`` (one flag per example / token, not per vocabulary entry). bf16 / f16
logits are upcast and accumulated in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit import divergences as dv
from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike

# Named divergences with a specialised (more accurate) implementation; any
# other generator name goes through `f_divergence`.
_NAMED = {
    "kl": dv.kl,
    "reverse_kl": dv.reverse_kl,
    "js": dv.js,
    "tv": dv.tv,
    "pearson_chi2": dv.pearson_chi2,
    "neyman_chi2": dv.neyman_chi2,
    "squared_hellinger": dv.squared_hellinger,
    "jeffreys": dv.jeffreys,
}


def _check_logits(student_logits, teacher_logits):
  s = checks.check_floating(student_logits, "student_logits")
  t = checks.check_floating(teacher_logits, "teacher_logits")
  if s.ndim < 1:
    raise ValueError(
        "`student_logits` must have rank >= 1 ([..., V]), got shape "
        f"{s.shape}.")
  checks.check_same_shape(s, t, "student_logits", "teacher_logits")
  return s, t


def _divergence_fn(divergence, alpha):
  """Validates the divergence name; returns fn(log_p, log_q, where=...)."""
  params = {} if alpha is None else {"alpha": alpha}
  try:
    gen = dv.get_generator(divergence, **params)
  except ValueError as e:
    raise ValueError(f"`divergence`: {e}") from None
  if divergence == "amari_alpha":
    return lambda lp, lq, where: dv.amari_alpha(lp, lq, alpha=alpha,
                                                where=where)
  if divergence in _NAMED:
    fn = _NAMED[divergence]
    return lambda lp, lq, where: fn(lp, lq, where=where)
  return lambda lp, lq, where: dv.f_divergence(lp, lq, gen, where=where)


def _tempered_log_softmax(x, mask, temperature, dtype):
  x = x.astype(dtype)
  if mask is not None:
    # Junk (even NaN) logits at padded positions never reach the value or the
    # gradient: `where` selects a harmless 0 row there (double-where trick).
    x = jnp.where(mask[..., None], x, 0.0)
  return jax.nn.log_softmax(x / temperature, axis=-1)


def _kd_rows(s, t, mask, temperature, div_fn):
  """Per-row τ²·D(teacher_τ ‖ student_τ) for s, t [..., V], mask [...]|None."""
  dtype = checks.compute_dtype(s, t)
  ls = _tempered_log_softmax(s, mask, temperature, dtype)
  lt = _tempered_log_softmax(t, mask, temperature, dtype)
  where = None if mask is None else mask[..., None]
  d = div_fn(lt, ls, where)
  return jnp.square(jnp.asarray(temperature, dtype)) * d


def kd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float = 1.0,
    divergence: str = "kl",
    alpha: float | None = None,
    where: ArrayLike | None = None,
    chunk_size: int | None = None,
) -> jax.Array:
  r"""Temperature-scaled knowledge distillation with any f-divergence.

  Softens both logit vectors with temperature :math:`\tau` and returns
  :math:`\tau^2` times the divergence from the teacher (the target, first
  slot) to the student, per example / token. ``divergence='kl'`` is the
  classic KD term of Hinton et al. (2015); the :math:`\tau^2` factor keeps the
  gradient magnitude comparable across temperatures (the soft-target gradient
  scales as :math:`1/\tau^2`). ``'reverse_kl'`` is :math:`\mathrm{KL}(p_S\|
  p_T)` (mode seeking), ``'js'``, ``'tv'``, ``'amari_alpha'`` (with
  ``alpha``) and every other name of
  :func:`jaxkit.divergences.get_generator` work too: named divergences are
  evaluated by their specialised functions in :mod:`jaxkit.divergences`,
  others by :func:`jaxkit.divergences.f_divergence`.

  .. math::
    \ell = \tau^2\, D_f\big(\mathrm{softmax}(z_T/\tau)\,\big\|\,
      \mathrm{softmax}(z_S/\tau)\big).

  **Hard-label mixing is the caller's job.** This function returns only the
  soft-target term. Common conventions built from it:

  * tunix ``LogitStrategy``: ``0.5 * kd_loss(s, t, temperature=τ) + 0.5 * CE``
    (i.e. :math:`0.5\,\tau^2\,\mathrm{KL} + 0.5\,\mathrm{CE}`).
  * torchdistill vanilla KD: ``α * kd_loss(s, t, temperature=τ) + (1 − α) *
    CE`` (i.e. :math:`\alpha\,\tau^2\,\mathrm{KL} + (1-\alpha)\,\mathrm{CE}`).

  where CE is the ordinary (τ = 1) cross-entropy with the labels. Reduce the
  per-token output with :func:`jaxkit.masked_mean` (``where=mask``) or a sum.

  **Masks and precision.** ``where`` flags the tokens that take part; masked
  tokens give exactly 0 with zero gradients even if their logits are junk or
  ``nan``. bf16 / f16 logits are upcast and accumulated in float32.

  **Memory.** Measured with ``jax.jit(f).lower(...).compile()
  .memory_analysis().temp_size_in_bytes`` (XLA:CPU, jax 0.10.2) for logits
  ``[8, 512, 131072]`` with a token mask and ``'kl'`` (one ``[B, T, V]``
  float32 tensor is 2 GiB):

  ===================  ==============  ==============  ===============
  inputs               default fwd     default grad    ``chunk_size``
  ===================  ==============  ==============  ===============
  float32              4.52 GiB        4.06 GiB        128: 0.14 GiB fwd, 6.4 GiB grad
  bfloat16             4.52 GiB        6.0 GiB         128: 4.19 GiB fwd, 10.4 GiB grad
  ===================  ==============  ==============  ===============

  So the default materialises about two float32 ``[B, T, V]`` tensors, over
  the one-tensor budget. ``chunk_size`` (tokens per chunk, evaluated with
  :func:`jax.lax.map`, same values and gradients) cuts the *forward* memory
  of float32 inputs to one chunk, which is what evaluation needs; it does not
  help bf16 inputs on XLA:CPU (the upcast of the whole input is hoisted out
  of the loop) nor the backward pass (``lax.map`` keeps per-chunk
  residuals). For LLM distillation use
  :func:`jaxkit.kernels.fused_linear_divergence`, which takes the hidden
  states and unembedding matrices and never materialises either model's
  ``[tokens, V]`` logits (same generators, τ² scaling and masking; own VJP).

  Args:
    student_logits: ``[..., V]`` student logits (any floating dtype).
    teacher_logits: ``[..., V]`` teacher logits, same shape. Gradients flow
      into both; wrap the teacher in :func:`jax.lax.stop_gradient` for a frozen
      teacher.
    temperature: softmax temperature :math:`\tau > 0` (may be traced).
    divergence: a generator name from
      :data:`jaxkit.divergences.GENERATOR_NAMES` (``'kl'``, ``'reverse_kl'``,
      ``'js'``, ``'tv'``, ``'amari_alpha'``, ...).
    alpha: the α of ``'amari_alpha'`` (required there, rejected otherwise).
    where: optional ``[...]`` mask (bool / 0-1) of the examples / tokens that
      take part, shape ``student_logits.shape[:-1]`` (dims of 1 broadcast).
    chunk_size: optional number of tokens per chunk (see Memory).

  Returns:
    ``[...]`` float32 (float64 for float64 inputs) per-example / per-token
    losses; 0 at masked positions.

  Raises:
    ValueError: mismatched shapes, rank 0, ``temperature <= 0``, an unknown
      divergence name, a bad ``alpha``, a badly shaped mask, or a bad
      ``chunk_size``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import kd_loss
    >>> s = jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    >>> t = jnp.array([[2.0, 0.0, -2.0], [0.0, 1.0, 0.0]])
    >>> print(jnp.round(kd_loss(s, t, temperature=2.0), 4))
    [0.2411 0.0884]
    >>> print(jnp.round(kd_loss(s, t, divergence='js'), 4))
    [0.0324 0.0225]
    >>> print(jnp.round(kd_loss(s, t, where=jnp.array([True, False])), 4))
    [0.1156 0.    ]

  References:
    Hinton, Vinyals, Dean, `Distilling the Knowledge in a Neural Network
    <https://arxiv.org/abs/1503.02531>`_, 2015.

    Wen, Li, Du, Mou, `f-Divergence Minimization for Sequence-Level Knowledge
    Distillation <https://arxiv.org/abs/2307.15190>`_, 2023 (KD with KL /
    reverse KL / JS / TV).
  """
  checks.check_scalar(temperature, "temperature", positive=True)
  s, t = _check_logits(student_logits, teacher_logits)
  div_fn = _divergence_fn(divergence, alpha)
  mask = checks.check_where(where, s.shape[:-1], "where")
  if chunk_size is None:
    return _kd_rows(s, t, mask, temperature, div_fn)
  if (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
      or chunk_size < 1):
    raise ValueError(
        f"`chunk_size` must be an int >= 1 or None, got {chunk_size!r}.")
  lead, v = s.shape[:-1], s.shape[-1]
  s2 = s.reshape(-1, v)
  t2 = t.reshape(-1, v)
  m2 = (jnp.ones(s2.shape[:1], bool) if mask is None else mask.reshape(-1))

  def one(args):
    si, ti, mi = args
    return _kd_rows(si, ti, mi, temperature, div_fn)

  out = jax.lax.map(one, (s2, t2, m2),
                    batch_size=min(chunk_size, max(s2.shape[0], 1)))
  return out.reshape(lead)


def bd_kd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    forward_weight: ArrayLike,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""BD-KD: a per-sample balance of forward and reverse KL distillation.

  .. math::
    \ell_i = \tau^2\big[w_i\,\mathrm{KL}(p_T^\tau\|p_S^\tau)
      + (1 - w_i)\,\mathrm{KL}(p_S^\tau\|p_T^\tau)\big],

  i.e. ``w * kd_loss(..., 'kl') + (1 - w) * kd_loss(..., 'reverse_kl')``.
  Forward KL is mass covering, reverse KL mode seeking; BD-KD (Amara et al.)
  shifts the balance per sample according to the entropy gap between the
  teacher's and the student's predictions.

  **Deviation / what is implemented.** The paper's exact sample-weighting
  rule is not pinned down in our paper catalog (seed_003 #21 says only
  "sample-wise weights driven by the entropy gap"), so it is *not*
  implemented: the caller passes ``forward_weight`` (scalar or per sample).
  ``w = 0.5`` gives half the Jeffreys divergence. No ``stop_gradient`` is
  applied to the weights: if you compute them from the logits, stop their
  gradient yourself. The teacher-side reverse-KL regulariser of online KD is
  the caller's job (another call with the roles swapped).

  Args:
    student_logits: ``[..., V]`` student logits.
    teacher_logits: ``[..., V]`` teacher logits, same shape.
    forward_weight: :math:`w` in ``[0, 1]``: a scalar or ``[...]`` (the
      logits' leading shape) weight of the forward KL term.
    temperature: softmax temperature :math:`\tau > 0`.
    where: optional ``[...]`` example / token mask, as in :func:`kd_loss`.

  Returns:
    ``[...]`` per-example losses (0 at masked positions).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import bd_kd_loss
    >>> s = jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    >>> t = jnp.array([[2.0, 0.0, -2.0], [0.0, 1.0, 0.0]])
    >>> w = jnp.array([1.0, 0.25])
    >>> print(jnp.round(bd_kd_loss(s, t, forward_weight=w), 4))
    [0.1156 0.0922]

  References:
    Amara et al., `BD-KD: Balancing the Divergences for Online Knowledge
    Distillation`, 2022 (paper catalog seed_003 #21).

    Catalog: seed_003 #21.
  """
  s, t = _check_logits(student_logits, teacher_logits)
  w = checks.check_floating(forward_weight, "forward_weight")
  if w.ndim != 0 and w.shape != s.shape[:-1]:
    raise ValueError(
        f"`forward_weight` must be a scalar or have shape {s.shape[:-1]} (the "
        f"logits' leading shape), got {w.shape}.")
  if checks.is_concrete(w) and np.any((np.asarray(w) < 0) | (np.asarray(w) > 1)):
    raise ValueError("`forward_weight` must lie in [0, 1].")
  fwd = kd_loss(s, t, temperature=temperature, divergence="kl", where=where)
  rev = kd_loss(s, t, temperature=temperature, divergence="reverse_kl",
                where=where)
  w = w.astype(fwd.dtype)
  return w * fwd + (1.0 - w) * rev


def sinkhorn_kd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: float = 2.0,
    epsilon: float = 0.1,
    num_iters: int = 20,
    scale: float = 1e-3,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""SinKD: Sinkhorn (entropic OT) distance between a batch's predictions.

  Follows the reference code of SinKD (github.com/2018cx/SinKD, ``loss.py``):
  the rows :math:`p_{S,i} = \mathrm{softmax}(z_{S,i}/\tau)` and
  :math:`p_{T,j} = \mathrm{softmax}(z_{T,j}/\tau)` of the batch are matched
  **across examples** with the L1 ground cost
  :math:`C_{ij} = \|p_{S,i} - p_{T,j}\|_1 = 2\,\mathrm{TV}(p_{T,j}, p_{S,i})`
  (computed with :func:`jaxkit.divergences.tv`), a plan :math:`\Pi` is
  obtained by ``num_iters`` plain alternating row / column normalisations of
  :math:`K = e^{-C/\varepsilon}` (unit marginals: every row and column sums to
  one), and

  .. math::
    \ell = s\,\langle \Pi, C\rangle = s \sum_{ij} \Pi_{ij} C_{ij}.

  The plan comes from :func:`jaxkit.divergences.sinkhorn_from_cost`
  (log-domain, ``tol=0`` so exactly ``num_iters`` row-then-column updates, as
  in the reference); its plan has marginals :math:`1/n`, so the value is
  multiplied by the number :math:`n` of valid rows to match the reference's
  unit marginals.

  Reference-code quirks reproduced: ``temperature=2`` (the reference
  overwrites any configured T with 2), ``epsilon=0.1``, ``num_iters=20``
  (no convergence test), the constant ``scale=1e-3``.

  Deviations: (1) gradients are implicit-function gradients of the Sinkhorn
  potentials (exact at convergence) rather than back-propagation through the
  20 unrolled iterations of the reference, so they differ slightly when 20
  iterations have not converged; the value matches. (2) Iterations run in
  the log domain (same iterates, no underflow at small ε). (3) ``where``
  drops padded rows (e.g. padding tokens of an LM: pass ``[B, T]`` logits
  ``[B, T, V]`` and every valid token is one OT point); the reference has no
  masking.

  Memory / cost: the cost matrix needs ``[n, n, V]`` temporaries
  (:math:`n` = number of rows, all leading dims flattened), so this is meant
  for classification-size batches, not full LM vocabularies over thousands
  of tokens.

  Args:
    student_logits: ``[..., V]`` student logits; all leading dims are
      flattened into :math:`n` OT points.
    teacher_logits: ``[..., V]`` teacher logits, same shape.
    temperature: softmax temperature :math:`\tau > 0` (reference: 2).
    epsilon: entropic regularisation :math:`\varepsilon > 0` (absolute).
    num_iters: number of Sinkhorn iterations (int ≥ 1).
    scale: constant multiplier (reference: 0.001).
    where: optional ``[...]`` mask of valid rows.

  Returns:
    A **scalar**: the loss couples all examples of the batch (it is not a
    sum of per-example terms). 0 when no row is valid.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import sinkhorn_kd_loss
    >>> s = jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 0.0, 3.0]])
    >>> t = jnp.array([[2.0, 0.0, -2.0], [0.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    >>> print(f"{float(sinkhorn_kd_loss(s, t, scale=1.0)):.4f}")
    0.9193

  References:
    Cui et al., `Sinkhorn Distance Minimization for
    Knowledge Distillation <https://arxiv.org/abs/2402.17110>`_, 2024.

    Cuturi, `Sinkhorn Distances: Lightspeed Computation of Optimal Transport
    <https://arxiv.org/abs/1306.0895>`_, 2013.

    Catalog: seed_003 #5.
  """
  checks.check_scalar(temperature, "temperature", positive=True)
  checks.check_scalar(scale, "scale")
  s, t = _check_logits(student_logits, teacher_logits)
  mask = checks.check_where(where, s.shape[:-1], "where")
  v = s.shape[-1]
  s2 = s.reshape(-1, v)
  t2 = t.reshape(-1, v)
  m2 = None if mask is None else mask.reshape(-1)
  dtype = checks.compute_dtype(s, t)
  ls = _tempered_log_softmax(s2, m2, temperature, dtype)
  lt = _tempered_log_softmax(t2, m2, temperature, dtype)
  # C_ij = ||p_S,i - p_T,j||_1 = 2 TV(p_T,j, p_S,i): rows student, cols teacher.
  n_rows = s2.shape[0]
  shape3 = (n_rows, n_rows, v)
  cost = 2.0 * dv.tv(jnp.broadcast_to(lt[None, :, :], shape3),
                     jnp.broadcast_to(ls[:, None, :], shape3))
  cost, _ = dv.sinkhorn_from_cost(
      cost, epsilon=epsilon, row_where=m2, col_where=m2,
      num_iters=num_iters, tol=0.0, method="log")
  n = (jnp.asarray(n_rows, dtype) if m2 is None
       else jnp.sum(m2).astype(dtype))
  return jnp.asarray(scale, dtype) * n * cost


def pld_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: ArrayLike,
    *,
    temperature: float = 1.0,
) -> jax.Array:
  r"""PLD: Plackett–Luce list-wise distillation (a teacher-weighted ListMLE).

  The target ranking :math:`\pi^*` puts the true label first, then the
  other classes by descending teacher logit. With the student logits
  :math:`s` and teacher weights :math:`w = \mathrm{softmax}(z_T/\tau)`, both
  read in that order,

  .. math::
    \ell = \sum_{k=1}^{C} w_{\pi^*_k}\Big(\log\sum_{j \ge k}
      e^{s_{\pi^*_j}} - s_{\pi^*_k}\Big),

  each rank's Plackett–Luce negative log-likelihood weighted by the teacher's
  mass on that class (the :math:`k = 1` term alone is a weighted
  cross-entropy). Suffix log-sum-exps use
  :func:`jax.lax.cumlogsumexp` (``reverse=True``). Not an f-divergence, so it
  does not go through :mod:`jaxkit.divergences`.

  Deviation: the per-rank teacher-softmax weighting follows our paper
  catalog (seed_000 #48 / seed_003 #19, from a published summary); the
  paper's exact weight normalisation / temperature placement is not pinned
  down there. The teacher weights are not stop-gradiented (gradients reach
  ``teacher_logits`` through :math:`w` only); ``temperature`` affects only
  :math:`w`.

  Args:
    student_logits: ``[..., C]`` student logits.
    teacher_logits: ``[..., C]`` teacher logits, same shape.
    labels: ``[...]`` integer true labels in ``[0, C)``.
    temperature: temperature :math:`\tau > 0` of the teacher weights.

  Returns:
    ``[...]`` per-example losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import pld_loss
    >>> s = jnp.array([[1.0, 0.0, -1.0]])
    >>> t = jnp.array([[2.0, 0.0, -2.0]])
    >>> print(jnp.round(pld_loss(s, t, jnp.array([0])), 4))
    [0.3901]

  References:
    `PLD: A Choice-Theoretic List-Wise Knowledge Distillation` (Plackett–Luce
    distillation); paper catalog entries seed_000 #48 / seed_003 #19 (authors
    and arXiv id not recorded there).

    Catalog: seed_000 #48, seed_001 #46, seed_003 #19.
  """
  checks.check_scalar(temperature, "temperature", positive=True)
  s, t = _check_logits(student_logits, teacher_logits)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"`labels` must be integers, got dtype {labels.dtype}.")
  if labels.shape != s.shape[:-1]:
    raise ValueError(
        f"`labels` must have shape {s.shape[:-1]}, got {labels.shape}.")
  dtype = checks.compute_dtype(s, t)
  s = s.astype(dtype)
  t = t.astype(dtype)
  c = s.shape[-1]
  is_label = jnp.arange(c) == labels[..., None]
  key = jnp.where(is_label, jnp.inf, jax.lax.stop_gradient(t))
  order = jnp.argsort(-key, axis=-1, stable=True)
  s_k = jnp.take_along_axis(s, order, axis=-1)
  w_k = jnp.take_along_axis(jax.nn.softmax(t / temperature, axis=-1), order,
                            axis=-1)
  suffix = jax.lax.cumlogsumexp(s_k, axis=s_k.ndim - 1, reverse=True)
  return jnp.sum(w_k * (suffix - s_k), axis=-1)


def fdistill_loss(
    x: ArrayLike,
    score_teacher: ArrayLike,
    score_fake: ArrayLike,
    critic_logit: ArrayLike,
    *,
    divergence: str = "js",
    alpha: float | None = None,
    where: ArrayLike | None = None,
    normalize: bool = True,
) -> jax.Array:
  r"""f-distill: pathwise surrogate of :math:`D_f(p_\mathrm{teacher}\|q_\theta)`.

  One-step diffusion distillation by f-divergence distribution matching. For
  the generator's reparameterised (noised) samples :math:`x_i`, the teacher
  score :math:`s_p = \nabla_x\log p_t`, the fake (student) score
  :math:`s_q = \nabla_x\log q_{\theta,t}` and a GAN critic whose logit
  :math:`d_i` estimates :math:`\log r_i = \log p_t(x_i) - \log
  q_{\theta,t}(x_i)` (the optimum of the logistic loss
  :func:`jaxkit.divergences.density_ratio_logistic_loss`), this returns the
  surrogate

  .. math::
    L(\theta) = -\frac1N\sum_i\sum_d \operatorname{sg}\!\big[\tilde h(r_i)
      (s_p - s_q)(x_i)\big]_d\,x_{i,d}, \qquad h(r) = r^2 f''(r),\
      r_i = e^{d_i},

  whose gradient is the f-distill estimate of
  :math:`\nabla_\theta D_f(p_t\|q_{\theta,t})`. It is a thin wrapper over
  :func:`jaxkit.divergences.pathwise_surrogate` with ``log_r = critic_logit``
  (see there for the derivation); :math:`h = 1` for ``'reverse_kl'``
  (VSD / DMD), :math:`r` for ``'kl'``, :math:`r/(2(1+r))` for ``'js'`` (the
  paper's best).

  With ``normalize=True`` (default) the weights are divided by their mean
  over the valid samples, :math:`\tilde h = h / \overline{h}`. Deviation: the
  paper describes a *two-stage* normalisation of the weights whose exact
  form our catalog does not record (seed_003 #4: "see reference"); we use
  this single batch-mean normalisation, which rescales the exact gradient by
  a positive batch-dependent factor. ``normalize=False`` gives the
  unbiased estimate (given exact scores and log-ratios). The value of
  :math:`L` is not the divergence — differentiate it.

  Args:
    x: ``[..., N, D]`` generator samples, differentiable w.r.t. the
      generator's parameters (flatten images to ``D``).
    score_teacher: ``[..., N, D]`` teacher scores :math:`s_p(x_i)` (no
      gradient flows through them).
    score_fake: ``[..., N, D]`` fake-score network outputs :math:`s_q(x_i)`.
    critic_logit: ``[..., N]`` GAN critic logits :math:`d_i \approx \log
      p_t(x_i)/q_{\theta,t}(x_i)` (no gradient flows through them).
    divergence: generator name of :func:`jaxkit.divergences.get_generator`
      (``'js'``, ``'kl'``, ``'reverse_kl'``, ``'pearson_chi2'``,
      ``'squared_hellinger'``, ``'amari_alpha'``, ...); ``'tv'`` has
      :math:`h = 0` and gives zero gradients.
    alpha: the α of ``'amari_alpha'``.
    where: optional ``[..., N]`` mask of valid samples.
    normalize: divide the weights by their batch mean (see above).

  Returns:
    ``[...]`` surrogate losses (a scalar for ``[N, D]`` inputs).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.losses import fdistill_loss
    >>> # teacher N(0, 1), student N(theta, 1): reverse KL = theta^2 / 2.
    >>> z = jax.random.normal(jax.random.key(0), (100_000, 1))
    >>> def loss(theta):
    ...   x = theta + z
    ...   logit = (-0.5 * x ** 2 + 0.5 * (x - theta) ** 2)[:, 0]  # ideal critic
    ...   return fdistill_loss(x, -x, -(x - theta), logit,
    ...                        divergence='reverse_kl', normalize=False)
    >>> print(f"{float(jax.grad(loss)(0.5)):.2f}")
    0.50

  References:
    Xu, Nie, Vahdat, `One-step Diffusion Models with f-Divergence Distribution
    Matching <https://arxiv.org/abs/2502.15681>`_, 2025.

    Catalog: seed_001 #42, seed_003 #4.
  """
  params = {} if alpha is None else {"alpha": alpha}
  try:
    gen = dv.get_generator(divergence, **params)
  except ValueError as e:
    raise ValueError(f"`divergence`: {e}") from None
  try:
    return dv.pathwise_surrogate(x, score_teacher, score_fake, critic_logit,
                                 gen, where=where, normalize=normalize)
  except ValueError as e:
    msg = (str(e).replace("`score_p`", "`score_teacher`")
           .replace("`score_q`", "`score_fake`")
           .replace("`log_r`", "`critic_logit`"))
    raise ValueError(msg) from None


def _check_labels(labels, shape, num_classes, name="labels"):
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"`{name}` must be integers, got dtype {labels.dtype}.")
  if labels.shape != tuple(shape):
    raise ValueError(
        f"`{name}` must have shape {tuple(shape)}, got {labels.shape}.")
  return labels


def _check_label_range(labels, num_classes, mask, name="labels"):
  if checks.is_concrete(labels) and (mask is None or checks.is_concrete(mask)):
    # numpy, not jnp: inside jit, jnp ops on concrete values are still traced.
    lab = np.asarray(labels)
    ok = (lab >= 0) & (lab < num_classes)
    if mask is not None:
      ok = ok | ~np.asarray(mask)
    if not np.all(ok):
      raise ValueError(
          f"`{name}` must lie in [0, {num_classes}) at valid positions.")


def _safe_norm(x):
  """Euclidean norm over the last axis with a finite gradient at 0."""
  sq = jnp.sum(jnp.square(x), axis=-1)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _ce(logits, labels):
  """Per-row cross-entropy -log softmax(logits)[label] (labels in range)."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]


def teacher_class_means(
    teacher_emb: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    *,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Per-class mean teacher embeddings :math:`c_k` for :func:`nd_loss`.

  .. math::
    c_k = \frac{\sum_i [y_i = k]\, t_i}{\max(1, \sum_i [y_i = k])}.

  Classes without a (valid) sample get a zero mean.

  Args:
    teacher_emb: ``[N, D]`` teacher penultimate embeddings (the training set
      or a large sample of it).
    labels: ``[N]`` integer labels in ``[0, num_classes)``.
    num_classes: number of classes :math:`C`.
    where: optional ``[N]`` mask of valid rows.

  Returns:
    ``[C, D]`` class means.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import teacher_class_means
    >>> t = jnp.array([[1.0, 0.0], [3.0, 2.0], [0.0, 1.0]])
    >>> print(teacher_class_means(t, jnp.array([0, 0, 1]), 2))
    [[2. 1.]
     [0. 1.]]

  References:
    Wang, Cheng, Duan, Wang, Feng, Kong, `Improving Knowledge Distillation via
    Regularizing Feature Norm and Direction
    <https://arxiv.org/abs/2305.17007>`_, 2023.

    Catalog: seed_000 #14.
  """
  t = checks.check_floating(teacher_emb, "teacher_emb")
  checks.check_rank(t, 2, "teacher_emb")
  if (isinstance(num_classes, bool) or not isinstance(num_classes, int)
      or num_classes < 1):
    raise ValueError(f"`num_classes` must be an int >= 1, got {num_classes!r}.")
  labels = _check_labels(labels, t.shape[:1], num_classes)
  mask = checks.check_where(where, t.shape[:1], "where")
  _check_label_range(labels, num_classes, mask)
  dtype = checks.compute_dtype(t)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=dtype)
  if mask is not None:
    onehot = jnp.where(mask[:, None], onehot, 0.0)
    t = jnp.where(mask[:, None], t, 0.0)
  sums = onehot.T @ t.astype(dtype)
  counts = jnp.sum(onehot, axis=0)
  return sums / jnp.maximum(counts, 1.0)[:, None]


def nd_loss(
    student_emb: ArrayLike,
    teacher_emb: ArrayLike,
    class_means: ArrayLike,
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""ND loss: push the student's feature norm and direction (KD++).

  With :math:`\hat c_y = c_y/\|c_y\|` the unit teacher class-mean direction
  of the example's label (see :func:`teacher_class_means`),

  .. math::
    \ell_i = 1 - \frac{\langle s_i, \hat c_{y_i}\rangle}
      {\max(\|s_i\|, \|t_i\|)},

  so a student embedding that is aligned with the class direction *and* at
  least as long as the teacher's reaches the minimum 0. Used on top of a
  logit KD loss (``kd_loss(...) + λ * nd_loss(...)``; the paper calls the
  combination KD++). Not a divergence (an embedding-geometry loss).

  Returns per-example values; the paper's scalar is their mean
  (:func:`jaxkit.masked_mean`). Gradients reach ``student_emb`` and, through
  the max, ``teacher_emb`` (stop the teacher's gradient yourself for a frozen
  teacher); ``class_means`` are constants in the paper but not
  stop-gradiented here. Zero vectors are handled without NaN: a zero class
  mean gives direction 0 and a zero denominator gives :math:`\ell = 1`.

  Args:
    student_emb: ``[..., D]`` student penultimate embeddings (project them
      to the teacher's dimension first if they differ).
    teacher_emb: ``[..., D]`` teacher embeddings, same shape.
    class_means: ``[C, D]`` teacher class means.
    labels: ``[...]`` integer labels in ``[0, C)``.
    where: optional ``[...]`` mask of valid examples (0 loss elsewhere, even
      for junk embeddings / labels).

  Returns:
    ``[...]`` per-example losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import nd_loss
    >>> means = jnp.array([[2.0, 0.0], [0.0, 3.0]])
    >>> s = jnp.array([[1.0, 1.0], [0.0, 2.0]])
    >>> t = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    >>> print(jnp.round(nd_loss(s, t, means, jnp.array([0, 1])), 4))
    [0.5 0. ]

  References:
    Wang, Cheng, Duan, Wang, Feng, Kong, `Improving Knowledge Distillation via
    Regularizing Feature Norm and Direction
    <https://arxiv.org/abs/2305.17007>`_, 2023
    (code: github.com/WangYZ1608/Knowledge-Distillation-via-ND).

    Catalog: seed_000 #14.
  """
  s = checks.check_floating(student_emb, "student_emb")
  t = checks.check_floating(teacher_emb, "teacher_emb")
  c = checks.check_floating(class_means, "class_means")
  if s.ndim < 1:
    raise ValueError(
        f"`student_emb` must have rank >= 1 ([..., D]), got shape {s.shape}.")
  checks.check_same_shape(s, t, "student_emb", "teacher_emb")
  if c.ndim != 2 or c.shape[1] != s.shape[-1]:
    raise ValueError(
        f"`class_means` must have shape [C, {s.shape[-1]}], got {c.shape}.")
  labels = _check_labels(labels, s.shape[:-1], c.shape[0])
  mask = checks.check_where(where, s.shape[:-1], "where")
  _check_label_range(labels, c.shape[0], mask)
  dtype = checks.compute_dtype(s, t, c)
  s, t, c = s.astype(dtype), t.astype(dtype), c.astype(dtype)
  labels = jnp.clip(labels, 0, c.shape[0] - 1)
  if mask is not None:
    s = jnp.where(mask[..., None], s, 0.0)
    t = jnp.where(mask[..., None], t, 0.0)
  c_norm = _safe_norm(c)
  c_hat = c / jnp.where(c_norm > 0, c_norm, 1.0)[:, None]
  dots = jnp.sum(s * c_hat[labels], axis=-1)
  denom = jnp.maximum(_safe_norm(s), _safe_norm(t))
  loss = 1.0 - dots / jnp.where(denom > 0, denom, 1.0)
  return loss if mask is None else jnp.where(mask, loss, 0.0)


def margin_mse_loss(
    student_pos: ArrayLike,
    student_neg: ArrayLike,
    teacher_pos: ArrayLike,
    teacher_neg: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Margin-MSE: match the student's and the teacher's score margins.

  .. math::
    \ell_i = \big((s^+_i - s^-_i) - (t^+_i - t^-_i)\big)^2,

  for the relevance scores of a (query, positive, negative) triple. Only
  margins are matched, so the loss is invariant to a per-model score offset
  (cross-architecture ranking distillation). Returns per-triple values; the
  paper's (and sentence-transformers' ``MarginMSELoss``) scalar is their mean
  (:func:`jaxkit.masked_mean`).

  Args:
    student_pos: ``[...]`` student scores of the positive documents.
    student_neg: ``[...]`` student scores of the negatives.
    teacher_pos: ``[...]`` teacher scores of the positives.
    teacher_neg: ``[...]`` teacher scores of the negatives.
    where: optional ``[...]`` mask of valid triples.

  Returns:
    ``[...]`` per-triple losses (0 at masked positions).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import margin_mse_loss
    >>> sp, sn = jnp.array([2.0, 1.0]), jnp.array([0.0, 1.5])
    >>> tp, tn = jnp.array([13.0, 10.0]), jnp.array([10.0, 10.0])
    >>> print(margin_mse_loss(sp, sn, tp, tn))
    [1.   0.25]

  References:
    Hofstätter, Althammer, Schröder, Sertkan, Hanbury, `Improving Efficient
    Neural Ranking Models with Cross-Architecture Knowledge Distillation
    <https://arxiv.org/abs/2010.02666>`_, 2020.

    Catalog: seed_000 #3.
  """
  names = ("student_pos", "student_neg", "teacher_pos", "teacher_neg")
  arrs = [checks.check_floating(a, n) for a, n in
          zip((student_pos, student_neg, teacher_pos, teacher_neg), names)]
  for a, n in zip(arrs[1:], names[1:]):
    checks.check_same_shape(arrs[0], a, names[0], n)
  mask = checks.check_where(where, arrs[0].shape, "where")
  dtype = checks.compute_dtype(*arrs)
  sp, sn, tp, tn = (a.astype(dtype) for a in arrs)
  diff = (sp - sn) - (tp - tn)
  if mask is not None:
    diff = jnp.where(mask, diff, 0.0)
  return jnp.square(diff)


def dhkd_loss(
    student_logits: ArrayLike,
    aux_logits: ArrayLike,
    teacher_logits: ArrayLike,
    labels: ArrayLike,
    *,
    temperature: float = 1.0,
    ce_weight: float = 1.0,
    kd_weight: float = 1.0,
    logit_weight: float = 1.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""Dual-head KD: probability-level KD on one head, logit-level on another.

  Two classifier heads share the student backbone. The main head (used at
  test time) gets cross-entropy plus the probability-level KD term
  (:func:`kd_loss`, KL); the auxiliary head gets a logit-level loss against
  the teacher's logits, so the two kinds of supervision no longer conflict
  inside one head:

  .. math::
    \ell = w_\mathrm{ce}\,\mathrm{CE}(z_A, y)
      + w_\mathrm{kd}\,\tau^2\,\mathrm{KL}\big(\mathrm{softmax}(z_T/\tau)\,\|\,
        \mathrm{softmax}(z_A/\tau)\big)
      + w_\mathrm{logit}\,\frac1C\sum_c (z_{B,c} - z_{T,c})^2.

  **Assumptions** (our catalog, seed_000 #9, does not pin these down): the
  logit-level loss is the MSE between the auxiliary logits and the teacher
  logits averaged over the ``C`` classes (the catalog's example; it recalls
  a sigmoid / "binary KL" form in the paper, which is not implemented), and
  the three weights default to 1.

  Args:
    student_logits: ``[..., C]`` logits :math:`z_A` of the main head.
    aux_logits: ``[..., C]`` logits :math:`z_B` of the auxiliary head.
    teacher_logits: ``[..., C]`` teacher logits :math:`z_T` (wrap in
      :func:`jax.lax.stop_gradient` for a frozen teacher).
    labels: ``[...]`` integer labels in ``[0, C)``.
    temperature: KD temperature :math:`\tau > 0`.
    ce_weight: :math:`w_\mathrm{ce}`.
    kd_weight: :math:`w_\mathrm{kd}`.
    logit_weight: :math:`w_\mathrm{logit}`.
    where: optional ``[...]`` mask of valid examples / tokens.

  Returns:
    ``[...]`` per-example losses (0 at masked positions).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import dhkd_loss
    >>> a = jnp.array([[1.0, 0.0, -1.0]])
    >>> b = jnp.array([[2.0, 0.0, -1.0]])
    >>> t = jnp.array([[2.0, 0.0, -2.0]])
    >>> print(jnp.round(dhkd_loss(a, b, t, jnp.array([0])), 4))
    [0.8566]

  References:
    Yang, Zhou, Zhang, Gong, Li, Zhan, `Dual-Head Knowledge Distillation:
    Enhancing Logits Utilization with an Auxiliary Head`, 2024 (paper catalog
    seed_000 #9; arXiv id not recorded there).

    Catalog: seed_000 #9.
  """
  for w, n in ((ce_weight, "ce_weight"), (kd_weight, "kd_weight"),
               (logit_weight, "logit_weight")):
    checks.check_scalar(w, n, nonnegative=True)
  s, t = _check_logits(student_logits, teacher_logits)
  b = checks.check_floating(aux_logits, "aux_logits")
  checks.check_same_shape(s, b, "student_logits", "aux_logits")
  labels = _check_labels(labels, s.shape[:-1], s.shape[-1])
  mask = checks.check_where(where, s.shape[:-1], "where")
  _check_label_range(labels, s.shape[-1], mask)
  dtype = checks.compute_dtype(s, t, b)
  kd = kd_loss(s, t, temperature=temperature, where=mask)
  labels = jnp.clip(labels, 0, s.shape[-1] - 1)
  sa = _tempered_log_softmax(s, mask, 1.0, dtype)
  ce = -jnp.take_along_axis(sa, labels[..., None], axis=-1)[..., 0]
  diff = b.astype(dtype) - t.astype(dtype)
  if mask is not None:
    diff = jnp.where(mask[..., None], diff, 0.0)
  mse = jnp.mean(jnp.square(diff), axis=-1)
  out = (jnp.asarray(ce_weight, dtype) * ce + jnp.asarray(kd_weight, dtype) * kd
         + jnp.asarray(logit_weight, dtype) * mse)
  return out if mask is None else jnp.where(mask, out, 0.0)


def dho_loss(
    sup_logits: ArrayLike,
    kd_logits: ArrayLike,
    labels: ArrayLike,
    label_mask: ArrayLike,
    teacher_probs: ArrayLike,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
) -> jax.Array:
  r"""DHO: dual-head semi-supervised KD (a CE head and a KD head).

  Two linear heads on a shared backbone: the supervised head is trained
  with cross-entropy on the labelled examples only, the KD head with the KL
  from the (e.g. vision-language) teacher's probabilities on *all* examples:

  .. math::
    \ell = \frac{\sum_i m_i\,\mathrm{CE}(z^{\sup}_i, y_i)}{\sum_i m_i}
      + \frac1N\sum_i \mathrm{KL}\big(p_{T,i}\,\|\,
        \mathrm{softmax}(z^{kd}_i/\tau)\big),

  with :math:`m` = ``label_mask`` and :math:`N` the number of valid examples
  (``where``). The KL is :func:`jaxkit.divergences.kl`. Predict with
  :func:`dho_predict`.

  **Assumptions** (catalog seed_000 #26): no :math:`\tau^2` factor and no
  weights between the two terms (as the catalog states the loss); the
  teacher's probabilities are given already softened as the teacher defines
  them. A batch with no labelled example has CE term 0 (finite gradients).

  Args:
    sup_logits: ``[B, C]`` logits of the supervised head.
    kd_logits: ``[B, C]`` logits of the KD head.
    labels: ``[B]`` integer labels (values at unlabelled rows are ignored).
    label_mask: ``[B]`` bool / 0-1 flags of the labelled rows.
    teacher_probs: ``[B, C]`` teacher probabilities (rows sum to 1; zeros
      allowed).
    temperature: temperature :math:`\tau > 0` of the KD head.
    where: optional ``[B]`` mask of valid (non-padding) rows.

  Returns:
    A scalar loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import dho_loss
    >>> zs = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> zk = jnp.array([[0.5, 0.0], [0.0, 0.0]])
    >>> pt = jnp.array([[0.8, 0.2], [0.5, 0.5]])
    >>> y, m = jnp.array([0, 0]), jnp.array([True, False])
    >>> print(f"{float(dho_loss(zs, zk, y, m, pt)):.4f}")
    0.3501

  References:
    Kang, Lee, Jang, Hwang, `Simple yet Effective Semi-supervised
    Knowledge Distillation from Vision-Language Models via Dual-Head
    Optimization`, 2025, arXiv:2505.07675.

    Catalog: seed_000 #26.
  """
  checks.check_scalar(temperature, "temperature", positive=True)
  zs, zk = _check_logits(sup_logits, kd_logits)
  checks.check_rank(zs, 2, "sup_logits")
  pt = checks.check_floating(teacher_probs, "teacher_probs")
  checks.check_same_shape(zs, pt, "sup_logits", "teacher_probs")
  n, c = zs.shape
  labels = _check_labels(labels, (n,), c)
  lm = jnp.asarray(label_mask)
  if lm.shape != (n,):
    raise ValueError(f"`label_mask` must have shape {(n,)}, got {lm.shape}.")
  lm = lm.astype(bool)
  mask = checks.check_where(where, (n,), "where")
  valid = jnp.ones((n,), bool) if mask is None else mask
  lab = lm & valid
  _check_label_range(labels, c, lab)
  if checks.is_concrete(pt) and np.any(np.asarray(pt) < 0):
    raise ValueError("`teacher_probs` must be nonnegative.")
  dtype = checks.compute_dtype(zs, zk, pt)
  log_pt = jnp.log(jnp.where(valid[:, None], pt.astype(dtype), 1.0 / c))
  checks.check_log_normalized(log_pt, "teacher_probs")
  labels = jnp.clip(labels, 0, c - 1)
  ls = _tempered_log_softmax(zs, lab, 1.0, dtype)
  ce = -jnp.take_along_axis(ls, labels[:, None], axis=-1)[:, 0]
  ce_term = jnp.sum(jnp.where(lab, ce, 0.0)) / jnp.maximum(
      jnp.sum(lab).astype(dtype), 1.0)
  lk = _tempered_log_softmax(zk, valid, temperature, dtype)
  kl = dv.kl(log_pt, lk, where=valid[:, None])
  kl_term = jnp.sum(jnp.where(valid, kl, 0.0)) / jnp.maximum(
      jnp.sum(valid).astype(dtype), 1.0)
  return ce_term + kl_term


def dho_predict(
    sup_logits: ArrayLike,
    kd_logits: ArrayLike,
    *,
    alpha: float = 0.5,
    temperature: float = 1.0,
) -> jax.Array:
  r"""DHO inference: mix the two heads' probabilities.

  .. math::
    p = \alpha\,\mathrm{softmax}(z^{\sup}) + (1-\alpha)\,
      \mathrm{softmax}(z^{kd}/\tau).

  How the paper picks :math:`\alpha` and :math:`\tau` is not recorded in our
  catalog (seed_000 #26: "see reference"); they are plain arguments here.

  Args:
    sup_logits: ``[..., C]`` supervised-head logits.
    kd_logits: ``[..., C]`` KD-head logits.
    alpha: mixing weight in ``[0, 1]``.
    temperature: temperature :math:`\tau > 0` of the KD head.

  Returns:
    ``[..., C]`` probabilities (float32 or wider).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import dho_predict
    >>> p = dho_predict(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]), alpha=0.5)
    >>> print(jnp.round(p, 4))
    [0.6155 0.3845]

  References:
    As :func:`dho_loss`.

    Catalog: seed_000 #26.
  """
  checks.check_scalar(alpha, "alpha", lower=0.0, upper=1.0)
  checks.check_scalar(temperature, "temperature", positive=True)
  zs, zk = _check_logits(sup_logits, kd_logits)
  dtype = checks.compute_dtype(zs, zk)
  a = jnp.asarray(alpha, dtype)
  return (a * jax.nn.softmax(zs.astype(dtype), axis=-1)
          + (1 - a) * jax.nn.softmax(zk.astype(dtype) / temperature, axis=-1))


def weight_align(kernel: ArrayLike, new_classes: ArrayLike) -> jax.Array:
  r"""Weight aligning (WA) of a classifier after a class-incremental phase.

  After training on new classes with KD on the old ones, the new classes'
  classifier weight vectors are longer than the old ones', which biases
  predictions towards new classes. WA rescales the new columns by

  .. math::
    \gamma = \frac{\operatorname{mean}_{j \in \text{old}} \|w_j\|_2}
                  {\operatorname{mean}_{j \in \text{new}} \|w_j\|_2},
    \qquad w_j \leftarrow \gamma\, w_j \quad (j \in \text{new}),

  and leaves the old columns and any bias unchanged (the paper also clips
  the FC weights to be non-negative during training; that is an optimiser
  constraint, e.g. ``optax.projections.projection_non_negative``, not part
  of this function).

  Args:
    kernel: ``[d, C]`` classifier kernel (Flax layout: one column per class).
    new_classes: ``[C]`` boolean mask of the classes of the latest phase; at
      least one old and one new class.

  Returns:
    ``[d, C]`` the aligned kernel.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses import weight_align
    >>> w = jnp.array([[1.0, 0.0, 4.0], [0.0, 1.0, 0.0]])
    >>> print(weight_align(w, jnp.array([False, False, True])))
    [[1. 0. 1.]
     [0. 1. 0.]]

  References:
    Zhao, Xiao, Gan, Zhang, Xia, `Maintaining Discrimination and Fairness in
    Class Incremental Learning <https://arxiv.org/abs/1911.07053>`_, CVPR
    2020.

    Catalog: seed_002 #64.
  """
  w = checks.check_floating(kernel, "kernel")
  checks.check_rank(w, 2, "kernel")
  new = jnp.asarray(new_classes)
  if new.dtype != jnp.bool_ or new.shape != (w.shape[1],):
    raise ValueError(
        f"`new_classes` must be a boolean mask of shape ({w.shape[1]},), got "
        f"dtype {new.dtype} and shape {new.shape}.")
  if checks.is_concrete(new):
    n_new = int(np.sum(np.asarray(new)))
    if n_new == 0 or n_new == w.shape[1]:
      raise ValueError(
          "`new_classes` must mark at least one new and one old class, got "
          f"{n_new} new of {w.shape[1]}.")
  dtype = checks.compute_dtype(w)
  norms = jnp.linalg.norm(w.astype(dtype), axis=0)
  newf = new.astype(dtype)
  mean_new = jnp.sum(norms * newf) / jnp.maximum(jnp.sum(newf), 1.0)
  mean_old = jnp.sum(norms * (1 - newf)) / jnp.maximum(jnp.sum(1 - newf), 1.0)
  gamma = mean_old / jnp.maximum(mean_new, jnp.finfo(dtype).tiny)
  return jnp.where(new, w * gamma.astype(w.dtype), w)
