"""Tests of ``experiments/reproduce.py``: report, records, resume, end to end.

The unit tests use hand-written results (the expected table cells are
written out here, not computed by the code under test) and a toy runner
(:func:`toy_runner`, named by dotted path from a config file written to a
temporary folder). One end-to-end test runs the command on two quick
variants in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from experiments import harness
from experiments import presets
from experiments import reproduce

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

CALLS: list[str] = []   # toy_runner appends the workdir of every call


def toy_runner(config, workdir, fns):
  """A runner that needs no jax: two arms, ``config.seeds`` seeds."""
  del fns
  CALLS.append(workdir)
  if config.fail:
    raise RuntimeError("toy failure")
  seeds = list(range(config.seeds))
  for s in seeds:
    harness.log_metrics(workdir, step=1, arm="a", seed=s, loss=1.0 + s)
  per_seed = {"a": [0.5 + config.shift] * len(seeds),
              "b": [0.25 + 0.5 * s for s in seeds]}
  return dict(name=config.name, claim=config.claim,
              arms=[{"name": "a"}, {"name": "b"}],
              metrics=[harness.metric("acc", per_seed),
                       harness.metric("pooled", {"a": [1.0], "b": [2.0]})],
              held=config.shift >= 0, verdict=f"a vs b, shift {config.shift}",
              seeds=seeds)


_TOY_CONFIG = '''
"""Toy config for reproduce_test (python -m experiments.main)."""
import ml_collections
from experiments import harness


def get_config(arg=None):
  arg = harness.parse_arg(arg, quick=False, seeds=0, shift=0.0, fail=False)
  c = ml_collections.ConfigDict()
  c.name = "{name}"
  c.runner = "tests.experiments.reproduce_test.toy_runner"
  c.quick = arg.quick
  c.seeds = arg.seeds or (2 if arg.quick else 3)
  c.shift = arg.shift if arg.shift else {shift}
  c.fail = arg.fail or {fail}
  c.claim = ("Arm a beats arm b — Doe, Roe, Poe, 'Toy: A Paper', 2024, "
             "arXiv:2401.00001.")
  return c
'''


def _write_config(folder, name, shift=0.0, fail=False):
  path = os.path.join(folder, f"{name}.py")
  with open(path, "w") as f:
    f.write(_TOY_CONFIG.format(name=name, shift=shift, fail=fail))
  return path


def _result(name, held, *, quick=False, arms=("a", "b"), means=(0.5, 0.25),
            stds=(0.1, 0.0)):
  per_arm = {a: dict(mean=m, std=s, per_seed=[m]) for a, m, s in
             zip(arms, means, stds)}
  metric = dict(name="accuracy", description="", per_arm=per_arm)
  return dict(
      name=name,
      claim=(f"{name} wins — Smith, Jones, Brown, 'Big Idea: Subtitle', "
             "2023, arXiv:2301.01234."),
      arms=[dict(name=a) for a in arms], metric=metric, held=held,
      verdict=f"verdict of {name}", seeds=[0, 1, 2], wall_s=12.3,
      metrics=[metric], config=dict(name=name, quick=quick))


# ----------------------------------------------------------------------------
# The report.
# ----------------------------------------------------------------------------


def test_table_rows_and_summary():
  outcomes = [
      reproduce.Outcome("exp_one", "ran", "/tmp/x", _result("exp_one", True)),
      reproduce.Outcome("exp_two", "cached", "/tmp/y",
                        _result("exp_two", False)),
      reproduce.Outcome("exp_three", "failed", "/tmp/z",
                        error="ValueError: boom"),
  ]
  lines = reproduce.results_table(outcomes)
  assert len(lines) == 2 + 3
  one, two, three = lines[2:]
  cells = [c.strip() for c in one.split("|")[1:-1]]
  assert cells == [
      "[`exp_one`](#exp_one)",
      "Smith et al.: Big Idea; "
      "[arXiv:2301.01234](https://arxiv.org/abs/2301.01234)",
      "exp_one wins", "a, b", "accuracy", "a 0.5 ± 0.1; b 0.25 ± 0", "yes"]
  assert two.split("|")[-2].strip() == "**no**"
  assert "failed: ValueError: boom" in three

  line = reproduce.summary_line(outcomes)
  assert line.startswith("**1 held / 2 run.**")
  assert "Did not hold: `exp_two` (verdict of exp_two)" in line
  assert "exp_one (" not in line
  assert "Failed to run: `exp_three` (ValueError: boom)" in line


def test_long_cells_are_shortened_and_pipes_escaped():
  arms = tuple(f"arm{i}" for i in range(9))
  r = _result("wide", True, arms=arms, means=tuple(range(9)),
              stds=(0.0,) * 9)
  r["claim"] = "x | y " * 100 + "— Doe, 'T', arXiv:2301.01234."
  row = reproduce.results_table([reproduce.Outcome("wide", "ran", "/", r)])[2]
  assert "arm5, … (3 more)" in row and "arm6" not in row
  assert "arm5 5 ± 0; … (3 more)" in row
  assert " …" in row and "x \\| y" in row
  assert row.count("|") - row.count("\\|") == 8   # 7 cells


def test_index_lists_every_config_and_not_recorded():
  configs = presets.discover()
  names = list(configs)
  recorded_name, fresh_name = names[0], names[1]
  stale_name = names[2]
  chash = harness.config_hash(harness.load_config(configs[recorded_name]))
  recorded = {
      recorded_name: dict(held=False, seeds=[0, 1, 2], wall_s=40.0,
                          config_hash=chash, recorded="2025-01-02",
                          headline=dict(name="acc", per_arm={
                              "x": dict(mean=0.75, std=0.125)})),
      stale_name: dict(held=True, seeds=[0, 1, 2], wall_s=40.0,
                       config_hash="0" * 16, recorded="2025-01-02",
                       headline=dict(name="acc", per_arm={
                           "x": dict(mean=0.5, std=0.0)})),
  }
  fresh = {fresh_name: reproduce.summarize(_result(fresh_name, True))}
  lines = reproduce.index_lines(configs, recorded, fresh)
  rows = [l for l in lines if l.startswith("| `")]
  assert [r.split("`")[1] for r in rows] == names        # every config
  by_name = {r.split("`")[1]: r for r in rows}
  for name in names:
    assert (f"--config=experiments/configs/{name}.py --workdir=runs/{name}"
            in by_name[name])
    if name not in (recorded_name, fresh_name, stale_name):
      assert by_name[name].endswith("| not recorded |")
  assert ("**did not hold** — acc: x 0.75 ± 0.12 (3 seeds, 40 s; recorded "
          "2025-01-02) |") in by_name[recorded_name]
  assert "earlier version" not in by_name[recorded_name]
  assert "earlier version of the config" in by_name[stale_name]
  assert "held — accuracy: a 0.5 ± 0.1; b 0.25 ± 0" in by_name[fresh_name]
  assert "this run" in by_name[fresh_name]
  summary = [l for l in lines if l.startswith("Full-variant results")][0]
  assert summary == (f"Full-variant results recorded: 3 of {len(names)}; "
                     f"2 held the paper's direction, 1 did not "
                     f"(`{recorded_name}`).")


def test_write_report_copies_plots_and_links_them(tmp_path):
  wd = tmp_path / "runs" / "exp_one"
  wd.mkdir(parents=True)
  (wd / "metrics.png").write_bytes(b"png1")
  (wd / "curves.png").write_bytes(b"png2")
  (wd / "seed0").mkdir()
  (wd / "seed0" / "nested.png").write_bytes(b"no")
  report = tmp_path / "results" / "REPORT.md"
  outcomes = [reproduce.Outcome("exp_one", "ran", str(wd),
                                _result("exp_one", True))]
  configs = presets.discover()
  text = reproduce.write_report(
      str(report), outcomes, configs=configs, recorded={}, command="cmd",
      quick=False, total_wall_s=5.0)
  assert report.read_text() == text
  plots = tmp_path / "results" / "plots" / "exp_one"
  assert sorted(os.listdir(plots)) == ["curves.png", "metrics.png"]
  assert (plots / "curves.png").read_bytes() == b"png2"
  # Relative links, the runner's plot before metrics.png.
  assert text.index("](plots/exp_one/curves.png)") < text.index(
      "](plots/exp_one/metrics.png)")
  assert "**1 held / 1 run.**" in text
  assert "## Index of every experiment" in text
  for name in configs:
    assert f"| `{name}` |" in text
  assert "Quick variants" not in text and "Partial report" not in text
  partial = reproduce.render_report(
      outcomes, configs={}, recorded={}, report_dir=str(report.parent),
      plots={}, command="cmd", quick=True, total_wall_s=1.0, planned=3)
  assert "**Partial report:** 1 of 3 experiments done so far" in partial
  assert "**Quick variants**" in partial


# ----------------------------------------------------------------------------
# Recorded results.
# ----------------------------------------------------------------------------


def test_record_summaries(tmp_path):
  path = str(tmp_path / "RESULTS.json")
  a = reproduce.Outcome("a_exp", "ran", "/", _result("a_exp", True))
  failed = reproduce.Outcome("b_exp", "failed", "/", error="x")
  data = reproduce.record(path, [a, failed])
  assert list(data) == ["a_exp"]
  entry = data["a_exp"]
  assert set(entry) == {"claim", "held", "verdict", "seeds", "wall_s",
                        "headline", "config_hash", "recorded"}
  assert entry["held"] is True and entry["seeds"] == [0, 1, 2]
  assert entry["headline"] == dict(name="accuracy", per_arm={
      "a": dict(mean=0.5, std=0.1), "b": dict(mean=0.25, std=0.0)})
  assert entry["config_hash"] == harness.config_hash(
      dict(name="a_exp", quick=False))
  with open(path) as f:
    assert json.load(f) == data
  # An unchanged result keeps its date; a changed one replaces the entry;
  # a failed run leaves the old entry.
  with open(path) as f:
    old = json.load(f)
  old["a_exp"]["recorded"] = "2000-01-01"
  with open(path, "w") as f:
    json.dump(old, f)
  assert reproduce.record(path, [a])["a_exp"]["recorded"] == "2000-01-01"
  changed = reproduce.Outcome("a_exp", "ran", "/", _result("a_exp", False))
  assert reproduce.record(path, [changed])["a_exp"]["held"] is False
  assert reproduce.record(path, [reproduce.Outcome(
      "a_exp", "failed", "/", error="y")])["a_exp"]["held"] is False
  quick = reproduce.Outcome("q", "ran", "/", _result("q", True, quick=True))
  with pytest.raises(ValueError, match="quick"):
    reproduce.record(path, [quick])


def test_recorded_file_entries_are_configs():
  # The committed experiments/RESULTS.json only names existing configs.
  recorded = reproduce.load_recorded(reproduce.DEFAULT_RESULTS_FILE)
  assert set(recorded) <= set(presets.discover())
  for name, entry in recorded.items():
    assert isinstance(entry["held"], bool), name
    assert len(entry["seeds"]) >= 1, name


# ----------------------------------------------------------------------------
# Presets, hashes, resume.
# ----------------------------------------------------------------------------


def test_presets():
  configs = presets.discover()
  assert reproduce.select("all", None, configs) == list(configs)
  demo = reproduce.select("demo", None, configs)
  assert demo == list(presets.DEMO) and 8 <= len(demo) <= 14
  assert reproduce.select("demo", ["kd_digits"], configs) == ["kd_digits"]
  with pytest.raises(ValueError, match="unknown configs"):
    reproduce.select("demo", ["no_such_config"], configs)
  with pytest.raises(ValueError, match="preset"):
    presets.names("most")


def test_demo_configs_use_at_least_three_seeds():
  configs = presets.discover()
  for name in presets.DEMO:
    config = harness.load_config(configs[name])
    assert not config.get("quick"), name
    assert config.get("seeds", 3) >= 3, name


def test_config_hash_matches_the_result_json_copy():
  for name, path in presets.discover().items():
    config = harness.load_config(path)
    stored = json.loads(json.dumps(harness._jsonable(config.to_dict())))  # pylint: disable=protected-access
    assert harness.config_hash(config) == harness.config_hash(stored), name
  assert (harness.config_hash(harness.load_config(
      presets.discover()["kd_digits"], "quick")) != harness.config_hash(
          harness.load_config(presets.discover()["kd_digits"])))


def test_resume_skips_same_config_and_reruns_changed(tmp_path):
  cfg_dir = tmp_path / "configs"
  cfg_dir.mkdir()
  path = _write_config(str(cfg_dir), "toy")
  root = str(tmp_path / "runs")
  CALLS.clear()
  first = reproduce.run_experiment("toy", path, root, progress=False)
  assert first.status == "ran" and first.result["held"] is True
  wd = os.path.join(root, "toy")
  assert CALLS == [wd]
  with open(os.path.join(wd, reproduce.STAMP_FILE)) as f:
    assert json.load(f)["config_hash"] == first.result["config_hash"]
  (tmp_path / "runs" / "toy" / "stale_ckpt").write_text("old")

  again = reproduce.run_experiment("toy", path, root, progress=False)
  assert again.status == "cached" and len(CALLS) == 1
  assert again.result == first.result
  assert os.path.exists(os.path.join(wd, "stale_ckpt"))      # untouched

  forced = reproduce.run_experiment("toy", path, root, force=True,
                                    progress=False)
  assert forced.status == "ran" and len(CALLS) == 2
  assert not os.path.exists(os.path.join(wd, "stale_ckpt"))  # fresh workdir

  # The config changed (a different file size: the import cache keys on
  # size and mtime).
  _write_config(str(cfg_dir), "toy", shift=0.25)
  changed = reproduce.run_experiment("toy", path, root, progress=False)
  assert changed.status == "ran" and len(CALLS) == 3
  assert changed.result["config_hash"] != first.result["config_hash"]

  quick = reproduce.run_experiment("toy", path, root, quick=True,
                                   progress=False)
  assert quick.status == "ran" and CALLS[-1] == os.path.join(root,
                                                             "toy_quick")
  assert quick.result["seeds"] == [0, 1]


def test_cached_result_without_stored_hash(tmp_path):
  config = {"name": "x", "steps": 3, "dims": [1, 2]}
  with open(tmp_path / "result.json", "w") as f:
    json.dump(dict(held=True, config=config), f)
  chash = harness.config_hash(config)
  assert reproduce.cached_result(str(tmp_path), chash)["held"] is True
  assert reproduce.cached_result(str(tmp_path), "0" * 16) is None
  assert reproduce.cached_result(str(tmp_path / "none"), chash) is None


def test_failed_run_is_reported_not_raised(tmp_path):
  path = _write_config(str(tmp_path), "bad", fail=True)
  out = reproduce.run_experiment("bad", path, str(tmp_path / "runs"),
                                 progress=False)
  assert out.status == "failed" and out.result is None
  assert out.error == "RuntimeError: toy failure"
  with open(tmp_path / "runs" / "bad" / "log.txt") as f:
    assert "Traceback" in f.read()
  missing = reproduce.run_experiment("nope", str(tmp_path / "nope.py"),
                                     str(tmp_path / "runs"), progress=False)
  assert missing.status == "failed"
  assert missing.error.startswith("config did not load")


def test_refuses_to_empty_a_foreign_folder(tmp_path):
  path = _write_config(str(tmp_path), "toy")
  foreign = tmp_path / "runs" / "toy"
  foreign.mkdir(parents=True)
  (foreign / "precious.txt").write_text("keep")
  out = reproduce.run_experiment("toy", path, str(tmp_path / "runs"),
                                 progress=False)
  assert out.status == "failed" and "refusing to empty" in out.error
  assert (foreign / "precious.txt").read_text() == "keep"


# ----------------------------------------------------------------------------
# metrics.jsonl (harness.run).
# ----------------------------------------------------------------------------


def test_metrics_jsonl_has_step_and_final_lines(tmp_path):
  path = _write_config(str(tmp_path), "toy")
  config = harness.load_config(path)
  wd = str(tmp_path / "wd")
  for _ in range(2):   # a rerun starts the log afresh
    out = harness.run(config, wd)
  with open(os.path.join(wd, harness.METRICS_FILE)) as f:
    rows = [json.loads(l) for l in f]
  steps = [r for r in rows if r["step"] is not None]
  assert steps == [dict(metric="loss", value=1.0 + s, arm="a", seed=s,
                        step=1) for s in range(3)]
  final = [r for r in rows if r["step"] is None]
  acc = [r for r in final if r["metric"] == "acc"]
  assert [(r["arm"], r["seed"], r["value"]) for r in acc] == [
      ("a", 0, 0.5), ("a", 1, 0.5), ("a", 2, 0.5),
      ("b", 0, 0.25), ("b", 1, 0.75), ("b", 2, 1.25)]
  pooled = [r for r in final if r["metric"] == "pooled"]
  assert [(r["arm"], r["seed"], r["index"], r["value"]) for r in pooled] == [
      ("a", None, 0, 1.0), ("b", None, 0, 2.0)]
  assert len(rows) == 3 + 6 + 2
  assert out["config_hash"] == harness.config_hash(config)


def test_log_metrics_rejects_non_scalars(tmp_path):
  with pytest.raises(ValueError, match="at least one"):
    harness.log_metrics(str(tmp_path))
  with pytest.raises(ValueError, match="'loss' must be a scalar"):
    harness.log_metrics(str(tmp_path), loss=[1.0, 2.0])
  with pytest.raises(TypeError, match="'loss' must be a real scalar"):
    harness.log_metrics(str(tmp_path), loss="high")


def test_progress_bar_run(tmp_path):
  path = _write_config(str(tmp_path), "toy")
  out = harness.run(harness.load_config(path), str(tmp_path / "wd"),
                    progress=True, expected_s=3.0)
  assert out["held"] is True
  assert not harness._BARS  # pylint: disable=protected-access


# ----------------------------------------------------------------------------
# End to end.
# ----------------------------------------------------------------------------

_E2E = ("loss_reweighting_linreg", "madpo_margins")


def test_quick_end_to_end(tmp_path):
  workdir = tmp_path / "runs"
  report = tmp_path / "results" / "REPORT.md"
  results_file = tmp_path / "RESULTS.json"
  # Without jaxkit's XLA flag (this process set it), so that the subprocess
  # shows whether it imports jaxkit before JAX's backend starts.
  xla_flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                       if "ynn_fusion" not in f)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags)
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", "--quick",
       f"--only={','.join(_E2E)}", f"--workdir={workdir}",
       f"--report={report}", f"--results_file={results_file}"],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # jaxkit was imported before JAX's backend started (its XLA work-arounds
  # apply; otherwise it warns).
  assert "jaxkit was imported after" not in proc.stderr
  assert not results_file.exists()     # quick variants are never recorded
  text = report.read_text()
  assert "**Quick variants**" in text
  for name in _E2E:
    wd = workdir / f"{name}_quick"
    with open(wd / "result.json") as f:
      result = json.load(f)
    assert result["config"]["quick"] is True
    assert (wd / "metrics.jsonl").exists() and (wd / "log.txt").exists()
    assert f"[`{name}`](#{name})" in text
    assert f"### {name}" in text
    assert list((report.parent / "plots" / name).glob("*.png"))
    assert f"[{name}] " in proc.stdout
  assert "/ 2 run.**" in text

  # Rerun in-process: both results are reused, nothing is run again.
  configs = presets.discover()
  outcomes = reproduce.reproduce(
      list(_E2E), configs=configs, workdir=str(workdir),
      report=str(report), results_file=str(results_file), quick=True,
      force=False, record_results=False, command="again", progress=False)
  assert [o.status for o in outcomes] == ["cached", "cached"]
  text = report.read_text()
  assert "2 reused" in text
  for name in configs:   # the index lists every config
    assert f"| `{name}` |" in text


def test_record_refuses_quick(tmp_path):
  with pytest.raises(ValueError, match="full-variant"):
    reproduce.reproduce([], configs={}, workdir=str(tmp_path),
                        report=str(tmp_path / "R.md"),
                        results_file=str(tmp_path / "R.json"), quick=True,
                        force=False, record_results=True, command="x",
                        progress=False)


def test_readme_documents_reproduce():
  with open(os.path.join(_ROOT, "experiments", "README.md")) as f:
    text = f.read()
  assert "python -m experiments.reproduce --preset=demo" in text
  assert "experiments/RESULTS.json" in text
