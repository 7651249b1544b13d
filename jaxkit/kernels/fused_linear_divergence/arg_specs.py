"""Named realistic workloads of the fused linear divergence, and AOT cases.

Each workload is a dict of :class:`jax.ShapeDtypeStruct` (``h_student``,
``w_student``, ``h_teacher``, ``w_teacher``, ``labels``) plus the loss
options. :func:`aot_cases` turns them into deviceless compile cases for
``tools/aot_check.py``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxkit.kernels.fused_linear_divergence.chunked_xla import Config
from jaxkit.kernels.fused_linear_divergence.chunked_xla import Spec

_BF16 = jnp.bfloat16


def _workload(t, ds, dt, v, dtype, tags):
  s = jax.ShapeDtypeStruct
  return dict(
      h_student=s((t, ds), dtype), w_student=s((ds, v), dtype),
      h_teacher=s((t, dt), dtype), w_teacher=s((dt, v), dtype),
      labels=s((t,), jnp.int32), tags=tags)


# Llama-3.2-1B student (D=2048) distilled from Llama-3.1-8B (D=4096), V=128256,
# one 8192-token packed sequence; and a 32k-vocabulary (Llama-2 / Mistral)
# pair at 4096 tokens.
WORKLOADS: dict[str, dict] = {
    "llama3_1b_from_8b_t8192": _workload(8192, 2048, 4096, 128256, _BF16,
                                         ("primary",)),
    "v32k_d1024_from_d2048_t4096": _workload(4096, 1024, 2048, 32000, _BF16,
                                             ("primary",)),
}

# Small shapes for CI-sized checks (unaligned vocabulary).
CI_WORKLOADS: dict[str, dict] = {
    "ci_small_unaligned": _workload(40, 64, 96, 1000, jnp.float32,
                                    ("ci_tests",)),
}


def _backend(platform: str):
  if platform == "tpu":
    from jaxkit.kernels.fused_linear_divergence import pallas_tpu as mod  # pylint: disable=g-import-not-at-top
  elif platform in ("cuda", "gpu"):
    from jaxkit.kernels.fused_linear_divergence import pallas_gpu as mod  # pylint: disable=g-import-not-at-top
  else:
    raise ValueError(f"`platform` must be 'tpu' or 'cuda', got {platform!r}.")
  return mod


def _estimate(wl, platform, kind, grad):
  """Analytic FLOPs / HBM bytes of one call of the Pallas kernels."""
  t, ds = wl["h_student"].shape
  v = wl["w_student"].shape[1]
  dt = wl["h_teacher"].shape[1] if kind == "kd" else 0
  isz = jnp.dtype(wl["h_student"].dtype).itemsize
  if platform == "tpu":
    bt, bv = 256, 512
  else:
    bt, bv = 64, 128
  nt, nv = -(-t // bt), -(-v // bv)
  mm = 2 * t * v * (ds + dt)  # Both models' logits, once.
  w_bytes = (ds + dt) * v * isz
  h_bytes = t * (ds + dt) * isz
  passes = 2  # lse, then loss (+ A)
  flops = passes * mm
  bytes_ = passes * (nt * w_bytes + h_bytes)
  if grad:
    if platform == "tpu":
      # dh kernel (grid nt x nv) and dw kernel (grid nv x nt): recompute + 1 matmul.
      flops += 2 * (mm + 2 * t * v * ds)
      bytes_ += nt * w_bytes + h_bytes + t * ds * 4
      bytes_ += w_bytes + nv * h_bytes + ds * v * 4
    else:
      # XLA backward (chunked_xla, one pass per token block).
      flops += mm + 2 * 2 * t * v * ds
      bytes_ += w_bytes + h_bytes + 2 * ds * v * 4 + t * ds * 4
  return {"flops": float(flops), "bytes": float(bytes_)}


def aot_cases(platform: str) -> list[tuple[str, Callable, tuple]]:
  """Deviceless compile cases ``(name, fn, avals)`` for ``platform``.

  For each workload: the KL forward (per-token losses), KL value-and-grad of
  the mean loss (w.r.t. ``h_student`` and ``w_student``), the value-and-grad
  of a generator with a non-constant :math:`A` (JS on TPU, TV on CUDA — see
  below), and the cross-entropy value-and-grad. Every ``fn``
  calls the Pallas backend directly with ``interpret=False``.

  Args:
    platform: ``'tpu'`` or ``'cuda'``.

  Returns:
    A list of ``(case_name, fn, args_avals, estimate)`` with ``estimate`` the
    analytic ``{"flops", "bytes"}`` of one call.
  """
  mod = _backend(platform)
  cfg = Config()
  cases = []
  for name, wl in WORKLOADS.items():
    kd_args = (wl["h_student"], wl["w_student"], wl["h_teacher"],
               wl["w_teacher"])
    # A generic generator (A not constant, three passes): JS on TPU; TV on
    # H100, because Triton takes ~5 min (loaded 2-core CPU) to compile the
    # JS kernel — it does compile (checked by hand), but too slowly for CI.
    generic = "js" if platform == "tpu" else "tv"
    for div in ("kl", generic):
      spec = Spec("kd", div, None, 2.0)

      def fwd(hs, ws, ht, wt, spec=spec):
        return mod.per_token_loss(spec, cfg, False, hs, ws, ht, wt, None)

      def vg(hs, ws, ht, wt, spec=spec):
        def loss(a, b):
          return jnp.mean(mod.per_token_loss(spec, cfg, False, a, b, ht, wt,
                                             None))
        return jax.value_and_grad(loss, argnums=(0, 1))(hs, ws)

      if div == "kl":
        cases.append((f"{name}/kl_fwd", fwd, kd_args,
                      _estimate(wl, platform, "kd", False)))
      cases.append((f"{name}/{div}_value_and_grad", vg, kd_args,
                    _estimate(wl, platform, "kd", True)))
    ce_spec = Spec("ce")

    def ce_vg(hs, ws, lab, spec=ce_spec):
      def loss(a, b):
        return jnp.mean(mod.per_token_loss(spec, cfg, False, a, b, None, None,
                                           lab))
      return jax.value_and_grad(loss, argnums=(0, 1))(hs, ws)

    cases.append((f"{name}/ce_value_and_grad", ce_vg,
                  (wl["h_student"], wl["w_student"], wl["labels"]),
                  _estimate(wl, platform, "ce", True)))
  return cases
