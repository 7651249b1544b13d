"""Runs every experiment config's ``quick`` variant end to end, and tests the harness.

Each file in ``experiments/configs/`` (except ``__init__.py``) is discovered,
loaded with the argument ``quick`` and run in-process through
:func:`experiments.harness.run` in a temporary workdir; the test checks the
result convention (``result.json`` keys, ``result.md``, a PNG). One subprocess
test runs the exact ``make demo`` command line (quick variant).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from experiments import harness

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_CONFIG_DIR = os.path.join(_ROOT, "experiments", "configs")
_CONFIGS = sorted(
    p for p in glob.glob(os.path.join(_CONFIG_DIR, "*.py"))
    if not os.path.basename(p).startswith("_"))


def test_configs_are_discovered():
  names = [os.path.basename(p) for p in _CONFIGS]
  assert "divergence_tour.py" in names
  assert "fdpg_alignment_diversity.py" in names


@pytest.mark.parametrize(
    "path", _CONFIGS, ids=[os.path.basename(p)[:-3] for p in _CONFIGS])
def test_quick_variant_runs_end_to_end(path, tmp_path):
  config = harness.load_config(path, "quick")
  assert isinstance(config, ml_collections.ConfigDict)
  with open(path) as f:
    source = f.read()
  # The docstring shows the exact launch command.
  assert "python -m experiments.main" in source
  assert f"--config=experiments/configs/{os.path.basename(path)}" in source
  config.lock()   # as DEFINE_config_file(lock_config=True) does

  workdir = str(tmp_path / "workdir")
  out = harness.run(config, workdir)

  with open(os.path.join(workdir, "result.json")) as f:
    result = json.load(f)
  for key in harness.RESULT_KEYS:
    assert key in result, key
  assert result == json.loads(json.dumps(out))
  assert isinstance(result["held"], bool)
  assert isinstance(result["claim"], str) and "arXiv" in result["claim"]
  assert result["arms"]
  assert result["metric"]["name"]
  for arm, stats in result["metric"]["per_arm"].items():
    assert {"mean", "std", "per_seed"} <= set(stats), arm
    assert len(stats["per_seed"]) == len(result["seeds"])
  assert result["config"]["runner"] == config.runner
  assert result["wall_s"] > 0
  assert os.path.exists(os.path.join(workdir, "result.md"))
  assert glob.glob(os.path.join(workdir, "*.png"))
  # metrics.jsonl: the harness logs every metric's value per arm per seed.
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    final = [r for r in map(json.loads, f) if r["step"] is None]
  assert len(final) == sum(len(s["per_seed"]) for m in result["metrics"]
                           for s in m["per_arm"].values())
  assert result["config_hash"] == harness.config_hash(result["config"])
  if config.get("checkpoint_every"):
    # Runs on the training stack resume from their orbax checkpoints: a second
    # run in the same workdir restores every seed at its last step and reports
    # the same numbers (and the same loss curves, read back from the log).
    again = harness.run(config, workdir)
    assert again["metrics"] == out["metrics"]


def test_make_demo_command_line(tmp_path):
  # The command `make demo` runs (python -m experiments.reproduce
  # --preset=demo), as a subprocess, restricted to its first experiment in
  # the quick variant (every demo config's quick variant runs above; the
  # report writer is tested in reproduce_test.py).
  workdir = str(tmp_path / "demo")
  report = str(tmp_path / "results" / "REPORT.md")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", "--preset=demo",
       "--only=divergence_tour", "--quick", f"--workdir={workdir}",
       f"--report={report}"],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(report) as f:
    text = f.read()
  assert "divergence_tour" in text and "holds?" in text
  assert "not recorded" in text or "recorded" in text   # the index
  run_dir = os.path.join(workdir, "divergence_tour_quick")
  assert os.path.exists(os.path.join(run_dir, "result.json"))
  assert os.path.exists(os.path.join(run_dir, "f_generators.png"))
  with open(os.path.join(run_dir, "log.txt")) as f:   # the printed table
    log = f.read()
  assert "f_divergence(gan)" in log and "gaussian_w2" in log


def test_main_requires_workdir():
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.main",
       "--config=experiments/configs/divergence_tour.py:quick"],
      cwd=_ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode != 0
  assert "--workdir" in proc.stderr


# ----------------------------------------------------------------------------
# Harness pieces.
# ----------------------------------------------------------------------------


class TestParseArg:

  def test_defaults(self):
    a = harness.parse_arg(None, quick=False, seeds=5, lr=0.1, name="x")
    assert (a.quick, a.seeds, a.lr, a.name) == (False, 5, 0.1, "x")

  def test_bare_bool_and_typed_values(self):
    a = harness.parse_arg("quick,seeds=3, lr=0.5 ,name=abc",
                          quick=False, seeds=5, lr=0.1, name="x")
    assert (a.quick, a.seeds, a.lr, a.name) == (True, 3, 0.5, "abc")
    assert isinstance(a.seeds, int) and isinstance(a.lr, float)

  def test_explicit_bool_and_converter(self):
    a = harness.parse_arg("quick=false,dims=1:2", quick=True,
                          dims=((0,), lambda s: tuple(map(int, s.split(":")))))
    assert a.quick is False
    assert a.dims == (1, 2)

  @pytest.mark.parametrize("arg,match", [
      ("speedy", "unknown config argument 'speedy'"),
      ("seeds", "needs a value"),
      ("seeds=three", "'seeds'"),
      ("quick=maybe", "'quick'"),
  ])
  def test_errors(self, arg, match):
    with pytest.raises(ValueError, match=match):
      harness.parse_arg(arg, quick=False, seeds=5)

  def test_real_configs_accept_their_options(self):
    path = os.path.join(_CONFIG_DIR, "fdpg_alignment_diversity.py")
    config = harness.load_config(path, "quick,seeds=3,steps=7")
    assert config.seeds == 3
    assert config.exact["steps"] == 7 and config.sampled["steps"] == 7
    with pytest.raises(ValueError, match="unknown config argument"):
      harness.load_config(path, "fast")


class TestResolve:

  def test_resolves_module_attributes(self):
    import jaxkit  # pylint: disable=g-import-not-at-top
    assert harness.resolve("jaxkit.divergences.get_generator") is (
        jaxkit.divergences.get_generator)
    assert harness.resolve("os.path.join") is os.path.join

  def test_function_shadowing_its_subpackage_wins(self):
    # jaxkit.kernels re-exports the function `sparse_attention` over the
    # subpackage of the same name; both spellings name the function.
    from jaxkit import kernels  # pylint: disable=g-import-not-at-top
    fn = kernels.sparse_attention
    assert callable(fn) and not isinstance(fn, type(kernels))
    assert harness.resolve("jaxkit.kernels.sparse_attention") is fn
    assert harness.resolve(
        "jaxkit.kernels.sparse_attention.sparse_attention") is fn
    assert harness.resolve("jaxkit.divergences").__name__ == (
        "jaxkit.divergences")

  @pytest.mark.parametrize("name,match", [
      ("jaxkit.divergences.no_such_divergence",
       "has no attribute 'no_such_divergence'"),
      ("no_such_package_xyz.fn", "no module 'no_such_package_xyz'"),
      ("jaxkit._src.checks.check_rank", "private component '_src'"),
      ("kl", "dotted name"),
      ("jaxkit..kl", "malformed"),
      (3, "dotted name"),
  ])
  def test_errors(self, name, match):
    with pytest.raises(ValueError, match=match):
      harness.resolve(name)

  def test_resolve_config_fails_loudly_on_a_missing_function(self):
    config = ml_collections.ConfigDict(dict(
        runner="os.path.join",
        arms=[dict(name="a", fn="jaxkit.divergences.kl"),
              dict(name="b", fn="jaxkit.divergences.not_there")]))
    with pytest.raises(ValueError, match="not_there"):
      harness.resolve_config(config)

  def test_resolve_config_collects_every_name(self):
    config = ml_collections.ConfigDict(dict(
        runner="os.path.join",
        loss_fn="os.path.exists",
        names_ref="jaxkit.divergences.GENERATOR_NAMES",
        nested=dict(arms=[dict(fn="os.path.basename")]),
        other="not.a.name"))
    fns = harness.resolve_config(config)
    assert set(fns) == {"os.path.join", "os.path.exists", "os.path.basename",
                        "jaxkit.divergences.GENERATOR_NAMES"}
    assert "kl" in fns["jaxkit.divergences.GENERATOR_NAMES"]

  def test_fn_keys_must_be_callable(self):
    config = ml_collections.ConfigDict(dict(
        runner="os.path.join", bad_fn="jaxkit.divergences.GENERATOR_NAMES"))
    with pytest.raises(ValueError, match="non-callable"):
      harness.resolve_config(config)


class TestResults:

  def test_metric_summary(self):
    m = harness.metric("acc", {"a": [1.0, 3.0], "b": [2.0]})
    assert m["per_arm"]["a"]["mean"] == 2.0
    assert m["per_arm"]["a"]["per_seed"] == [1.0, 3.0]
    assert m["per_arm"]["b"]["std"] == 0.0
    with pytest.raises(ValueError, match="no values"):
      harness.metric("acc", {"a": []})

  def test_write_result_checks_keys(self, tmp_path):
    with pytest.raises(ValueError, match="missing keys"):
      harness.write_result(str(tmp_path), dict(claim="c"))

  def test_write_result_files(self, tmp_path):
    m = harness.metric("acc", {"a": [1.0, 3.0], "b": [2.0, 2.5]})
    result = dict(claim="c (arXiv:0000.00000)", arms=["a", "b"], metric=m,
                  metrics=[m], held=True, verdict="v", config={"x": 1},
                  seeds=[0, 1], wall_s=0.5, extra=float("nan"))
    out = harness.write_result(str(tmp_path), result)
    with open(tmp_path / "result.json") as f:
      assert json.load(f) == out
    assert out["extra"] == "nan"     # JSON has no NaN
    md = (tmp_path / "result.md").read_text()
    assert "| a | 2 ± 1.41 |" in md
    assert (tmp_path / "metrics.png").exists()
