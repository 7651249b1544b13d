r"""CPU backend (``implementation='cpu_native'``): a C++ kernel via the XLA FFI.

XLA:CPU evaluates ``exp`` at ~1.5 ns per element, so a ``[1024, 32000]``
cross-entropy takes ~50 ms there; ``cpu_native.cc`` (AVX-512 intrinsics, or
a loop the compiler auto-vectorises elsewhere; a polynomial ``exp``; rows on
XLA's intra-op thread pool) is limited by reading the logits instead.

The library is compiled at first use, like Triton's launcher or
``torch.utils.cpp_extension.load``::

  ${CXX:-g++} -O3 -march=native -fno-trapping-math -std=c++17 -shared -fPIC \\
      -I<jax.ffi.include_dir()> cpu_native.cc -o <cache>/cross_entropy_<hash>.so

and cached in ``${JAXKIT_CACHE_DIR:-~/.cache/jaxkit}/kernels/`` under a name
that hashes the source, the jaxlib version, the compiler command and the
CPU's feature flags (a ``-march=native`` binary is never loaded on another
kind of CPU sharing the home directory). The build writes a temporary file
and renames it, so concurrent processes (pytest-xdist) may build at once.
Without a working compiler the backend warns once (``RuntimeWarning`` with
the compiler's output) and raises :class:`BackendUnsupportedError`, so
``implementation=None`` falls back to XLA. ``JAXKIT_NATIVE_KERNELS=0``
switches the backend off.

The backend also declines (at trace time) float64 / float16 logits, any
platform but CPU, and explicitly sharded operands (``jax.typeof(x).sharding``
with a named axis: a custom call cannot take them in explicit-sharding
mode), or, inside ``jax.shard_map``, logits and labels that vary over
different mesh axes. Under automatic sharding XLA gathers the operands and
runs the kernel on whole arrays (correct, not partitioned); inside
``jax.shard_map`` it runs on each shard. Derivatives: a ``custom_jvp``
whose tangent :math:`\langle \mathrm{softmax}(z) - e_y, \dot z\rangle` takes
its coefficient from the second native handler (one pass, ``exp((z - m) -
r)``), so ``jax.grad`` (its transpose), ``jax.jvp`` and ``jax.hessian`` all
work; second and higher orders differentiate the coefficient in XLA.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import platform
import shlex
import subprocess
import tempfile
import threading
import warnings

import jax
import jax.numpy as jnp
import jaxlib

from jaxkit.kernels import _registry

SOURCE = pathlib.Path(__file__).with_name("cpu_native.cc")
FWD_TARGET = "jaxkit_cross_entropy_fwd"
BWD_TARGET = "jaxkit_cross_entropy_bwd"
_FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-std=c++17",
          "-shared", "-fPIC")
_SUPPORTED_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


class _Loader:
  """Process-wide state of the native library (see :func:`load`)."""

  def __init__(self):
    self.lock = threading.Lock()
    self.library: ctypes.CDLL | None = None
    self.error: str | None = None  # why the library is unavailable
    self.warned = False
    self.registered = False  # FFI targets registered (never undone)
    self.keep_alive: list[ctypes.CDLL] = []


_LOADER = _Loader()


def enabled() -> bool:
  """False when ``JAXKIT_NATIVE_KERNELS`` is ``0`` / ``false`` / ``off``."""
  value = os.environ.get("JAXKIT_NATIVE_KERNELS", "1").strip().lower()
  return value not in ("0", "false", "no", "off")


def cache_dir() -> pathlib.Path:
  """``${JAXKIT_CACHE_DIR:-~/.cache/jaxkit}/kernels``."""
  root = os.environ.get("JAXKIT_CACHE_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "jaxkit")
  return pathlib.Path(root) / "kernels"


def _compiler() -> list[str]:
  return shlex.split(os.environ.get("CXX") or "g++")


def _cpu_fingerprint() -> str:
  """The CPU model and feature flags (what ``-march=native`` compiles for)."""
  parts = [platform.machine(), platform.processor()]
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      for line in f:
        key = line.split(":", 1)[0].strip()
        if key in ("flags", "Features", "model name", "CPU part"):
          parts.append(line.strip())
        elif not line.strip() and len(parts) > 2:
          break  # the first processor is enough
  except OSError:
    pass
  return "\n".join(parts)


def build_command(output: str | os.PathLike[str]) -> list[str]:
  """The compiler command line that builds the library into ``output``."""
  return [*_compiler(), *_FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE),
          "-o", str(output)]


def library_path() -> pathlib.Path:
  """Where the library for this source / jaxlib / compiler / CPU is cached."""
  h = hashlib.sha256()
  for part in (SOURCE.read_bytes(), jaxlib.__version__.encode(),
               shlex.join(build_command("OUT")).encode(),
               _cpu_fingerprint().encode()):
    h.update(part)
    h.update(b"\0")
  return cache_dir() / f"cross_entropy_{h.hexdigest()[:20]}.so"


def _build(target: pathlib.Path) -> None:
  """Compiles into a temporary file next to ``target``, then renames it."""
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp",
                             dir=target.parent)
  os.close(fd)
  cmd = build_command(tmp)
  try:
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            check=False)
    except (OSError, subprocess.SubprocessError) as e:
      raise RuntimeError(f"`{shlex.join(cmd)}` could not run: {e}") from None
    if proc.returncode != 0 or os.path.getsize(tmp) == 0:
      tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
      raise RuntimeError(
          f"`{shlex.join(cmd)}` failed (exit code {proc.returncode})"
          + (f":\n{tail}" if tail else "; it printed nothing."))
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _open(path: pathlib.Path) -> ctypes.CDLL:
  library = ctypes.CDLL(str(path))
  library.JaxkitCrossEntropyFwd  # pylint: disable=pointless-statement
  library.JaxkitCrossEntropyBwd  # pylint: disable=pointless-statement
  return library


def _register(library: ctypes.CDLL) -> None:
  """Registers the two FFI targets once per process (they cannot be undone)."""
  if _LOADER.registered:
    return
  for name, symbol in ((FWD_TARGET, library.JaxkitCrossEntropyFwd),
                       (BWD_TARGET, library.JaxkitCrossEntropyBwd)):
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(symbol),
                                platform="cpu")
  _LOADER.keep_alive.append(library)
  _LOADER.registered = True


def load() -> None:
  """Builds (or finds in the cache), loads and registers the library.

  Runs once per process; later calls return at once (or raise again).

  Raises:
    BackendUnsupportedError: the build or load failed (a ``RuntimeWarning``
      with the compiler's output is issued the first time).
  """
  with _LOADER.lock:
    if _LOADER.library is None and _LOADER.error is None:
      path = library_path()
      try:
        try:
          library = _open(path)
        except OSError:  # not cached yet (or unreadable): build it
          _build(path)
          library = _open(path)
        _register(library)
        _LOADER.library = library
      except (OSError, RuntimeError, AttributeError) as e:
        _LOADER.error = str(e)
    if _LOADER.error is not None:
      if not _LOADER.warned:
        _LOADER.warned = True
        warnings.warn(
            "jaxkit: the native CPU cross-entropy kernel is unavailable; "
            "falling back to XLA (several times slower). Install a C++17 "
            "compiler or point CXX at one; set JAXKIT_NATIVE_KERNELS=0 to "
            f"silence this. Reason: {_LOADER.error}", RuntimeWarning,
            stacklevel=2)
      raise _registry.BackendUnsupportedError(
          f"cross_entropy: the native CPU kernel is unavailable: "
          f"{_LOADER.error}")


def reset() -> None:
  """Forgets the loaded library / build error / warning (for tests).

  The next :func:`load` looks at ``JAXKIT_CACHE_DIR`` and ``CXX`` again.
  Registered FFI targets stay registered (XLA cannot unregister them).
  """
  with _LOADER.lock:
    _LOADER.library = None
    _LOADER.error = None
    _LOADER.warned = False


def _explicitly_sharded(x: jax.Array) -> bool:
  spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None)
  return spec is not None and any(s is not None for s in spec)


def _manual_axes(x: jax.Array):
  """The varying manual axes of ``x``'s type (inside ``jax.shard_map``)."""
  return getattr(jax.typeof(x), "manual_axis_type", None)


def _forward(logits, labels):
  # Result types derived from the operands' keep their manual-axis type
  # (inside jax.shard_map) and sharding.
  row = jax.typeof(labels).update(dtype=jnp.dtype(jnp.float32),
                                  weak_type=False)
  return jax.ffi.ffi_call(FWD_TARGET, (row, row, row),
                          vmap_method="broadcast_all")(logits, labels)


@jax.custom_jvp
def _cross_entropy(logits, labels):
  return _forward(logits, labels)[0]


@jax.custom_jvp
def _softmax_minus_onehot(logits, labels):
  """``softmax(z) - onehot(y)`` in the logits' dtype (the native backward)."""
  _, shift, logsum = _forward(logits, labels)
  out = jax.typeof(logits).update(weak_type=False)
  ones = jnp.ones(jnp.shape(labels), jnp.float32)
  return jax.ffi.ffi_call(BWD_TARGET, out, vmap_method="broadcast_all")(
      logits, labels, shift, logsum, ones)


@_cross_entropy.defjvp
def _cross_entropy_jvp(primals, tangents):
  # The tangent is linear in dz with a coefficient computed natively, so
  # reverse mode (its transpose, dz = g * coefficient) and forward mode both
  # work; higher orders differentiate the coefficient (rule below).
  logits, labels = primals
  dz = tangents[0]
  coef = _softmax_minus_onehot(logits, labels)
  tangent = jnp.sum(coef.astype(jnp.float32) * dz.astype(jnp.float32), -1)
  return _cross_entropy(logits, labels), tangent


@_softmax_minus_onehot.defjvp
def _softmax_minus_onehot_jvp(primals, tangents):
  # Second and higher orders: d softmax = p * (dz - <p, dz>), in XLA.
  logits, labels = primals
  dz = tangents[0].astype(jnp.float32)
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  dp = p * (dz - jnp.sum(p * dz, axis=-1, keepdims=True))
  return _softmax_minus_onehot(logits, labels), dp.astype(logits.dtype)


def run(logits: jax.Array, labels: jax.Array, *, interpret: bool) -> jax.Array:
  """Backend entry (see api.py); ``labels`` are int32 of ``logits.shape[:-1]``.

  Raises:
    BackendUnsupportedError: not on CPU, switched off, unsupported dtype,
      explicitly sharded operands, or no library.
  """
  del interpret  # native code: there is no interpreter
  if _registry.current_platform() != "cpu":
    raise _registry.BackendUnsupportedError(
        "cross_entropy: implementation='cpu_native' runs on the CPU backend "
        f"only, not {_registry.current_platform()!r}.")
  if not enabled():
    raise _registry.BackendUnsupportedError(
        "cross_entropy: the native CPU kernel is switched off "
        "(JAXKIT_NATIVE_KERNELS=0).")
  if logits.dtype not in _SUPPORTED_DTYPES:
    raise _registry.BackendUnsupportedError(
        "cross_entropy: the native CPU kernel takes float32 or bfloat16 "
        f"logits, got {logits.dtype}.")
  if _explicitly_sharded(logits) or _explicitly_sharded(labels):
    raise _registry.BackendUnsupportedError(
        "cross_entropy: the native CPU kernel cannot take explicitly sharded "
        f"operands (logits {jax.typeof(logits)}).")
  if _manual_axes(logits) != _manual_axes(labels):
    raise _registry.BackendUnsupportedError(
        "cross_entropy: inside shard_map the native CPU kernel needs logits "
        "and labels that vary over the same mesh axes, got "
        f"{jax.typeof(logits)} and {jax.typeof(labels)}.")
  load()
  return _cross_entropy(logits, labels)
