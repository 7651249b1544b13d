r"""Quantize a Flax NNX model's ``nnx.Linear`` / ``nnx.Einsum`` kernels by regex rules.

qwix-style rules select layers by a regular expression over the module path
(``'layers/0/mlp/up'``); the first matching rule wins. Each matched
``kernel`` is seen as a Flax ``[in, out]`` matrix (an ``nnx.Einsum`` such as
the attention projections ``'btd,dnh->btnh'`` by flattening its contracted
and its output axes; one without such a view raises) and replaced **in
place** by its quantized-
then-dequantized value (the XLA dequantize-then-dot path; a quantized matmul
kernel can consume the returned :class:`~jaxkit.quantization.QuantizedArray`
objects instead). Calibration-based methods (``'awq'``, ``'adadim'``,
``'nupes'`` with inputs) run the model on ``calibration_batches`` once,
eagerly, and record every matched layer's inputs.

For AWQ the scales cannot be folded into an arbitrary preceding op of a
generic model, so the kernel becomes :math:`Q(\mathrm{diag}(s)W)/s` — the
same function the AWQ search scores (llm-awq's ``w_quantize(W·s)/s``);
folding :math:`1/s` into the previous RMSNorm / linear gives identical
outputs.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxkit._src import kernel_view
from jaxkit.quantization import awq as awq_lib
from jaxkit.quantization import formats as F
from jaxkit.quantization import nonuniform
from jaxkit.quantization import per_ic

_METHODS = ("rtn", "awq", "adadim", "nupes", "nf", "fp")
_CALIBRATED = ("awq", "adadim")


@dataclasses.dataclass(frozen=True)
class QuantRule:
  """Which layers get which quantization (first matching rule wins).

  Attributes:
    module_path: regex matched (``re.fullmatch``) against the ``/``-joined
      path of each ``nnx.Linear`` / ``nnx.Einsum`` (e.g. ``'.*mlp.*'``).
    method: ``'rtn'``, ``'awq'``, ``'adadim'``, ``'nupes'``, ``'nf'`` or
      ``'fp'``.
    bits: bits (ignored by ``'fp'``, which uses ``fp_format``).
    group_size: group size along the input axis.
    symmetric: symmetric codes (``'rtn'``, ``'awq'``, ``'adadim'``).
    fp_format: ``'e4m3'`` / ``'e5m2'`` / ``'e2m1'`` for ``'fp'``.

  Examples:
    >>> import re
    >>> from jaxkit.quantization import QuantRule
    >>> rules = [QuantRule('.*attn.*', method='rtn', bits=8, group_size=None),
    ...          QuantRule('.*', method='awq', bits=4, group_size=64)]
    >>> path = 'layers/3/mlp/up'
    >>> next(r for r in rules if re.fullmatch(r.module_path, path)).method
    'awq'
  """

  module_path: str
  method: str = "rtn"
  bits: int = 4
  group_size: int | None = 128
  symmetric: bool = False
  fp_format: str = "e2m1"


def _linear_paths(model):
  """``(path, module)`` of every ``nnx.Linear`` / ``nnx.Einsum`` with a kernel."""
  out = []
  for path, module in nnx.iter_graph(model):
    if (isinstance(module, (nnx.Linear, nnx.Einsum))
        and module.kernel[...].ndim >= 2):
      out.append(("/".join(str(p) for p in path), module))
  return out


def _capture_inputs(model, modules, batches, views, max_rows=None):
  """Eagerly runs the model and records the ``[rows, K]`` inputs of ``modules``.

  At most ``max_rows`` rows per layer are kept (the first ones seen).
  """
  captured = {id(m): [] for m in modules}
  kept = {id(m): 0 for m in modules}
  originals = {}
  for m in modules:
    cls = type(m)

    def call(self, x, *a, _orig=cls.__call__, **k):
      key = id(self)
      if max_rows is None or kept[key] < max_rows:
        rows = views[key].flatten_inputs(jnp.asarray(x))
        if max_rows is not None:
          rows = rows[:max_rows - kept[key]]
        kept[key] += rows.shape[0]
        captured[key].append(rows)
      return _orig(self, x, *a, **k)

    originals[id(m)] = cls
    m.__class__ = type(cls.__name__, (cls,), {"__call__": call})
  try:
    n = 0
    for batch in batches:
      n += 1
      if isinstance(batch, (tuple, list)):
        model(*batch)
      else:
        model(batch)
  finally:
    for m in modules:
      m.__class__ = originals[id(m)]
  if n == 0:
    raise ValueError("`calibration_batches` is empty; calibration-based "
                     "methods need at least one batch.")
  return {k: jnp.concatenate(v, 0) if v else None
          for k, v in captured.items()}


def quantize_model(model: nnx.Module, rules: Sequence[QuantRule],
                   calibration_batches: Iterable[Any] | None = None, *,
                   max_rows: int | None = None) -> dict[str, Any]:
  r"""Quantizes the ``nnx.Linear`` / ``nnx.Einsum`` kernels of ``model`` in place.

  Every kernel is quantized as its ``[in, out]`` matrix view (groups run
  along the flattened input axis ``K``); an ``nnx.Einsum`` kernel
  ``[d, n, h]`` is quantized as ``[d, n·h]`` and ``[n, h, d]`` as
  ``[n·h, d]``, and written back in its own shape.

  Args:
    model: a Flax NNX module (any nesting of ``nnx.Linear`` / ``nnx.Einsum``
      layers).
    rules: :class:`QuantRule` s; the first whose ``module_path`` matches a
      layer's path applies; unmatched layers stay in float.
    calibration_batches: iterable of model inputs (an array or a tuple of
      positional arguments per batch), needed by ``'awq'`` and ``'adadim'``.
    max_rows: keep at most this many input rows (tokens) per calibrated
      layer (the first ones seen); ``None`` keeps all. Bounds the memory of
      calibration on long inputs (all layers' inputs are held at once).

  Returns:
    ``{path: QuantizedArray | SparseOutlierArray | (QuantizedArray, s)}``
    for every quantized layer (``(q, s)`` for AWQ), each of the layer's
    ``[in, out]`` matrix view, e.g. for
    :func:`~jaxkit.quantization.quantized_bytes`.

  Raises:
    ValueError: unknown method, missing / empty calibration data for a
      calibrated method, a layer that matched but was never called during
      calibration, a matched ``nnx.Einsum`` without an ``[in, out]`` view,
      and every error of the underlying quantizers.

  Examples:
    >>> from flax import nnx
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit.quantization import QuantRule, quantize_model
    >>> m = nnx.Sequential(nnx.Linear(8, 16, rngs=nnx.Rngs(0)), jax.nn.relu,
    ...                    nnx.Linear(16, 4, rngs=nnx.Rngs(1)))
    >>> out = quantize_model(m, [QuantRule('.*', bits=4, group_size=8)])
    >>> sorted(out)
    ['layers/0', 'layers/2']
  """
  for r in rules:
    if r.method not in _METHODS:
      raise ValueError(f"rule {r.module_path!r}: `method` must be one of "
                       f"{_METHODS}, got {r.method!r}.")
  if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
    raise ValueError(f"`max_rows` must be a positive int or None, got "
                     f"{max_rows!r}.")
  chosen = []
  views = {}
  for path, module in _linear_paths(model):
    for r in rules:
      if re.fullmatch(r.module_path, path):
        chosen.append((path, module, r))
        views[id(module)] = kernel_view.matrix_view(module, path)
        break
  acts = {}
  need = [m for _, m, r in chosen if r.method in _CALIBRATED]
  if need:
    if calibration_batches is None:
      raise ValueError("`calibration_batches` is required for AWQ / AdaDim "
                       "rules.")
    acts = _capture_inputs(model, need, calibration_batches, views, max_rows)
  out = {}
  for path, module, r in chosen:
    view = views[id(module)]
    w = view.to_matrix(module.kernel[...])
    x = acts.get(id(module))
    if r.method in _CALIBRATED and x is None:
      raise ValueError(f"layer {path!r} was not called on the calibration "
                       "batches.")
    if r.method == "rtn":
      q = F.quantize(w, bits=r.bits, group_size=r.group_size, axis=0,
                     symmetric=r.symmetric)
      new = F.dequantize(q)
    elif r.method == "awq":
      q, s = awq_lib.awq_quantize(w, x, bits=r.bits, group_size=r.group_size,
                                  symmetric=r.symmetric)
      new = (F.dequantize(q, jnp.float32) / s[:, None]).astype(w.dtype)
      q = (q, s)
    elif r.method == "adadim":
      q, _ = per_ic.adadim_quantize(w, x, bits=r.bits,
                                    group_size=r.group_size,
                                    symmetric=r.symmetric)
      new = F.dequantize(q)
    elif r.method == "nupes":
      q, _ = nonuniform.nupes_quantize(w, bits=r.bits,
                                       group_size=r.group_size, axis=0)
      new = F.dequantize(q)
    elif r.method == "nf":
      q = nonuniform.nf_quantize(w, bits=r.bits, group_size=r.group_size,
                                 axis=0)
      new = F.dequantize(q)
    else:  # fp
      q = nonuniform.fp_quantize(w, format=r.fp_format,
                                 group_size=r.group_size, axis=0)
      new = F.dequantize(q)
    module.kernel[...] = view.from_matrix(
        jax.lax.stop_gradient(new).astype(w.dtype))
    out[path] = q
  return out
