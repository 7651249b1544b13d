r"""Deviceless AOT compile of every Pallas kernel for TPU v5e / v6e and H100.

Run in a virtualenv with the accelerator plugin (``make aot-check`` builds
them: ``.venv-aot-tpu`` = ``jax[tpu]`` + libtpu, ``.venv-aot-gpu`` =
``jax[cuda12-local]``); no accelerator is needed (PLATFORM.md §3b)::

  .venv-aot-tpu/bin/python tools/aot_check.py --platform tpu
  .venv-aot-gpu/bin/python tools/aot_check.py --platform cuda [--op NAME]

Each op's ``jaxkit/kernels/<op>/arg_specs.py`` provides
``aot_cases(platform) -> [(name, fn, avals)]`` or ``[(name, fn, avals,
estimate)]`` where ``fn`` calls the Pallas backend with ``interpret=False``
and the optional ``estimate = {"flops": F, "bytes": B}`` is the analytic cost
of one call (Pallas custom calls are opaque to XLA's cost analysis, and the
CUDA plugin returns none deviceless; the analytic numbers then drive the
roofline column). Every case is lowered and compiled for each
target; the compiled cost analysis (FLOPs, bytes accessed) is printed beside
the chip's peak and a roofline time estimate. The script exits non-zero when
any case fails to compile (or when an op has no case for the platform).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
# Lets two checks run at once (libtpu otherwise holds a lockfile).
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top

OPS = ("quantized_matmul", "sparse_attention", "fused_linear_divergence")

# Deviceless H100 description (PLATFORM.md §3b); without it the CUDA plugin
# refuses to build a topology on a machine with no GPU.
H100_TARGET_CONFIG = """gpu_device_info { threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535 memory_bandwidth: 3352320000000
  l2_cache_size: 52428800 clock_rate_ghz: 1.98 device_memory_size: 84929347584 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 } registers_per_core_limit: 65536 registers_per_block_limit: 65536 }
runtime_version: { major: 12 minor: 0 patch: 0 } platform_name: "CUDA" dnn_version_info { major: 9 minor: 7 }
device_description_str: "NVIDIA H100 80GB HBM3" """

# Published per-chip peaks (dense bf16 FLOP/s, HBM bytes/s):
#   TPU v5e: 197 TFLOP/s bf16, 819 GB/s (cloud.google.com/tpu/docs/v5e).
#   TPU v6e: 918 TFLOP/s bf16, 1640 GB/s (cloud.google.com/tpu/docs/v6e).
#   H100 SXM: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3 (NVIDIA H100 datasheet).
PEAKS = {
    "v5e": (197e12, 819e9),
    "v6e": (918e12, 1640e9),
    "h100": (989e12, 3.35e12),
}


def targets(platform: str):
  """(name, device) pairs to compile for."""
  if platform == "tpu":
    out = []
    for name in ("v5e", "v6e"):
      topo = topologies.get_topology_desc(f"{name}:2x2", "tpu")
      out.append((name, topo.devices[0]))
    return out
  if platform == "cuda":
    topo = topologies.get_topology_desc(
        "h100", "cuda", target_config=H100_TARGET_CONFIG, topology="1x1x2")
    return [("h100", topo.devices[0])]
  raise ValueError(f"`--platform` must be 'tpu' or 'cuda', got {platform!r}.")


def _cost(compiled) -> dict:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return dict(cost or {})


def lower_case(fn, avals, device):
  """Lowers ``fn`` for one deviceless device."""
  mesh = Mesh(np.array([device]), ("x",))
  sharding = NamedSharding(mesh, P())
  specs = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
      avals)
  return jax.jit(fn).lower(*specs)


def compile_case(fn, avals, device):
  """Lowers and compiles ``fn`` for one deviceless device; returns compiled."""
  return lower_case(fn, avals, device).compile()


def run(platform: str, ops) -> list[dict]:
  rows = []
  tgts = targets(platform)
  for op in ops:
    mod = importlib.import_module(f"jaxkit.kernels.{op}.arg_specs")
    cases = mod.aot_cases(platform)
    if not cases:
      rows.append(dict(op=op, case="-", target=platform, ok=False,
                       error="no AOT case for this platform"))
      continue
    for case in cases:
      case_name, fn, avals = case[:3]
      # Optional 4th element: the analytic cost {"flops": ..., "bytes": ...}
      # (Pallas custom calls are opaque to XLA's cost analysis).
      estimate = case[3] if len(case) > 3 else {}
      for tname, device in tgts:
        t0 = time.perf_counter()
        row = dict(op=op, case=case_name, target=tname)
        try:
          lowered = lower_case(fn, avals, device)
          compiled = lowered.compile()
          cost = _cost(compiled) or _cost(lowered)
          row["xla_flops"] = float(cost.get("flops", 0.0))
          row["xla_bytes"] = float(cost.get("bytes accessed", 0.0))
          flops = float(estimate.get("flops", row["xla_flops"]))
          nbytes = float(estimate.get("bytes", row["xla_bytes"]))
          peak_flops, peak_bw = PEAKS[tname]
          row.update(ok=True, flops=flops, bytes=nbytes,
                     roofline_us=1e6 * max(flops / peak_flops,
                                           nbytes / peak_bw),
                     intensity=flops / nbytes if nbytes else float("nan"))
        except Exception as e:  # pylint: disable=broad-except
          row.update(ok=False, error=f"{type(e).__name__}: "
                     f"{str(e).splitlines()[0][:300]}")
          if os.environ.get("AOT_CHECK_TRACEBACK"):
            traceback.print_exc()
        row["compile_s"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        status = "OK  " if row["ok"] else "FAIL"
        extra = (f"flops={row['flops']:.3g} bytes={row['bytes']:.3g} "
                 f"roofline={row['roofline_us']:.1f}us"
                 if row["ok"] else row["error"])
        print(f"{status} {op:24s} {case_name:40s} {tname:5s} "
              f"{row['compile_s']:6.2f}s {extra}", flush=True)
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--platform", required=True, choices=("tpu", "cuda"))
  parser.add_argument("--op", action="append", choices=OPS,
                      help="op(s) to compile (default: all)")
  parser.add_argument("--json", help="write the rows to this JSON file")
  args = parser.parse_args(argv)
  rows = run(args.platform, args.op or OPS)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)
  failed = [r for r in rows if not r["ok"]]
  print(f"aot-check {args.platform}: {len(rows) - len(failed)} compiled, "
        f"{len(failed)} failed")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
