r"""DSEE (low-rank + sparse update) vs LoRA vs full fine-tuning on digits.

Launch (full, 3 seeds, a minute or two on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/dsee_digits.py \
      --workdir=runs/dsee_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/dsee_digits.py:quick \
      --workdir=runs/dsee_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``steps=N``.

Issue 7, miniature of DSEE (Chen et al., ACL 2023): a weight update
``U V + S`` with ``S`` on a fixed sparse support of the pre-trained weight's
largest low-rank residual entries adapts better than a pure low-rank (LoRA)
update of the same rank, and the final model can be magnitude-pruned to 50 %
with little loss. Same source (0–4) → target (5–9) digits setup as
``lift_vs_lora_digits``: MLP 64 → 128 → 128 → 10 pre-trained 300 steps,
150 fine-tuning steps per arm; LoRA and DSEE rank 4, DSEE adds 64 sparse
entries per kernel; the pruned arm re-tunes 50 masked steps (lr 1e-3). Learning
rates set once before the first run: full FT 1e-3, LoRA / DSEE 1e-2.
``held`` = DSEE's mean of target and source accuracy ≥ LoRA's.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "dsee_digits"
  config.runner = "experiments.dsee_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 3)
  config.claim = (
      "A low-rank plus sparse weight update (DSEE) adapts better than a "
      "low-rank update (LoRA) of the same rank, and its merged model prunes "
      "to 50% with little loss — Chen et al., 'DSEE: Dually Sparsity-embedded "
      "Efficient Tuning of Pre-trained Language Models', ACL 2023, "
      "arXiv:2111.00160.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (64, 64) if arg.quick else (128, 128)
  config.pretrain_lr = 3e-3
  config.pretrain_steps = 15 if arg.quick else 300
  config.steps = arg.steps or (8 if arg.quick else 150)
  config.rank = 4
  config.num_sparse = 64
  config.prune_sparsity = 0.5
  config.retune_steps = 3 if arg.quick else 50
  config.retune_lr = 1e-3
  config.held_metric = "mean of both"
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.masked_fn = "jaxkit.sparsity.masked"
  config.dsee_init_fn = "jaxkit.sparsity.dsee_init"
  config.dsee_delta_fn = "jaxkit.sparsity.dsee_delta"
  config.dsee_params_ref = "jaxkit.sparsity.DseeParams"
  config.unstructured_mask_fn = "jaxkit.sparsity.unstructured_mask"
  config.arms = [
      dict(name="full FT", kind="full", lr=1e-3),
      dict(name="LoRA", kind="lora", lr=1e-2),
      dict(name="DSEE", kind="dsee", lr=1e-2),
      dict(name="DSEE + 50% pruned", kind="dsee_pruned", lr=1e-2),
  ]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
