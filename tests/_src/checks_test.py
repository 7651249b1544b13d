"""Tests for the private argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit._src import checks


def test_check_floating():
  assert checks.check_floating(np.ones(2, np.float32), "x").dtype == jnp.float32
  with pytest.raises(TypeError, match="`x`.*int32"):
    checks.check_floating(np.ones(2, np.int32), "x")
  with pytest.raises(TypeError, match="bool"):
    checks.check_floating(True, "x")


def test_compute_dtype_upcasts_16_bit():
  assert checks.compute_dtype(jnp.ones(1, jnp.bfloat16)) == jnp.float32
  assert checks.compute_dtype(jnp.ones(1, jnp.float16), jnp.ones(1, jnp.bfloat16)) == jnp.float32


def test_check_scalar():
  checks.check_scalar(0.5, "beta", positive=True)
  with pytest.raises(ValueError, match="`beta` must be > 0"):
    checks.check_scalar(0.0, "beta", positive=True)
  with pytest.raises(ValueError, match="alpha"):
    checks.check_scalar(1.0, "alpha", excluded=(0.0, 1.0))
  with pytest.raises(ValueError, match="scalar"):
    checks.check_scalar(np.ones(2), "beta")
  with pytest.raises(ValueError, match="finite"):
    checks.check_scalar(float("nan"), "beta")
  # Traced values pass through (they may be scheduled).
  jax.jit(lambda b: checks.check_scalar(b, "beta", positive=True) or b)(-1.0)


def test_check_where_refuses_wrong_way_broadcast():
  assert checks.check_where(None, (2, 3)) is None
  out = checks.check_where(np.ones((2, 1)), (2, 3))
  assert out.shape == (2, 3) and out.dtype == bool
  with pytest.raises(ValueError, match="where"):
    checks.check_where(np.ones(3), (2, 3))
  with pytest.raises(ValueError, match="mask"):
    checks.check_where(np.ones((2, 4)), (2, 3), "mask")


def test_check_log_normalized():
  lp = jnp.log(jnp.array([[0.2, 0.8], [0.5, 0.5]]))
  checks.check_log_normalized(lp, "log_p")
  with pytest.raises(ValueError, match="log_p.*off by 0.5"):
    checks.check_log_normalized(lp + jnp.log(1.5), "log_p")
  # Masked entries and fully masked rows are ignored.
  junk = jnp.array([[jnp.log(0.2), jnp.log(0.8), 5.0], [9.0, 9.0, 9.0]])
  checks.check_log_normalized(junk, "log_p",
                              where=np.array([[1, 1, 0], [0, 0, 0]], bool))


def test_normalize_axis():
  assert checks.normalize_axis(-1, 3) == (2,)
  assert checks.normalize_axis((0, -1), 3) == (0, 2)
  assert checks.normalize_axis(None, 2) == (0, 1)
  with pytest.raises(ValueError, match="repeats"):
    checks.normalize_axis((1, -2), 3)
  with pytest.raises(TypeError, match="axis"):
    checks.normalize_axis(1.0, 3)
