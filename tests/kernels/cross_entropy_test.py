"""Tests for jaxkit.kernels.cross_entropy (native CPU kernel and XLA reference).

Oracle: numpy float64 ``logsumexp(z) - z_y`` and ``softmax(z) - onehot(y)``
on the (bf16-rounded, where relevant) input values.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxkit.kernels import _registry
from jaxkit.kernels import BackendUnsupportedError
from jaxkit.kernels import cross_entropy
from jaxkit.kernels.cross_entropy import cpu_native
from jaxkit.losses import comp_sum_loss

IMPLS = ("cpu_native", "xla")


@pytest.fixture(scope="module", autouse=True)
def native_library():
  """Builds (or loads from the cache) the native library once per module."""
  cpu_native.reset()
  cpu_native.load()
  yield
  cpu_native.reset()


def _f64(z):
  """The exact values of ``z`` (bf16 / f32 / f64) in float64."""
  z = jnp.asarray(z)
  return np.asarray(z.astype(jnp.promote_types(z.dtype, jnp.float32)),
                    np.float64)


def _oracle(z, y):
  """float64 losses and d(sum w * loss)/dz = w (softmax - onehot)."""
  z = _f64(z)
  y = np.asarray(y)
  m = np.max(z, axis=-1, keepdims=True)
  e = np.exp(z - m)
  s = np.sum(e, axis=-1, keepdims=True)
  zy = np.take_along_axis(z, y[..., None], axis=-1)[..., 0]
  loss = np.log(s[..., 0]) + m[..., 0] - zy
  onehot = np.zeros_like(z)
  np.put_along_axis(onehot, y[..., None], 1.0, axis=-1)
  return loss, e / s - onehot


def _data(shape, seed=0, scale=3.0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  z = jnp.asarray(rng.standard_normal(shape) * scale, dtype)
  y = jnp.asarray(rng.integers(0, shape[-1], shape[:-1]), jnp.int32)
  return z, y


def _uses_native(fn, *args) -> bool:
  return "jaxkit_cross_entropy_fwd" in str(jax.make_jaxpr(fn)(*args))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("v", [1, 15, 17, 1000])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_values_and_grads_match_oracle(impl, v, dtype):
  z, y = _data((6, v), seed=v, dtype=dtype)
  w = jnp.linspace(0.5, 2.0, 6)  # cotangent weights: g scales each row
  f = jax.jit(lambda z, y: cross_entropy(z, y, implementation=impl))
  loss = f(z, y)
  grad = jax.jit(jax.grad(
      lambda z: jnp.sum(w * cross_entropy(z, y, implementation=impl))))(z)
  want, want_grad = _oracle(z, y)
  assert loss.dtype == jnp.float32 and grad.dtype == dtype
  np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
  gtol = dict(rtol=1e-5, atol=1e-6) if dtype == jnp.float32 else dict(
      rtol=1e-2, atol=2e-3)  # the gradient is rounded to bf16
  np.testing.assert_allclose(np.asarray(grad, np.float32),
                             np.asarray(w)[:, None] * want_grad, **gtol)
  if v == 1:  # a single class: exactly 0
    np.testing.assert_array_equal(loss, 0.0)


def test_large_vocab_small_batch():
  z, y = _data((3, 32000), seed=1)
  want, want_grad = _oracle(z, y)
  np.testing.assert_allclose(cross_entropy(z, y), want, rtol=1e-5)
  grad = jax.grad(lambda z: jnp.sum(cross_entropy(z, y)))(z)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


def test_independent_calls_share_the_thread_pool():
  # Big enough for the multi-threaded path; XLA may run the calls at once.
  zs = [_data((64, 2048), seed=s)[0] for s in range(4)]
  y = _data((64, 2048))[1]
  f = jax.jit(lambda *zs: [cross_entropy(z, y) for z in zs])
  for z, loss in zip(zs, f(*zs)):
    np.testing.assert_allclose(loss, _oracle(z, y)[0], rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_extreme_logits_and_neg_inf(impl):
  z = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0, 5.0],
                [-1e4, -1e4, -1e4 + 2.0, -1e4, -1e4],
                [0.0, -np.inf, 1.0, -np.inf, 2.0],
                [-np.inf, 3.0, -np.inf, -np.inf, -np.inf]], np.float32)
  y = jnp.array([0, 2, 1, 1])
  want, want_grad = _oracle(z, y)
  loss, grad = jax.jit(jax.value_and_grad(
      lambda z: jnp.sum(cross_entropy(z, y, implementation=impl))))(z)
  np.testing.assert_allclose(
      cross_entropy(z, y, implementation=impl), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(loss, want.sum(), rtol=1e-5)
  np.testing.assert_allclose(grad, want_grad, atol=1e-6)
  assert np.all(np.isfinite(grad))


def test_bf16_extreme_logits():
  z = jnp.asarray([[1e4, -1e4, 9984.0], [-1e4, 0.0, -np.inf]], jnp.bfloat16)
  y = jnp.array([2, 0])
  want, want_grad = _oracle(z, y)
  np.testing.assert_allclose(cross_entropy(z, y), want, rtol=1e-5)
  grad = jax.grad(lambda z: jnp.sum(cross_entropy(z, y)))(z)
  np.testing.assert_allclose(np.asarray(grad, np.float32), want_grad,
                             atol=1e-2)


def test_rank3_and_rank1_inputs():
  z, y = _data((2, 3, 17), seed=2)
  want, want_grad = _oracle(z, y)
  np.testing.assert_allclose(cross_entropy(z, y), want, rtol=1e-5)
  grad = jax.grad(lambda z: jnp.sum(cross_entropy(z, y)))(z)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
  assert cross_entropy(z[0, 0], y[0, 0]).shape == ()
  np.testing.assert_allclose(cross_entropy(z[0, 0], y[0, 0]), want[0, 0],
                             rtol=1e-5)


def test_vmap_and_vmap_of_grad():
  z, y = _data((4, 5, 33), seed=3)
  want, want_grad = _oracle(z, y)
  f = jax.jit(jax.vmap(cross_entropy))
  np.testing.assert_allclose(f(z, y), want, rtol=1e-5)
  g = jax.jit(jax.vmap(jax.grad(lambda z, y: jnp.sum(cross_entropy(z, y)))))
  np.testing.assert_allclose(g(z, y), want_grad, rtol=1e-5, atol=1e-7)
  # Unbatched labels, batched logits (broadcast_all).
  f2 = jax.vmap(lambda z: cross_entropy(z, y[0]))
  np.testing.assert_allclose(f2(z), _oracle(z, jnp.broadcast_to(y[0],
                                                                 y.shape))[0],
                             rtol=1e-5)
  assert _uses_native(f, z, y)


@pytest.mark.parametrize("impl", IMPLS)
def test_out_of_range_labels_give_nan_rows(impl):
  z, _ = _data((4, 9), seed=4)
  y = jnp.array([-1, 3, 9, 1000])
  loss = np.asarray(cross_entropy(z, y, implementation=impl))
  want, want_grad = _oracle(z, jnp.array([0, 3, 0, 0]))
  assert np.isnan(loss[[0, 2, 3]]).all()
  np.testing.assert_allclose(loss[1], want[1], rtol=1e-5)
  grad = np.asarray(jax.grad(lambda z: jnp.sum(
      cross_entropy(z, y, implementation=impl)))(z))
  assert np.isnan(grad[[0, 2, 3]]).all()
  np.testing.assert_allclose(grad[1], want_grad[1], rtol=1e-5, atol=1e-7)
  # Other integer dtypes; wide labels never wrap into range.
  for dtype in (jnp.int8, jnp.uint8, jnp.uint32):
    np.testing.assert_allclose(
        cross_entropy(z, jnp.array([1, 3, 4, 8], dtype), implementation=impl),
        _oracle(z, jnp.array([1, 3, 4, 8]))[0], rtol=1e-5)
  bad = np.asarray(cross_entropy(
      z, jnp.array([2**31 + 3, 2**32 - 1, 9, 3], jnp.uint32),
      implementation=impl))
  assert np.isnan(bad[:3]).all() and np.isfinite(bad[3])
  with jax.enable_x64():
    big = jnp.array([2**32 + 3, 3, -(2**32) + 3, 3], jnp.int64)
    assert np.isnan(np.asarray(
        cross_entropy(z, big, implementation=impl))[[0, 2]]).all()


def test_native_agrees_with_xla():
  z, y = _data((16, 300), seed=5, scale=8.0)
  a = jax.jit(lambda z: cross_entropy(z, y, implementation="cpu_native"))(z)
  b = jax.jit(lambda z: cross_entropy(z, y, implementation="xla"))(z)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  ga = jax.grad(lambda z: jnp.sum(
      cross_entropy(z, y, implementation="cpu_native")))(z)
  gb = jax.grad(lambda z: jnp.sum(cross_entropy(z, y, implementation="xla")))(
      z)
  np.testing.assert_allclose(ga, gb, atol=1e-6)


def test_forward_mode_and_hessian_match_oracle():
  """jax.jvp and jax.hessian through the native backend (a custom_jvp).

  Oracle: jvp = <softmax(z) - e_y, dz>; Hessian of one row's loss =
  diag(p) - p p^T (numpy, float64).
  """
  z, y = _data((3, 7), seed=11)
  dz = jnp.asarray(np.random.default_rng(12).standard_normal((3, 7)),
                   jnp.float32)
  f = lambda z: cross_entropy(z, y, implementation="cpu_native")
  assert _uses_native(f, z)
  loss, tangent = jax.jvp(f, (z,), (dz,))
  want_loss, g = _oracle(z, y)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  np.testing.assert_allclose(tangent, np.sum(g * _f64(dz), -1), rtol=1e-5,
                             atol=1e-6)
  row = lambda zr: cross_entropy(zr, y[0], implementation="cpu_native")
  hess = jax.hessian(row)(z[0])
  p = g[0] + np.eye(7)[int(y[0])]
  np.testing.assert_allclose(hess, np.diag(p) - np.outer(p, p), atol=1e-6)
  jac = jax.jacfwd(f)(z)
  np.testing.assert_allclose(jac, jax.jacrev(f)(z), atol=1e-6)


def test_dispatch_on_cpu():
  z, y = _data((2, 8))
  assert _uses_native(cross_entropy, z, y)
  # No interpreter: interpret=True still runs the native kernel.
  assert _uses_native(lambda z, y: cross_entropy(z, y, interpret=True), z, y)
  assert not _uses_native(
      lambda z, y: cross_entropy(z, y, implementation="xla"), z, y)
  # comp_sum_loss(tau=1) routes through the kernel on CPU.
  assert _uses_native(lambda z, y: comp_sum_loss(z, y, tau=1.0), z, y)


def test_registry_rules_for_native_backends():
  log = []

  def backend(name):
    def fn(x, *, interpret):
      log.append((name, interpret))
      return name
    return fn

  backends = (_registry.Backend("native_gpu", ("gpu",), backend("native_gpu"),
                                native=True),
              _registry.Backend("native_cpu", ("cpu",), backend("native_cpu"),
                                native=True),
              _registry.Backend("xla", None, backend("xla")))
  # Off its platform a native backend is skipped even with interpret=True;
  # on it, it runs natively (interpret=False).
  assert _registry.dispatch("op", backends, None, True, 1) == "native_cpu"
  assert log == [("native_cpu", False)]
  assert _registry.dispatch("op", backends, "native_cpu", True, 1) == (
      "native_cpu")
  with pytest.raises(BackendUnsupportedError, match="native kernel for gpu"):
    _registry.dispatch("op", backends, "native_gpu", True, 1)


def test_float64_runs_xla():
  with jax.enable_x64():
    z, y = _data((3, 7), seed=6, dtype=jnp.float64)
    loss = cross_entropy(z, y)
    assert loss.dtype == jnp.float64
    np.testing.assert_allclose(loss, _oracle(z, y)[0], rtol=1e-12)
    assert not _uses_native(cross_entropy, z, y)
    with pytest.raises(BackendUnsupportedError, match="float32 or bfloat16"):
      cross_entropy(z, y, implementation="cpu_native")


def test_switched_off_by_env(monkeypatch):
  monkeypatch.setenv("JAXKIT_NATIVE_KERNELS", "0")
  z, y = _data((3, 7), seed=7)
  assert not _uses_native(cross_entropy, z, y)
  assert not _uses_native(lambda z, y: comp_sum_loss(z, y, tau=1.0), z, y)
  np.testing.assert_allclose(cross_entropy(z, y), _oracle(z, y)[0], rtol=1e-5)
  with pytest.raises(BackendUnsupportedError, match="JAXKIT_NATIVE_KERNELS"):
    cross_entropy(z, y, implementation="cpu_native")


@pytest.fixture
def broken_compiler(monkeypatch, tmp_path):
  monkeypatch.setenv("CXX", "/bin/false")
  monkeypatch.setenv("JAXKIT_CACHE_DIR", str(tmp_path))
  cpu_native.reset()
  yield tmp_path
  monkeypatch.undo()
  cpu_native.reset()


def test_compiler_failure_warns_once_and_falls_back(broken_compiler):
  z, y = _data((3, 7), seed=8)
  assert cpu_native.library_path().parent == broken_compiler / "kernels"
  with pytest.warns(RuntimeWarning, match="unavailable.*/bin/false"):
    loss = cross_entropy(z, y)
  np.testing.assert_allclose(loss, _oracle(z, y)[0], rtol=1e-5)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no second warning
    assert not _uses_native(cross_entropy, z, y)
    np.testing.assert_allclose(comp_sum_loss(z, y, tau=1.0),
                               _oracle(z, y)[0], rtol=1e-5)
    with pytest.raises(BackendUnsupportedError, match="exit code"):
      cross_entropy(z, y, implementation="cpu_native")
  assert not list((broken_compiler / "kernels").glob("*.tmp"))


def test_cache_name_depends_on_compiler_and_cpu(monkeypatch, tmp_path):
  monkeypatch.setenv("JAXKIT_CACHE_DIR", str(tmp_path))
  path = cpu_native.library_path()
  assert path.parent == tmp_path / "kernels"
  assert path.name.startswith("cross_entropy_") and path.suffix == ".so"
  monkeypatch.setenv("CXX", "clang++")
  assert cpu_native.library_path() != path
  monkeypatch.delenv("CXX")
  assert cpu_native.library_path() == path
  monkeypatch.setattr(cpu_native, "_cpu_fingerprint", lambda: "other cpu")
  assert cpu_native.library_path() != path
  cmd = cpu_native.build_command("out.so")
  assert "-march=native" in cmd and f"-I{jax.ffi.include_dir()}" in cmd


@pytest.fixture
def mesh8():
  def make(axis_type):
    return jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
  return make


def test_explicit_sharding_falls_back_and_matches(mesh8):
  mesh = mesh8(jax.sharding.AxisType.Explicit)
  z, y = _data((16, 37), seed=9)
  zs = jax.device_put(z, NamedSharding(mesh, P("data")))
  ys = jax.device_put(y, NamedSharding(mesh, P("data")))
  f = jax.jit(lambda z, y: cross_entropy(z, y))
  want, want_grad = _oracle(z, y)
  np.testing.assert_allclose(f(zs, ys), want, rtol=1e-5)
  assert not _uses_native(f, zs, ys)
  grad = jax.jit(jax.grad(lambda z, y: jnp.sum(cross_entropy(z, y))))(zs, ys)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(
      jax.jit(lambda z, y: comp_sum_loss(z, y, tau=1.0))(zs, ys), want,
      rtol=1e-5)
  with pytest.raises(BackendUnsupportedError, match="sharded"):
    jax.jit(lambda z, y: cross_entropy(z, y, implementation="cpu_native"))(
        zs, ys)


def test_auto_sharding_and_shard_map_run_native(mesh8):
  z, y = _data((16, 37), seed=10)
  want, want_grad = _oracle(z, y)
  mesh = mesh8(jax.sharding.AxisType.Auto)
  sh = NamedSharding(mesh, P("data"))
  zs, ys = jax.device_put(z, sh), jax.device_put(y, sh)
  f = jax.jit(lambda z, y: cross_entropy(z, y))
  np.testing.assert_allclose(f(zs, ys), want, rtol=1e-5)
  assert _uses_native(f, zs, ys)
  # Inside shard_map the kernel runs on each shard (value and gradient).
  mesh = mesh8(jax.sharding.AxisType.Explicit)
  sh = NamedSharding(mesh, P("data"))
  zs, ys = jax.device_put(z, sh), jax.device_put(y, sh)
  per_shard = jax.shard_map(cross_entropy, mesh=mesh, in_specs=P("data"),
                            out_specs=P("data"))
  np.testing.assert_allclose(jax.jit(per_shard)(zs, ys), want, rtol=1e-5)
  assert _uses_native(per_shard, zs, ys)
  grad = jax.jit(jax.grad(lambda z, y: jnp.sum(per_shard(z, y))))(zs, ys)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


def test_bad_inputs():
  z, y = _data((2, 5))
  with pytest.raises(ValueError, match="`logits`.*class axis"):
    cross_entropy(jnp.float32(1.0), jnp.int32(0))
  with pytest.raises(ValueError, match="V >= 1"):
    cross_entropy(jnp.zeros((2, 0)), y)
  with pytest.raises(TypeError, match="`logits`"):
    cross_entropy(jnp.zeros((2, 5), jnp.int32), y)
  with pytest.raises(TypeError, match="`labels`"):
    cross_entropy(z, y.astype(jnp.float32))
  with pytest.raises(ValueError, match="leading shape"):
    cross_entropy(z, y[:1])
  with pytest.raises(ValueError, match="`implementation`"):
    cross_entropy(z, y, implementation="pallas_tpu")
