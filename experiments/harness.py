"""Shared pieces of the experiments: config arguments, dotted names, results.

Every experiment is a config file ``experiments/configs/<name>.py`` plus a
runner function named by the config (``config.runner``). The harness

* parses the single string argument of ``get_config(arg)``
  (:func:`parse_arg`, like big_vision's ``bvcc.parse_arg``);
* resolves every dotted name in the config once, at start-up
  (:func:`resolve_config`): the value of ``runner``, of every key ``fn`` and of
  every key ending in ``_fn`` (these must be callables), and of every key
  ending in ``_ref`` (any object, e.g. a constant such as
  ``'jaxkit.divergences.GENERATOR_NAMES'``), anywhere in the config (also
  inside lists of dicts). A name that does not resolve fails the run before anything is
  computed; names that reach a private module or attribute (a component that
  starts with ``_``, e.g. ``jaxkit._src``) are refused, so experiments only use
  the public API;
* calls ``runner(config, workdir, fns)`` where ``fns`` maps each dotted name to
  its object, times it, and writes the result (:func:`write_result`):
  ``result.json``, ``result.md`` and ``metrics.png`` (a bar chart of every
  metric); runners add their own plots with :func:`save_figure`;
* keeps ``metrics.jsonl``: the runner's curves (:func:`log_metrics`, optional)
  and the final per-seed value of every metric, written by :func:`run` for
  every experiment; stores :func:`config_hash` in ``result.json``; and shows a
  progress bar per run when asked (``run(..., progress=True)``).

The runner returns a dict with the keys ``claim``, ``arms``, ``metrics`` (a
list built with :func:`metric`), ``held`` and ``verdict``; it may add
``headline`` (the name of the headline metric; default: the first),
``seeds`` (default ``range(config.seeds)``), ``notes_md`` (markdown appended
to ``result.md``) and any other JSON-able key. The harness adds ``metric``
(the headline metric), ``config`` (the resolved config), ``seeds`` and
``wall_s``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib
import importlib.util
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

RESULT_KEYS = ("claim", "arms", "metric", "held", "verdict", "config", "seeds",
               "wall_s")

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


# ----------------------------------------------------------------------------
# Config arguments.
# ----------------------------------------------------------------------------


def _to_bool(value: str) -> bool:
  if value.lower() in _TRUE:
    return True
  if value.lower() in _FALSE:
    return False
  raise ValueError(f"expected a boolean ({_TRUE} / {_FALSE}), got {value!r}")


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
  """Parses the string argument of ``get_config(arg)`` into typed options.

  ``arg`` is a comma-separated list of ``key=value`` items; a bare ``key``
  means ``key=True`` and is allowed for boolean options only. Each keyword of
  ``spec`` names an option and gives its default; the default's type converts
  the string (``bool`` accepts true/false/1/0/yes/no). A tuple
  ``(default, converter)`` gives an explicit converter.

  Args:
    arg: the string after the ``:`` in ``--config=file.py:arg``, or ``None``.
    **spec: option name -> default or ``(default, converter)``.

  Returns:
    A ``ConfigDict`` with every option of ``spec`` (defaults filled in).

  Raises:
    ValueError: an unknown option, a bare word for a non-boolean option, or a
      value its converter rejects.

  Examples:
    >>> a = parse_arg("quick,seeds=3", quick=False, seeds=5, lr=(0.1, float))
    >>> print(a.quick, a.seeds, a.lr)
    True 3 0.1
  """
  converters = {}
  values = {}
  for name, default in spec.items():
    if isinstance(default, tuple):
      if len(default) != 2 or not callable(default[1]):
        raise ValueError(
            f"spec for option {name!r} must be a default or a (default, "
            f"converter) pair, got {default!r}")
      default, conv = default
    elif isinstance(default, bool):
      conv = _to_bool
    elif isinstance(default, (int, float, str)):
      conv = type(default)
    else:
      raise ValueError(
          f"option {name!r}: give (default, converter) for a default of type "
          f"{type(default).__name__}")
    converters[name] = conv
    values[name] = default

  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, raw = item.partition("=")
    key = key.strip()
    if key not in converters:
      raise ValueError(
          f"unknown config argument {key!r} in arg={arg!r}; expected one of "
          f"{sorted(converters)}")
    if not sep:
      if converters[key] is not _to_bool:
        raise ValueError(
            f"config argument {key!r} in arg={arg!r} needs a value "
            f"({key}=...); only boolean options may be given bare")
      raw = "true"
    try:
      values[key] = converters[key](raw.strip())
    except ValueError as e:
      raise ValueError(
          f"config argument {key!r} in arg={arg!r}: {e}") from None
  return ml_collections.ConfigDict(values)


def load_config(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Imports the config file at ``path`` and returns ``get_config(arg)``.

  The in-process twin of ``--config=path:arg`` (used by the tests).
  """
  name = "_experiment_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ValueError(f"cannot import a config from path={path!r}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} has no get_config(arg)")
  return module.get_config(arg)


# ----------------------------------------------------------------------------
# Dotted names.
# ----------------------------------------------------------------------------


def resolve(dotted: str) -> Any:
  """Returns the object named by ``dotted`` (``'pkg.module.attr.attr'``).

  The longest importable module prefix is imported; the rest is looked up by
  attribute. Names with a private component (one that starts with ``_``) are
  refused: experiments use the public API only.

  Raises:
    ValueError: not a dotted string, a private component, or a name that does
      not resolve (the message says which part is missing).

  Examples:
    >>> print(resolve("math.sqrt")(4.0))
    2.0
  """
  if not isinstance(dotted, str) or not dotted or "." not in dotted:
    raise ValueError(
        f"expected a dotted name like 'jaxkit.divergences.kl', got {dotted!r}")
  parts = dotted.split(".")
  if any(not p for p in parts):
    raise ValueError(f"malformed dotted name {dotted!r}")
  private = [p for p in parts if p.startswith("_")]
  if private:
    raise ValueError(
        f"dotted name {dotted!r} reaches private component {private[0]!r}; "
        "experiments may only use the public API")
  module = None
  n = len(parts)
  while n > 0:
    modname = ".".join(parts[:n])
    try:
      module = importlib.import_module(modname)
      break
    except ModuleNotFoundError as e:
      # Only swallow "this very module does not exist"; a module that exists
      # but fails to import must fail loudly.
      if e.name is None or not (modname == e.name or
                                modname.startswith(e.name + ".")):
        raise
      n -= 1
  if module is None:
    raise ValueError(f"cannot resolve {dotted!r}: no module {parts[0]!r}")
  obj = module
  if 1 < n == len(parts):
    # A package may re-export a function under its own submodule's name
    # (``jaxkit.kernels.sparse_attention`` is the function; the subpackage
    # of the same name is shadowed by it): the attribute wins, as it does
    # for ``from jaxkit.kernels import sparse_attention``.
    parent = sys.modules.get(".".join(parts[:n - 1]))
    attr = getattr(parent, parts[n - 1], module)
    if attr is not module:
      obj = attr
  for i, attr in enumerate(parts[n:], start=n):
    if not hasattr(obj, attr):
      raise ValueError(
          f"cannot resolve {dotted!r}: {'.'.join(parts[:i])!r} has no "
          f"attribute {attr!r}")
    obj = getattr(obj, attr)
  return obj


def _is_fn_key(key: str) -> bool:
  return key in ("fn", "runner") or key.endswith("_fn")


def _is_ref_key(key: str) -> bool:
  return _is_fn_key(key) or key.endswith("_ref")


def dotted_names(config: Any, *, callables_only: bool = False) -> list[str]:
  """Dotted names in ``config``: values of ``runner``, ``fn``, ``*_fn``, ``*_ref``.

  With ``callables_only``, only those that must be callables (not ``*_ref``).
  """
  found = []
  is_key = _is_fn_key if callables_only else _is_ref_key

  def walk(node):
    if isinstance(node, (ml_collections.ConfigDict, Mapping)):
      for key, value in node.items():
        if is_key(str(key)) and isinstance(value, str):
          found.append(value)
        else:
          walk(value)
    elif isinstance(node, (list, tuple)):
      for v in node:
        walk(v)

  walk(config)
  return list(dict.fromkeys(found))


def resolve_config(config: Any) -> dict[str, Any]:
  """Resolves every dotted name of ``config`` (see :func:`dotted_names`).

  Returns:
    ``{dotted_name: object}``. Fails on the first name that does not resolve.
  """
  fns = {}
  must_call = set(dotted_names(config, callables_only=True))
  for name in dotted_names(config):
    obj = resolve(name)
    if name in must_call and not callable(obj):
      raise ValueError(f"dotted name {name!r} resolves to a non-callable "
                       f"{type(obj).__name__}")
    fns[name] = obj
  return fns


# ----------------------------------------------------------------------------
# Results.
# ----------------------------------------------------------------------------


def arm_names(config: Any, required: Sequence[str] = ()) -> list[str]:
  """Names of ``config.arms``; raises if an arm the claim compares is missing."""
  names = [arm["name"] for arm in config.arms]
  for needed in required:
    if needed not in names:
      raise ValueError(f"config.arms must include {needed!r} (the claim's "
                       f"arms), got {names}")
  return names


def sample_std(values: Any) -> float:
  """Sample standard deviation (``ddof=1``) over seeds; 0 for one seed."""
  v = np.asarray(values, dtype=np.float64).reshape(-1)
  return float(v.std(ddof=1)) if v.size > 1 else 0.0


def transfer_guard(config: Any):
  """``jax.transfer_guard(config.transfer_guard)`` or a no-op when unset."""
  import jax  # pylint: disable=g-import-not-at-top
  if config.get("transfer_guard"):
    return jax.transfer_guard(config.transfer_guard)
  return contextlib.nullcontext()


def metric(name: str, per_seed: Mapping[str, Sequence[float]], *,
           description: str = "") -> dict[str, Any]:
  """Summarises one metric: per arm mean ± std over seeds and the raw values.

  ``std`` is the sample standard deviation (``ddof=1``; 0 for one seed).

  Examples:
    >>> m = metric("acc", {"a": [1.0, 3.0]})
    >>> print(m["per_arm"]["a"]["mean"], m["per_arm"]["a"]["std"])
    2.0 1.4142135623730951
  """
  per_arm = {}
  for arm, values in per_seed.items():
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
      raise ValueError(f"metric {name!r}: arm {arm!r} has no values")
    per_arm[arm] = dict(
        mean=float(v.mean()),
        std=sample_std(v),
        per_seed=[float(x) for x in v])
  return dict(name=name, description=description, per_arm=per_arm)


def _jsonable(x: Any) -> Any:
  if isinstance(x, ml_collections.ConfigDict):
    return _jsonable(x.to_dict())
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.bool_, bool)):
    return bool(x)
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating, float)):
    x = float(x)
    return x if math.isfinite(x) else str(x)
  if hasattr(x, "shape") and hasattr(x, "dtype"):  # numpy / jax arrays
    return _jsonable(np.asarray(x).tolist())
  if isinstance(x, (int, str)) or x is None:
    return x
  return repr(x)


def _fmt(mean: float, std: float) -> str:
  def f(v):
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
  return f"{f(mean)} ± {f(std)}"


def markdown_table(metrics: Sequence[Mapping[str, Any]]) -> str:
  """Rows = arms (in order of first appearance), columns = metrics."""
  arms = []
  for m in metrics:
    for arm in m["per_arm"]:
      if arm not in arms:
        arms.append(arm)
  head = "| arm | " + " | ".join(m["name"] for m in metrics) + " |"
  rule = "|---|" + "---|" * len(metrics)
  rows = []
  for arm in arms:
    cells = []
    for m in metrics:
      s = m["per_arm"].get(arm)
      cells.append(_fmt(s["mean"], s["std"]) if s else "—")
    rows.append(f"| {arm} | " + " | ".join(cells) + " |")
  return "\n".join([head, rule, *rows])


def save_figure(fig, workdir: str, name: str) -> str:
  """Saves a matplotlib figure as ``workdir/name`` (PNG) and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, name)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
  return path


def checks_markdown(checks: Sequence[tuple[str, bool]],
                    title: str = "## Checks (mean over seeds)") -> list[str]:
  """Markdown lines: ``title`` then one ``- [x] check`` line per check."""
  return [title, ""] + [f"- [{'x' if ok else ' '}] {name}"
                        for name, ok in checks]


def plot_curves(curves: Mapping[str, Sequence[np.ndarray]],
                arm_names: Sequence[str], titles: Sequence[str],
                workdir: str, name: str = "training_curves.png") -> str:
  """One panel per curve: ``curves[arm][i]`` is ``[seeds, steps]``.

  Each panel ``i`` (titled ``titles[i]``) shows the mean over seeds of every
  arm's i-th curve.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(titles), figsize=(4.7 * len(titles), 3.5),
                           squeeze=False)
  for i, a in enumerate(arm_names):
    for ax, c, title in zip(axes[0], curves[a], titles):
      ax.plot(np.asarray(c).mean(0), color=f"C{i}", label=a)
      ax.set_title(f"{title} during training (mean over seeds)", fontsize=9)
      ax.set_xlabel("step")
  axes[0][0].legend(fontsize=7)
  return save_figure(fig, workdir, name)


def plot_sweep(per_seed: Mapping[str, Mapping[str, Sequence[float]]],
               methods: Sequence[str], xs: Sequence[float],
               arm: Callable[[str, float], str], keys: Sequence[str],
               xlabel: str, workdir: str, *, baseline: str | None = None,
               name: str = "sweep.png") -> str:
  """One panel per metric key: mean ± std over seeds of each method along xs.

  ``per_seed[key][arm(method, x)]`` holds the per-seed values; ``baseline``
  (an arm name, e.g. ``'dense'``) is drawn as a dotted line in the last
  panel.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4),
                           squeeze=False)
  for i, method in enumerate(methods):
    for ax, k in zip(axes[0], keys):
      vals = [per_seed[k][arm(method, x)] for x in xs]
      ax.errorbar(xs, [float(np.mean(v)) for v in vals],
                  yerr=[sample_std(v) for v in vals], marker="o",
                  color=f"C{i}", capsize=3, label=method)
      ax.set_xlabel(xlabel)
      ax.set_title(k, fontsize=9)
  if baseline is not None:
    axes[0][-1].axhline(float(np.mean(per_seed[keys[-1]][baseline])),
                        color="k", ls=":", label=baseline)
  axes[0][-1].legend(fontsize=7)
  return save_figure(fig, workdir, name)


def plot_metrics(metrics: Sequence[Mapping[str, Any]], workdir: str,
                 name: str = "metrics.png") -> str:
  """Bar chart (mean ± std over seeds) of each metric, one panel per metric."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = len(metrics)
  cols = min(n, 4)
  rows = math.ceil(n / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows),
                           squeeze=False)
  for ax, m in zip(axes.flat, metrics):
    arms = list(m["per_arm"])
    means = [m["per_arm"][a]["mean"] for a in arms]
    stds = [m["per_arm"][a]["std"] for a in arms]
    ax.bar(range(len(arms)), means, yerr=stds, capsize=3, color="C0")
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(arms, rotation=60, ha="right", fontsize=7)
    ax.set_title(m["name"], fontsize=9)
  for ax in list(axes.flat)[n:]:
    ax.axis("off")
  fig.tight_layout()
  return save_figure(fig, workdir, name)


def write_result(workdir: str, result: Mapping[str, Any]) -> dict[str, Any]:
  """Writes ``result.json``, ``result.md`` and ``metrics.png`` to ``workdir``.

  Args:
    workdir: output folder (created if needed).
    result: a dict with at least :data:`RESULT_KEYS` and ``metrics``.

  Returns:
    The JSON-able dict that was written.
  """
  missing = [k for k in (*RESULT_KEYS, "metrics") if k not in result]
  if missing:
    raise ValueError(f"result is missing keys {missing}")
  if not isinstance(result["held"], (bool, np.bool_)):
    raise ValueError(f"result['held'] must be a bool, got {result['held']!r}")
  os.makedirs(workdir, exist_ok=True)
  out = _jsonable(dict(result))
  notes = out.pop("notes_md", "")
  with open(os.path.join(workdir, "result.json"), "w") as f:
    json.dump(out, f, indent=2, ensure_ascii=False)
    f.write("\n")

  md = [
      f"# {out.get('name', 'experiment')}",
      "",
      f"**Claim.** {out['claim']}",
      "",
      f"**Held: {'yes' if out['held'] else 'NO'}.** {out['verdict']}",
      "",
      f"Headline metric: `{out['metric']['name']}`. Mean ± std over seeds "
      f"{out['seeds']}; wall time {out['wall_s']:.1f} s.",
      "",
      markdown_table(out["metrics"]),
      "",
  ]
  if notes:
    md += [notes, ""]
  md += [f"Written {datetime.datetime.now().isoformat(timespec='seconds')}."]
  with open(os.path.join(workdir, "result.md"), "w") as f:
    f.write("\n".join(md) + "\n")
  plot_metrics(out["metrics"], workdir)
  return out


# ----------------------------------------------------------------------------
# Metrics log, config hash, progress bar.
# ----------------------------------------------------------------------------

METRICS_FILE = "metrics.jsonl"

# workdir -> the progress bar of the run writing there (see `run`), so that
# `log_metrics` can show the latest step on it.
_BARS: dict[str, Any] = {}
_BARS_LOCK = threading.Lock()


def config_hash(config: Any) -> str:
  """A short hash of a config, equal for a config and its ``result.json`` copy.

  The hash is taken over the canonical JSON of the config as
  :func:`write_result` stores it (tuples become lists, non-finite floats
  strings), so ``config_hash(config) ==
  config_hash(json.load(open('result.json'))['config'])``.

  Args:
    config: a ``ConfigDict`` or the JSON-able dict of one.

  Returns:
    16 hex digits (the start of a SHA-256).

  Examples:
    >>> c = ml_collections.ConfigDict(dict(steps=3, dims=(1, 2)))
    >>> config_hash(c) == config_hash({"dims": [1, 2], "steps": 3})
    True
  """
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  if not isinstance(config, Mapping):
    raise TypeError(f"config must be a ConfigDict or a mapping, got "
                    f"{type(config).__name__}")
  text = json.dumps(_jsonable(config), sort_keys=True, ensure_ascii=False,
                    separators=(",", ":"))
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _scalar(name: str, value: Any) -> float | str:
  try:
    v = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError):
    raise TypeError(f"metric {name!r} must be a real scalar, got "
                    f"{type(value).__name__}") from None
  if v.size != 1:
    raise ValueError(f"metric {name!r} must be a scalar, got shape {v.shape}")
  return _jsonable(float(v.reshape(())))


def log_metrics(workdir: str, *, step: int | None = None,
                arm: str | None = None, seed: int | None = None,
                **values: Any) -> None:
  """Appends metric values to ``workdir/metrics.jsonl``, one JSON line each.

  Each line is ``{"metric", "value", "arm", "seed", "step"}``. Runners call
  this for curves (``step`` = the training step); :func:`run` itself appends
  the final per-seed value of every metric of the result with
  ``"step": null``, so every experiment has a ``metrics.jsonl`` without
  runner changes. While :func:`run` shows a progress bar for ``workdir``, the
  latest call is shown on it.

  Args:
    workdir: the run's output folder (created if needed).
    step: training step, or ``None`` for a final value.
    arm: arm name, or ``None``.
    seed: seed, or ``None``.
    **values: metric name -> real scalar (Python / NumPy / JAX scalar).

  Raises:
    ValueError: no values, or a value that is not a scalar.
    TypeError: a value that is not a real number.

  Examples:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> log_metrics(d, step=10, arm="CE", seed=0, loss=0.5)
    >>> print(open(os.path.join(d, "metrics.jsonl")).read().strip())
    {"metric": "loss", "value": 0.5, "arm": "CE", "seed": 0, "step": 10}
  """
  if not values:
    raise ValueError("log_metrics needs at least one metric value")
  if step is not None:
    step = int(step)
  if seed is not None:
    seed = int(seed)
  rows = [dict(metric=k, value=_scalar(k, v), arm=arm, seed=seed, step=step)
          for k, v in values.items()]
  _append_jsonl(workdir, rows)
  with _BARS_LOCK:
    bar = _BARS.get(os.path.abspath(workdir))
  if bar is not None:
    info = {k: v for k, v in (("arm", arm), ("seed", seed), ("step", step))
            if v is not None}
    info.update({r["metric"]: (f"{r['value']:.4g}"
                               if isinstance(r["value"], float) else
                               r["value"]) for r in rows})
    bar.set_postfix(info, refresh=False)


def _append_jsonl(workdir: str, rows: Sequence[Mapping[str, Any]]) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, METRICS_FILE), "a", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _final_metric_rows(metrics: Sequence[Mapping[str, Any]],
                       seeds: Sequence[Any]) -> list[dict[str, Any]]:
  """One row per metric per arm per seed (``step`` null)."""
  rows = []
  for m in metrics:
    for arm, stats in m["per_arm"].items():
      values = stats["per_seed"]
      # A metric with one value per seed is labelled by seed; anything else
      # (e.g. a single pooled value) by its position.
      by_seed = len(values) == len(seeds)
      for i, v in enumerate(values):
        row = dict(metric=m["name"], value=v, arm=arm,
                   seed=seeds[i] if by_seed else None, step=None)
        if not by_seed:
          row["index"] = i
        rows.append(row)
  return rows


class _RunBar:
  """A tqdm bar of a run's wall time (expected: ``expected_s``), ticking.

  The runners do not report their progress, so the bar shows the elapsed
  seconds against the expected duration (when known) and the latest
  :func:`log_metrics` call as its postfix. Shown on a terminal only.
  """

  def __init__(self, workdir: str, desc: str, expected_s: float | None,
               position: int | None):
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
    total = float(expected_s) if expected_s else None
    fmt = ("{desc}: {percentage:3.0f}%|{bar}| {elapsed} of ~{total:.0f} s"
           "{postfix}" if total else "{desc}: {elapsed}{postfix}")
    # disable=None: shown on a terminal only (a log file would get a line
    # per tick).
    self._bar = tqdm(total=total, desc=desc, position=position, leave=False,
                     bar_format=fmt, mininterval=1.0, dynamic_ncols=True,
                     disable=None)
    self._key = os.path.abspath(workdir)
    self._start = time.perf_counter()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._tick, daemon=True)

  def _tick(self):
    while not self._stop.wait(1.0):
      elapsed = time.perf_counter() - self._start
      total = self._bar.total
      # Stays below 100 % until the run is done.
      self._bar.n = min(elapsed, 0.99 * total) if total else elapsed
      self._bar.refresh()

  def __enter__(self):
    with _BARS_LOCK:
      _BARS[self._key] = self._bar
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    with _BARS_LOCK:
      _BARS.pop(self._key, None)
    if self._bar.total:
      self._bar.n = self._bar.total
    self._bar.refresh()
    self._bar.close()
    return False


# ----------------------------------------------------------------------------
# Running.
# ----------------------------------------------------------------------------


def run(config: ml_collections.ConfigDict, workdir: str, *,
        progress: bool = False, expected_s: float | None = None,
        position: int | None = None) -> dict[str, Any]:
  """Resolves the config's names, runs its runner, writes the result.

  Besides :func:`write_result`'s files, ``workdir/metrics.jsonl`` is started
  afresh and receives the runner's :func:`log_metrics` lines and then the
  final per-seed value of every metric (``"step": null``); ``result.json``
  gets ``config_hash`` (:func:`config_hash`).

  Args:
    config: the experiment config (``runner`` and dotted names).
    workdir: output folder (created if needed).
    progress: show a tqdm bar of the run's elapsed time (needs ``tqdm``).
    expected_s: the run's expected wall time in seconds (the bar's total);
      ``None``: unknown (the bar only counts seconds).
    position: the bar's tqdm ``position`` (for nested bars).

  Returns:
    The result dict written to ``workdir/result.json``.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  if "runner" not in config:
    raise ValueError("config has no `runner` (a dotted name of the run "
                     "function, e.g. 'experiments.divergence_tour.run')")
  fns = resolve_config(config)  # once, before anything runs
  runner = fns[config.runner]
  os.makedirs(workdir, exist_ok=True)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  if os.path.exists(metrics_path):
    os.remove(metrics_path)     # a rerun starts its metrics log afresh
  bar = (_RunBar(workdir, str(config.get("name", "run")), expected_s,
                 position) if progress else contextlib.nullcontext())
  start = time.perf_counter()
  with bar:
    result = dict(runner(config, workdir, fns))
  wall_s = time.perf_counter() - start
  missing = [k for k in ("claim", "arms", "metrics", "held", "verdict")
             if k not in result]
  if missing:
    raise ValueError(f"runner {config.runner!r} returned no {missing}")
  metrics = result["metrics"]
  headline = result.pop("headline", metrics[0]["name"])
  by_name = {m["name"]: m for m in metrics}
  if headline not in by_name:
    raise ValueError(f"headline metric {headline!r} is not among the metrics "
                     f"{list(by_name)}")
  seeds = result.pop("seeds", None)
  ordered = dict(
      name=result.pop("name", config.get("name", "experiment")),
      claim=result.pop("claim"),
      arms=result.pop("arms"),
      metric=by_name[headline],
      held=bool(result.pop("held")),
      verdict=result.pop("verdict"),
      seeds=list(seeds if seeds is not None else range(config.get("seeds", 1))),
      wall_s=wall_s,
      metrics=result.pop("metrics"),
  )
  ordered.update(result)                  # runner-specific extras
  ordered["config_hash"] = config_hash(config)
  ordered["config"] = config.to_dict()   # the resolved config, last
  result = ordered
  out = write_result(workdir, result)
  _append_jsonl(workdir, _final_metric_rows(out["metrics"], out["seeds"]))
  print(f"[{out['name']}] held={out['held']}: {out['verdict']}", flush=True)
  print(f"[{out['name']}] wrote {os.path.join(workdir, 'result.json')} "
        f"({wall_s:.1f} s)", flush=True)
  sys.stdout.flush()
  return out
