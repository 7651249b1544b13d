"""Tests for the kernel backend dispatch (jaxkit.kernels._registry)."""

import jax
import pytest

from jaxkit.kernels import _registry as R


def _make(log):
  def tpu(x, *, interpret):
    log.append(("pallas_tpu", interpret))
    if x < 0:
      raise R.BackendUnsupportedError("negative x")
    return "tpu"

  def gpu(x, *, interpret):
    log.append(("pallas_gpu", interpret))
    return "gpu"

  def xla(x, *, interpret):
    log.append(("xla", interpret))
    return "xla"

  return (R.Backend("pallas_tpu", ("tpu",), tpu),
          R.Backend("pallas_gpu", ("gpu",), gpu),
          R.Backend("xla", None, xla))


def test_cpu_default_is_xla():
  assert jax.default_backend() == "cpu"
  log = []
  assert R.dispatch("op", _make(log), None, None, 1) == "xla"
  assert log == [("xla", False)]


def test_none_with_interpret_runs_first_pallas_backend_interpreted():
  log = []
  assert R.dispatch("op", _make(log), None, True, 1) == "tpu"
  assert log == [("pallas_tpu", True)]


def test_none_falls_back_when_a_backend_is_unsupported():
  log = []
  # The TPU kernel refuses negative x; the GPU kernel is next in line.
  assert R.dispatch("op", _make(log), None, True, -1) == "gpu"
  assert [n for n, _ in log] == ["pallas_tpu", "pallas_gpu"]


def test_explicit_pallas_off_platform_raises_without_interpret():
  with pytest.raises(R.BackendUnsupportedError, match="interpret=True"):
    R.dispatch("op", _make([]), "pallas_tpu", None, 1)


def test_explicit_backend_that_cannot_take_the_args_raises():
  with pytest.raises(R.BackendUnsupportedError, match="negative x"):
    R.dispatch("op", _make([]), "pallas_tpu", True, -1)


def test_explicit_xla_ignores_platform():
  log = []
  assert R.dispatch("op", _make(log), "xla", None, 1) == "xla"


def test_unknown_implementation_and_bad_interpret():
  with pytest.raises(ValueError, match="`implementation`.*'triton'"):
    R.dispatch("op", _make([]), "triton", None, 1)
  with pytest.raises(TypeError, match="`interpret`"):
    R.dispatch("op", _make([]), None, "yes", 1)


def test_all_failed_raises_group():
  def bad(x, *, interpret):
    raise R.BackendUnsupportedError("no")

  backends = (R.Backend("pallas_tpu", ("tpu",), bad), R.Backend("xla", None,
                                                                  bad))
  with pytest.raises(ExceptionGroup, match="all implementations failed"):
    R.dispatch("op", backends, None, True, 1)
