"""``fit``: the training loop — progress bar, eval, metrics files, checkpoints, resume.

The same call runs as one process or as many (``jax.distributed``): every
process executes the loop on its own rows of each global batch (the pipeline
from :func:`jaxkit.train.make_pipeline` shards by process), checkpoints are
written and restored by every process, and only process 0 shows the progress
bar and writes metrics (JSON lines in ``workdir/metrics.jsonl`` and, when
``tensorboardX`` is installed, TensorBoard events in ``workdir/tb``).

Resume: when the checkpointer holds a checkpoint, ``fit`` restores the train
state and the data iterator's position from the newest one and continues
from its step; the result is bit-identical to a run that was never
interrupted (the step is deterministic and the PRNG key, optimizer and
reweighting states are part of the checkpoint).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import jax
import numpy as np

from jaxkit.train.checkpoint import Checkpointer
from jaxkit.train.step import EvalStep, TrainState, TrainStep


class FitResult(NamedTuple):
  """What :func:`fit` returns.

  Attributes:
    state: the final train state.
    history: one dict of floats per logged step (``step`` included).
    eval_history: one dict per evaluation (``step`` included).
    resumed_from: the checkpoint step the run resumed from, or ``None``.

  Example:
    >>> import jax, numpy as np, optax, jaxkit
    >>> from flax import nnx
    >>> ts = jaxkit.train.make_train_step(
    ...     nnx.Linear(3, 1, rngs=nnx.Rngs(0)),
    ...     lambda m, b: (m(b['x'])[:, 0] - b['y']) ** 2, optax.adam(0.1),
    ...     mesh=jaxkit.train.make_mesh(), rules=jaxkit.train.data_parallel_rules())
    >>> x = np.random.RandomState(0).randn(32, 3).astype(np.float32)
    >>> data = {'x': x, 'y': x.sum(axis=1)}
    >>> res = jaxkit.train.fit(
    ...     ts, ts.init_state(),
    ...     iter(jaxkit.train.make_pipeline(data, batch_size=8)), num_steps=4,
    ...     log_every=2, progress=False)
    >>> print(type(res).__name__, [h['step'] for h in res.history],
    ...       res.resumed_from)
    FitResult [2, 4] None
  """
  state: TrainState
  history: list[dict[str, float]]
  eval_history: list[dict[str, float]]
  resumed_from: int | None


class _Writer:
  """JSON lines (+ TensorBoard when available) on process 0 only."""

  def __init__(self, workdir: str | None, tensorboard: bool):
    self.active = workdir is not None and jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a",  # pylint: disable=consider-using-with
                       encoding="utf-8")
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(os.path.join(workdir, "tb"))
      except ImportError:
        self._tb = None

  def write(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
    if not self.active:
      return
    row = {"step": step, **{prefix + k: v for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        self._tb.add_scalar(prefix + k, v, step)

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def evaluate(eval_step: EvalStep, state: TrainState,
             batches: Iterable[Any]) -> dict[str, float]:
  """Runs ``eval_step`` over ``batches`` and averages exactly.

  ``loss`` is averaged with the token counts, other metrics with the example
  counts of each batch (so the result equals one pass over the whole set).

  Args:
    eval_step: from :func:`jaxkit.train.make_eval_step`.
    state: the train state.
    batches: host batches (the process's rows when several processes run).

  Returns:
    ``{'loss': ..., <metric>: ..., 'count': total examples}``.

  Examples:
    >>> import numpy as np, optax, jaxkit
    >>> from flax import nnx
    >>> ts = jaxkit.train.make_train_step(
    ...     nnx.Linear(2, 1, rngs=nnx.Rngs(0)),
    ...     lambda m, b: (m(b['x'])[:, 0] * 0 + b['y']) ** 2, optax.sgd(0.1),
    ...     mesh=jaxkit.train.make_mesh(),
    ...     rules=jaxkit.train.data_parallel_rules())
    >>> batches = [{'x': np.zeros((8, 2), np.float32), 'y': np.full(8, v, np.float32)}
    ...            for v in (1.0, 3.0)]
    >>> out = jaxkit.train.evaluate(jaxkit.train.make_eval_step(ts),
    ...                             ts.init_state(), batches)
    >>> print(out['loss'], out['count'])
    5.0 16
  """
  ts = eval_step._ts  # pylint: disable=protected-access
  sums: dict[str, float] = {}
  count = tokens = 0
  for batch in batches:
    out = jax.device_get(eval_step(state, ts.shard_batch(batch)))
    c, t = int(out.pop("count")), int(out.pop("token_count"))
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + float(v) * (t if k == "loss" else c)
    count += c
    tokens += t
  if count == 0:
    raise ValueError("`eval_batches` yielded no examples.")
  result = {k: v / (tokens if k == "loss" else count) for k, v in sums.items()}
  result["count"] = count
  return result


def fit(train_step: TrainStep, state: TrainState, data: Any, *,
        num_steps: int,
        eval_step: EvalStep | None = None,
        eval_batches: Callable[[], Iterable[Any]] | None = None,
        eval_every: int = 0,
        checkpointer: Checkpointer | None = None,
        checkpoint_every: int = 0,
        workdir: str | None = None,
        log_every: int = 1,
        progress: bool = True,
        tensorboard: bool = True,
        hooks: Sequence[Callable[[int, TrainState, dict], None]] = (),
        ) -> FitResult:
  """Trains ``state`` for ``num_steps`` steps (resuming from a checkpoint).

  Args:
    train_step: from :func:`jaxkit.train.make_train_step`.
    state: the initial state (``train_step.init_state()``); when a checkpoint
      exists it is only the restore target (its shardings are used).
    data: an iterator of host batches — best a grain iterator
      (``iter(make_pipeline(...))``) whose ``get_state`` / ``set_state`` make
      the data position part of the checkpoint — or an iterable.
    num_steps: the total number of optimizer steps (counting restored ones).
    eval_step: optional :class:`~jaxkit.train.EvalStep`.
    eval_batches: a callable returning a fresh iterable of eval batches.
    eval_every: evaluate every this many steps (and at the end); 0: only at
      the end when ``eval_step`` is given.
    checkpointer: optional :class:`~jaxkit.train.Checkpointer`; its newest
      checkpoint is resumed from.
    checkpoint_every: save every this many steps (and at the end); 0: only at
      the end when a checkpointer is given.
    workdir: where process 0 writes ``metrics.jsonl`` (and ``tb/``).
    log_every: fetch and record the train metrics every this many steps.
    progress: show a tqdm progress bar (process 0).
    tensorboard: also write TensorBoard events (needs ``tensorboardX``).
    hooks: callables ``hook(step, state, metrics)`` run after every step
      (``metrics`` is ``None`` on steps that are not logged).

  Returns:
    A :class:`FitResult`.

  Raises:
    ValueError: bad step counts, an eval step without batches, or a
      checkpoint incompatible with ``state``.

  Examples:
    >>> import numpy as np, optax, jaxkit
    >>> from flax import nnx
    >>> x = np.random.RandomState(0).randn(64, 3).astype(np.float32)
    >>> data = {'x': x, 'y': x @ np.array([1., -2., .5], np.float32)}
    >>> ts = jaxkit.train.make_train_step(
    ...     nnx.Linear(3, 1, rngs=nnx.Rngs(0)),
    ...     lambda m, b: (m(b['x'])[:, 0] - b['y']) ** 2, optax.adam(0.1),
    ...     mesh=jaxkit.train.make_mesh(),
    ...     rules=jaxkit.train.data_parallel_rules())
    >>> res = jaxkit.train.fit(
    ...     ts, ts.init_state(), iter(jaxkit.train.make_pipeline(data, batch_size=16)),
    ...     num_steps=100, log_every=50, progress=False)
    >>> print(int(res.state.step), res.history[-1]['loss'] < 1e-2)
    100 True
  """
  if num_steps < 0:
    raise ValueError(f"`num_steps` must be >= 0, got {num_steps}.")
  if log_every < 1:
    raise ValueError(f"`log_every` must be >= 1, got {log_every}.")
  if eval_step is not None and eval_batches is None:
    raise ValueError("`eval_batches` is required with `eval_step`.")
  it = data if hasattr(data, "__next__") else iter(data)
  resumed_from = None
  if checkpointer is not None and checkpointer.latest_step() is not None:
    resumed_from = checkpointer.latest_step()
    state, data_state, _ = checkpointer.restore(state)
    if data_state is not None:
      if not hasattr(it, "set_state"):
        raise ValueError(
            "the checkpoint holds a data-iterator state but `data` has no "
            "`set_state` (use a grain iterator from make_pipeline).")
      it.set_state(data_state)
  start = int(jax.device_get(state.step))
  writer = _Writer(workdir, tensorboard)
  main = jax.process_index() == 0
  bar = None
  if progress and main:
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=num_steps, initial=start, desc="fit", dynamic_ncols=True)
  history: list[dict[str, float]] = []
  eval_history: list[dict[str, float]] = []

  def run_eval(step):
    out = evaluate(eval_step, state, eval_batches())
    out = {k: float(v) for k, v in out.items()}
    eval_history.append({"step": step, **out})
    writer.write(step, out, prefix="eval/")
    return out

  try:
    for step in range(start, num_steps):
      batch = next(it)
      state, metrics = train_step(state, train_step.shard_batch(batch))
      done = step + 1
      logged = None
      if done % log_every == 0 or done == num_steps:
        logged = {k: float(v) for k, v in jax.device_get(metrics).items()}
        history.append({"step": done, **logged})
        writer.write(done, logged)
        if bar is not None:
          bar.set_postfix(loss=f"{logged['loss']:.4f}", refresh=False)
      if bar is not None:
        bar.update(1)
      if checkpointer is not None and (
          (checkpoint_every and done % checkpoint_every == 0)
          or done == num_steps):
        data_state = it.get_state() if hasattr(it, "get_state") else None
        checkpointer.save(state, data_state=data_state, force=True)
      if eval_step is not None and (
          (eval_every and done % eval_every == 0) or done == num_steps):
        run_eval(done)
      for hook in hooks:
        hook(done, state, logged)
    if checkpointer is not None:
      checkpointer.wait()
  finally:
    if bar is not None:
      bar.close()
    writer.close()
  return FitResult(state, history, eval_history, resumed_from)


def tree_equal(a: Any, b: Any) -> bool:
  """Whether two pytrees have the same structure and bit-identical leaves.

  Examples:
    >>> import numpy as np, jaxkit
    >>> a = {'w': np.float32([1, 2])}
    >>> print(jaxkit.train.tree_equal(a, {'w': np.float32([1, 2])}),
    ...       jaxkit.train.tree_equal(a, {'w': np.float32([1, 2.0001])}))
    True False
  """
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  if ta != tb:
    return False
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.device_get(la), jax.device_get(lb)))
