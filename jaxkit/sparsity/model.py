r"""Model-level pruning of Flax NNX models with calibration data.

:func:`prune_model` finds every sub-module with a ``kernel`` parameter of
rank ≥ 2 (``nnx.Linear`` and anything shaped like it: ``[in, out]``, called
as ``module(x)`` with ``x`` ``[..., in]``; ``nnx.Einsum`` projections such as
the attention layers' ``'btd,dnh->btnh'``, seen as the ``[in, out]`` matrix
of their flattened contracted × output axes), captures the inputs each one
sees on the calibration batches, scores and masks its kernel with the rule
that matches its path, and writes the pruned kernel back in place. A matched
kernel with no ``[in, out]`` view (a convolution, a batched einsum) raises.

**How inputs are captured.** For the duration of the calibration forward
passes, ``__call__`` of the classes of the matched modules is temporarily
wrapped (and always restored) so that the first positional argument of a
call on a *matched instance* is recorded; other instances of the same class
are untouched. The forward passes run eagerly (not under ``jit``), so the
recorded inputs are concrete; they may be sharded arrays on a mesh.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import kernel_view
from jaxkit.sparsity import criteria
from jaxkit.sparsity import refinement as dsnot_lib
from jaxkit.sparsity import nm as nm_lib

_METHODS = ("magnitude", "wanda")

# One compiled program per layer shape instead of eager op-by-op dispatch.
_dsnot_jit = jax.jit(dsnot_lib.dsnot,
                     static_argnames=("max_cycles", "m", "exact_guard"))
_wanda_mask_jit = jax.jit(
    lambda w, sq, sparsity, per: criteria.unstructured_mask(
        criteria.magnitude_scores(w) * jnp.sqrt(sq)[:, None],
        sparsity=sparsity, per=per), static_argnames=("per",))


def kernel_paths(model: nnx.Module) -> dict[str, nnx.Module]:
  """Maps ``'<module path>/kernel'`` to every sub-module with a kernel of rank ≥ 2.

  Rank-2 kernels are ``[in, out]``; ``nnx.Einsum`` kernels are pruned through
  their ``[in, out]`` matrix view by :func:`prune_model`.

  Args:
    model: a Flax NNX module.

  Returns:
    ``{path: module}`` in graph order, e.g. ``{'layers/0/kernel': Linear}``.

  Examples:
    >>> from flax import nnx
    >>> from jaxkit.sparsity import kernel_paths
    >>> class Mlp(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.up = nnx.Linear(4, 8, rngs=rngs)
    ...     self.down = nnx.Linear(8, 2, rngs=rngs)
    >>> sorted(kernel_paths(Mlp(nnx.Rngs(0))))
    ['down/kernel', 'up/kernel']
  """
  out = {}
  for path, node in nnx.iter_graph(model):
    if not isinstance(node, nnx.Module):
      continue
    kernel = getattr(node, "kernel", None)
    if isinstance(kernel, nnx.Variable) and jnp.ndim(kernel.get_value()) >= 2:
      out["/".join(map(str, path + ("kernel",)))] = node
  return out


class _Recorder:
  """Accumulates layer inputs: sum of squares, sum, count, and a row sample."""

  def __init__(self, max_rows: int, view: kernel_view.MatrixView):
    self.max_rows = max_rows
    self.view = view
    self.sq = None
    self.sum = None
    self.count = 0
    self.rows = []
    self.n_rows = 0
    self.first_call = None

  def add(self, x):
    x = self.view.flatten_inputs(jnp.asarray(x)).astype(jnp.float32)
    sq = jnp.sum(jnp.square(x), 0)
    s = jnp.sum(x, 0)
    self.sq = sq if self.sq is None else self.sq + sq
    self.sum = s if self.sum is None else self.sum + s
    self.count += x.shape[0]
    if self.n_rows < self.max_rows:
      take = min(self.max_rows - self.n_rows, x.shape[0])
      self.rows.append(x[:take])
      self.n_rows += take


@contextlib.contextmanager
def _capture(modules: Mapping[str, nnx.Module], max_rows: int, views):
  recs = {id(mod): _Recorder(max_rows, views[path])
          for path, mod in modules.items()}
  calls = [0]
  classes = {type(mod) for mod in modules.values()}
  saved = {}
  for cls in classes:
    saved[cls] = cls.__dict__.get("__call__", None)
    orig = cls.__call__

    def wrapped(self, *args, __orig=orig, **kwargs):
      rec = recs.get(id(self))
      if rec is not None and args:
        if rec.first_call is None:
          rec.first_call = calls[0]
          calls[0] += 1
        rec.add(args[0])
      return __orig(self, *args, **kwargs)

    cls.__call__ = wrapped
  try:
    yield {path: recs[id(mod)] for path, mod in modules.items()}
  finally:
    for cls, old in saved.items():
      if old is None:
        del cls.__call__
      else:
        cls.__call__ = old


def _match(path: str, rules) -> dict | None:
  for pattern, spec in rules:
    if re.search(pattern, path):
      return spec
  return None


def _layer_mask(w, rec: _Recorder | None, spec: Mapping[str, Any]):
  method = spec.get("method", "wanda")
  if method not in _METHODS:
    raise ValueError(f"rule `method` must be one of {_METHODS}, got {method!r}.")
  if method == "wanda":
    if rec is None or rec.sq is None:
      raise ValueError("method 'wanda' needs calibration inputs, but the "
                       "layer was never called on the calibration batches.")
    if rec.sq.shape[0] != w.shape[0]:
      raise ValueError(
          f"captured activations have width {rec.sq.shape[0]}, the kernel "
          f"has {w.shape[0]} input features.")
  if "n" in spec or "m" in spec:
    n, m = spec.get("n", 2), spec.get("m", 4)
    scores = criteria.magnitude_scores(w)
    if method == "wanda":
      scores = scores * jnp.sqrt(rec.sq)[:, None]
    mask = nm_lib.nm_mask(scores, n=n, m=m, axis=0)
  else:
    n = m = None
    sparsity, per = spec["sparsity"], spec.get("per", "column")
    criteria.unstructured_mask(jnp.zeros((1, 1)), sparsity=sparsity, per=per)
    sq = rec.sq if method == "wanda" else jnp.ones((w.shape[0],), jnp.float32)
    mask = _wanda_mask_jit(w, sq, sparsity, per)
  if spec.get("dsnot", False):
    if rec is None or not rec.rows:
      raise ValueError("`dsnot` needs calibration inputs for this layer.")
    x = jnp.concatenate(rec.rows, 0)
    mask = _dsnot_jit(w, mask, x, m=m,
                           max_cycles=spec.get("max_cycles", 50),
                           update_threshold=spec.get("update_threshold", 0.1))
  return mask


def prune_model(model: nnx.Module,
                rules: Mapping[str, Mapping[str, Any]] | Sequence[
                    tuple[str, Mapping[str, Any]]],
                calibration_batches: Iterable[Any] = (), *,
                forward: Callable[[nnx.Module, Any], Any] | None = None,
                sequential: bool = False,
                max_rows: int = 4096) -> dict[str, jax.Array]:
  r"""Prunes the kernels of a Flax NNX model in place, rule by rule.

  ``rules`` maps a regular expression (``re.search`` on the kernel path, e.g.
  ``'layers/0/kernel'``; see :func:`kernel_paths`) to a spec; the first
  matching rule wins and unmatched kernels stay dense. A spec is a dict:

  * ``method``: ``'wanda'`` (default; :func:`jaxkit.sparsity.wanda_scores`
    from the captured inputs) or ``'magnitude'``;
  * either ``sparsity`` (unstructured, with ``per`` = ``'column'`` (default) /
    ``'row'`` / ``'global'``) or ``n`` and ``m`` (N:M along the input axis);
  * ``dsnot``: ``True`` to refine the mask with :func:`jaxkit.sparsity.dsnot`
    (``max_cycles``, ``update_threshold`` optional) on up to ``max_rows``
    captured input rows.

  Calibration: every batch of ``calibration_batches`` is passed through
  ``forward(model, batch)`` (default ``model(batch)``) eagerly while the
  inputs of the matched kernels are recorded (see the module docstring).
  With ``sequential=True`` layers are pruned one at a time in execution order
  (the order of their first call during calibration) and the calibration pass
  is re-run after each (later layers see the inputs of
  the already-pruned earlier ones, as in Wanda/SparseGPT's sequential
  pruning); ``calibration_batches`` must then be re-iterable (a list).

  Args:
    model: a Flax NNX module (modified in place).
    rules: ``{regex: spec}`` or a sequence of ``(regex, spec)``.
    calibration_batches: iterable of model inputs (unused when every
      matching rule is ``'magnitude'`` without ``dsnot``).
    forward: ``forward(model, batch)``; default ``model(batch)``.
    sequential: re-calibrate after each pruned layer.
    max_rows: rows of captured inputs kept per layer for DSnoT.

  Returns:
    ``{kernel path: bool mask}`` of the pruned kernels in each kernel's own
    shape (``True`` = kept; an ``nnx.Einsum`` kernel is scored, and N:M
    groups run, along its flattened contracted axes); plug
    them into :func:`jaxkit.sparsity.masked` for sparse fine-tuning.

  Raises:
    ValueError: a rule with an unknown method, bad sparsity / N:M, a Wanda
      rule for a layer never called during calibration, or a matched kernel
      without an ``[in, out]`` view (e.g. a convolution).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxkit.sparsity import prune_model
    >>> model = nnx.Sequential(nnx.Linear(8, 16, rngs=nnx.Rngs(0)), jax.nn.relu,
    ...                        nnx.Linear(16, 4, rngs=nnx.Rngs(1)))
    >>> batches = [jax.random.normal(jax.random.key(0), (32, 8))]
    >>> masks = prune_model(model, {r'layers/0/': dict(sparsity=0.5),
    ...                             r'layers/2/': dict(n=2, m=4)}, batches)
    >>> print({k: float(1 - v.mean()) for k, v in sorted(masks.items())})
    {'layers/0/kernel': 0.5, 'layers/2/kernel': 0.5}

  References:
    Sun et al., Wanda, ICLR 2024, arXiv:2306.11695; Zhang et al., DSnoT,
    ICLR 2024, arXiv:2310.08915.
  """
  if isinstance(rules, Mapping):
    rules = list(rules.items())
  rules = [(str(p), dict(s)) for p, s in rules]
  for pattern, spec in rules:
    if "sparsity" not in spec and "n" not in spec and "m" not in spec:
      raise ValueError(
          f"rule {pattern!r} needs `sparsity` or `n`/`m`, got {spec}.")
  forward = forward or (lambda mdl, batch: mdl(batch))
  targets = {p: mod for p, mod in kernel_paths(model).items()
             if _match(p, rules) is not None}
  views = {p: kernel_view.matrix_view(mod, p) for p, mod in targets.items()}
  needs_data = any(
      _match(p, rules).get("method", "wanda") == "wanda"
      or _match(p, rules).get("dsnot", False) for p in targets)
  if sequential and not isinstance(calibration_batches, (list, tuple)):
    raise ValueError("`sequential=True` needs `calibration_batches` as a list "
                     "or tuple (it is iterated once per layer).")

  def calibrate(mods):
    if not needs_data:
      return {p: None for p in mods}
    with _capture(mods, max_rows, views) as recs:
      for batch in calibration_batches:
        forward(model, batch)
    return recs

  masks = {}
  recs = calibrate(targets)
  order = list(targets)
  if sequential and needs_data:
    # Execution order (first call during calibration); never-called last.
    big = len(order)
    order.sort(key=lambda p: big if recs[p].first_call is None
               else recs[p].first_call)
  for i, p in enumerate(order):
    if sequential and i > 0 and needs_data:
      recs = calibrate({p: targets[p]})
    kernel = targets[p].kernel
    w = views[p].to_matrix(kernel.get_value())
    mask = views[p].from_matrix(_layer_mask(w, recs[p], _match(p, rules)))
    w = kernel.get_value()
    kernel.set_value(jnp.where(mask, w, jnp.zeros((), w.dtype)))
    masks[p] = mask
  return masks


def perplexity(logits_fn: Callable[[jax.Array], jax.Array],
               tokens: np.ndarray | jax.Array, *, window: int,
               stride: int | None = None) -> float:
  r"""Perplexity of a token array over (strided) windows, for any logits function.

  .. math::
    \mathrm{PPL} = \exp\Big(\frac{1}{|T|}\sum_{t\in T} -\log p(x_t\mid
    x_{<t})\Big),

  where every window ``tokens[s : s + window]`` is scored by
  ``logits_fn(window_tokens[None]) -> [1, window, V]`` and contributes the
  next-token losses of its positions not already scored by the previous
  window (the Hugging Face strided-perplexity recipe; ``stride = window``
  gives disjoint windows, each scoring ``window - 1`` tokens).

  Args:
    logits_fn: ``[1, L] int -> [1, L, V]`` logits.
    tokens: ``[T]`` token ids.
    window: window length (>= 2).
    stride: hop between windows (default ``window``).

  Returns:
    Python float perplexity.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import perplexity
    >>> uniform = lambda t: jnp.zeros((*t.shape, 5))
    >>> print(f"{perplexity(uniform, jnp.arange(20) % 5, window=8):.3f}")
    5.000
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 1:
    raise ValueError(f"`tokens` must be [T], got shape {tokens.shape}.")
  if window < 2:
    raise ValueError(f"`window` must be >= 2, got {window}.")
  stride = window if stride is None else stride
  if not 1 <= stride <= window:
    raise ValueError(f"`stride` must lie in [1, window], got {stride}.")
  nll, count, scored_until = 0.0, 0, 0
  for start in range(0, max(len(tokens) - 1, 1), stride):
    chunk = tokens[start:start + window]
    if len(chunk) < 2:
      break
    logits = jnp.asarray(logits_fn(jnp.asarray(chunk)[None]))[0, :-1]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    tok_lp = np.asarray(jnp.take_along_axis(
        logp, jnp.asarray(chunk[1:])[:, None], -1)[:, 0])
    first_new = max(scored_until - start, 1) - 1   # predicted positions
    nll -= float(tok_lp[first_new:].sum())
    count += len(tok_lp) - first_new
    scored_until = start + len(chunk)
    if start + window >= len(tokens):
      break
  return float(np.exp(nll / max(count, 1)))
