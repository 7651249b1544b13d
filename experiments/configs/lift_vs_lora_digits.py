r"""LIFT vs LoRA vs full fine-tuning: source → target transfer on digits.

Launch (full, 3 seeds, a minute or two on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/lift_vs_lora_digits.py \
      --workdir=runs/lift_vs_lora_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/lift_vs_lora_digits.py:quick \
      --workdir=runs/lift_vs_lora_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``steps=N``.

Issue 7, miniature of LIFT (Liu et al., ICML 2025): fine-tuning only the
top-5 % "principal weights" (largest entries of the rank-r approximation)
reaches the target task about as well as full fine-tuning / LoRA while
keeping more of the source-domain knowledge; magnitude-based sparse
fine-tuning without the rank reduction is worse. Digits, source = classes
0–4, target = classes 5–9 (1000 / 797 split, per-task subsets). MLP
64 → 128 → 128 → 10 pre-trained 300 steps on the source task (Adam 3e-3),
then 150 fine-tuning steps per arm on the target task. Learning rates, set
once before the first run: full FT 1e-3; LoRA (rank 8) and the sparse arms
1e-2. Rank r = 8 for LIFT's approximation. Evaluation is task-aware (logits
restricted to the task's classes). ``held`` = LIFT's mean of target and
source accuracy ≥ both full FT's and LoRA's.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "lift_vs_lora_digits"
  config.runner = "experiments.lift_vs_lora_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 3)
  config.claim = (
      "Sparse fine-tuning of the top-5% principal weights (LIFT) matches full "
      "fine-tuning and LoRA on the target task while retaining more source "
      "knowledge — Liu et al., 'LIFT the Veil for the Truth: Principal "
      "Weights Emerge after Rank Reduction for Reasoning-Focused Supervised "
      "Fine-Tuning', ICML 2025, arXiv:2506.00772.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (64, 64) if arg.quick else (128, 128)
  config.pretrain_lr = 3e-3
  config.pretrain_steps = 15 if arg.quick else 300
  config.steps = arg.steps or (8 if arg.quick else 150)
  config.rank = 8
  config.density = 0.05
  config.held_metric = "mean of both"
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.masked_fn = "jaxkit.sparsity.masked"
  config.lift_mask_fn = "jaxkit.sparsity.lift_mask"
  config.arms = [
      dict(name="full FT", kind="full", lr=1e-3),
      dict(name="LoRA", kind="lora", lr=1e-2),
      dict(name="LIFT", kind="lift", lr=1e-2),
      dict(name="magnitude 5%", kind="magnitude", lr=1e-2),
      dict(name="random 5%", kind="random", lr=1e-2),
  ]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
