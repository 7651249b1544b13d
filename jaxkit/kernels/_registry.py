"""Backend dispatch shared by every kernel in :mod:`jaxkit.kernels` (tokamax style).

Each op registers an ordered tuple of :class:`Backend` s. A backend is a
callable ``fn(*args, interpret: bool, **kwargs)`` that either computes the op or
raises :class:`BackendUnsupportedError` *at trace time* when it cannot handle
the given shapes / dtypes / formats. ``"xla"`` (the reference) is always last
and supports everything the op accepts.

Rules (the same for every op):

* ``implementation=None`` tries the op's backends in order, skipping those
  whose platform is not the current one, and falls back to ``"xla"``. On CPU
  ``None`` means ``"xla"`` (or the op's native CPU backend, see below) unless
  ``interpret=True``, in which case the first Pallas backend that supports
  the arguments runs in interpret mode — that is how the kernels are tested
  on CPU.
* An explicit name must run: a Pallas backend on the wrong platform without
  ``interpret=True``, or one that does not support the arguments, raises
  :class:`BackendUnsupportedError` naming the backend and the reason.
* ``interpret=None`` means ``False`` (compile for the device).
* A *native* backend (``Backend(..., native=True)``, e.g. a C++ kernel called
  through the XLA FFI on CPU) has no interpreter: it runs on its platforms
  only, natively, whatever ``interpret`` says (so ``None`` with
  ``interpret=True`` on CPU runs a native CPU kernel before any interpreted
  Pallas one), and off its platforms it is skipped, or raises when named.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax


class BackendUnsupportedError(NotImplementedError):
  """A kernel backend cannot run these arguments here (raised at trace time).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.kernels import (BackendUnsupportedError, as_qmatmul_weight,
    ...                             quantized_matmul)
    >>> from jaxkit.quantization import quantize
    >>> w = as_qmatmul_weight(quantize(jnp.ones((64, 8)), bits=8, group_size=32,
    ...                                axis=0))
    >>> other = "pallas_gpu" if jax.default_backend() == "tpu" else "pallas_tpu"
    >>> try:  # a compiled kernel for another platform
    ...   quantized_matmul(jnp.ones((2, 64)), w, implementation=other)
    ... except BackendUnsupportedError:
    ...   print("unsupported here")
    unsupported here
  """


@dataclasses.dataclass(frozen=True)
class Backend:
  """One implementation of an op.

  Attributes:
    name: the value users pass as ``implementation=`` (``"xla"``,
      ``"pallas_tpu"``, ``"pallas_gpu"``, ...).
    platforms: ``jax.default_backend()`` values the compiled kernel runs on;
      ``None`` for the XLA reference (runs everywhere).
    fn: ``fn(*args, interpret: bool, **kwargs)``.
    native: a natively compiled kernel (not Pallas): no interpreter, so it
      only runs on ``platforms`` and always gets ``interpret=False``.
  """
  name: str
  platforms: tuple[str, ...] | None
  fn: Callable[..., Any]
  native: bool = False

  @property
  def is_pallas(self) -> bool:
    """A platform-specific kernel (Pallas, or native when ``native``)."""
    return self.platforms is not None


def current_platform() -> str:
  """``jax.default_backend()``: ``"cpu"``, ``"gpu"`` or ``"tpu"``."""
  return jax.default_backend()


def dispatch(op: str, backends: Sequence[Backend], implementation: str | None,
             interpret: bool | None, *args, **kwargs):
  """Runs ``op`` with the chosen backend; see the module docstring for rules.

  Args:
    op: the op's public name, used in error messages.
    backends: the op's backends in preference order; the last is the XLA
      reference.
    implementation: a backend name or ``None`` (best available).
    interpret: run a Pallas backend with the Pallas interpreter.
    *args: forwarded to the backend.
    **kwargs: forwarded to the backend.

  Returns:
    Whatever the backend returns.

  Raises:
    ValueError: ``implementation`` is not a known name.
    BackendUnsupportedError: an explicitly named backend cannot run here.
  """
  names = [b.name for b in backends]
  if implementation is not None and implementation not in names:
    raise ValueError(
        f"`implementation` of {op} must be one of {names} or None, got "
        f"{implementation!r}.")
  if interpret not in (None, True, False):
    raise TypeError(f"`interpret` of {op} must be a bool or None, got "
                    f"{interpret!r}.")
  interpret = bool(interpret)
  platform = current_platform()

  if implementation is not None:
    backend = backends[names.index(implementation)]
    off_platform = backend.is_pallas and platform not in backend.platforms
    if off_platform and backend.native:
      raise BackendUnsupportedError(
          f"{op}: implementation={implementation!r} is a native kernel for "
          f"{'/'.join(backend.platforms)} but the default backend is "
          f"{platform!r}; use implementation=None for the best available one.")
    if off_platform and not interpret:
      raise BackendUnsupportedError(
          f"{op}: implementation={implementation!r} compiles for "
          f"{'/'.join(backend.platforms)} but the default backend is "
          f"{platform!r}; pass interpret=True to run the kernel with the Pallas "
          "interpreter, or implementation=None for the best available one.")
    return backend.fn(*args, interpret=interpret and not backend.native,
                      **kwargs)

  errors = []
  for backend in backends:
    if backend.is_pallas:
      if platform not in backend.platforms and (backend.native or
                                                not interpret):
        continue
    try:
      interpreted = interpret and backend.is_pallas and not backend.native
      return backend.fn(*args, interpret=interpreted, **kwargs)
    except BackendUnsupportedError as e:
      errors.append(e)
  raise ExceptionGroup(f"{op}: all implementations failed", errors)
