"""Fused linear divergence vs materialised logits (memory and time, CPU).

Run from the repository root::

  PYTHONPATH=. .venv/bin/python benchmarks/kernels_fused_linear_divergence.py
  ... --quick          # small sizes, seconds
  ... --time-tokens 8192   # time at the full token count too (needs RAM:
                           # the materialised path holds several [T, V] f32)

Compared in one run, for the KL distillation loss (``divergence='kl'``, both
models with hidden size D) and for cross-entropy:

* ``materialised``: ``implementation='xla'`` — ``[T, V]`` f32 logits of both
  models, autodiff (what a plain ``kd_loss(h_s @ w_s, h_t @ w_t)`` costs);
* ``fused``: ``implementation='chunked_xla'`` with automatic blocks (token
  blocks of whole rows; value and gradient fused in one sweep);
* ``fused (V-chunked)``: ``chunk_size=8192`` vocabulary chunks (two/three
  sweeps; the leanest memory, more matmuls);
* ``tokamax`` (CE only, if installed): ``tokamax.linear_softmax_cross_entropy_loss``
  (its ``'xla'`` implementation, the only one on CPU).

Memory is ``jax.jit(value_and_grad).lower(...).compile().memory_analysis()``
temp bytes at the full size (T = 8192 tokens, D = 1024, V = 131072, f32),
compiled only (nothing runs). Times are value-and-grad (w.r.t. the student's
hidden states and unembedding), best of N after a warm-up, at ``--time-tokens``
tokens (default 1024, same D and V). The machine's load average is printed
beside the times: treat them as indicative.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp

from benchmarks.timing import best_time
from jaxkit.kernels.fused_linear_divergence import fused_linear_cross_entropy
from jaxkit.kernels.fused_linear_divergence import fused_linear_divergence

try:
  import tokamax
except ImportError:  # optional peer
  tokamax = None

_GIB = 1024**3


def _kd_fn(impl, **kw):
  def loss(hs, ws, ht, wt):
    return fused_linear_divergence(hs, ws, ht, wt, implementation=impl, **kw)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _ce_fn(impl, **kw):
  def loss(h, w, y):
    return fused_linear_cross_entropy(h, w, y, implementation=impl, **kw)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _tokamax_fn():
  def loss(h, w, y):
    return tokamax.linear_softmax_cross_entropy_loss(
        h, y, w, reduction="mean", implementation="xla")
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _cases():
  """(loss, name, fn factory, arg kind)."""
  cases = [
      ("kd-kl", "materialised", lambda: _kd_fn("xla"), "kd"),
      ("kd-kl", "fused", lambda: _kd_fn("chunked_xla"), "kd"),
      ("kd-kl", "fused (V-chunked)",
       lambda: _kd_fn("chunked_xla", chunk_size=8192, token_chunk_size=1024),
       "kd"),
      ("ce", "materialised", lambda: _ce_fn("xla"), "ce"),
      ("ce", "fused", lambda: _ce_fn("chunked_xla"), "ce"),
      ("ce", "fused (V-chunked)",
       lambda: _ce_fn("chunked_xla", chunk_size=8192, token_chunk_size=1024),
       "ce"),
  ]
  if tokamax is not None:
    cases.append(("ce", "tokamax xla", _tokamax_fn, "tokamax"))
  return cases


def _avals(kind, t, d, v, dtype=jnp.float32):
  s = jax.ShapeDtypeStruct
  if kind == "kd":
    return (s((t, d), dtype), s((d, v), dtype), s((t, d), dtype),
            s((d, v), dtype))
  if kind == "ce":
    return (s((t, d), dtype), s((d, v), dtype), s((t,), jnp.int32))
  return (s((t, d), dtype), s((d, v), dtype), s((t,), jnp.int32))


def _arrays(kind, t, d, v):
  ks = jax.random.split(jax.random.key(0), 4)
  h = jax.random.normal(ks[0], (t, d)) / d**0.25
  w = jax.random.normal(ks[1], (d, v)) / d**0.25
  if kind == "kd":
    return (h, w, jax.random.normal(ks[2], (t, d)) / d**0.25,
            jax.random.normal(ks[3], (d, v)) / d**0.25)
  return (h, w, jax.random.randint(ks[2], (t,), 0, v))


def main(argv=None) -> list[dict]:
  """Runs the benchmark and prints markdown tables; returns the rows."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="T=2048 (memory) / 1024 (time), D=256, V=16384")
  parser.add_argument("--time-tokens", type=int, default=None,
                      help="tokens for the timing run (default 1024)")
  parser.add_argument("--repeats", type=int, default=2)
  args, _ = parser.parse_known_args(argv)  # Tolerates a caller's flags.
  if args.quick:
    t_mem, d, v = 2048, 256, 16384
    t_time = args.time_tokens or 1024
  else:
    t_mem, d, v = 8192, 1024, 131072
    t_time = args.time_tokens or 1024
  rows = []
  print(f"## fused_linear_divergence vs materialised logits (CPU, f32)\n")
  print(f"memory: value_and_grad compiled at T={t_mem}, D={d}, V={v} "
        f"(one [T, V] f32 = {t_mem * v * 4 / _GIB:.2f} GiB); time: T={t_time}, "
        f"best of {args.repeats}\n")
  print("| loss | implementation | temp memory | memory ratio | time | "
        "time ratio | load (1/5/15 min) |")
  print("|---|---|---|---|---|---|---|")
  base = {}
  for loss, name, factory, kind in _cases():
    fn = factory()
    mem = fn.lower(*_avals(kind, t_mem, d, v)).compile().memory_analysis()
    temp = mem.temp_size_in_bytes
    arrays = _arrays(kind, t_time, d, v)
    secs = best_time(lambda: jax.block_until_ready(fn(*arrays)), args.repeats)
    load = os.getloadavg()
    if name == "materialised":
      base[loss] = (temp, secs)
    btemp, bsecs = base[loss]
    row = dict(loss=loss, implementation=name, temp_bytes=temp,
               memory_ratio=temp / btemp, seconds=secs,
               time_ratio=secs / bsecs, load=load)
    rows.append(row)
    print(f"| {loss} | {name} | {temp / _GIB:.3f} GiB | {temp / btemp:.3f} | "
          f"{secs * 1e3:.0f} ms | {secs / bsecs:.2f} | "
          f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} |", flush=True)
  if tokamax is None:
    print("\n(tokamax not installed: no tokamax row.)")
  print("\nTargets (issue 8): memory ratio <= 1/8 (0.125), time ratio <= 1.3 "
        "(tokamax's fused linear CE: ~1.5x materialised).")
  return rows


if __name__ == "__main__":
  main()
