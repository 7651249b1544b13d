r"""Model-aware data selection with a data-influence model (MATES).

MATES selects pre-training data stage by stage with a small *data-influence
model* that imitates the current model's data preferences:

1. :func:`oracle_influence` — probe the current model: for each of a few
   candidates take one training step on it alone and measure how much the
   loss on a reference batch changes (negative = helpful);
2. :func:`fit_influence_model` — fit a cheap regressor from candidate features
   to those oracle scores (the paper fine-tunes a small BERT; a ridge
   regression on any fixed features is the minimal stand-in);
3. :func:`gumbel_topk_select` — predict the influence of the whole pool and
   draw the next stage's data without replacement with probabilities
   :math:`\propto \exp(-\hat I / \tau)` (Gumbel-top-k), which keeps the
   selection diverse.

Repeat every stage: the model's preferences change as it trains.

References:
  Yu, Das, Xiong, `MATES: Model-Aware Data Selection for Efficient Pretraining
  with Data Influence Models <https://arxiv.org/abs/2406.06046>`_, NeurIPS
  2024 (code: github.com/cxcscmu/MATES).

  Kool, van Hoof, Welling, `Stochastic Beams and Where to Find Them: The
  Gumbel-Top-k Trick for Sampling Sequences Without Replacement
  <https://arxiv.org/abs/1903.06059>`_, ICML 2019.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.reductions import masked_mean
# Explicit-mode sharded inputs are gathered before a global top-k.
from jaxkit.divergences.kernel import _replicate_sample_axes as _replicate


def _leading_size(tree, name: str) -> int:
  leaves = jax.tree.leaves(tree)
  if not leaves:
    raise ValueError(f"`{name}` is an empty pytree.")
  shapes = [jnp.shape(l) for l in leaves]
  if any(len(s) == 0 for s in shapes) or len({s[0] for s in shapes}) != 1:
    raise ValueError(f"every leaf of `{name}` must share the leading example "
                     f"axis [N, ...]; got shapes {shapes}.")
  return int(shapes[0][0])


def _check_num_select(value, n: int, name: str) -> int:
  """The static draw count ``k`` of a Gumbel top-k, checked in ``[1, n]``."""
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or not 1 <= value <= n):
    raise ValueError(f"`{name}` must be an int in [1, {n}] (the number of "
                     f"examples), got {value!r}.")
  return int(value)


def oracle_influence(
    per_example_loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    candidates: Any,
    reference: Any,
    *,
    lr: float | None = None,
    update_fn: Callable[[Any, Any], Any] | None = None,
    where: jax.Array | None = None,
    reference_where: jax.Array | None = None,
    batch_size: int | None = None,
) -> jax.Array:
  r"""MATES oracle: the reference-loss change after one step on each candidate.

  .. math::
    I(x_i) = L_{\mathrm{ref}}\big(\theta - \eta\,\nabla_\theta
      \ell(x_i; \theta)\big) - L_{\mathrm{ref}}(\theta),
    \qquad L_{\mathrm{ref}}(\theta) = \mathrm{mean}_j\,
      \ell(r_j; \theta),

  computed exactly (a real look-ahead step, not its first-order
  approximation :math:`-\eta\,\nabla L_{\mathrm{ref}}\cdot\nabla\ell_i`) for
  every candidate, with ``jax.vmap`` (or ``jax.lax.map`` in chunks of
  ``batch_size`` to bound memory: each probe holds a copy of the
  parameters). **Negative = helpful**: the step on :math:`x_i` lowers the
  reference loss. These scores are the regression targets of the data
  influence model (:func:`fit_influence_model`).

  The authors' probe restores the pre-training checkpoint *with its Adam
  state* and takes one optimizer step on a single example; pass that step as
  ``update_fn(params, grads) -> new_params`` (e.g. an optax update with the
  saved optimizer state closed over). The default is the plain SGD step with
  learning rate ``lr``. (The authors store only the reference loss after the
  step; subtracting the constant :math:`L_{\mathrm{ref}}(\theta)` changes no
  ranking and makes the sign meaningful.)

  Args:
    per_example_loss_fn: ``fn(params, batch) -> [B]`` per-example losses.
    params: the current model parameters (a pytree of float arrays).
    candidates: a pytree whose leaves have a leading axis ``N``: the examples
      to probe, one at a time (``fn`` sees a batch of size 1).
    reference: the reference batch (any pytree ``fn`` accepts), e.g. a
      held-out set standing in for the downstream tasks.
    lr: the SGD learning rate :math:`\eta > 0` (when ``update_fn`` is None).
    update_fn: optional ``(params, grads) -> new_params`` step that replaces
      the SGD step.
    where: optional ``[N]`` mask of valid candidates. Masked candidates
      score 0; their leaves are replaced by zeros before probing, so ``fn``
      must be finite on all-zero inputs.
    reference_where: optional mask of valid reference examples (the shape of
      ``fn(params, reference)``).
    batch_size: optional static chunk size for ``jax.lax.map``; ``None`` probes
      all candidates at once with ``jax.vmap``.

  Returns:
    ``[N]`` float32 (or wider) scores :math:`I(x_i)`, stop-gradient.

  Raises:
    ValueError: neither or both of ``lr`` / ``update_fn``, ``lr <= 0``,
      candidate leaves that disagree on ``N``, a loss that is not rank 1, a
      ``where`` of the wrong shape, a bad ``batch_size``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import selection
    >>> loss = lambda w, b: (b[0] * w - b[1]) ** 2       # 1-d regression
    >>> cands = (jnp.array([1., 1.]), jnp.array([2., -2.]))
    >>> ref = (jnp.array([1.]), jnp.array([1.]))
    >>> print(selection.oracle_influence(loss, jnp.array(0.0), cands, ref,
    ...                                  lr=0.25))
    [-1.  3.]

  References:
    Yu, Das, Xiong, `MATES: Model-Aware Data Selection for Efficient
    Pretraining with Data Influence Models`, NeurIPS 2024, arXiv:2406.06046.

    Catalog: seed_002 #41.
  """
  if (lr is None) == (update_fn is None):
    raise ValueError("pass exactly one of `lr` (SGD step) and `update_fn`, got "
                     f"lr={lr!r} and update_fn={update_fn!r}.")
  if lr is not None:
    checks.check_scalar(lr, "lr", positive=True)
  if batch_size is not None and (
      isinstance(batch_size, bool)
      or not isinstance(batch_size, numbers.Integral) or batch_size < 1):
    raise ValueError(f"`batch_size` must be None or an int >= 1, got "
                     f"{batch_size!r}.")
  n = _leading_size(candidates, "candidates")
  mask = checks.check_where(where, (n,), "where")
  # Every probe needs the whole reference batch: gather it (Explicit-mode
  # sharding), so that a candidate axis sharded over the same mesh axis does
  # not collide with it and the reference mean stays global.
  reference, reference_where = jax.tree.map(
      lambda l: _replicate(l, 0) if isinstance(l, jax.Array) else l,
      (reference, reference_where))

  def ref_loss(p):
    losses = per_example_loss_fn(p, reference)
    checks.check_rank(losses, 1, "per_example_loss_fn output")
    return masked_mean(losses, where=reference_where)

  def step(p, g):
    if update_fn is not None:
      return update_fn(p, g)
    return jax.tree.map(lambda a, b: a - lr * b, p, g)

  def probe(x):
    one = jax.tree.map(lambda leaf: leaf[None], x)
    g = jax.grad(lambda p: jnp.sum(per_example_loss_fn(p, one)))(params)
    return ref_loss(step(params, g))

  if mask is not None:
    candidates = jax.tree.map(
        lambda leaf: jnp.where(mask.reshape((n,) + (1,) * (leaf.ndim - 1)),
                               leaf, jnp.zeros_like(leaf)), candidates)
  base = ref_loss(params)
  if batch_size is None:
    after = jax.vmap(probe)(candidates)
  else:
    after = jax.lax.map(probe, candidates, batch_size=int(batch_size))
  scores = after - base
  if mask is not None:
    scores = jnp.where(mask, scores, 0.0)
  return jax.lax.stop_gradient(scores)


def fit_influence_model(features: jax.Array, targets: jax.Array, *,
                        l2: float = 1e-3, where: jax.Array | None = None
                        ) -> tuple[jax.Array, jax.Array]:
  r"""Fits a ridge-regression data-influence model: features → oracle scores.

  .. math::
    (w, b) = \arg\min_{w, b} \sum_{i\ \mathrm{valid}}
      \big(x_i^\top w + b - y_i\big)^2 + \lambda \|w\|_2^2,

  solved in closed form on centred data (the bias is not penalised):
  :math:`w = (X_c^\top X_c + \lambda I)^{-1} X_c^\top y_c`,
  :math:`b = \bar y - \bar x^\top w`. Predict with ``features @ w + b``.
  MATES fine-tunes a small BERT (with a regression head) on the oracle
  scores of :func:`oracle_influence`; any fixed features (e.g. frozen
  embeddings of the candidates) with this linear head are the cheap,
  deterministic stand-in used here. With no valid row, ``w = 0`` and
  ``b = 0``.

  Args:
    features: ``[N, D]`` floating features.
    targets: ``[N]`` floating oracle scores.
    l2: the ridge strength :math:`\lambda > 0` (may be traced).
    where: optional ``[N]`` mask of the rows to fit; masked rows (even
      ``nan``) are ignored.

  Returns:
    ``(w [D], b [])`` in float32 (or wider).

  Raises:
    ValueError: wrong ranks / mismatched ``N``, ``l2 <= 0``.
    TypeError: non-floating inputs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import selection
    >>> x = jnp.array([[0.], [1.], [2.], [3.]])
    >>> w, b = selection.fit_influence_model(x, 2 * x[:, 0] - 1, l2=1e-6)
    >>> print(jnp.round(w, 3), jnp.round(b, 3))
    [2.] -1.0

  References:
    Yu, Das, Xiong, `MATES`, NeurIPS 2024, arXiv:2406.06046.

    Catalog: seed_002 #41.
  """
  x = checks.check_floating(features, "features")
  y = checks.check_floating(targets, "targets")
  checks.check_rank(x, 2, "features")
  checks.check_rank(y, 1, "targets")
  if y.shape[0] != x.shape[0]:
    raise ValueError(f"`targets` must have shape [{x.shape[0]}] (one per row "
                     f"of `features` {x.shape}), got {y.shape}.")
  checks.check_scalar(l2, "l2", positive=True)
  n, d = x.shape
  mask = checks.check_where(where, (n,), "where")
  valid = jnp.ones((n,), bool) if mask is None else mask
  # The means and the Gram matrix are global over the (gathered) rows.
  return _ridge(_replicate(x, 0), _replicate(y, 0), _replicate(valid, 0), l2)


@jax.jit
def _ridge(x, y, valid, l2):
  n, d = x.shape
  dtype = checks.compute_dtype(x, y)
  x = jnp.where(valid[:, None], x.astype(dtype), 0.0)
  y = jnp.where(valid, y.astype(dtype), 0.0)
  m = valid.astype(dtype)
  cnt = jnp.maximum(jnp.sum(m), 1.0)
  x_mean = jnp.sum(x, axis=0) / cnt
  y_mean = jnp.sum(y) / cnt
  xc = (x - x_mean) * m[:, None]
  yc = (y - y_mean) * m
  gram = xc.T @ xc + jnp.asarray(l2, dtype) * jnp.eye(d, dtype=dtype)
  w = jnp.linalg.solve(gram, xc.T @ yc)
  return w, y_mean - x_mean @ w


def gumbel_topk_select(key: jax.Array, scores: jax.Array, num_select: int, *,
                       temperature: float = 1.0,
                       where: jax.Array | None = None) -> jax.Array:
  r"""Draws ``k`` distinct indices with probabilities ∝ exp(score / τ).

  The Gumbel-top-k trick: with i.i.d. :math:`g_i \sim \mathrm{Gumbel}(0, 1)`,

  .. math::
    \mathrm{top}\text{-}k_i\big(s_i / \tau + g_i\big)

  is an exact sample of ``k`` draws *without replacement* from the
  categorical distribution :math:`p_i \propto e^{s_i/\tau}` (in draw order:
  the first index is distributed as :math:`p`, the second as :math:`p`
  renormalised without the first, …). ``temperature → 0`` is the
  deterministic top-k (``temperature=0`` computes it exactly);
  ``temperature → ∞`` is uniform sampling. **Higher scores are preferred**:
  for MATES pass ``scores = -predicted_influence`` (a negative influence —
  a drop of the reference loss — is helpful).

  Deviation: the MATES scripts add Gumbel noise to ``influence / τ`` and keep
  the ``k`` *smallest* values (``np.argpartition(metrics, k)[:k]``); taking the
  smallest of :math:`s/\tau + g` is not a Plackett–Luce sample (the Gumbel
  noise is skewed), so we negate the scores instead of flipping the
  selection, which gives the exact without-replacement distribution
  :math:`\propto e^{-I/\tau}`.

  Masked examples are never drawn unless fewer than ``k`` are valid, in which
  case they fill the tail (check the result against ``where``). ``nan``
  scores count as masked.

  Args:
    key: a PRNG key.
    scores: ``[N]`` floating scores (higher = more likely).
    num_select: ``k`` (static int, ``1 <= k <= N``).
    temperature: :math:`\tau \ge 0` (may be traced when > 0).
    where: optional ``[N]`` mask of selectable examples.

  Returns:
    ``int32[k]`` distinct indices in draw order.

  Raises:
    ValueError: wrong rank, ``num_select`` outside ``[1, N]``, negative
      ``temperature``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit import selection
    >>> influence = jnp.array([0.3, -2.0, 0.1, -1.5])
    >>> print(selection.gumbel_topk_select(jax.random.key(0), -influence, 2,
    ...                                    temperature=0.0))
    [1 3]

  References:
    Kool, van Hoof, Welling, `Stochastic Beams and Where to Find Them`, ICML
    2019, arXiv:1903.06059; Yu, Das, Xiong, `MATES`, NeurIPS 2024,
    arXiv:2406.06046.

    Catalog: seed_002 #41.
  """
  s = checks.check_floating(scores, "scores")
  checks.check_rank(s, 1, "scores")
  n = s.shape[0]
  k = _check_num_select(num_select, n, "num_select")
  checks.check_scalar(temperature, "temperature", nonnegative=True)
  s = s.astype(checks.compute_dtype(s))
  ok = ~jnp.isnan(s)
  mask = checks.check_where(where, (n,), "where")
  if mask is not None:
    ok = ok & mask
  if checks.is_concrete(temperature) and float(temperature) == 0.0:
    z = s
  else:
    g = jax.random.gumbel(key, (n,), s.dtype)
    z = s / jnp.asarray(temperature, s.dtype) + g
  z = jnp.where(ok, z, -jnp.inf)
  return jax.lax.top_k(_replicate(z, 0), k)[1].astype(jnp.int32)
