r"""PST: parameter-efficient sparse training for fine-tuning (Li et al., 2022).

Movement-style unstructured pruning during fine-tuning normally learns a
dense ``[in, out]`` score matrix per layer. PST replaces it by a data-free
term plus a *small* data-driven one, exploiting that learned movement scores
are low-rank and structured:

.. math::
  W' = W + \beta\, U V, \qquad
  S = |W'| + \alpha_1\, A B + \alpha_2\,(r\,\mathbf 1^\top + \mathbf 1\, c^\top),
  \qquad \hat W = W' \odot \mathrm{TopK}(S),

with a frozen pretrained :math:`W`, a LoRA-style update :math:`UV`, a
low-rank importance :math:`AB` and row/column importance vectors
:math:`r \in \mathbb R^{in}`, :math:`c \in \mathbb R^{out}`. The mask takes
the gradient straight through (:func:`topk_mask_ste`), so the score factors
learn :math:`\partial L/\partial S = \partial L/\partial \hat W \odot W'`
(the movement-pruning signal). Only ``u, v, a, b, r, c`` are trained.

Checked against the authors' code (``alibaba/AliceMind``,
``S4/PST/pst/sparse.py`` and ``pst/utils.py``): ``SparseLinear.forward``
builds exactly the score above from the *updated* weight (the :math:`|W'|`
term is not detached, so :math:`U, V` also get gradient through the score),
``SparseBinarizer`` prunes the ``int(numel · sparsity)`` lowest scores of
each matrix and passes the gradient through unchanged, and sparsity follows
the cubic schedule of :func:`pst_sparsity_schedule`. Defaults (ranks 8,
:math:`\beta = \alpha_1 = \alpha_2 = 1`, final sparsity 0.9, warm-ups
0.1 / 0.3) are those of ``NLU/run_glue.py``.

Layout: Flax ``[in, out]`` kernels (the torch code stores ``[out, in]``; its
per-output-row vector is our ``c`` and its per-input vector our ``r``).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike
from jaxkit.sparsity import _common
from jaxkit.sparsity import criteria

class PstParams(NamedTuple):
  """Trainable PST parameters of one frozen ``[in, out]`` kernel.

  Attributes:
    u: ``[in, rank]`` weight-update factor (zero init).
    v: ``[rank, out]`` weight-update factor (normal init).
    a: ``[in, mask_rank]`` low-rank importance factor (zero init).
    b: ``[mask_rank, out]`` low-rank importance factor (normal init).
    r: ``[in]`` per-input-row importance (zero init).
    c: ``[out]`` per-output-column importance (zero init).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.sparsity import pst_init
    >>> p = pst_init(jnp.ones((6, 4)), rank=2, mask_rank=3,
    ...              key=jax.random.key(0))
    >>> print(p.u.shape, p.v.shape, p.a.shape, p.b.shape, p.r.shape, p.c.shape)
    (6, 2) (2, 4) (6, 3) (3, 4) (6,) (4,)
  """
  u: jax.Array
  v: jax.Array
  a: jax.Array
  b: jax.Array
  r: jax.Array
  c: jax.Array


def _check_kernel(w, name="w"):
  w = checks.check_floating(w, name)
  checks.check_rank(w, 2, name)
  return w


def _check_int(value, name, lo):
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"`{name}` must be a Python int, got {value!r}.")
  if value < lo:
    raise ValueError(f"`{name}` must be >= {lo}, got {value}.")
  return int(value)


def pst_init(w: ArrayLike, *, rank: int = 8, mask_rank: int = 8,
             key: jax.Array, init_std: float = 1.0) -> PstParams:
  r"""PST initialisation: the update and the learned importance start at 0.

  As in the authors' ``SparseLinear``: the output-side factors (``v`` and
  ``b``) are drawn from :math:`\mathcal N(0, \sigma^2)` (``torch.randn``,
  :math:`\sigma = 1`), the input-side factors ``u, a`` and the vectors
  ``r, c`` are zero, so :math:`UV = AB = 0` and the first mask is the
  magnitude mask of :math:`W`.

  Args:
    w: ``[in, out]`` pretrained kernel (only its shape is used).
    rank: rank of :math:`UV` (static int >= 1).
    mask_rank: rank of :math:`AB` (static int >= 1).
    key: PRNG key.
    init_std: :math:`\sigma > 0`.

  Returns:
    :class:`PstParams` in float32.

  Raises:
    TypeError / ValueError: ``w`` not a floating rank-2 array, bad ranks or
      ``init_std``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.sparsity import pst_init
    >>> p = pst_init(jnp.ones((4, 3)), rank=2, mask_rank=2,
    ...              key=jax.random.key(0))
    >>> print(float(jnp.abs(p.u @ p.v).max()), float(jnp.abs(p.a @ p.b).max()))
    0.0 0.0

  References:
    Li et al., "Parameter-Efficient Sparsity for Large Language Models
    Fine-Tuning" (PST), IJCAI 2022, arXiv:2205.11005.

    Catalog: seed_002 #10.
  """
  w = _check_kernel(w)
  rank = _check_int(rank, "rank", 1)
  mask_rank = _check_int(mask_rank, "mask_rank", 1)
  checks.check_scalar(init_std, "init_std", positive=True)
  d_in, d_out = w.shape
  kv, kb = jax.random.split(key)
  f32 = jnp.float32
  return PstParams(
      u=jnp.zeros((d_in, rank), f32),
      v=init_std * jax.random.normal(kv, (rank, d_out), f32),
      a=jnp.zeros((d_in, mask_rank), f32),
      b=init_std * jax.random.normal(kb, (mask_rank, d_out), f32),
      r=jnp.zeros((d_in,), f32),
      c=jnp.zeros((d_out,), f32))


def pst_importance(w: ArrayLike, a: ArrayLike, b: ArrayLike, r: ArrayLike,
                   c: ArrayLike, *, alpha1: float = 1.0,
                   alpha2: float = 1.0) -> jax.Array:
  r"""PST weight importance: data-free magnitude plus low-rank/structured terms.

  .. math::
    S_{ij} = |W_{ij}| + \alpha_1 (AB)_{ij} + \alpha_2 (r_i + c_j).

  :math:`|W|` is the data-free criterion; :math:`AB` (low-rank) and
  :math:`r, c` (structured: per input row / output column) approximate the
  data-driven movement score with :math:`(in + out)(k + 1)` instead of
  :math:`in \cdot out` parameters. Pass the *updated* weight
  :math:`W + \beta UV` as ``w`` (as the authors do); gradients flow to
  every argument.

  Args:
    w: ``[in, out]`` (updated) kernel.
    a: ``[in, k]`` low-rank factor.
    b: ``[k, out]`` low-rank factor.
    r: ``[in]`` row importance.
    c: ``[out]`` column importance.
    alpha1: :math:`\alpha_1` (may be traced).
    alpha2: :math:`\alpha_2` (may be traced).

  Returns:
    ``[in, out]`` scores in float32 (or wider).

  Raises:
    ValueError: shape mismatches; TypeError: non-floating inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import pst_importance
    >>> w = jnp.array([[1.0, -2.0], [0.5, 0.0]])
    >>> a, b = jnp.ones((2, 1)), jnp.array([[0.0, 1.0]])
    >>> s = pst_importance(w, a, b, jnp.array([0.0, 3.0]), jnp.array([1.0, 0.0]))
    >>> print(s)
    [[2.  3. ]
     [4.5 4. ]]

  References:
    Li et al., "Parameter-Efficient Sparsity for Large Language Models
    Fine-Tuning" (PST), IJCAI 2022, arXiv:2205.11005, Eq. for
    :math:`S = S^{free} + S^{driven}` (checked against ``SparseLinear``).

    Catalog: seed_002 #10.
  """
  w = _check_kernel(w)
  a = checks.check_floating(a, "a")
  b = checks.check_floating(b, "b")
  r = checks.check_floating(r, "r")
  c = checks.check_floating(c, "c")
  d_in, d_out = w.shape
  checks.check_rank(a, 2, "a")
  checks.check_rank(b, 2, "b")
  if a.shape[0] != d_in or b.shape[1] != d_out or a.shape[1] != b.shape[0]:
    raise ValueError(
        f"`a` @ `b` must have `w`'s shape {w.shape} ([in, k] @ [k, out]), got "
        f"a {a.shape} and b {b.shape}.")
  if r.shape != (d_in,):
    raise ValueError(f"`r` must have shape ({d_in},) (one per input row), "
                     f"got {r.shape}.")
  if c.shape != (d_out,):
    raise ValueError(f"`c` must have shape ({d_out},) (one per output "
                     f"column), got {c.shape}.")
  checks.check_scalar(alpha1, "alpha1")
  checks.check_scalar(alpha2, "alpha2")
  dt = checks.compute_dtype(w, a, b, r, c)
  low = a.astype(dt) @ b.astype(dt)
  struct = r.astype(dt)[:, None] + c.astype(dt)[None, :]
  return criteria.magnitude_scores(w.astype(dt)) + alpha1 * low + alpha2 * struct


def topk_mask_ste(scores: ArrayLike, *, sparsity: float) -> jax.Array:
  r"""Hard top-k mask of a score matrix with a straight-through gradient.

  Forward: ``1`` for the ``numel - floor(sparsity · numel)`` largest scores of
  the whole array, ``0`` elsewhere (ties keep the lower flat index).
  Backward: the identity, :math:`\partial M/\partial S = I`, as the
  authors' ``SparseBinarizer``. The value is exactly 0/1 (the STE is
  ``hard + (s - stop_gradient(s))``, whose forward adds an exact zero).

  Args:
    scores: real scores of any rank >= 1 (typically ``[in, out]``).
    sparsity: fraction pruned in ``[0, 1)``; may be traced (scheduled).

  Returns:
    Float mask with ``scores``' shape and (float32 or wider) dtype.

  Raises:
    ValueError: ``sparsity`` outside ``[0, 1)`` (when concrete), rank-0
      ``scores``; TypeError: non-floating ``scores``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.sparsity import topk_mask_ste
    >>> s = jnp.array([[0.3, 2.0], [1.0, -1.0]])
    >>> print(topk_mask_ste(s, sparsity=0.5))
    [[0. 1.]
     [1. 0.]]
    >>> print(jax.grad(lambda s: (topk_mask_ste(s, sparsity=0.5) * 3).sum())(s))
    [[3. 3.]
     [3. 3.]]

  References:
    Li et al., PST, IJCAI 2022, arXiv:2205.11005; Sanh, Wolf, Rush,
    "Movement Pruning", NeurIPS 2020, arXiv:2005.07683 (the STE).

    Catalog: seed_002 #10.
  """
  s = checks.check_floating(scores, "scores")
  if s.ndim < 1:
    raise ValueError("`scores` must have rank >= 1.")
  _common.check_sparsity(sparsity)
  s = s.astype(checks.compute_dtype(s))
  hard = _common.keep_top_fraction(jax.lax.stop_gradient(s), sparsity,
                                   None).astype(s.dtype)
  return hard + (s - jax.lax.stop_gradient(s))


def pst_weight(w: ArrayLike, params: PstParams, *, sparsity: float,
               beta: float = 1.0, alpha1: float = 1.0,
               alpha2: float = 1.0) -> jax.Array:
  r"""The sparse fine-tuned kernel :math:`\hat W = (W + \beta UV) \odot M`.

  .. math::
    W' = \mathrm{sg}(W) + \beta\,UV,\quad
    M = \mathrm{TopK}_{1-s}\big(|W'| + \alpha_1 AB
      + \alpha_2(r\mathbf 1^\top + \mathbf 1 c^\top)\big),\quad
    \hat W = W' \odot M,

  with the straight-through mask of :func:`topk_mask_ste`. The pretrained
  ``w`` is frozen (``stop_gradient``); differentiate with respect to
  ``params``. Use it as the layer's kernel inside the loss; at the end of
  training, ``pst_weight`` with the final sparsity is the exported sparse
  kernel (the authors' ``convert``).

  Args:
    w: ``[in, out]`` frozen pretrained kernel.
    params: :class:`PstParams` with matching shapes.
    sparsity: current fraction pruned in ``[0, 1)`` (may be traced; see
      :func:`pst_sparsity_schedule`).
    beta: scale :math:`\beta` of the weight update.
    alpha1: scale of the low-rank importance.
    alpha2: scale of the structured importance.

  Returns:
    ``[in, out]`` masked kernel (float32 or wider) with exactly
    ``floor(sparsity · in · out)`` zeroed entries (plus any exact zeros of
    :math:`W'`).

  Raises:
    ValueError / TypeError: shapes or ``sparsity`` as in
      :func:`pst_importance` / :func:`topk_mask_ste`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.sparsity import pst_init, pst_weight
    >>> w = jnp.array([[1.0, -3.0], [0.5, 2.0]])
    >>> p = pst_init(w, rank=1, mask_rank=1, key=jax.random.key(0))
    >>> print(pst_weight(w, p, sparsity=0.5))  # at init: magnitude pruning
    [[ 0. -3.]
     [ 0.  2.]]

  References:
    Li et al., "Parameter-Efficient Sparsity for Large Language Models
    Fine-Tuning" (PST), IJCAI 2022, arXiv:2205.11005.

    Catalog: seed_002 #10.
  """
  w = _check_kernel(w)
  if not isinstance(params, PstParams):
    raise TypeError(f"`params` must be a PstParams, got {type(params)}.")
  u = checks.check_floating(params.u, "params.u")
  v = checks.check_floating(params.v, "params.v")
  checks.check_rank(u, 2, "params.u")
  checks.check_rank(v, 2, "params.v")
  if u.shape[0] != w.shape[0] or v.shape[1] != w.shape[1] or (
      u.shape[1] != v.shape[0]):
    raise ValueError(
        f"`params.u` @ `params.v` must have `w`'s shape {w.shape}, got u "
        f"{u.shape} and v {v.shape}.")
  checks.check_scalar(beta, "beta")
  dt = checks.compute_dtype(w, u, v)
  w_new = jax.lax.stop_gradient(w.astype(dt)) + beta * (
      u.astype(dt) @ v.astype(dt))
  s = pst_importance(w_new, params.a, params.b, params.r, params.c,
                     alpha1=alpha1, alpha2=alpha2)
  return w_new * topk_mask_ste(s, sparsity=sparsity)


def pst_sparsity_schedule(step, total_steps: int, *,
                          final_sparsity: float = 0.9,
                          initial_sparsity: float = 0.0,
                          initial_warmup: float = 0.1,
                          final_warmup: float = 0.3) -> jax.Array:
  r"""PST's cubic sparsity schedule (Zhu & Gupta's, with warm-up fractions).

  With :math:`t_0 = w_i T` and :math:`t_1 = T - w_f T`:

  .. math::
    s_t = \begin{cases} s_i & t \le t_0 \\ s_f & t > t_1 \\
    s_f + (s_i - s_f)\big(1 - \frac{t - t_0}{t_1 - t_0}\big)^3
    & \text{otherwise.}\end{cases}

  Matches ``schedule_sparsity_ratio`` of the authors' ``pst/utils.py``.

  Args:
    step: current step (may be traced).
    total_steps: :math:`T` (Python int > 0).
    final_sparsity: :math:`s_f \in [0, 1)`.
    initial_sparsity: :math:`s_i \in [0, 1)`.
    initial_warmup: :math:`w_i`, fraction of steps at :math:`s_i`.
    final_warmup: :math:`w_f`, fraction of steps at :math:`s_f`;
      :math:`w_i + w_f < 1`.

  Returns:
    float32 scalar sparsity.

  Raises:
    ValueError: bad ``total_steps``, sparsities or warm-up fractions.

  Examples:
    >>> from jaxkit.sparsity import pst_sparsity_schedule
    >>> print([round(float(pst_sparsity_schedule(t, 10)), 4)
    ...        for t in (0, 1, 2, 4, 6, 7, 10)])
    [0.0, 0.0, 0.3792, 0.7875, 0.8958, 0.9, 0.9]

  References:
    Li et al., PST, IJCAI 2022, arXiv:2205.11005; Zhu, Gupta, "To prune,
    or not to prune", 2017, arXiv:1710.01878.

    Catalog: seed_002 #10.
  """
  total_steps = _check_int(total_steps, "total_steps", 1)
  _common.check_sparsity(final_sparsity, "final_sparsity")
  _common.check_sparsity(initial_sparsity, "initial_sparsity")
  checks.check_scalar(initial_warmup, "initial_warmup", nonnegative=True)
  checks.check_scalar(final_warmup, "final_warmup", nonnegative=True)
  if (checks.is_concrete(initial_warmup) and checks.is_concrete(final_warmup)
      and float(initial_warmup) + float(final_warmup) >= 1.0):
    raise ValueError(
        f"`initial_warmup + final_warmup` must be < 1, got {initial_warmup} + "
        f"{final_warmup}.")
  t = jnp.asarray(step, jnp.float32)
  t0 = initial_warmup * total_steps
  t1 = total_steps - final_warmup * total_steps
  frac = jnp.clip(1.0 - (t - t0) / (t1 - t0), 0.0, 1.0)
  mid = final_sparsity + (initial_sparsity - final_sparsity) * frac ** 3
  out = jnp.where(t <= t0, initial_sparsity,
                  jnp.where(t > t1, final_sparsity, mid))
  return out.astype(jnp.float32)

