r"""MaskLLM on digits: learned 2:4 masks vs magnitude / Wanda 2:4, frozen weights.

Launch (full, 5 seeds, under a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/maskllm_digits.py \
      --workdir=runs/maskllm_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/maskllm_digits.py:quick \
      --workdir=runs/maskllm_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``steps=N`` (mask-learning
steps).

Issue 10, miniature experiment seed_000 E4 (MaskLLM, catalog #38).
``sklearn.datasets.load_digits`` (features / 16, fixed 1000 / 797 split). Per
seed a dense ReLU MLP 64 → 32 → 32 → 10 (the narrow width of
``cast_nm_digits``, where 2:4 costs accuracy) is trained full-batch with
Adam and then **frozen**. Every arm gives each of the three kernels a 2:4
mask along its input axis, and nothing else changes (no weight update, no
fine-tuning):

* ``magnitude 2:4``: ``nm_mask(|W|)``;
* ``Wanda 2:4``: ``nm_mask(wanda_scores(W, X))`` with ``X`` the layer inputs
  of the (dense) training set, all layers from the dense model;
* ``MaskLLM (magnitude prior)``: mask logits ``maskllm_init(prior=magnitude
  2:4, prior_strength=3, init_std=0.01)`` trained for ``steps`` full-batch
  Adam steps (lr 1e-3) on train cross-entropy of the MLP with Gumbel-softmax
  soft masks ``maskllm_sample`` (τ 4 → 0.1, κ 100 → 500 by
  ``maskllm_schedule``) and ``maskllm_loss`` with weight_reg 1e-4; the
  exported mask is ``maskllm_hard_mask``;
* ``MaskLLM (no prior)``: the same from noise-only logits (prior_strength 0,
  a per-seed key).

Metric: test accuracy of the 2:4 model (also test loss). ``held`` = mean test
accuracy of MaskLLM (magnitude prior) > max(mean magnitude 2:4, mean Wanda
2:4). Every hyper-parameter was fixed before the first run (the MaskLLM ones
from the paper's schedule; lr and weight_reg are our guesses, not tuned).
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "maskllm_digits"
  config.runner = "experiments.maskllm_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Learning the 2:4 mask end to end (Gumbel-softmax over the 6 candidate "
      "patterns of every group, weights frozen) gives a more accurate 2:4 "
      "model than one-shot magnitude or Wanda 2:4 masks at the same sparsity "
      "— Fang et al., 'MaskLLM: Learnable Semi-Structured Sparsity for Large "
      "Language Models', NeurIPS 2024, arXiv:2409.17481.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (32, 32)
  config.n, config.m = 2, 4
  config.dense_steps = 20 if arg.quick else 300
  config.learning_rate = 3e-3
  config.steps = arg.steps or (10 if arg.quick else 300)
  config.mask_learning_rate = 1e-3
  config.temperature = (4.0, 0.1)
  config.logit_scale = (100.0, 500.0)
  config.prior_strength = 3.0
  config.init_std = 0.01
  config.weight_reg = 1e-4
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.nm_mask_fn = "jaxkit.sparsity.nm_mask"
  config.wanda_fn = "jaxkit.sparsity.wanda_scores"
  config.init_fn = "jaxkit.sparsity.maskllm_init"
  config.sample_fn = "jaxkit.sparsity.maskllm_sample"
  config.loss_fn = "jaxkit.sparsity.maskllm_loss"
  config.hard_fn = "jaxkit.sparsity.maskllm_hard_mask"
  config.schedule_fn = "jaxkit.sparsity.maskllm_schedule"
  config.arms = [
      dict(name="magnitude 2:4", kind="magnitude"),
      dict(name="Wanda 2:4", kind="wanda"),
      dict(name="MaskLLM (magnitude prior)", kind="maskllm", prior=True),
      dict(name="MaskLLM (no prior)", kind="maskllm", prior=False),
  ]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
