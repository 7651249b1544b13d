r"""Whitepaper on digits: per-tensor vs per-channel PTQ after BN folding, W4 QAT.

Launch (full, 5 seeds, about a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/ptq_granularity_digits.py \
      --workdir=runs/ptq_granularity_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/ptq_granularity_digits.py:quick \
      --workdir=runs/ptq_granularity_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``steps=N`` (FP Adam steps),
``qat_steps=N``.

Issue 6, miniature experiment (seed_002 #65, the quantization whitepapers).
``sklearn.datasets.load_digits`` (features in [0, 1]), one fixed train / test
split. Per seed an MLP 64→128→128→10 with batch norm after each hidden dense
layer (ReLU after BN) is trained full-batch with Adam (the full batch is the
training set, so batch statistics are the population statistics). Batch
norm is then folded into the dense layers with
``jaxkit.quantization.fold_batch_norm`` and the folded weights (all three
dense kernels) are quantized, activations stay in float:

* ``FP``: folded float model;
* ``W8 per-tensor`` / ``W8 per-channel``: symmetric RTN,
  ``jaxkit.quantization.fake_quant`` with ``axis=None`` (one scale) or
  ``axis=0`` (one scale per output column);
* ``W4 per-tensor`` / ``W4 per-channel``: the same at 4 bits;
* ``W4 QAT``: from the folded FP model, ``qat_steps`` Adam steps with
  per-channel 4-bit ``fake_quant`` (straight-through gradient) on every
  kernel, the whitepaper's QAT recipe (fine-tune from the trained model with
  a smaller learning rate).

Metric: test accuracy. ``held`` = (mean) W4 per-channel ≥ W4 per-tensor and
W4 QAT ≥ W4 per-channel PTQ. Hyper-parameters were fixed before the first
run and not tuned after.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds``, ``steps``, ``qat_steps``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0, qat_steps=0)
  config = ml_collections.ConfigDict()
  config.name = "ptq_granularity_digits"
  config.runner = "experiments.ptq_granularity_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "After batch-norm folding, per-channel weight scales keep low-bit PTQ "
      "accuracy where a single per-tensor scale loses it, and quantization-"
      "aware training with a straight-through estimator recovers W4 accuracy "
      "beyond PTQ — Krishnamoorthi 2018 (arXiv:1806.08342) and Nagel et al. "
      "2021 (arXiv:2106.08295).")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (64, 64) if arg.quick else (128, 128)
  config.steps = arg.steps or (25 if arg.quick else 400)
  config.learning_rate = 3e-3
  config.qat_steps = arg.qat_steps or (6 if arg.quick else 150)
  config.qat_learning_rate = 3e-4
  config.bn_epsilon = 1e-5
  config.fold_fn = "jaxkit.quantization.fold_batch_norm"
  config.fake_quant_fn = "jaxkit.quantization.fake_quant"
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.arms = [
      dict(name="FP", bits=0, axis="none", qat=False),
      dict(name="W8 per-tensor", bits=8, axis="tensor", qat=False),
      dict(name="W8 per-channel", bits=8, axis="channel", qat=False),
      dict(name="W4 per-tensor", bits=4, axis="tensor", qat=False),
      dict(name="W4 per-channel", bits=4, axis="channel", qat=False),
      dict(name="W4 QAT", bits=4, axis="channel", qat=True),
  ]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
