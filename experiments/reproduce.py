r"""Runs a set of experiments and writes the reproduction report.

  python -m experiments.reproduce --preset=demo   # `make demo`: ~10 claims, full variants
  python -m experiments.reproduce --preset=all    # every config; updates experiments/RESULTS.json
  python -m experiments.reproduce --only=kd_digits,nupes_heavy_tail --quick

Each experiment runs in this process through :func:`experiments.harness.run`
(its full variant; ``--quick``: its quick variant) with its results in
``<workdir>/<name>/`` (``<workdir>/<name>_quick/`` for quick variants); its
printed output goes to ``log.txt`` there, while a progress bar per run and
an overall bar show on the terminal. Then ``--report`` (default
``results/REPORT.md``) is written: a table (paper, claim, arms, metric,
result, holds?) of the experiments run, their plots (copied to
``plots/<name>/`` next to the report), a summary line, and an index of every
config with its command and its recorded full-variant result.

Resume: an experiment whose ``result.json`` in its workdir was written for
the same resolved config (same :func:`experiments.harness.config_hash`) is
not run again (``--force`` reruns it). Any other (re)run starts from an
empty workdir, so no stale checkpoint or log of an earlier config is reused.

Recorded results: ``experiments/RESULTS.json`` (``--results_file``) holds
one small summary per config (claim, held, verdict, seeds, wall time,
headline mean ± std per arm, config hash) from full-variant runs. It is
updated after each experiment when ``--record`` is on (the default for
``--preset=all``, off otherwise); quick variants are never recorded. The
report's index reads it; a config without an entry says "not recorded".

Flags: ``--preset`` (demo | all), ``--only`` (comma-separated config names;
replaces the preset's list), ``--workdir``, ``--report``, ``--quick``,
``--force``, ``--record`` / ``--norecord``, ``--results_file``; JAX flags as
usual (``--jax_platforms=cpu``). The exit status is 1 when an experiment
failed (the others still run and are reported).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from experiments import harness
from experiments import presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKDIR = os.path.join(ROOT, "runs", "reproduce")
DEFAULT_REPORT = os.path.join(ROOT, "results", "REPORT.md")
DEFAULT_RESULTS_FILE = os.path.join(ROOT, "experiments", "RESULTS.json")
STAMP_FILE = "reproduce.json"   # written in a workdir before its run starts
NOT_RECORDED = "not recorded"


# ----------------------------------------------------------------------------
# Running.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
  """What happened to one experiment in this invocation.

  Attributes:
    name: the config name.
    status: ``'ran'``, ``'cached'`` (a result for the same config was already
      in its workdir) or ``'failed'``.
    workdir: its output folder.
    result: the ``result.json`` dict (``None`` when failed).
    error: the error's last line when failed.
    wall_s: seconds spent in this invocation (0 when cached).
  """
  name: str
  status: str
  workdir: str
  result: dict[str, Any] | None = None
  error: str | None = None
  wall_s: float = 0.0


def experiment_workdir(root: str, name: str, quick: bool) -> str:
  """``root/name`` (full variant) or ``root/name_quick`` (quick variant)."""
  return os.path.join(root, f"{name}_quick" if quick else name)


def cached_result(workdir: str, chash: str) -> dict[str, Any] | None:
  """The ``result.json`` of ``workdir`` if it was written for ``chash``.

  The hash stored in ``result.json`` (``config_hash``) is used; a result
  written before the harness stored it is hashed from its ``config``.
  """
  path = os.path.join(workdir, "result.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      result = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(result, dict) or "config" not in result:
    return None
  stored = result.get("config_hash") or harness.config_hash(result["config"])
  return result if stored == chash else None


def _clear_workdir(workdir: str) -> None:
  """Empties ``workdir`` if it is one of ours (or empty); creates it."""
  if os.path.isdir(workdir) and os.listdir(workdir):
    ours = any(os.path.exists(os.path.join(workdir, f))
               for f in (STAMP_FILE, "result.json"))
    if not ours:
      raise ValueError(
          f"refusing to empty {workdir!r}: it is not empty and holds no "
          f"{STAMP_FILE} or result.json (pick another --workdir)")
    shutil.rmtree(workdir)
  os.makedirs(workdir, exist_ok=True)


def run_experiment(name: str, path: str, workdir_root: str, *,
                   quick: bool = False, force: bool = False,
                   expected_s: float | None = None, progress: bool = True,
                   position: int | None = None) -> Outcome:
  """Runs one config (or finds its cached result); never raises on failure.

  Args:
    name: the config name.
    path: the config file.
    workdir_root: the experiment runs in ``experiment_workdir(root, name)``.
    quick: run the quick variant (``get_config('quick')``).
    force: rerun even when a result for the same config exists.
    expected_s: expected wall time (the progress bar's total).
    progress: show the per-run progress bar.
    position: the bar's tqdm position.

  Returns:
    An :class:`Outcome`; ``status='failed'`` with the error when the config
    did not load or the run raised (the traceback is in ``log.txt``).
  """
  workdir = experiment_workdir(workdir_root, name, quick)
  try:
    config = harness.load_config(path, "quick" if quick else None)
    config.lock()   # as main.py's DEFINE_config_file(lock_config=True)
    chash = harness.config_hash(config)
  except Exception as e:  # pylint: disable=broad-except
    return Outcome(name, "failed", workdir,
                   error=f"config did not load: {type(e).__name__}: {e}")
  if not force:
    cached = cached_result(workdir, chash)
    if cached is not None:
      return Outcome(name, "cached", workdir, result=cached)
  try:
    _clear_workdir(workdir)
  except (ValueError, OSError) as e:
    return Outcome(name, "failed", workdir, error=str(e))
  with open(os.path.join(workdir, STAMP_FILE), "w", encoding="utf-8") as f:
    json.dump(dict(name=name, config_hash=chash, quick=quick,
                   started=_now()), f, indent=2)
    f.write("\n")
  start = time.perf_counter()
  with open(os.path.join(workdir, "log.txt"), "w", encoding="utf-8") as log:
    try:
      with contextlib.redirect_stdout(log):
        result = harness.run(config, workdir, progress=progress,
                             expected_s=expected_s, position=position)
    except Exception as e:  # pylint: disable=broad-except
      log.write(traceback.format_exc())
      return Outcome(name, "failed", workdir,
                     error=f"{type(e).__name__}: {e}".splitlines()[0],
                     wall_s=time.perf_counter() - start)
  return Outcome(name, "ran", workdir, result=result,
                 wall_s=time.perf_counter() - start)


def _now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------
# Recorded results (experiments/RESULTS.json).
# ----------------------------------------------------------------------------


def _round(x: Any) -> Any:
  return float(f"{x:.6g}") if isinstance(x, float) else x


def summarize(result: Mapping[str, Any]) -> dict[str, Any]:
  """The small summary of a ``result.json`` kept in ``RESULTS.json``.

  Only the claim, ``held``, the verdict, the seeds, the wall time, the
  headline metric's mean ± std per arm and the config hash.
  """
  metric = result["metric"]
  return dict(
      claim=result["claim"],
      held=bool(result["held"]),
      verdict=result["verdict"],
      seeds=list(result["seeds"]),
      wall_s=round(float(result["wall_s"]), 1),
      headline=dict(
          name=metric["name"],
          per_arm={arm: dict(mean=_round(s["mean"]), std=_round(s["std"]))
                   for arm, s in metric["per_arm"].items()}),
      config_hash=result.get("config_hash")
      or harness.config_hash(result["config"]),
  )


def load_recorded(path: str) -> dict[str, dict[str, Any]]:
  """``RESULTS.json`` as ``{name: summary}``; ``{}`` when there is none."""
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a JSON object of name -> summary")
  return data


def record(path: str, outcomes: Sequence[Outcome]) -> dict[str, Any]:
  """Updates ``RESULTS.json`` with the full-variant results of ``outcomes``.

  Failed outcomes leave their entry as it was. Entries are kept sorted by
  name; each gets the date it was recorded.

  Returns:
    The written ``{name: summary}``.
  """
  data = load_recorded(path)
  for o in outcomes:
    if o.result is None:
      continue
    if o.result.get("config", {}).get("quick"):
      raise ValueError(f"{o.name}: quick-variant results are not recorded")
    entry = summarize(o.result)
    old = data.get(o.name)
    if old and all(old.get(k) == v for k, v in entry.items()):
      continue   # unchanged (e.g. a cached result): keep its date
    entry["recorded"] = _now()[:10]
    data[o.name] = entry
  data = dict(sorted(data.items()))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  text = json.dumps(data, indent=1, ensure_ascii=False)
  # Lists of integers (the seeds) on one line.
  text = re.sub(r"\[\n\s*((?:-?\d+,\n\s*)*-?\d+)\n\s*\]",
                lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text + "\n")
  os.replace(tmp, path)
  return data


# ----------------------------------------------------------------------------
# The report.
# ----------------------------------------------------------------------------

_ARXIV = re.compile(r"arXiv:\s*(\d{4}\.\d{4,5})")
# A quoted title: 'Title', after a space or "(" and before punctuation.
_TITLE = re.compile(r"(?:^|[\s(])'([^']{3,}?)'(?=[,.;:)\s]|$)")
MAX_CLAIM_CHARS = 240   # the table's claim cell; the full claim is below it
MAX_ARMS = 6            # the table's arms / result cells


def _cell(text: Any) -> str:
  """Text safe inside one markdown table cell."""
  return " ".join(str(text).split()).replace("|", "\\|")


def _num(v: Any, digits: int = 4) -> str:
  """``digits`` significant digits; whole numbers from ``10**digits`` up."""
  if isinstance(v, str):
    return v
  if 10 ** digits <= abs(v) < 1e7:
    return f"{v:.0f}"
  if v == 0 or 1e-3 <= abs(v) < 1e7:
    return f"{v:.{digits}g}"
  return f"{v:.{digits - 1}e}"


def _mean_std(s: Mapping[str, Any]) -> str:
  return f"{_num(s['mean'])} ± {_num(s['std'], 2)}"


def _shorten(text: str, limit: int) -> str:
  text = " ".join(text.split())
  if len(text) <= limit:
    return text
  return text[:limit].rsplit(" ", 1)[0] + " …"


def _split_citation(claim: str) -> tuple[str, str]:
  """``(claim, citation)``: the citation follows the last `` — `` (when it
  starts with a capital and names an arXiv id or a year) or is the last
  parenthesis naming arXiv; else ``(claim, '')``."""
  body, sep, cite = claim.rpartition(" — ")
  cite = cite.strip()
  if sep and cite[:1].isupper() and re.search(r"arXiv|\b(19|20)\d\d\b",
                                               cite):
    return body.strip(), cite.strip()
  paren = re.findall(r"\(([^()]*arXiv[^()]*)\)", claim)
  if paren:
    return re.sub(r"\s*\([^()]*arXiv[^()]*\)", "", claim).strip(), paren[-1]
  return claim.strip(), ""


def paper_of(claim: str) -> str:
  """A short paper label (first author: short title) + its arXiv links.

  Examples:
    >>> print(paper_of("X beats Y — Li, Wu, 'LOST: Low-rank and Sparse', "
    ...                "2025, arXiv:2508.02668."))
    Li et al.: LOST; [arXiv:2508.02668](https://arxiv.org/abs/2508.02668)
  """
  ids = list(dict.fromkeys(_ARXIV.findall(claim)))
  cite = _split_citation(claim)[1] or claim
  title = _TITLE.search(cite)
  head = cite[:title.start()] if title else cite
  if ";" in head:   # several references: the first one, without a title
    head, title = head.split(";")[0], None
  author = re.split(r"[,;(]|\s+'", head.strip())[0].strip()
  if author.endswith("et al"):
    author += "."
  if title and head.count(",") > 1 and "et al" not in author:
    author += " et al."
  if ("arXiv" in author or len(author.split()) > 3 or
      (title is None and not re.search(r"[A-Z]", author))):
    author = ""
  short = title.group(1).split(":")[0].strip() if title else ""
  label = ": ".join(x for x in (author, short) if x)
  links = ", ".join(f"[arXiv:{i}](https://arxiv.org/abs/{i})" for i in ids)
  return "; ".join(x for x in (label, links) if x) or "—"


def claim_text(claim: str) -> str:
  """The claim without its citation (see :func:`_split_citation`)."""
  return _split_citation(claim)[0]


def _arm_names(arms: Any) -> list[str]:
  return [a["name"] if isinstance(a, Mapping) and "name" in a else str(a)
          for a in (arms or [])]


def headline_text(result: Mapping[str, Any],
                  max_arms: int | None = None) -> str:
  """``arm mean ± std; ...`` of the headline metric (first ``max_arms``)."""
  items = list(result["metric"]["per_arm"].items())
  text = "; ".join(f"{arm} {_mean_std(s)}" for arm, s in items[:max_arms])
  if max_arms is not None and len(items) > max_arms:
    text += f"; … ({len(items) - max_arms} more)"
  return text


def _arms_text(arms: Any) -> str:
  names = _arm_names(arms)
  text = ", ".join(names[:MAX_ARMS])
  if len(names) > MAX_ARMS:
    text += f", … ({len(names) - MAX_ARMS} more)"
  return text


def _held(held: bool) -> str:
  return "yes" if held else "**no**"


def results_table(outcomes: Sequence[Outcome]) -> list[str]:
  """Markdown table rows of the experiments that produced a result."""
  lines = ["| experiment | paper | claim | arms | metric | result (mean ± std "
           "over seeds) | holds? |",
           "|---|---|---|---|---|---|---|"]
  for o in outcomes:
    r = o.result
    if r is None:
      lines.append(f"| `{o.name}` | | | | | failed: {_cell(o.error)} | — |")
      continue
    lines.append(
        f"| [`{o.name}`](#{o.name}) "
        f"| {_cell(paper_of(r['claim']))} "
        f"| {_cell(_shorten(claim_text(r['claim']), MAX_CLAIM_CHARS))} "
        f"| {_cell(_arms_text(r.get('arms')))} "
        f"| {_cell(r['metric']['name'])} "
        f"| {_cell(headline_text(r, MAX_ARMS))} "
        f"| {_held(r['held'])} |")
  return lines


def summary_line(outcomes: Sequence[Outcome]) -> str:
  """``**N held / M run.**`` + the ones that did not hold (their verdicts)."""
  done = [o for o in outcomes if o.result is not None]
  held = [o for o in done if o.result["held"]]
  line = f"**{len(held)} held / {len(done)} run.**"
  not_held = [o for o in done if not o.result["held"]]
  if not_held:
    line += " Did not hold: " + "; ".join(
        f"`{o.name}` ({_cell(o.result['verdict'].rstrip('. '))})"
        for o in not_held) + "."
  failed = [o for o in outcomes if o.result is None]
  if failed:
    line += " Failed to run: " + "; ".join(
        f"`{o.name}` ({_cell(o.error)})" for o in failed) + "."
  return line


def copy_plots(outcome: Outcome, plots_dir: str) -> list[str]:
  """Copies the PNGs of the experiment's workdir to ``plots_dir/<name>/``.

  Returns:
    The copied paths, the runner's own plots first and ``metrics.png`` last.
  """
  dest = os.path.join(plots_dir, outcome.name)
  if os.path.isdir(dest):
    shutil.rmtree(dest)
  if not os.path.isdir(outcome.workdir):
    return []
  pngs = sorted(f for f in os.listdir(outcome.workdir) if f.endswith(".png"))
  pngs.sort(key=lambda f: f == "metrics.png")
  if not pngs:
    return []
  os.makedirs(dest, exist_ok=True)
  out = []
  for f in pngs:
    shutil.copyfile(os.path.join(outcome.workdir, f), os.path.join(dest, f))
    out.append(os.path.join(dest, f))
  return out


def _display_path(path: str) -> str:
  """``path`` relative to the repository root when inside it."""
  path = os.path.abspath(path)
  if path.startswith(ROOT + os.sep):
    return os.path.relpath(path, ROOT)
  return path


def main_command(name: str, path: str) -> str:
  """The ``experiments.main`` command of a config's full variant."""
  rel = os.path.relpath(path, ROOT) if os.path.isabs(path) else path
  return (f"python -m experiments.main --config={rel} "
          f"--workdir=runs/{name}")


def _recorded_text(entry: Mapping[str, Any] | None, chash: str | None,
                   source: str) -> str:
  if not entry:
    return NOT_RECORDED
  head = entry["headline"]
  items = list(head["per_arm"].items())
  arms = "; ".join(f"{a} {_mean_std(s)}" for a, s in items[:MAX_ARMS])
  if len(items) > MAX_ARMS:
    arms += f"; … ({len(items) - MAX_ARMS} more)"
  text = (f"{'held' if entry['held'] else '**did not hold**'} — "
          f"{head['name']}: {arms} ({len(entry['seeds'])} seeds, "
          f"{entry['wall_s']:.0f} s; {source})")
  if chash is not None and entry.get("config_hash") not in (None, chash):
    text += " — recorded for an earlier version of the config"
  return text


def index_lines(configs: Mapping[str, str],
                recorded: Mapping[str, Mapping[str, Any]],
                fresh: Mapping[str, Mapping[str, Any]]) -> list[str]:
  """The index of every config: command and full-variant result.

  Args:
    configs: ``{name: path}`` of every config.
    recorded: ``RESULTS.json``'s entries.
    fresh: summaries of full-variant results produced by this invocation
      (shown instead of the recorded ones).
  """
  rows = []
  counts = dict(n=0, held=0)
  not_held = []
  for name, path in configs.items():
    try:
      config = harness.load_config(path)
      chash = harness.config_hash(config)
      mods = sorted({n.split(".")[1] for n in harness.dotted_names(config)
                     if n.startswith("jaxkit.") and n.count(".") >= 2})
    except Exception as e:  # pylint: disable=broad-except
      chash, mods = None, [f"config did not load: {type(e).__name__}"]
    if name in fresh:
      entry, source = fresh[name], "this run"
    else:
      entry = recorded.get(name)
      source = f"recorded {entry.get('recorded', '?')}" if entry else ""
    if entry:
      counts["n"] += 1
      counts["held"] += bool(entry["held"])
      if not entry["held"]:
        not_held.append(name)
    rows.append(f"| `{name}` | {_cell(', '.join(mods))} "
                f"| `{main_command(name, path)}` "
                f"| {_cell(_recorded_text(entry, chash, source))} |")
  n = len(configs)
  head = [
      f"Every experiment config ({n}). Run one with its command, or with "
      "`python -m experiments.reproduce --only=<name>`; "
      "`python -m experiments.reproduce --preset=all` runs them all and "
      "records their results in `experiments/RESULTS.json`.",
      "",
      f"Full-variant results recorded: {counts['n']} of {n}; "
      f"{counts['held']} held the paper's direction, "
      f"{counts['n'] - counts['held']} did not"
      + (f" ({', '.join(f'`{x}`' for x in not_held)})" if not_held else "")
      + ".",
      "",
      "| experiment | jaxkit modules | command (full variant) | full-variant "
      "result |",
      "|---|---|---|---|",
  ]
  return head + rows


def render_report(outcomes: Sequence[Outcome], *, configs: Mapping[str, str],
                  recorded: Mapping[str, Mapping[str, Any]], report_dir: str,
                  plots: Mapping[str, Sequence[str]], command: str,
                  quick: bool, total_wall_s: float,
                  environment: str = "", planned: int | None = None) -> str:
  """The markdown of the report (see the module docstring).

  ``planned``: how many experiments the invocation runs in all; when more
  than ``len(outcomes)``, the report says it is partial.
  """
  variant = "quick" if quick else "full"
  ran = sum(o.status == "ran" for o in outcomes)
  cached = sum(o.status == "cached" for o in outcomes)
  lines = [
      "# jaxkit: paper claims reproduced in miniature",
      "",
      f"Written {_now()} by `{command}`: {len(outcomes)} experiments "
      f"({variant} variants; {ran} run now, {cached} reused from an earlier "
      f"run of the same config) in {total_wall_s:.0f} s; the experiments' "
      f"own wall times add up to "
      f"{sum(float(o.result['wall_s']) for o in outcomes if o.result):.0f} s."
      + (f" {environment}" if environment else ""),
      "",
  ]
  if planned is not None and planned > len(outcomes):
    lines += [f"**Partial report:** {len(outcomes)} of {planned} "
              "experiments done so far (the report is rewritten after each).",
              ""]
  if quick:
    lines += ["**Quick variants** (seconds each, few seeds and steps): these "
              "results are smoke tests, not the reproductions; the index "
              "below has the full-variant results.", ""]
  lines += [summary_line(outcomes), "",
            "`holds?` says whether the paper's claimed direction held in "
            "this miniature (the test applied is each experiment's verdict, "
            "below). A claim that did not hold is reported as such.", "",
            *results_table(outcomes), "", "## The experiments", ""]
  for o in outcomes:
    lines.append(f"### {o.name}")
    lines.append("")
    if o.result is None:
      lines += [f"Failed: {o.error} (log: `{o.workdir}/log.txt`).", ""]
      continue
    r = o.result
    lines += [
        f"**Claim.** {r['claim']}", "",
        f"**Held: {'yes' if r['held'] else 'NO'}.** {r['verdict']}", "",
        f"Seeds {r['seeds']}; wall time {float(r['wall_s']):.0f} s; "
        f"full results in `{_display_path(o.workdir)}/`.", "",
    ]
    for p in plots.get(o.name, ()):
      rel = os.path.relpath(p, report_dir).replace(os.sep, "/")
      lines += [f"![{o.name}: {os.path.basename(p)}]({rel})", ""]
  fresh = {} if quick else {o.name: summarize(o.result) for o in outcomes
                            if o.result is not None}
  lines += ["## Index of every experiment", "",
            *index_lines(configs, recorded, fresh), ""]
  return "\n".join(lines)


def write_report(path: str, outcomes: Sequence[Outcome], *,
                 configs: Mapping[str, str],
                 recorded: Mapping[str, Mapping[str, Any]], command: str,
                 quick: bool, total_wall_s: float,
                 environment: str = "", planned: int | None = None) -> str:
  """Copies the plots next to ``path`` and writes the report there.

  Returns:
    The markdown written.
  """
  report_dir = os.path.dirname(os.path.abspath(path))
  os.makedirs(report_dir, exist_ok=True)
  plots_dir = os.path.join(report_dir, "plots")
  plots = {o.name: copy_plots(o, plots_dir) for o in outcomes
           if o.result is not None}
  text = render_report(outcomes, configs=configs, recorded=recorded,
                       report_dir=report_dir, plots=plots, command=command,
                       quick=quick, total_wall_s=total_wall_s,
                       environment=environment, planned=planned)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return text


def environment_line() -> str:
  """Python, JAX and device, and the machine's CPU count.

  Starts JAX's backend: import ``jaxkit`` first (see :func:`reproduce`).
  """
  try:
    import jax  # pylint: disable=g-import-not-at-top
    dev = f"JAX {jax.__version__} on {jax.default_backend()}"
  except Exception:  # pylint: disable=broad-except
    dev = "JAX unavailable"
  return (f"Python {platform.python_version()}, {dev}, "
          f"{os.cpu_count()} CPU cores.")


# ----------------------------------------------------------------------------
# The command.
# ----------------------------------------------------------------------------


def select(preset: str, only: Sequence[str] | None,
           configs: Mapping[str, str]) -> list[str]:
  """The config names to run: ``only`` if given, else the preset's."""
  if only:
    unknown = [n for n in only if n not in configs]
    if unknown:
      raise ValueError(f"--only names unknown configs {unknown}; available: "
                       f"{sorted(configs)}")
    return list(dict.fromkeys(only))
  return presets.names(preset)


def reproduce(names: Sequence[str], *, configs: Mapping[str, str],
              workdir: str, report: str, results_file: str, quick: bool,
              force: bool, record_results: bool, command: str,
              progress: bool = True) -> list[Outcome]:
  """Runs ``names`` in order, records and reports after each; returns outcomes."""
  if record_results and quick:
    raise ValueError("--record records full-variant results only; drop "
                     "--quick or pass --norecord")
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  # jaxkit applies its XLA work-arounds when imported, which must happen
  # before JAX's backend starts (environment_line starts it).
  import jaxkit  # pylint: disable=g-import-not-at-top,unused-import
  start = time.perf_counter()
  environment = environment_line()
  recorded = load_recorded(results_file)
  outcomes: list[Outcome] = []
  overall = tqdm(total=len(names), desc="experiments", unit="exp",
                 position=0, dynamic_ncols=True, disable=not progress)
  try:
    for name in names:
      overall.set_postfix_str(name)
      entry = recorded.get(name)
      expected = None if quick or not entry else float(entry["wall_s"])
      o = run_experiment(name, configs[name], workdir, quick=quick,
                         force=force, expected_s=expected, progress=progress,
                         position=1)
      outcomes.append(o)
      if o.result is None:
        msg = f"[{name}] FAILED: {o.error} (log: {o.workdir}/log.txt)"
      else:
        msg = (f"[{name}] {'held' if o.result['held'] else 'did NOT hold'}"
               f" ({o.status}, {o.wall_s:.0f} s): {o.result['verdict']}")
      overall.write(msg)
      if record_results and o.result is not None:
        recorded = record(results_file, [o])
      write_report(report, outcomes, configs=configs, recorded=recorded,
                   command=command, quick=quick,
                   total_wall_s=time.perf_counter() - start,
                   environment=environment, planned=len(names))
      overall.update(1)
  finally:
    overall.close()
  return outcomes


def main(argv: Sequence[str]) -> int:
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  f = flags.FLAGS
  logging.set_verbosity(logging.WARNING)   # orbax & co. log at INFO
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  configs = presets.discover()
  names = select(f.preset, f.only, configs)
  record_results = f.record if f.record is not None else (
      f.preset == "all" and not f.only and not f.quick)
  command = "python -m experiments.reproduce " + " ".join(
      a for a in sys.argv[1:])
  start = time.perf_counter()
  outcomes = reproduce(
      names, configs=configs, workdir=f.workdir or DEFAULT_WORKDIR,
      report=f.report or DEFAULT_REPORT,
      results_file=f.results_file or DEFAULT_RESULTS_FILE, quick=f.quick,
      force=f.force, record_results=record_results, command=command.strip())
  done = [o for o in outcomes if o.result is not None]
  held = sum(o.result["held"] for o in done)
  print(f"{held} held / {len(done)} run; "
        f"{len(outcomes) - len(done)} failed; "
        f"{time.perf_counter() - start:.0f} s. Report: "
        f"{f.report or DEFAULT_REPORT}", flush=True)
  return 1 if len(done) < len(outcomes) else 0


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("preset", "demo", list(presets.PRESETS),
                    "Which experiments: the curated demo set or all configs.")
  flags.DEFINE_list("only", None, "Config names to run instead of the "
                    "preset's (comma-separated).")
  flags.DEFINE_string("workdir", None, "Root of the experiments' workdirs "
                      "(default: runs/reproduce at the repository root).")
  flags.DEFINE_string("report", None, "The report's path (default: "
                      "results/REPORT.md at the repository root); plots go "
                      "to plots/ beside it.")
  flags.DEFINE_string("results_file", None, "The recorded results (default: "
                      "experiments/RESULTS.json).")
  flags.DEFINE_bool("quick", False, "Run the quick variants (never recorded).")
  flags.DEFINE_bool("force", False, "Rerun experiments whose result for the "
                    "same config exists.")
  flags.DEFINE_bool("record", None, "Update the results file with the "
                    "full-variant results (default: on for --preset=all "
                    "without --only, off otherwise).")


if __name__ == "__main__":
  from absl import app as _app  # pylint: disable=g-import-not-at-top
  import jaxkit as _jaxkit  # pylint: disable=g-import-not-at-top,unused-import  # before any JAX backend starts
  import jax as _jax  # pylint: disable=g-import-not-at-top
  _define_flags()
  _jax.config.parse_flags_with_absl()
  _app.run(main)
