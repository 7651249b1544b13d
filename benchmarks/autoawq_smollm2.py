r"""AutoAWQ 0.2.9 vs jaxkit's AWQ on SmolLM2-135M-Instruct, W3-g64 (issue 6).

Runs real AutoAWQ (``awq.quantize.quantizer.AwqQuantizer``) and the jaxkit
experiment ``experiments/quantize_smollm2.py`` in one process, on the same
text, split and calibration windows, and compares perplexities and the chosen
scales.

Run from the repository root (AutoAWQ is not a jaxkit dependency: install it
with ``pip install --no-deps autoawq==0.2.9`` or pass the unpacked sdist)::

  PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.autoawq_smollm2 \
      [--autoawq-path DIR] [--layers N] [--out FILE] [--full-search]

What it does:

1. Tokens and split exactly as the experiment (``topics_text``, the GGUF
   tokenizer without special tokens, ``split_tokens``): evaluation = the
   first 8192 tokens as 16 windows of 512, calibration = the next 8192 as
   16 windows of 512.
2. Builds transformers' ``LlamaForCausalLM`` in float32 from the same GGUF
   (as ``tests/nn/loaders/smollm2_test.py``), ``attn_implementation='sdpa'``
   (causal through SDPA's ``is_causal`` when no mask is passed),
   ``config.use_cache = False``.
3. Runs ``AwqQuantizer`` (``w_bit=3, group_size=64, zero_point=True,
   version='gemm', duo_scaling=True, apply_clip=True,
   export_compatible=True``: scale search + ``apply_scale`` + clip search +
   ``apply_clip``, no packing) with ``LlamaAWQForCausalLM``'s static methods
   as ``awq_model`` and the 16 calibration windows as a list of token-id
   lists (``get_calib_dataset`` keeps them as they are: no tokenizer, no BOS,
   none longer than 512; the ``samples`` tensor it builds is checked to equal
   ours). AutoAWQ's files are not modified; its behaviour is adjusted only
   through a subclass and the ``awq_model`` shim:

   * transformers 5: with ``use_cache=True`` the caught layer kwargs carry
     a ``DynamicCache`` that every layer / attention call would append to
     (attention over duplicated keys); ``config.use_cache = False`` avoids
     it. The caught ``attention_mask`` is ``None`` (SDPA, no padding), so
     the attention inside the search is causal via ``is_causal``. This is
     verified: the self-attention output AutoAWQ computes for block 0 in
     ``_search_best_scale`` on the calibration windows is compared with the
     one of a normal model forward (hook), and that forward is checked to be
     causal (outputs on 256-token prefixes equal the first 256 positions of
     the full windows).
   * CPU bug: ``_compute_best_scale`` backs up ``module2inspect.state_dict()``
     with ``.cpu()``, which on CPU returns the same storage, so the first
     candidate's in-place ``weight.mul_(scales)`` corrupts the backup and
     every ``load_state_dict`` restores :math:`W s_0` instead of :math:`W`
     (candidates 1..19 are scored on the wrong weights and the block is left
     scaled). The subclass makes ``module2inspect.state_dict`` return clones
     for the duration of the call (so each per-candidate restore is exact, as
     on a GPU), and also clones the state before and loads it back after the
     call (checking that nothing had changed).
   * ``--layers N``: the shim's ``get_model_layers`` returns a write-through
     view of the first N decoder layers.

   The chosen scales of every search (``(prev_op, layers, scales)``), the 20
   losses (``_compute_loss``) and AutoAWQ's ``x_mean`` are recorded; the
   chosen ratio is the first minimum of the losses (checked against the
   candidate that equals the chosen scales).
4. Pseudo-quantizes every linear of the quantized decoder layers with
   AutoAWQ's ``pseudo_quantize_tensor`` (W3 g64 zero point) in float32 and
   computes the perplexity in torch float32 (mean NLL of the 511 next-token
   predictions of each of the 16 windows, all predictions averaged, exp; as
   ``jaxkit.sparsity.perplexity(..., window=512)``). Also: the same after
   casting the weights to float16 first (as AutoAWQ's ``_apply_quant`` does
   before packing), torch float and torch RTN W3-g64 (sanity checks against
   the experiment's float / ``rtn-w3-g64`` rows).
5. Runs the experiment in the same process,
   ``experiments.quantize_smollm2.main(['--methods', 'float', 'rtn-w3-g64',
   'awq-w3-g64', ...])``, recording the scales of its
   ``autoawq_block_scales`` calls (by wrapping it; the inputs are the float
   calibration inputs of ``capture_calibration``), and compares per block and
   per search (q/k/v, gate/up, down): chosen ratio index :math:`k`
   (:math:`\alpha = k/20`), cosine and max relative difference of the scale
   vectors, AutoAWQ's own loss at our ratio, and the max relative difference
   between AutoAWQ's :math:`\bar{|x|}` and ours (torch vs JAX calibration
   inputs). With ``--layers N`` the experiment's internals
   (``capture_calibration``, ``quantize_block``) quantize only the first N
   blocks instead of ``main``. ``--full-search`` adds a second jaxkit run
   that scores the candidates on all calibration tokens (``--search-windows
   16 --search-tokens 8192``, AutoAWQ's data; the experiment's default
   scores attention candidates on 2 of the 16 windows and MLP candidates on
   1024 random tokens).

The script is importable without torch / AutoAWQ (imports inside ``main``).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from typing import Any

import numpy as np

WBIT, GROUP = 3, 64
N_GRID = 20
SEARCHES = ("qkv", "mlp", "down")  # AutoAWQ's three searches under GQA
ALL_TOKENS = ("16", "8192")  # --search-windows / --search-tokens for "all"
DEFAULT_METHODS = ("float", "rtn-w3-g64", "awq-w3-g64")
FULL_SEARCH_METHODS = ("awq-w3-g64-clip512",)


def _load() -> str:
  return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _import_autoawq(path: str | None):
  """Imports AutoAWQ's quantizer (from ``path`` if given)."""
  if path:
    if not os.path.isdir(os.path.join(path, "awq")):
      raise SystemExit(f"--autoawq-path {path!r} has no awq/ package.")
    sys.path.insert(0, os.path.abspath(path))
  try:
    from awq.quantize import quantizer  # pylint: disable=g-import-not-at-top
    from awq.models import llama  # pylint: disable=g-import-not-at-top
    from awq.utils import module as awq_module  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit(
        f"cannot import AutoAWQ ({e}); run `pip install --no-deps "
        "autoawq==0.2.9` or pass --autoawq-path DIR (an unpacked "
        "autoawq-0.2.9 sdist).") from e
  return quantizer, llama, awq_module


# --------------------------------------------------------------------------
# torch side.
# --------------------------------------------------------------------------


def _hf_model():
  """transformers LlamaForCausalLM (float32, SDPA) from the SmolLM2 GGUF."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint  # pylint: disable=g-import-not-at-top
  from jaxkit.nn.loaders import smollm2  # pylint: disable=g-import-not-at-top
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  path = smollm2.smollm2_gguf_path()
  meta = dict(load_gguf_checkpoint(path)["config"])
  meta.pop("model_type", None)
  meta.pop("_model_name_or_path", None)
  cfg = transformers.LlamaConfig(**meta)
  cfg._attn_implementation = "sdpa"  # pylint: disable=protected-access
  cfg.use_cache = False
  hf = transformers.LlamaForCausalLM(cfg).eval()
  tensors = load_gguf_checkpoint(path, return_tensors=True,
                                 model_to_load=hf)["tensors"]
  missing = hf.load_state_dict(
      {k: torch.as_tensor(np.asarray(v)) for k, v in tensors.items()},
      strict=False)
  if set(missing.missing_keys) - {"lm_head.weight"} or missing.unexpected_keys:
    raise RuntimeError(f"GGUF -> transformers: {missing}")
  hf.tie_weights()
  hf.requires_grad_(False)
  return hf.float()


def _torch_ppl(hf, ev: np.ndarray, window: int, batch: int = 4) -> float:
  """Perplexity of disjoint windows (each scores its ``window - 1`` tokens)."""
  import torch  # pylint: disable=g-import-not-at-top
  wins = ev[:len(ev) // window * window].reshape(-1, window)
  nll, count = 0.0, 0
  with torch.no_grad():
    for b in range(0, len(wins), batch):
      ids = torch.as_tensor(wins[b:b + batch], dtype=torch.long)
      logits = hf(ids, use_cache=False).logits.float()[:, :-1]
      lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
      nll -= float(lp.double().sum())
      count += lp.numel()
  return math.exp(nll / count)


class _Stop(Exception):
  pass


def _layer0_attention(hf, ids):
  """Block 0's self-attention (input, output) in a normal model forward."""
  import torch  # pylint: disable=g-import-not-at-top
  got = {}

  def hook(_, args, kwargs, out):
    got["x"] = (args[0] if args else kwargs["hidden_states"]).clone()
    got["y"] = (out[0] if isinstance(out, tuple) else out).clone()
    raise _Stop

  h = hf.model.layers[0].self_attn.register_forward_hook(hook,
                                                         with_kwargs=True)
  try:
    with torch.no_grad():
      hf.model(torch.as_tensor(ids, dtype=torch.long), use_cache=False)
  except _Stop:
    pass
  finally:
    h.remove()
  return got["x"], got["y"]


def _rel(a, b) -> float:
  """max |a - b| / max |b|."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _pseudo_quantize_layers(layers, quantize, awq_module, dtype=None):
  """``W <- pseudo_quantize_tensor(W)`` for every linear of ``layers``."""
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    for layer in layers:
      for _, lin in awq_module.get_named_linears(layer).items():
        w = lin.weight.data
        wq = quantize(w if dtype is None else w.to(dtype))[0]
        lin.weight.data = wq.to(w.dtype)


def _duo_candidates(x_mean, w_mean):
  """AutoAWQ's 20 duo-scaling candidates (its formula, float32 torch)."""
  import torch  # pylint: disable=g-import-not-at-top
  out = []
  for k in range(N_GRID):
    r = k / N_GRID
    s = (x_mean.pow(r) / (w_mean.pow(1 - r) + 1e-4)).clamp(min=1e-4)
    out.append(s / (s.max() * s.min()).sqrt())
  return torch.stack(out).numpy()


def _nearest(cands: np.ndarray, s: np.ndarray) -> tuple[int, float]:
  """Index of the candidate row closest to ``s`` (max rel diff) and it."""
  d = np.max(np.abs(cands - s[None]) / np.abs(s[None]), axis=1)
  k = int(np.argmin(d))
  return k, float(d[k])


def run_autoawq(hf, cal: np.ndarray, n_layers: int, qz, llama, awq_module,
                ref_attn) -> dict[str, Any]:
  """AutoAWQ's AwqQuantizer on ``hf`` (in place); returns its records."""
  import torch  # pylint: disable=g-import-not-at-top
  base = qz.AwqQuantizer
  info: dict[str, Any] = {"searches": [], "checks": {}}

  class Layers:
    """Write-through view of the first ``n`` decoder layers."""

    def __init__(self, layers, n):
      self._layers, self._n = layers, n

    def __len__(self):
      return self._n

    def __getitem__(self, i):
      if not -self._n <= i < self._n:
        raise IndexError(i)
      return self._layers[i % self._n]

    def __setitem__(self, i, m):
      self._layers[i % self._n] = m

  class Shim:
    """``awq_model`` for the quantizer: LlamaAWQForCausalLM's methods."""
    model_type = "llama"
    get_layers_for_scaling = staticmethod(
        llama.LlamaAWQForCausalLM.get_layers_for_scaling)
    move_embed = staticmethod(llama.LlamaAWQForCausalLM.move_embed)

    @staticmethod
    def get_model_layers(model):
      return Layers(llama.LlamaAWQForCausalLM.get_model_layers(model),
                    n_layers)

  class Quantizer(base):
    """AwqQuantizer + records + the CPU backup fix (no code copied)."""
    _losses = None

    def _search_best_scale(self, module, prev_op, layers, inp,
                           module2inspect=None, kwargs={}):  # pylint: disable=dangerous-default-value
      self._cur = {"block": next(i for i in range(len(self.modules))
                                 if self.modules[i] is module),
                   "kwargs_keys": sorted(kwargs)}
      t0 = time.perf_counter()
      prev, names, s = super()._search_best_scale(
          module, prev_op, layers, inp, module2inspect=module2inspect,
          kwargs=kwargs)
      rec = self._cur
      rec.update(prev_op=prev, layers=names, scales=s.float().numpy(),
                 seconds=time.perf_counter() - t0)
      rec["search"] = {"self_attn.q_proj": "qkv", "mlp.gate_proj": "mlp",
                       "mlp.down_proj": "down"}.get(names[0], names[0])
      info["searches"].append(rec)
      return prev, names, s

    def _compute_loss(self, fp16_output, int_w_output, device):
      loss = super()._compute_loss(fp16_output, int_w_output, device)
      if self._losses is not None:
        self._losses.append(loss)
      return loss

    def _compute_best_scale(self, x, w_mean, x_mean, module2inspect,
                            linears2scale, fp16_output, kwargs={}):  # pylint: disable=dangerous-default-value
      rec = self._cur
      if (rec["block"] == 0 and module2inspect is self.modules[0].self_attn
          and ref_attn is not None):
        rx, ry = ref_attn
        info["checks"]["block0_attn_input_rel"] = _rel(x, rx)
        info["checks"]["block0_attn_output_rel"] = _rel(fp16_output, ry)
        info["checks"]["block0_attn_kwargs"] = {
            k: (type(v).__name__ if not isinstance(v, tuple)
                else f"tuple{[tuple(t.shape) for t in v]}")
            for k, v in kwargs.items()}
      backup = {k: v.detach().clone()
                for k, v in module2inspect.state_dict().items()}
      orig_sd = module2inspect.state_dict
      module2inspect.state_dict = lambda *a, **k: {
          n: t.detach().clone() for n, t in orig_sd(*a, **k).items()}
      self._losses = []
      try:
        best = super()._compute_best_scale(
            x, w_mean, x_mean, module2inspect, linears2scale, fp16_output,
            kwargs)
      finally:
        del module2inspect.state_dict  # the instance attribute set above
        losses, self._losses = self._losses, None
        after = module2inspect.state_dict()
        rec["restore_max_abs"] = max(
            float((after[k] - backup[k]).abs().max()) for k in backup)
        module2inspect.load_state_dict(backup)
      rec["losses"] = np.asarray(losses, np.float64)
      rec["x_mean"] = x_mean.float().numpy().copy()
      cands = _duo_candidates(x_mean.float().view(-1), w_mean.float().view(-1))
      rec["ratio"] = int(np.argmin(rec["losses"]))  # first minimum, as `<`
      rec["ratio_by_scales"], rec["ratio_match"] = _nearest(
          cands, best.float().numpy())
      return best

  samples_seen = []
  orig_calib = qz.get_calib_dataset

  def calib(*a, **k):
    out = orig_calib(*a, **k)
    samples_seen.append(torch.cat(out, 0).numpy())
    return out

  qz.get_calib_dataset = calib
  try:
    t0 = time.perf_counter()
    q = Quantizer(
        Shim(), hf, None, w_bit=WBIT, group_size=GROUP, zero_point=True,
        version="gemm", calib_data=[[int(t) for t in w] for w in cal],
        split="train", text_column="text", duo_scaling=True,
        export_compatible=True, apply_clip=True, max_calib_samples=128,
        max_calib_seq_len=cal.shape[1])
    info["init_s"] = time.perf_counter() - t0
  finally:
    qz.get_calib_dataset = orig_calib
  info["checks"]["samples_equal"] = bool(
      len(samples_seen) == 1 and samples_seen[0].shape == cal.shape
      and np.array_equal(samples_seen[0], cal))
  info["checks"]["module_kwargs"] = sorted(
      f"{k}={'None' if v is None else type(v).__name__}"
      for k, v in q.module_kwargs.items())
  t0 = time.perf_counter()
  q.quantize()
  info["quantize_s"] = time.perf_counter() - t0
  info["quantizer"] = q
  return info


# --------------------------------------------------------------------------
# jaxkit side.
# --------------------------------------------------------------------------


def _our_record(weights: dict[str, Any], acts: dict[str, Any],
                scales: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """Ratio index, x_mean and scales of our three searches of one block."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxkit.quantization import awq as awq_lib  # pylint: disable=g-import-not-at-top
  out = {}
  for search, names, akey in (("qkv", ("q", "k", "v"), "attn_in"),
                              ("mlp", ("gate", "up"), "mlp_in"),
                              ("down", ("down",), "down_in")):
    cat = jnp.concatenate([weights[n] for n in names], axis=1)
    cands = np.asarray(awq_lib.awq_candidate_scales(
        acts[akey], grid=N_GRID, weight=cat, group_size=GROUP))
    s = np.asarray(scales[names[0]], np.float32)
    k, d = _nearest(cands, s)
    out[search] = {"scales": s, "ratio": k, "ratio_match": d,
                   "x_mean": np.asarray(jnp.mean(jnp.abs(
                       acts[akey].astype(jnp.float32)), axis=0))}
  return out


def run_ours(ev, cal, n_layers: int, depth: int, search_flags: list[str],
             methods: list[str], out_path: str | None
             ) -> tuple[list[dict[str, Any]], dict[str, list]]:
  """jaxkit's experiment; returns its rows and the recorded AWQ scales."""
  from experiments import quantize_smollm2 as E  # pylint: disable=g-import-not-at-top
  recorded: dict[str, list] = {}
  current = {"method": None}
  orig_scales, orig_block = E.autoawq_block_scales, E.quantize_block

  def scales_wrapper(blk, acts, **kw):
    s = orig_scales(blk, acts, **kw)
    weights = {n: E._kernel2d(getattr(getattr(blk, sub), n), 1)[0]  # pylint: disable=protected-access
               for n, sub in (("q", "attn"), ("k", "attn"), ("v", "attn"),
                              ("gate", "mlp"), ("up", "mlp"),
                              ("down", "mlp"))}
    recorded.setdefault(current["method"], []).append((weights, acts, s))
    return s

  def block_wrapper(blk, method, *a, **kw):
    current["method"] = method.name
    return orig_block(blk, method, *a, **kw)

  E.autoawq_block_scales, E.quantize_block = scales_wrapper, block_wrapper
  try:
    if n_layers >= depth:
      argv = ["--methods", *methods, *search_flags]
      if out_path:
        argv += ["--out", out_path]
      rows = E.main(argv)
    else:
      rows = _run_ours_partial(E, ev, cal, n_layers, search_flags, methods)
  finally:
    E.autoawq_block_scales, E.quantize_block = orig_scales, orig_block
  recs = {m: [_our_record(*r) for r in v] for m, v in recorded.items()}
  return rows, recs


def _run_ours_partial(E, ev, cal, n_layers, search_flags, methods):  # pylint: disable=invalid-name
  """As ``E.main`` but quantizing only the first ``n_layers`` blocks."""
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from jaxkit.nn.loaders import smollm2  # pylint: disable=g-import-not-at-top
  from jaxkit.sparsity import perplexity  # pylint: disable=g-import-not-at-top
  flags = dict(zip(search_flags[::2], search_flags[1::2]))
  E.SEARCH_WINDOWS = int(flags.get("--search-windows", E.SEARCH_WINDOWS))
  E.SEARCH_TOKENS = int(flags.get("--search-tokens", E.SEARCH_TOKENS))
  model = smollm2.load_smollm2()
  graphdef, fp_state = nnx.split(model)
  fwd = jax.jit(lambda st, t: nnx.merge(graphdef, st)(t))
  acts, rows = None, []
  for name in methods:
    meth = E.parse_method(name)
    model_q = nnx.merge(graphdef, fp_state, copy=True)
    row = {"method": f"{name} (first {n_layers} blocks)", "bits": meth.bits,
           "group_size": meth.group_size}
    if meth.kind != "float":
      if meth.kind in E.CALIBRATED and acts is None:
        acts = E.capture_calibration(model_q, cal)
      t0 = time.perf_counter()
      scale_s = 0.0
      for i in range(n_layers):
        _, s = E.quantize_block(model_q.blocks[i], meth,
                                None if acts is None else acts[i], None)
        scale_s += s
      jax.block_until_ready(nnx.state(model_q))
      row["quant_s"] = time.perf_counter() - t0
      if meth.kind.startswith("awq"):
        row["scale_s"] = scale_s
    _, st = nnx.split(model_q)
    row["ppl"] = perplexity(lambda t, st=st: fwd(st, t), ev, window=E.WINDOW)
    print(f"jaxkit {row['method']}: ppl {row['ppl']:.3f}", flush=True)
    rows.append(row)
  return rows


# --------------------------------------------------------------------------
# Comparison and report.
# --------------------------------------------------------------------------


def compare(awq_searches: list[dict[str, Any]],
            ours: list[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
  """One row per (block, search) present on both sides."""
  rows = []
  for a in awq_searches:
    b = a["block"]
    if b >= len(ours) or a["search"] not in ours[b]:
      continue
    o = ours[b][a["search"]]
    sa, so = a["scales"].astype(np.float64), o["scales"].astype(np.float64)
    cos = float(sa @ so / (np.linalg.norm(sa) * np.linalg.norm(so)))
    losses = a["losses"]
    rows.append({
        "block": b, "search": a["search"], "awq_ratio": a["ratio"],
        "our_ratio": o["ratio"], "cos": cos,
        "max_rel": float(np.max(np.abs(sa - so) / np.abs(sa))),
        "loss_gap": float(losses[o["ratio"]] / losses[a["ratio"]] - 1.0),
        "x_mean_rel": float(np.max(np.abs(a["x_mean"] - o["x_mean"]) /
                                   np.abs(a["x_mean"]))),
        "match": max(a["ratio_match"], o["ratio_match"]),
    })
  return rows


def fmt_compare(rows: list[dict[str, Any]], label: str) -> str:
  lines = [
      f"Scale searches, AutoAWQ vs jaxkit ({label}); ratio = k in "
      "alpha = k/20; loss gap = AutoAWQ's own loss at our k / its minimum "
      "- 1; x_mean rel = max relative difference of mean|x| (torch vs JAX "
      "inputs).", "",
      "| block | search | AutoAWQ k | jaxkit k | cos | max rel diff | "
      "AutoAWQ loss gap | x_mean rel |",
      "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['block']} | {r['search']} | {r['awq_ratio']} | "
        f"{r['our_ratio']}{'' if r['awq_ratio'] == r['our_ratio'] else ' *'}"
        f" | {r['cos']:.6f} | {r['max_rel']:.2e} | {r['loss_gap']:.2e} | "
        f"{r['x_mean_rel']:.1e} |")
  return "\n".join(lines)


def summarize(rows: list[dict[str, Any]]) -> str:
  parts = []
  for search in SEARCHES + ("all",):
    sel = [r for r in rows if search in ("all", r["search"])]
    if not sel:
      continue
    agree = sum(r["awq_ratio"] == r["our_ratio"] for r in sel)
    dk = [abs(r["awq_ratio"] - r["our_ratio"]) for r in sel]
    gaps = [r["loss_gap"] for r in sel if r["awq_ratio"] != r["our_ratio"]]
    parts.append(
        f"{search}: {agree}/{len(sel)} same ratio"
        + (f", |dk| max {max(dk)}, mean {np.mean(dk):.2f}" if dk else "")
        + (f", AutoAWQ loss gap at our k: median {np.median(gaps):.2e}, "
           f"max {max(gaps):.2e}" if gaps else "")
        + f"; min cos {min(r['cos'] for r in sel):.4f}")
  return "\n".join(f"- {p}" for p in parts)


def main(argv=None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--autoawq-path", default=None,
                 help="directory holding AutoAWQ's awq/ package (default: "
                 "import awq from the environment)")
  p.add_argument("--layers", type=int, default=None,
                 help="quantize only the first N decoder layers (quick "
                 "check; perplexities are still reported)")
  p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                 help="jaxkit methods run with the experiment's default "
                 "search subsets (default: %(default)s)")
  p.add_argument("--full-search", action="store_true",
                 help="also run jaxkit's AWQ with the candidates scored on "
                 "all calibration tokens (--search-windows 16 "
                 "--search-tokens 8192)")
  p.add_argument("--full-search-methods", nargs="+",
                 default=list(FULL_SEARCH_METHODS),
                 help="methods of the --full-search run (default: "
                 "%(default)s, i.e. AutoAWQ's procedure: all tokens for the "
                 "scale search, 512 strided tokens for the clip search)")
  p.add_argument("--out", default=None,
                 help="write a markdown summary here (the experiment's own "
                 "tables go to FILE.jaxkit<N>.md)")
  args = p.parse_args(argv)
  qz, llama, awq_module = _import_autoawq(args.autoawq_path)
  import torch  # pylint: disable=g-import-not-at-top
  from experiments import quantize_smollm2 as E  # pylint: disable=g-import-not-at-top
  from jaxkit.nn.loaders import smollm2  # pylint: disable=g-import-not-at-top

  load0 = _load()
  t_all = time.perf_counter()
  tok = smollm2.smollm2_tokenizer()
  ids = np.asarray(tok(E.topics_text(), add_special_tokens=False)["input_ids"])
  ev, cal = E.split_tokens(ids)
  hf = _hf_model()
  depth = len(hf.model.layers)
  n_layers = min(args.layers or depth, depth)
  print(f"{len(ids)} tokens; eval {ev.shape}, calibration {cal.shape}; "
        f"{depth} layers, quantizing {n_layers}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load {_load()}", flush=True)
  res: dict[str, Any] = {"torch": {}, "n_layers": n_layers, "depth": depth}
  fp_sd = {k: v.clone() for k, v in hf.state_dict().items()}

  # Float perplexity and the causality check of a normal forward.
  t0 = time.perf_counter()
  res["torch"]["float"] = _torch_ppl(hf, ev, E.WINDOW)
  print(f"torch float: ppl {res['torch']['float']:.3f} "
        f"({time.perf_counter() - t0:.0f} s)", flush=True)
  ref_attn = _layer0_attention(hf, cal)
  _, y_prefix = _layer0_attention(hf, cal[:2, :256])
  res["causal_prefix_rel"] = _rel(y_prefix, ref_attn[1][:2, :256])
  print(f"normal forward causal: block-0 attention on 256-token prefixes vs "
        f"full windows, max rel diff {res['causal_prefix_rel']:.1e}",
        flush=True)

  # RTN (unscaled weights) with AutoAWQ's quantizer function.
  class _QCfg:
    w_bit, group_size, zero_point = WBIT, GROUP, True

  def rtn(w):
    return qz.AwqQuantizer.pseudo_quantize_tensor(_QCfg, w)

  _pseudo_quantize_layers(hf.model.layers[:n_layers], rtn, awq_module)
  res["torch"]["rtn"] = _torch_ppl(hf, ev, E.WINDOW)
  print(f"torch RTN W3-g64: ppl {res['torch']['rtn']:.3f}", flush=True)
  hf.load_state_dict(fp_sd)

  # AutoAWQ.
  print(f"AutoAWQ: quantizing {n_layers} layers ...", flush=True)
  info = run_autoawq(hf, cal, n_layers, qz, llama, awq_module, ref_attn)
  q = info.pop("quantizer")
  res["autoawq"] = info
  print(f"AutoAWQ: init {info['init_s']:.1f} s, quantize "
        f"{info['quantize_s']:.1f} s; checks {info['checks']}", flush=True)
  scaled_sd = {k: v.clone() for k, v in hf.state_dict().items()}
  layers = hf.model.layers[:n_layers]
  _pseudo_quantize_layers(layers, q.pseudo_quantize_tensor, awq_module)
  res["torch"]["autoawq"] = _torch_ppl(hf, ev, E.WINDOW)
  print(f"AutoAWQ W3-g64 (f32 pseudo-quant): ppl "
        f"{res['torch']['autoawq']:.3f}", flush=True)
  hf.load_state_dict(scaled_sd)
  _pseudo_quantize_layers(layers, q.pseudo_quantize_tensor, awq_module,
                          dtype=torch.float16)
  res["torch"]["autoawq_f16"] = _torch_ppl(hf, ev, E.WINDOW)
  print(f"AutoAWQ W3-g64 (f16 pseudo-quant, as _apply_quant): ppl "
        f"{res['torch']['autoawq_f16']:.3f}", flush=True)
  del hf, fp_sd, scaled_sd, q, layers

  # jaxkit, default search and optionally on all tokens.
  configs = [("default search: 2 windows / 1024 tokens", [], args.methods)]
  if args.full_search:
    configs.append(("search on all tokens: 16 windows / 8192 tokens",
                    ["--search-windows", ALL_TOKENS[0],
                     "--search-tokens", ALL_TOKENS[1]],
                    args.full_search_methods))
  res["ours"] = []
  for label, flags, methods in configs:
    t0 = time.perf_counter()
    out_rows = (None if args.out is None
                else f"{args.out}.jaxkit{len(res['ours'])}.md")
    rows, recs = run_ours(ev, cal, n_layers, depth, flags, methods, out_rows)
    # The first AWQ method's scales (the options do not change the search).
    key = next(iter(recs), None)
    cmp_rows = compare(info["searches"], recs.get(key, []))
    res["ours"].append({"label": label, "rows": rows, "compare": cmp_rows,
                        "scales_of": key,
                        "seconds": time.perf_counter() - t0})
    print(fmt_compare(cmp_rows, label), flush=True)
    print(summarize(cmp_rows), flush=True)
  res["total_s"] = time.perf_counter() - t_all
  text = report(res, load0, argv)
  print(text)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as fh:
      fh.write(text)
  return res


def report(res: dict[str, Any], load0: str, argv) -> str:
  a = res["autoawq"]
  n, depth = res["n_layers"], res["depth"]
  scope = "all" if n >= depth else f"first {n} of {depth}"
  t = res["torch"]
  cmd = " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
  lines = [
      f"# AutoAWQ vs jaxkit AWQ, SmolLM2-135M W3-g64 ({scope} layers)", "",
      f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
      f"load average at start {load0}, at end {_load()} (2 cores); "
      f"`{cmd}`",
      "", "| model | perplexity |", "|---|---|",
      f"| torch float32 | {t['float']:.3f} |",
      f"| torch RTN W3-g64 (AutoAWQ `pseudo_quantize_tensor`) | "
      f"{t['rtn']:.3f} |",
      f"| AutoAWQ 0.2.9 W3-g64 (f32 pseudo-quant) | {t['autoawq']:.3f} |",
      f"| AutoAWQ 0.2.9 W3-g64 (weights cast to f16, then pseudo-quant) | "
      f"{t['autoawq_f16']:.3f} |"]
  for o in res["ours"]:
    for r in o["rows"]:
      lines.append(f"| jaxkit `{r['method']}` ({o['label']}) | "
                   f"{r.get('ppl', float('nan')):.3f} |")
  lines += ["", "Timings: AutoAWQ `AwqQuantizer` init (calibration forward) "
            f"{a['init_s']:.1f} s, `quantize()` {a['quantize_s']:.1f} s "
            f"({a['quantize_s'] / n:.1f} s/layer), of which the scale "
            f"searches {sum(x['seconds'] for x in a['searches']):.1f} s "
            "(the rest: block forward for the inputs, apply_scale, clip "
            "search)."]
  for o in res["ours"]:
    for r in o["rows"]:
      if "quant_s" in r:
        lines.append(f"jaxkit `{r['method']}` ({o['label']}): quantization "
                     f"{r['quant_s']:.1f} s" + (
                         f", of which scale search {r['scale_s']:.1f} s"
                         if r.get("scale_s") is not None else "") + ".")
    lines.append(f"jaxkit run ({o['label']}) incl. load / capture / evals: "
                 f"{o['seconds']:.0f} s.")
  lines.append(f"Whole benchmark: {res['total_s']:.0f} s.")
  c = a["checks"]
  restore = max(s["restore_max_abs"] for s in a["searches"])
  mism = max(s["ratio_match"] for s in a["searches"])
  lines += [
      "", "Checks:",
      f"- AutoAWQ's calibration `samples` equal our 16x512 windows: "
      f"{c['samples_equal']}.",
      f"- AutoAWQ's layer kwargs: {', '.join(c['module_kwargs'])}.",
      f"- Block-0 self-attention inside AutoAWQ's search vs a normal forward:"
      f" input max rel diff {c.get('block0_attn_input_rel', float('nan')):.1e}"
      f", output {c.get('block0_attn_output_rel', float('nan')):.1e} "
      f"(kwargs {c.get('block0_attn_kwargs')}); the normal forward is causal"
      f" (256-token prefixes vs full windows: {res['causal_prefix_rel']:.1e}).",
      f"- With the CPU fix, `module2inspect` after `_compute_best_scale` "
      f"differs from its state before by at most {restore:.1e} (0 = every "
      "restore exact).",
      f"- AutoAWQ's chosen scales equal its candidate at the first loss "
      f"minimum (max rel diff {mism:.1e})."]
  for o in res["ours"]:
    lines += ["", fmt_compare(o["compare"], o["label"]), "",
              f"Summary (jaxkit scales of `{o['scales_of']}`):",
              summarize(o["compare"])]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
