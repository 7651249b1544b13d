r"""The sharded train step: per-example losses → weights → objective → optax.

:func:`make_train_step` turns a Flax NNX model, a per-example loss function,
an optax optimizer and (optionally) a :mod:`jaxkit.reweighting` rule into one
``jax.jit``-ted function with explicit input/output shardings and a donated
state. One step computes

.. math::
  \ell_{it} = \text{loss\_fn}(\theta; \text{batch})_{it}, \qquad
  \bar\ell_i = \frac{\sum_t m_{it}\ell_{it}}{\sum_t m_{it}}, \qquad
  w, s' = \text{rule.update}(\operatorname{sg}(\bar\ell), s)

.. math::
  L(\theta) = \frac{\sum_{i,t} w_i m_{it} \ell_{it}}{\sum_{i,t} w_i m_{it}},
  \qquad \theta', o' = \text{optax}(\nabla_\theta L, o, \theta)

where :math:`m` is the optional mask (padding), :math:`t` runs over any
non-batch axes (tokens), and the weights are stop-gradient-ed. Without a rule
:math:`w_i = 1` and :math:`L` is the global masked mean over tokens. All sums
run over the *global* batch: under ``jax.jit`` the arrays are global, so
token counts and weight normalisations are the same on 1 or N devices (and
on 1 or N processes). Because :math:`L` is normalised by
:math:`\sum w_i m_{it}`, only the relative size of the weights matters.

Metrics (replicated scalars): ``loss`` (:math:`L`), ``mean_loss`` (the
unweighted masked mean), ``weight_entropy`` (entropy in nats of the
normalised example weights :math:`p_i = w_i v_i/\sum_j w_j v_j` over valid
examples :math:`v`; :math:`\log N` for uniform weights), ``grad_norm``
(global L2 norm of the gradient) and ``num_examples``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxkit._src.reductions import masked_mean
from jaxkit.train import sharding as sharding_lib

P = jax.sharding.PartitionSpec


class TrainState(NamedTuple):
  """Everything a run needs to continue (a pytree; checkpointed by orbax).

  Attributes:
    step: int32 scalar, number of optimizer steps taken.
    params: the model's ``nnx.Param`` values as a pure nested dict.
    model_state: every other model variable (pure nested dict).
    opt_state: the optax state.
    rw_state: the reweighting rule's state (``()`` without a rule).
    rng: ``uint32[2]`` PRNG key data; the step folds in ``step``.

  Example:
    >>> import jax, numpy as np, optax, jaxkit
    >>> from flax import nnx
    >>> ts = jaxkit.train.make_train_step(
    ...     nnx.Linear(3, 1, rngs=nnx.Rngs(0)),
    ...     lambda m, b: (m(b['x'])[:, 0] - b['y']) ** 2, optax.sgd(0.1),
    ...     mesh=jaxkit.train.make_mesh(), rules=jaxkit.train.data_parallel_rules())
    >>> state = ts.init_state()
    >>> print(type(state).__name__, int(state.step), state.rw_state)
    TrainState 0 ()
    >>> print(jax.tree.map(np.shape, state.params))
    {'bias': (1,), 'kernel': (3, 1)}
  """
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rw_state: Any
  rng: jax.Array


def _accepts(fn: Callable, name: str) -> bool:
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return True
  return name in params or any(
      p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _num_positional(fn: Callable) -> int:
  try:
    params = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return 2
  if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
    return 3
  return sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                        inspect.Parameter.POSITIONAL_OR_KEYWORD)
             for p in params)


def _unpack_losses(out) -> tuple[jax.Array, jax.Array | None]:
  """``losses`` or ``(losses, where)`` → (losses [B, ...], mask or None)."""
  if isinstance(out, tuple):
    if len(out) != 2:
      raise ValueError(
          "`loss_fn` must return per-example losses [B, ...] or a pair "
          f"(losses, where); got a tuple of length {len(out)}.")
    losses, where = out
  else:
    losses, where = out, None
  losses = jnp.asarray(losses)
  if losses.ndim < 1:
    raise ValueError(
        "`loss_fn` must return per-example losses with a leading batch "
        f"dimension [B, ...], got shape {losses.shape} (reduce nothing: the "
        "train step does the global reduction).")
  if not jnp.issubdtype(losses.dtype, jnp.floating):
    raise TypeError(f"`loss_fn` returned losses of dtype {losses.dtype}.")
  if where is not None:
    where = jnp.asarray(where)
    if where.shape != losses.shape:
      raise ValueError(
          f"`loss_fn` returned `where` of shape {where.shape} for losses of "
          f"shape {losses.shape}; they must match.")
    where = where.astype(bool)
  return losses, where


def _reduce_per_example(losses, where):
  """Per-example masked means over non-batch axes; (values [B], valid [B])."""
  if losses.ndim == 1:
    valid = jnp.ones(losses.shape, bool) if where is None else where
    return losses, valid
  axes = tuple(range(1, losses.ndim))
  per_ex = masked_mean(losses, where=where, axis=axes)
  valid = (jnp.ones(losses.shape[:1], bool) if where is None
           else jnp.any(where, axis=axes))
  return per_ex, valid


def weight_entropy(weights: jax.Array, valid: jax.Array) -> jax.Array:
  r"""Entropy (nats) of normalised example weights over valid examples.

  .. math::
    H = -\sum_i p_i \log p_i, \quad p_i = \frac{w_i v_i}{\sum_j w_j v_j}.

  Args:
    weights: non-negative weights ``[B]``.
    valid: boolean ``[B]``.

  Returns:
    A scalar; ``log(sum(valid))`` for equal weights, 0 if nothing is valid.

  Examples:
    >>> import jax.numpy as jnp, jaxkit
    >>> print(jnp.round(jaxkit.train.weight_entropy(
    ...     jnp.ones(4), jnp.array([True, True, True, False])), 4))
    1.0986
  """
  w = jnp.where(valid, weights.astype(jnp.float32), 0.0)
  total = jnp.sum(w)
  p = w / jnp.where(total > 0, total, 1.0)
  return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


class _Model(NamedTuple):
  graphdef: Any
  param_state: Any   # nnx.State of Params (values may be abstract)
  rest_state: Any    # nnx.State of everything else


def _split_model(model: nnx.Module) -> _Model:
  if not isinstance(model, nnx.Module):
    raise TypeError(f"`model` must be a flax.nnx.Module, got {type(model).__name__}.")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return _Model(graphdef, params, rest)


def _abstract(tree, shardings):
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(
          x.shape if hasattr(x, "shape") else np.shape(x),
          jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype,
          sharding=s),
      tree, shardings)


def _host(x):
  """A host numpy copy of a (possibly abstract / sharded) leaf."""
  return np.asarray(jax.device_get(x))


def _place(host_tree, shardings):
  """Global arrays from host values identical on every process."""

  def put(x, s):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])

  return jax.tree.map(put, host_tree, shardings)


class TrainStep:
  """A jitted, sharded train step plus the state it runs on.

  Built by :func:`make_train_step`. Call it as ``state, metrics =
  train_step(state, batch)``; ``state`` is donated. ``batch`` is a pytree of
  arrays with a leading batch dimension; pass global ``jax.Array``\\ s from
  :meth:`shard_batch` (required with several processes) or host arrays (one
  process).

  Attributes:
    mesh: the mesh.
    rules: the sharding rules.
    jitted: the underlying ``jax.jit`` function ``(state, batch) -> (state,
      metrics)`` (available after the first call or :meth:`init_state`).

  Example:
    >>> import jax, numpy as np, optax, jaxkit
    >>> from flax import nnx
    >>> ts = jaxkit.train.make_train_step(
    ...     nnx.Linear(3, 1, rngs=nnx.Rngs(0)),
    ...     lambda m, b: (m(b['x'])[:, 0] - b['y']) ** 2, optax.sgd(0.1),
    ...     mesh=jaxkit.train.make_mesh(), rules=jaxkit.train.data_parallel_rules())
    >>> batch = {'x': np.ones((8, 3), np.float32), 'y': np.zeros(8, np.float32)}
    >>> state, metrics = ts(ts.init_state(), batch)
    >>> print(type(ts).__name__, ts.mesh.axis_names, int(state.step))
    TrainStep ('data',) 1
  """

  def __init__(self, model, loss_fn, optimizer, reweighting, mesh, rules,
               donate: bool, compiler_options: dict | None = None):
    sharding_lib.validate_rules(rules, mesh)
    if not callable(loss_fn):
      raise TypeError("`loss_fn` must be callable (model, batch[, rng]).")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
      raise TypeError("`optimizer` must be an optax GradientTransformation.")
    if reweighting is not None and not (
        hasattr(reweighting, "init") and hasattr(reweighting, "update")):
      raise TypeError(
          "`reweighting` must be None or a rule with `init` and `update` "
          "(a jaxkit.reweighting rule).")
    self.mesh = mesh
    self.rules = rules
    self.loss_fn = loss_fn
    self.optimizer = optimizer
    self.reweighting = reweighting
    self.donate = donate
    self.compiler_options = dict(compiler_options) if compiler_options else None
    self._model = _split_model(model)
    self._concrete_model = model
    self._loss_takes_rng = _num_positional(loss_fn) >= 3
    self.param_sharding = sharding_lib.param_shardings(
        self._model.param_state, mesh, rules)
    self.batch_sharding = sharding_lib.batch_sharding(mesh, rules)
    self._repl = sharding_lib.replicated(mesh)
    self._jitted = None
    self._state_sharding = None
    if reweighting is not None:
      kw = {}
      for name in ("where", "group_ids", "step"):
        kw[name] = _accepts(reweighting.update, name)
      self._rw_kwargs = kw

  # ---- State ----------------------------------------------------------------

  def _abstract_params(self):
    pure = nnx.to_pure_dict(self._model.param_state)
    return _abstract(pure, self.param_sharding)

  def _init_reweighting(self, reweighting_state):
    if self.reweighting is None:
      return ()
    if reweighting_state is not None:
      return reweighting_state
    try:
      return self.reweighting.init()
    except TypeError as e:
      raise TypeError(
          "`reweighting.init()` needs arguments; build its state yourself and "
          "pass `reweighting_state=` to init_state / abstract_state.") from e

  def _opt_sharding(self, abstract_params):
    abstract_opt = jax.eval_shape(self.optimizer.init, abstract_params)
    try:
      return optax.tree_map_params(
          self.optimizer, lambda _, s: s, abstract_opt, self.param_sharding,
          transform_non_params=lambda _: self._repl)
    except Exception:  # pylint: disable=broad-except
      # A state layout optax cannot map onto the parameters: replicate it.
      return jax.tree.map(lambda _: self._repl, abstract_opt)

  def abstract_state(self, reweighting_state=None) -> TrainState:
    """The state as ``jax.ShapeDtypeStruct``\\ s with shardings (for restore)."""
    params = self._abstract_params()
    opt_sh = self._opt_sharding(params)
    opt = jax.eval_shape(self.optimizer.init, params)
    rw = jax.eval_shape(lambda: self._init_reweighting(reweighting_state))
    rest = nnx.to_pure_dict(self._model.rest_state)
    repl = self._repl
    state = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32, sharding=repl),
        params=params,
        model_state=_abstract(rest, jax.tree.map(lambda _: repl, rest)),
        opt_state=_abstract(opt, opt_sh),
        rw_state=_abstract(rw, jax.tree.map(lambda _: repl, rw)),
        rng=jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=repl))
    self._state_sharding = jax.tree.map(lambda x: x.sharding, state)
    return state

  @property
  def state_sharding(self) -> TrainState:
    """The ``NamedSharding`` of every leaf of the state."""
    if self._state_sharding is None:
      self.abstract_state()
    return self._state_sharding

  def init_state(self, model: nnx.Module | None = None, *, seed: int = 0,
                 reweighting_state=None) -> TrainState:
    """Places a model's values on the mesh and initialises optimizer/rule.

    Args:
      model: a concrete model with the same structure as the one given to
        :func:`make_train_step` (default: that one). Its values must be the
        same on every process (same seed).
      seed: seed of the step's PRNG key.
      reweighting_state: the rule's initial state when ``rule.init()`` needs
        arguments.

    Returns:
      A :class:`TrainState` sharded as :attr:`state_sharding`.
    """
    model = self._concrete_model if model is None else model
    parts = _split_model(model)
    self.abstract_state(reweighting_state)   # fixes the state shardings
    params = _place(jax.tree.map(_host, nnx.to_pure_dict(parts.param_state)),
                    self.param_sharding)
    opt_state = jax.jit(self.optimizer.init,
                        out_shardings=self._state_sharding.opt_state)(params)
    rw = self._init_reweighting(reweighting_state)
    rest = nnx.to_pure_dict(parts.rest_state)
    host = lambda t: jax.tree.map(_host, t)
    sh = self._state_sharding
    return TrainState(
        step=_place(np.int32(0), sh.step),
        params=params,
        model_state=_place(host(rest), sh.model_state),
        opt_state=opt_state,
        rw_state=_place(host(rw), sh.rw_state),
        rng=_place(np.asarray(jax.random.key_data(jax.random.key(seed)),
                              np.uint32), sh.rng))

  def model(self, state: TrainState) -> nnx.Module:
    """The NNX model holding ``state``'s parameters (for inspection / eval)."""
    return nnx.merge(self._model.graphdef, state.params, state.model_state)

  # ---- Step ----------------------------------------------------------------

  def _objective(self, params, model_state, rw_state, batch, rng, step):
    model = nnx.merge(self._model.graphdef, params, model_state)
    if self._loss_takes_rng:
      out = self.loss_fn(model, batch, rng)
    else:
      out = self.loss_fn(model, batch)
    losses, where = _unpack_losses(out)
    losses = losses.astype(jnp.promote_types(losses.dtype, jnp.float32))
    per_ex, valid = _reduce_per_example(losses, where)
    if self.reweighting is None:
      weights = jnp.ones(per_ex.shape, per_ex.dtype)
      new_rw = rw_state
    else:
      kw = {}
      if self._rw_kwargs["where"] and where is not None:
        kw["where"] = valid
      if (self._rw_kwargs["group_ids"] and isinstance(batch, dict)
          and "group_ids" in batch):
        kw["group_ids"] = batch["group_ids"]
      if self._rw_kwargs["step"]:
        kw["step"] = step
      weights, new_rw = self.reweighting.update(
          jax.lax.stop_gradient(per_ex), rw_state, **kw)
      weights = jax.lax.stop_gradient(jnp.asarray(weights, per_ex.dtype))
      if weights.shape != per_ex.shape:
        raise ValueError(
            f"the reweighting rule returned weights of shape {weights.shape} "
            f"for per-example losses of shape {per_ex.shape}.")
    w_full = jnp.reshape(weights, weights.shape + (1,) * (losses.ndim - 1))
    w_full = jnp.broadcast_to(w_full, losses.shape)
    objective = masked_mean(losses, where=where, weights=w_full)
    new_model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
    aux = dict(
        mean_loss=masked_mean(losses, where=where),
        weight_entropy=weight_entropy(weights, valid),
        num_examples=jnp.sum(valid.astype(jnp.int32)))
    return objective, (aux, new_rw, new_model_state)

  def _step(self, state: TrainState, batch):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    grad_fn = jax.value_and_grad(self._objective, has_aux=True)
    (loss, (aux, new_rw, new_ms)), grads = grad_fn(
        state.params, state.model_state, state.rw_state, batch, rng,
        state.step)
    updates, opt_state = self.optimizer.update(grads, state.opt_state,
                                               state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads), **aux)
    new_state = TrainState(step=state.step + 1, params=params,
                           model_state=new_ms, opt_state=opt_state,
                           rw_state=new_rw, rng=state.rng)
    return new_state, metrics

  @property
  def jitted(self):
    if self._jitted is None:
      sh = self.state_sharding
      self._jitted = jax.jit(
          self._step,
          in_shardings=(sh, self.batch_sharding),
          out_shardings=(sh, self._repl),
          donate_argnums=(0,) if self.donate else (),
          compiler_options=self.compiler_options)
    return self._jitted

  def shard_batch(self, batch, *, process_local: bool | None = None):
    """Places a (process-local) host batch on the mesh; see
    :func:`jaxkit.train.shard_batch`."""
    return sharding_lib.shard_batch(batch, self.mesh, self.rules,
                                    process_local=process_local)

  def __call__(self, state: TrainState, batch) -> tuple[TrainState, dict]:
    sharding_lib.check_batch(batch, self.mesh, self.rules)
    with jax.set_mesh(self.mesh):
      return self.jitted(state, batch)


def make_train_step(model: nnx.Module, loss_fn: Callable, optimizer, *,
                    reweighting=None, mesh: jax.sharding.Mesh,
                    rules: sharding_lib.ShardingRules,
                    donate: bool = True,
                    compiler_options: dict | None = None) -> TrainStep:
  r"""Builds the jitted, sharded train step (see the module docstring).

  Args:
    model: a Flax NNX model (concrete, or abstract from ``nnx.eval_shape``
      when the state is restored from a checkpoint). Its parameters carry
      logical axis names (``nnx.with_partitioning``); build it under
      ``nnx.use_eager_sharding(False)``.
    loss_fn: ``loss_fn(model, batch)`` or ``loss_fn(model, batch, rng)``
      returning per-example losses ``[B]`` / per-token losses ``[B, T, ...]``,
      or a pair ``(losses, where)`` with a boolean mask of the same shape. It
      must not reduce over the batch.
    optimizer: an optax ``GradientTransformation`` (sparsity masks, QAT and
      schedules compose as optax transforms).
    reweighting: ``None`` or a rule with ``init()`` and ``weights, state =
      update(losses [B], state, *, where=None, group_ids=None, step=None)``
      (any of the keywords it accepts are passed; ``group_ids`` comes from
      ``batch['group_ids']``).
    mesh: the device mesh (:func:`jaxkit.train.make_mesh`).
    rules: the sharding rules (:func:`jaxkit.train.fsdp_rules` …).
    donate: donate the input state's buffers (default ``True``).
    compiler_options: passed to ``jax.jit`` (e.g.
      ``{'xla_backend_optimization_level': 0}`` to compile tiny models fast).

  Returns:
    A :class:`TrainStep`: ``state, metrics = train_step(state, batch)``, with
    ``init_state``, ``abstract_state``, ``shard_batch`` and ``model``.

  Raises:
    ValueError: a rule names a missing mesh axis or parameter, a logical name
      is uncovered, or (when called) the batch size does not divide the
      data-parallel size.
    TypeError: ``model``, ``optimizer`` or ``reweighting`` have the wrong type.

  Examples:
    >>> import jax, numpy as np, optax, jaxkit
    >>> from flax import nnx
    >>> model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    >>> def loss_fn(model, batch):
    ...   return (model(batch['x'])[:, 0] - batch['y']) ** 2
    >>> mesh = jaxkit.train.make_mesh((8,), ('data',))
    >>> step = jaxkit.train.make_train_step(
    ...     model, loss_fn, optax.sgd(0.1), mesh=mesh,
    ...     rules=jaxkit.train.data_parallel_rules())
    >>> state = step.init_state()
    >>> batch = {'x': np.ones((8, 3), np.float32), 'y': np.zeros(8, np.float32)}
    >>> state, metrics = step(state, batch)
    >>> print(int(state.step), sorted(metrics))
    1 ['grad_norm', 'loss', 'mean_loss', 'num_examples', 'weight_entropy']

  References:
    Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
    Parameter Models", SC 2020, arXiv:1910.02054 (the FSDP rules);
    Shoeybi et al., "Megatron-LM", arXiv:1909.08053 (the tensor rules).
  """
  return TrainStep(model, loss_fn, optimizer, reweighting, mesh, rules, donate,
                   compiler_options)


class EvalStep:
  """A jitted, sharded evaluation step; see :func:`make_eval_step`.

  Example:
    >>> import jax, numpy as np, optax, jaxkit
    >>> from flax import nnx
    >>> ts = jaxkit.train.make_train_step(
    ...     nnx.Linear(3, 1, rngs=nnx.Rngs(0)),
    ...     lambda m, b: (m(b['x'])[:, 0] - b['y']) ** 2, optax.sgd(0.1),
    ...     mesh=jaxkit.train.make_mesh(), rules=jaxkit.train.data_parallel_rules())
    >>> ev = jaxkit.train.make_eval_step(ts)
    >>> out = ev(ts.init_state(), {'x': np.zeros((8, 3), np.float32),
    ...                            'y': np.zeros(8, np.float32)})
    >>> print(type(ev).__name__, float(out['loss']), int(out['count']))
    EvalStep 0.0 8
  """

  def __init__(self, train_step: TrainStep, metrics_fn):
    self._ts = train_step
    self._metrics_fn = metrics_fn
    self._jitted = None

  def _eval(self, params, model_state, batch):
    ts = self._ts
    model = nnx.merge(ts._model.graphdef, params, model_state)  # pylint: disable=protected-access
    if ts._loss_takes_rng:  # pylint: disable=protected-access
      out = ts.loss_fn(model, batch, jax.random.key(0))
    else:
      out = ts.loss_fn(model, batch)
    losses, where = _unpack_losses(out)
    losses = losses.astype(jnp.promote_types(losses.dtype, jnp.float32))
    _, valid = _reduce_per_example(losses, where)
    result = dict(loss=masked_mean(losses, where=where))
    count = jnp.sum(valid.astype(jnp.int32))
    if self._metrics_fn is not None:
      for name, value in self._metrics_fn(model, batch).items():
        value, vwhere = _unpack_losses(value)
        result[name] = masked_mean(value.astype(jnp.float32), where=vwhere)
    result["count"] = count
    result["token_count"] = (jnp.sum(where.astype(jnp.int32)) if where is not None
                             else jnp.asarray(losses.size, jnp.int32))
    return result

  def __call__(self, state: TrainState, batch) -> dict:
    ts = self._ts
    sharding_lib.check_batch(batch, ts.mesh, ts.rules)
    if self._jitted is None:
      sh = ts.state_sharding
      self._jitted = jax.jit(
          self._eval, in_shardings=(sh.params, sh.model_state,
                                    ts.batch_sharding),
          out_shardings=ts._repl,  # pylint: disable=protected-access
          compiler_options=ts.compiler_options)
    with jax.set_mesh(ts.mesh):
      return self._jitted(state.params, state.model_state, batch)


def make_eval_step(train_step: TrainStep, *,
                   metrics_fn: Callable | None = None) -> EvalStep:
  """A jitted evaluation step on the train step's mesh and shardings.

  ``eval_step(state, batch)`` returns replicated scalars: ``loss`` (global
  unweighted masked mean of ``loss_fn``), one entry per ``metrics_fn``
  output (global masked means), ``count`` (valid examples) and
  ``token_count`` (valid loss entries). Means over several batches are
  ``sum(m * token_count) / sum(token_count)`` for ``loss`` and
  ``sum(m * count) / sum(count)`` for per-example metrics.

  Args:
    train_step: the :class:`TrainStep` whose model, loss, mesh and rules to
      use.
    metrics_fn: optional ``metrics_fn(model, batch) -> {name: values [B]
      or (values, where)}`` (e.g. per-example accuracy).

  Returns:
    An :class:`EvalStep`.

  Examples:
    >>> import numpy as np, optax, jaxkit
    >>> from flax import nnx
    >>> model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
    >>> loss_fn = lambda m, b: (m(b['x'])[:, 0] - b['y']) ** 2
    >>> mesh = jaxkit.train.make_mesh((8,), ('data',))
    >>> ts = jaxkit.train.make_train_step(
    ...     model, loss_fn, optax.sgd(0.1), mesh=mesh,
    ...     rules=jaxkit.train.data_parallel_rules())
    >>> ev = jaxkit.train.make_eval_step(ts)
    >>> out = ev(ts.init_state(), {'x': np.zeros((8, 3), np.float32),
    ...                            'y': np.zeros(8, np.float32)})
    >>> print(float(out['loss']), int(out['count']))
    0.0 8
  """
  if not isinstance(train_step, TrainStep):
    raise TypeError("`train_step` must be a TrainStep from make_train_step.")
  return EvalStep(train_step, metrics_fn)


# ----------------------------------------------------------------------------
# Ready-made loss functions for the common cases.
# ----------------------------------------------------------------------------


def classification_loss(model: nnx.Module, batch) -> jax.Array:
  """Per-example softmax cross-entropy of ``model(batch['x'])`` vs ``batch['y']``.

  Args:
    model: maps ``x [B, ...]`` to logits ``[B, C]``.
    batch: dict with ``'x'`` and integer labels ``'y' [B]``.

  Returns:
    Losses ``[B]`` (optax's ``softmax_cross_entropy_with_integer_labels``).

  Examples:
    >>> import jax.numpy as jnp, jaxkit
    >>> loss = jaxkit.train.classification_loss(
    ...     lambda x: x, {'x': jnp.zeros((2, 4)), 'y': jnp.array([0, 3])})
    >>> print(jnp.round(loss, 4))
    [1.3863 1.3863]
  """
  logits = model(batch["x"])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), batch["y"])


def next_token_loss(model: nnx.Module, batch) -> tuple[jax.Array, jax.Array]:
  """Per-token next-token cross-entropy of a causal LM.

  ``batch['tokens']`` is ``int32 [B, T+1]``; the model sees ``tokens[:, :-1]``
  and predicts ``tokens[:, 1:]``. An optional ``batch['mask'] [B, T+1]``
  (1 = real token) masks padded targets.

  Args:
    model: ``model(tokens [B, T]) -> logits [B, T, V]``.
    batch: dict with ``'tokens'`` (and optionally ``'mask'``).

  Returns:
    ``(losses [B, T], where [B, T])``.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxkit
    >>> uniform = lambda t: jnp.zeros(t.shape + (8,))
    >>> loss, where = jaxkit.train.next_token_loss(
    ...     uniform, {'tokens': jnp.zeros((2, 5), jnp.int32)})
    >>> print(loss.shape, jnp.round(loss[0, 0], 4))
    (2, 4) 2.0794
  """
  tokens = batch["tokens"]
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  logits = model(inputs)
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets)
  if "mask" in batch:
    where = batch["mask"][:, 1:].astype(bool)
  else:
    where = jnp.ones(targets.shape, bool)
  return losses, where
