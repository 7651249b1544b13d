r"""ZeroQuant-FP on digits: FP8 vs INT8 activations, FP4 vs INT4 weights, via the kernel.

Launch (full, 5 seeds, under a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/zeroquant_fp_digits.py \
      --workdir=runs/zeroquant_fp_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/zeroquant_fp_digits.py:quick \
      --workdir=runs/zeroquant_fp_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``.

Issue 10, miniature experiment seed_002 E7 (ZeroQuant-FP, catalog #32), on
the DigitsMLP and its "outlier" twin instead of TinyLM / OutlierLM; every
quantized product runs through the kernel
``jaxkit.kernels.quantized_matmul.quantized_matmul`` (its XLA path on CPU).
``sklearn.datasets.load_digits`` (features / 16, fixed 1000 / 797 split).
Per seed a ReLU MLP 64 → 128 → 128 → 10 is trained full-batch with Adam.
``outlier`` model: the same network after a function-preserving injection
(the catalog's OutlierLM recipe for an MLP): 3 first-layer units (the 3
with the largest mean activation) have their kernel column and bias
multiplied by 30 and the matching rows of the next kernel divided by 30
(ReLU is positively homogeneous, so the function is unchanged), which gives
the second layer LLM-like outlier input channels. Arms, on both models (all
three kernels; groups of 32 along the input axis for 4-bit weights):

* ``W4 INT4``: ``quantize(bits=4, symmetric)``, activations in float32;
* ``W4 FP4``: ``fp_quantize(format='e2m1')``, activations in float32;
* ``W4 FP4 pow2``: the same with power-of-two scales (ZeroQuant-FP's scale
  constraint, ``pow2_scale=True``);
* ``W8A8 INT8``: per-output-channel int8 weights and the kernel's dynamic
  per-row int8 activations (``activation_bits=8``);
* ``W8 + A8 FP8``: the same int8 weights, activations cast per row to FP8
  E4M3 (``fp_quantize(format='e4m3', axis=-1)`` then ``dequantize``; the
  kernel has no FP8-activation path, so FP8 activations are emulated).

Metric: test loss (our stand-in for perplexity); also test accuracy.
``held`` = (a) on the outlier model, ``W8 + A8 FP8`` has a lower mean test
loss than ``W8A8 INT8``, and (b) on the plain model, ``W4 FP4`` has a mean
test loss ≤ ``W4 INT4``'s. The rest (FP4 vs INT4 on the outlier model, the
pow2 cost, FP8 vs INT8 on the plain model) is reported as checks. Settings
fixed before the first run, not tuned.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0)
  config = ml_collections.ConfigDict()
  config.name = "zeroquant_fp_digits"
  config.runner = "experiments.zeroquant_fp_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "FP8 (E4M3) activations lose less than INT8 activations when the "
      "activations have outlier channels, FP4 (E2M1) weights match or beat "
      "INT4 weights, and power-of-two scales cost little — Wu et al., "
      "'ZeroQuant-FP: A Leap Forward in LLMs Post-Training W4A8 "
      "Quantization Using Floating-Point Formats', 2023, arXiv:2307.09782.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (128, 128)
  config.dense_steps = 20 if arg.quick else 300
  config.learning_rate = 3e-3
  config.outlier_channels = 3
  config.outlier_factor = 30.0
  config.group_size = 32
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.matmul_fn = "jaxkit.kernels.quantized_matmul.quantized_matmul"
  config.quantize_fn = "jaxkit.quantization.quantize"
  config.fp_quantize_fn = "jaxkit.quantization.fp_quantize"
  config.dequantize_fn = "jaxkit.quantization.dequantize"
  config.models = ("plain", "outlier")
  config.formats = ("W4 INT4", "W4 FP4", "W4 FP4 pow2", "W8A8 INT8",
                    "W8 + A8 FP8")
  config.arms = [dict(name=f"{m}: {f}", model=m, format=f)
                 for m in config.models for f in config.formats]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
