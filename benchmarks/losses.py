"""Benchmarks for jaxkit's metric-learning losses vs pytorch-metric-learning and optax.

Run from the repository root (OpenBLAS's machine-wide overrides removed for the
torch timings, see PLATFORM.md section 8):

  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m benchmarks.losses
  ... -m benchmarks.losses --quick     # batch 256, seconds

Every metric-learning case times one training step's loss part: the loss value
and its gradient with respect to the embeddings ``[B, D]`` (float32, CPU, same
inputs, same process), with ``B`` examples from ``B / 16`` classes:

* jaxkit: ``jax.jit(jax.value_and_grad(mean of the loss))``;
* pytorch-metric-learning 2.9 (eager): ``loss_fn(emb, labels)`` then
  ``backward()``; its default reducers, so the values agree with jaxkit's
  (checked and printed as the relative difference);
* optax (jitted value and grad) where it has the same loss: ``optax.ntxent``.

The comp-sum rows time the forward value only: ``comp_sum_loss(tau=1)``
(= cross-entropy, part A of issue 3) on ``[1024, 32000]`` logits vs
``optax.softmax_cross_entropy_with_integer_labels``, once on the default path
(on CPU the native kernel of ``jaxkit.kernels.cross_entropy``) and once on
its XLA path (traced with ``JAXKIT_NATIVE_KERNELS=0``); they are skipped
while ``jaxkit.losses.classification`` does not exist yet.

Times are best of N after a warm-up (compilation excluded). The ratio columns
are peer time / jaxkit time (> 1: jaxkit faster).
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.timing import best_time
from jaxkit import masked_mean
from jaxkit.losses import metric

try:
  import torch
  from pytorch_metric_learning import losses as pml_losses
except ImportError:  # optional test extra
  torch = pml_losses = None


def _cases():
  """(name, jaxkit scalar fn(emb, labels), PML factory, optax fn or None)."""

  def ntxent(e, y):
    pos = (y[:, None] == y[None, :]) & ~jnp.eye(y.shape[0], dtype=bool)
    return masked_mean(metric.ntxent_loss(e, y, temperature=0.07),
                       weights=jnp.sum(pos, 1).astype(jnp.float32))

  return [
      ("multi_similarity_loss",
       lambda e, y: jnp.mean(metric.multi_similarity_loss(e, y)),
       lambda: pml_losses.MultiSimilarityLoss(), None),
      ("tcm_regularizer", metric.tcm_regularizer,
       lambda: pml_losses.ThresholdConsistentMarginLoss(), None),
      ("batch_all_triplet_loss (margin 0.05)",
       lambda e, y: metric.batch_all_triplet_loss(e, y, margin=0.05),
       lambda: pml_losses.TripletMarginLoss(margin=0.05), None),
      ("ntxent_loss (N-pair / InfoNCE, tau 0.07)", ntxent,
       lambda: pml_losses.NTXentLoss(temperature=0.07),
       lambda e, y: optax.losses.ntxent(e, y, 0.07)),
  ]


def _time_jax(fn, e, y, repeats):
  vg = jax.jit(jax.value_and_grad(fn))
  out = vg(e, y)
  t = best_time(lambda: jax.block_until_ready(vg(e, y)), repeats)
  return t, float(out[0])


def _time_torch(factory, e, y, repeats):
  loss_fn = factory()
  te = torch.tensor(np.asarray(e), requires_grad=True)
  ty = torch.tensor(np.asarray(y), dtype=torch.long)

  def step():
    te.grad = None
    loss = loss_fn(te, ty)
    loss.backward()
    return loss

  value = float(step().detach())
  return best_time(step, repeats), value


def bench_metric(batch, dim, repeats):
  rng = np.random.RandomState(0)
  e = jnp.asarray(rng.randn(batch, dim).astype(np.float32))
  y = jnp.asarray(np.repeat(np.arange(batch // 16), 16).astype(np.int32))
  print(f"\n## Metric losses: value + grad, embeddings [{batch}, {dim}], "
        f"{batch // 16} classes x 16\n")
  print("| loss | jaxkit ms | PML ms | PML / jaxkit | optax ms | "
        "optax / jaxkit | max rel. value diff |")
  print("|---|---|---|---|---|---|---|")
  for name, ours, pml, ox in _cases():
    t_j, v_j = _time_jax(ours, e, y, repeats)
    cells, diffs = [], []
    if pml_losses is not None and name.startswith("ntxent") and batch > 256:
      # PML's NTXentLoss builds a [positive pairs, negative pairs] matrix:
      # 15 * B by 15/16 * B^2 floats (64 GB at B = 1024); not run.
      gb = 15 * batch * (15 * batch * batch // 16) * 4 / 2**30
      cells += [f"— (needs {gb:.0f} GiB)", "—"]
    elif pml_losses is not None:
      t_p, v_p = _time_torch(pml, e, y, max(2, repeats // 3))
      cells += [f"{t_p*1e3:.1f}", f"{t_p/t_j:.2f}"]
      diffs.append(abs(v_p - v_j) / max(abs(v_p), 1e-12))
    else:
      cells += ["—", "—"]
    if ox is not None:
      t_o, v_o = _time_jax(ox, e, y, repeats)
      cells += [f"{t_o*1e3:.1f}", f"{t_o/t_j:.2f}"]
      diffs.append(abs(v_o - v_j) / max(abs(v_o), 1e-12))
    else:
      cells += ["—", "—"]
    diff = f"{max(diffs):.1e}" if diffs else "—"
    print(f"| {name} | {t_j*1e3:.1f} | " + " | ".join(cells) + f" | {diff} |",
          flush=True)


def bench_comp_sum(batch, vocab, repeats):
  print(f"\n## Cross-entropy forward, logits [{batch}, {vocab}] float32\n")
  try:
    from jaxkit.losses.classification import comp_sum_loss  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f"comp_sum_loss not available yet ({e}); row skipped.")
    return
  rng = np.random.RandomState(0)
  z = jnp.asarray(rng.randn(batch, vocab).astype(np.float32))
  y = jnp.asarray(rng.randint(0, vocab, batch).astype(np.int32))
  ours = jax.jit(lambda z, y: comp_sum_loss(z, y, tau=1.0))
  # The same loss on its XLA path: the native-kernel switch is read when the
  # function is traced, i.e. at its first call.
  xla_path = jax.jit(lambda z, y: comp_sum_loss(z, y, tau=1.0))
  saved = os.environ.get("JAXKIT_NATIVE_KERNELS")
  os.environ["JAXKIT_NATIVE_KERNELS"] = "0"
  try:
    jax.block_until_ready(xla_path(z, y))
  finally:
    if saved is None:
      del os.environ["JAXKIT_NATIVE_KERNELS"]
    else:
      os.environ["JAXKIT_NATIVE_KERNELS"] = saved
  ref = jax.jit(optax.softmax_cross_entropy_with_integer_labels)
  t_o = best_time(lambda: jax.block_until_ready(ref(z, y)), repeats)
  print("| loss | jaxkit ms | optax ms | optax / jaxkit | max abs diff |")
  print("|---|---|---|---|---|")
  for name, fn in (("comp_sum_loss(tau=1)", ours),
                   ("comp_sum_loss(tau=1), XLA path", xla_path)):
    diff = float(jnp.max(jnp.abs(fn(z, y) - ref(z, y))))
    t_j = best_time(lambda fn=fn: jax.block_until_ready(fn(z, y)), repeats)
    print(f"| {name} vs softmax_cross_entropy_with_integer_labels "
          f"| {t_j*1e3:.2f} | {t_o*1e3:.2f} | {t_o/t_j:.2f} | {diff:.1e} |",
          flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  tv = torch.__version__ if torch is not None else "not installed"
  print(f"jax {jax.__version__}, devices {jax.devices()}, torch {tv}")
  if args.quick:
    bench_metric(256, 64, 5)
    bench_comp_sum(128, 32000, 5)
  else:
    bench_metric(1024, 128, 10)
    bench_comp_sum(1024, 32000, 20)


if __name__ == "__main__":
  main()
