"""Benchmarks for jaxkit.losses: DPO / f-DPO from logits, and KD, vs PyTorch.

Run from the repository root (numbers in benchmarks/README.md were taken with
OpenBLAS's machine-wide overrides removed, see PLATFORM.md section 8):

  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.preference
  ... -m benchmarks.preference --quick     # smaller sizes, seconds

The PyTorch column needs ``pip install torch==2.13.0`` (CPU wheel; not a
dependency of jaxkit). Without torch the jaxkit column is still timed and the
torch column is skipped with a message.

Every case times one *training step's loss part*: value and gradient with
respect to the logits, float32 on both sides, CPU, same process.

* Preference (``dpo_loss``, ``fdpo_loss`` per divergence): logits
  ``[B, T, V]`` hold a concatenated batch (TRL's ``concatenated_forward``:
  rows ``:B/2`` chosen, ``B/2:`` rejected); ``jaxkit.losses.sequence_log_probs``
  gives the ``[B]`` summed log-probs, the pair losses are averaged, and the
  gradient flows back to the logits. Reference log-probs are fixed inputs.
  PyTorch: ``log_softmax`` + ``gather`` + sum (TRL's sequence log-probs),
  ``-F.logsigmoid(beta * (s(lr_c) - s(lr_r)))`` with TRL 1.16's f-DPO scores
  ``s`` (reverse KL ``lr``; forward KL ``1 - exp(-lr)``; JS
  ``log 2 + logsigmoid(lr)``; alpha ``(exp((alpha-1) lr) - 1)/(alpha-1)``),
  eager mode.
* KD (``kd_loss``, ``divergence='kl'``, temperature 2): student and teacher
  logits ``[B, T, V]``, per-token ``tau^2 KL(teacher_tau || student_tau)``
  averaged over tokens, gradient w.r.t. the student logits. PyTorch:
  ``F.kl_div(log_softmax(s / tau), log_softmax(t / tau), log_target=True,
  reduction='none').sum(-1) * tau**2`` then ``.mean()`` (the usual
  torchdistill / HF KD term, per token).

Times are best of N after a warm-up (compilation excluded), with
``block_until_ready`` (JAX) and after ``backward()`` returns (torch). The
ratio column is torch time / jaxkit time (> 1: jaxkit faster). The table also
prints the largest relative difference of the loss values and of the
gradients between the two implementations.
"""

from __future__ import annotations

import argparse
import gc
import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import best_time

from jaxkit.losses import dpo_loss, fdpo_loss, kd_loss, sequence_log_probs

try:
  import torch
  import torch.nn.functional as F
except ImportError:  # optional: `pip install torch==2.13.0`
  torch = F = None

BETA = 0.1
TAU = 2.0
FDPO_CASES = [
    ("reverse_kl", 1.0),
    ("forward_kl", 1.0),
    ("js", 1.0),
    ("alpha", 0.5),
]


# ----------------------------------------------------------------------------
# jaxkit side.
# ----------------------------------------------------------------------------


def _jax_pref_step(loss_name, divergence, alpha):
  def loss(logits, labels, ref_c, ref_r):
    logps = sequence_log_probs(logits, labels)
    half = logps.shape[0] // 2
    if loss_name == "dpo":
      per = dpo_loss(logps[:half], logps[half:], ref_c, ref_r, beta=BETA)
    else:
      per = fdpo_loss(logps[:half], logps[half:], ref_c, ref_r, beta=BETA,
                      divergence=divergence, alpha=alpha)
    return jnp.mean(per)
  return jax.jit(jax.value_and_grad(loss))


def _jax_kd_step():
  def loss(student, teacher):
    return jnp.mean(kd_loss(student, teacher, temperature=TAU,
                            divergence="kl"))
  return jax.jit(jax.value_and_grad(loss))


# ----------------------------------------------------------------------------
# PyTorch side (TRL's formulas, eager).
# ----------------------------------------------------------------------------


def _torch_scores(lr, divergence, alpha):
  if divergence == "reverse_kl" or (divergence == "alpha" and alpha == 1.0):
    return lr
  if divergence == "forward_kl":
    return 1.0 - torch.exp(-lr)
  if divergence == "js":
    return math.log(2.0) + F.logsigmoid(lr)
  return (torch.exp((alpha - 1.0) * lr) - 1.0) / (alpha - 1.0)


def _torch_pref_step(loss_name, divergence, alpha):
  def step(logits, labels, ref_c, ref_r):
    logits = logits.detach().requires_grad_(True)
    per_token = torch.gather(logits.log_softmax(-1), 2,
                             labels.unsqueeze(-1)).squeeze(-1)
    logps = per_token.sum(-1)
    half = logps.shape[0] // 2
    lc = logps[:half] - ref_c
    lr = logps[half:] - ref_r
    if loss_name == "dpo":
      z = BETA * (lc - lr)
    else:
      z = BETA * (_torch_scores(lc, divergence, alpha)
                  - _torch_scores(lr, divergence, alpha))
    loss = (-F.logsigmoid(z)).mean()
    loss.backward()
    return loss.detach(), logits.grad
  return step


def _torch_kd_step(student, teacher):
  student = student.detach().requires_grad_(True)
  kl = F.kl_div(F.log_softmax(student / TAU, -1),
                F.log_softmax(teacher / TAU, -1), log_target=True,
                reduction="none").sum(-1) * TAU**2
  loss = kl.mean()
  loss.backward()
  return loss.detach(), student.grad


def _rel_diff(a, b):
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ----------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------


def bench(batch, length, vocab, repeats):
  print(f"\n## Loss value + grad w.r.t. logits [{batch}, {length}, {vocab}] "
        f"float32 (best of {repeats}, ms)\n")
  rng = np.random.default_rng(0)
  logits_np = (2.0 * rng.standard_normal((batch, length, vocab))).astype(
      np.float32)
  labels_np = rng.integers(0, vocab, (batch, length)).astype(np.int32)
  half = batch // 2
  # Reference log-probs near the policy's (log-ratios of order 1..10).
  base = -length * math.log(vocab)
  ref_c_np = (base + rng.normal(0, 5, half) - 2.0 * length).astype(np.float32)
  ref_r_np = (base + rng.normal(0, 5, half) - 2.0 * length).astype(np.float32)

  logits = jnp.asarray(logits_np)
  labels = jnp.asarray(labels_np)
  ref_c, ref_r = jnp.asarray(ref_c_np), jnp.asarray(ref_r_np)
  if torch is not None:
    t_logits = torch.from_numpy(logits_np)
    t_labels = torch.from_numpy(labels_np.astype(np.int64))
    t_ref_c, t_ref_r = torch.from_numpy(ref_c_np), torch.from_numpy(ref_r_np)
  else:
    print("torch is not installed (`pip install torch==2.13.0`): the torch "
          "columns are skipped.\n")

  print("| loss | jaxkit ms | torch eager ms | torch / jaxkit | "
        "value rel. diff | grad rel. diff |")
  print("|---|---|---|---|---|---|")
  rows = []
  cases = [("dpo", "dpo_loss", "reverse_kl", 1.0)] + [
      ("fdpo", f"fdpo_loss({d}" + (f", α={a:g})" if d == "alpha" else ")"),
       d, a) for d, a in FDPO_CASES]
  for loss_name, label, div, alpha in cases:
    ours = _jax_pref_step(loss_name, div, alpha)
    t_ours = best_time(lambda: jax.block_until_ready(
        ours(logits, labels, ref_c, ref_r)), repeats)
    rows.append(_finish(
        label, t_ours, ours(logits, labels, ref_c, ref_r),
        None if torch is None else _torch_pref_step(loss_name, div, alpha),
        None if torch is None else (t_logits, t_labels, t_ref_c, t_ref_r),
        repeats))
  del logits
  gc.collect()

  teacher_np = (2.0 * rng.standard_normal((batch, length, vocab))).astype(
      np.float32)
  student, teacher = jnp.asarray(logits_np), jnp.asarray(teacher_np)
  ours = _jax_kd_step()
  t_ours = best_time(lambda: jax.block_until_ready(ours(student, teacher)),
                 repeats)
  rows.append(_finish(
      f"kd_loss(kl, τ={TAU:g})", t_ours, ours(student, teacher),
      None if torch is None else _torch_kd_step,
      None if torch is None else (t_logits, torch.from_numpy(teacher_np)),
      repeats))
  return rows


def _finish(label, t_ours, out_ours, torch_step, torch_args, repeats):
  value, grad = jax.device_get(out_ours)
  if torch_step is None:
    print(f"| {label} | {t_ours*1e3:.1f} | — | — | — | — |", flush=True)
    return (label, t_ours, None)
  t_torch = best_time(lambda: torch_step(*torch_args), repeats)
  t_value, t_grad = torch_step(*torch_args)
  dv = _rel_diff(value, t_value.numpy())
  dg = _rel_diff(grad, t_grad.numpy())
  del t_grad
  gc.collect()
  print(f"| {label} | {t_ours*1e3:.1f} | {t_torch*1e3:.1f} | "
        f"{t_torch / t_ours:.2f} | {dv:.1e} | {dg:.1e} |", flush=True)
  return (label, t_ours, t_torch)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="small sizes for a fast smoke run")
  parser.add_argument("--batch", type=int, default=None,
                      help="override B (full default 16, quick 4)")
  args = parser.parse_args()
  tv = "not installed" if torch is None else (
      f"{torch.__version__}, {torch.get_num_threads()} threads")
  print(f"jax {jax.__version__}, devices {jax.devices()}, torch {tv}")
  if args.quick:
    bench(args.batch or 4, 128, 32000, 3)
  else:
    bench(args.batch or 16, 512, 32000, 3)


if __name__ == "__main__":
  main()
