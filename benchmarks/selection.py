"""Benchmarks for jaxkit.selection: SMOTE, DSIR and RS2 at up to 10^6 examples.

Run from the repository root:

  .venv/bin/python -m benchmarks.selection            # full (~10 minutes)
  .venv/bin/python -m benchmarks.selection --quick    # small sizes, ~1 minute

Every case runs in a fresh subprocess (so compilation caches and allocator
pools of one case do not leak into the next) and reports

* **time**: best wall time over ``--repeats`` runs after one warm-up run
  (``benchmarks.timing.best_time``; the warm-up includes jit compilation, which
  is reported separately as ``first call``), results blocked with
  ``jax.block_until_ready``;
* **peak memory**: the process's peak resident set size
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after the case minus the
  resident set size (``/proc/self/status`` VmRSS) just before it, i.e. the
  extra host memory the case needed on top of its inputs. On CPU, JAX buffers
  live in host memory, so this covers both numpy and JAX allocations;
* **CPU s**: best process CPU time (``time.process_time``, all threads) over
  the repeats — the robust number when the machine is shared (wall times
  then depend on the other load).

Cases:

* SMOTE, binary, 90 % / 10 %, ``d = 32`` Gaussian features, ``k = 5``,
  ``sampling_strategy='auto'`` (the minority is brought to the majority count,
  i.e. 0.8·n synthetic rows): ``jaxkit.selection.smote`` vs
  ``imblearn.over_sampling.SMOTE(k_neighbors=5).fit_resample`` (its default
  ``NearestNeighbors``, ``n_jobs=None``).
* DSIR, end to end (featurise raw pool and target, fit, log importance
  weights, Gumbel top-k resample 10 % of the pool) on synthetic documents of
  10–30 Zipf-distributed words from two vocabularies: jaxkit
  (``hashed_ngram_features`` → ``dsir_importance_weights`` →
  ``dsir_resample``) vs ``data_selection.HashedNgramDSIR`` 1.0.3
  (``fit_importance_estimator(num_tokens_to_fit='all')`` →
  ``compute_importance_weights`` → ``resample``; ``num_proc=1``, jsonl files,
  ``min_example_length=0``). Both use 10 000 buckets and uni+bigrams (the
  features are identical, see tests/selection/dsir_test.py).
* RS2: ``rs2_indices`` for one epoch at fraction 0.1 vs numpy
  ``default_rng.permutation(n)[:s]`` (no RS2 library exists to compare to).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def _rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return float(line.split()[1]) / 1024.0
  return float("nan")


def _peak_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------
# Cases (run inside the subprocess).
# ----------------------------------------------------------------------------


def _smote_data(n, d, seed=0):
  rng = np.random.default_rng(seed)
  y = (rng.random(n) < 0.1).astype(np.int64)
  x = (rng.normal(size=(n, d)) + y[:, None]).astype(np.float32)
  return x, y


def _docs(n, seed):
  rng = np.random.default_rng(seed)
  vocab_a = [f"w{i}" for i in range(3000)]
  vocab_b = [f"v{i}" for i in range(2000)] + vocab_a[:500]
  probs_a = 1.0 / np.arange(1, len(vocab_a) + 1)
  probs_a /= probs_a.sum()
  probs_b = 1.0 / np.arange(1, len(vocab_b) + 1)
  probs_b /= probs_b.sum()
  lengths = rng.integers(10, 31, n)
  is_a = rng.random(n) < 0.3
  wa = rng.choice(len(vocab_a), size=int(lengths.sum()), p=probs_a)
  wb = rng.choice(len(vocab_b), size=int(lengths.sum()), p=probs_b)
  docs, pos = [], 0
  for length, a in zip(lengths.tolist(), is_a.tolist()):
    ids = (wa if a else wb)[pos:pos + length]
    voc = vocab_a if a else vocab_b
    docs.append(" ".join(voc[i] for i in ids))
    pos += length
  return docs


def _case(name, n, repeats):
  from benchmarks.timing import best_time  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  result = dict(case=name, n=n)
  if name.startswith("smote"):
    x, y = _smote_data(n, 32)
    if name == "smote_jaxkit":
      from jaxkit.selection import smote  # pylint: disable=g-import-not-at-top
      fn = lambda: jax.block_until_ready(smote(jax.random.key(0), x, y,
                                               k_neighbors=5))
    else:
      from imblearn.over_sampling import SMOTE  # pylint: disable=g-import-not-at-top
      fn = lambda: SMOTE(k_neighbors=5, random_state=0).fit_resample(x, y)
  elif name.startswith("dsir"):
    raw = _docs(n, 0)
    target = _docs(max(1000, n // 100), 1)
    target = [t for t in target if t.startswith("w")]
    k = n // 10
    if name == "dsir_jaxkit":
      from jaxkit import selection as S  # pylint: disable=g-import-not-at-top

      def fn():
        fr = S.hashed_ngram_features(raw)
        ft = S.hashed_ngram_features(target)
        logw = S.dsir_importance_weights(fr, ft)
        return jax.block_until_ready(
            S.dsir_resample(jax.random.key(0), logw, k))
    else:
      from data_selection import HashedNgramDSIR  # pylint: disable=g-import-not-at-top
      tmp = tempfile.mkdtemp()
      for fname, docs in (("raw.jsonl", raw), ("target.jsonl", target)):
        with open(os.path.join(tmp, fname), "w") as f:
          for t in docs:
            f.write(json.dumps({"text": t}) + "\n")

      def fn():
        d = HashedNgramDSIR([os.path.join(tmp, "raw.jsonl")],
                            [os.path.join(tmp, "target.jsonl")],
                            cache_dir=os.path.join(tmp, "cache"), num_proc=1,
                            min_example_length=0)
        d.fit_importance_estimator(num_tokens_to_fit="all")
        d.compute_importance_weights()
        d.resample(out_dir=os.path.join(tmp, "out"), num_to_sample=k)
  elif name.startswith("rs2"):
    if name == "rs2_jaxkit":
      from jaxkit.selection import rs2_indices  # pylint: disable=g-import-not-at-top
      key = jax.random.key(0)
      fn = lambda: jax.block_until_ready(
          rs2_indices(key, n, fraction=0.1, epoch=3))
    else:
      rng = np.random.default_rng(0)
      fn = lambda: rng.permutation(n)[:n // 10]
  else:
    raise ValueError(name)

  base = _rss_mb()
  t0, c0 = time.perf_counter(), time.process_time()
  fn()
  result["first_s"] = time.perf_counter() - t0
  cpu = [time.process_time() - c0]
  result["best_s"] = result["first_s"]
  if repeats:
    result["best_s"] = best_time(fn, repeats)
    cpu = []
    for _ in range(repeats):
      c0 = time.process_time()
      fn()
      cpu.append(time.process_time() - c0)
  result["cpu_s"] = min(cpu)
  result["peak_extra_mb"] = max(0.0, _peak_mb() - base)
  print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------


def _run(name, n, repeats, timeout):
  cmd = [sys.executable, "-m", "benchmarks.selection", "--case", name,
         "--n", str(n), "--repeats", str(repeats)]
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         check=False)
  except subprocess.TimeoutExpired:
    return dict(case=name, n=n, error=f"timeout > {timeout}s")
  for line in out.stdout.splitlines():
    if line.startswith("RESULT "):
      return json.loads(line[len("RESULT "):])
  return dict(case=name, n=n, error=out.stderr.strip().splitlines()[-1:])


def _fmt(r):
  if "error" in r:
    return f"— ({r['error']})", "—", "—", "—"
  return (f"{r['best_s']:.2f}", f"{r['first_s']:.2f}",
          f"{r['peak_extra_mb']:.0f}", f"{r['cpu_s']:.2f}")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--quick", action="store_true")
  p.add_argument("--case")
  p.add_argument("--n", type=int, default=0)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--rows", default="",
                 help="comma-separated row numbers of the plan to run")
  args = p.parse_args()
  if args.case:
    _case(args.case, args.n, args.repeats)
    return

  big = 10**5 if args.quick else 10**6
  # (label, ours, peer, n, repeats ours, repeats peer); repeats 0 = a single
  # call (its time includes compilation), None = peer skipped.
  plan = [
      ("SMOTE d=32", "smote_jaxkit", "smote_imblearn", 10**4 if args.quick
       else 10**5, 5, 5),
      ("SMOTE d=32", "smote_jaxkit", "smote_imblearn", big, 0, 0),
      ("DSIR", "dsir_jaxkit", "dsir_package", big // 10, 0, 0),
      ("DSIR", "dsir_jaxkit", "dsir_package", big, 0, None),
      ("RS2 f=0.1", "rs2_jaxkit", "rs2_numpy", big, 5, 5),
  ]
  if args.rows:
    plan = [plan[int(i)] for i in args.rows.split(",")]
  print("| method | n | jaxkit best s | jaxkit CPU s | jaxkit first call s | "
        "jaxkit peak extra MB | peer | peer best s | peer CPU s | peer peak "
        "extra MB | peer / jaxkit (wall) | peer / jaxkit (CPU) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for label, ours, peer, n, rep_ours, rep_peer in plan:
    r1 = _run(ours, n, rep_ours, 1800)
    if rep_peer is not None:
      r2 = _run(peer, n, rep_peer, 1800)
    else:
      r2 = dict(case=peer, n=n, error="skipped at this n (too slow)")
    a, b = _fmt(r1), _fmt(r2)
    ok = "error" not in r1 and "error" not in r2
    ratio = f"{r2['best_s'] / r1['best_s']:.2f}" if ok else "—"
    cratio = f"{r2['cpu_s'] / max(r1['cpu_s'], 1e-9):.2f}" if ok else "—"
    print(f"| {label} | {n:.0e} | {a[0]} | {a[3]} | {a[1]} | {a[2]} | {peer} "
          f"| {b[0]} | {b[3]} | {b[2]} | {ratio} | {cratio} |", flush=True)


if __name__ == "__main__":
  main()
