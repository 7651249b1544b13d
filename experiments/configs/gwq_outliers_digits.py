r"""GWQ on digits: 1 % float outliers chosen by gradient vs by magnitude vs none.

Launch (full, 5 seeds, well under a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/gwq_outliers_digits.py \
      --workdir=runs/gwq_outliers_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/gwq_outliers_digits.py:quick \
      --workdir=runs/gwq_outliers_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``.

Issue 10, miniature experiment seed_002 E2 (GWQ, catalog #8), on the
DigitsMLP instead of the catalog's TinyLM. ``sklearn.datasets.load_digits``
(features / 16, fixed 1000 / 797 split). Per seed a dense ReLU MLP
64 → 128 → 128 → 10 is trained full-batch with Adam. Its three kernels are
then quantized with ``jaxkit.quantization.gwq_quantize`` (asymmetric RTN,
groups of 32 along the input axis) at 3 bits (the claim) and 2 bits
(reported), keeping ``outlier_frac`` = 1 % of the weights in float16:

* ``none``: no outliers (``outlier_frac=0``: plain group-wise RTN);
* ``magnitude``: the 1 % largest ``|w|``;
* ``GWQ (grad)``: the 1 % largest ``|∂L/∂w|``, the gradient of the
  cross-entropy of the trained model on one calibration batch (the first 64
  training examples; the paper uses a single calibration sample);
* ``taylor``: the 1 % largest ``|w · ∂L/∂w|`` (reported, not in the claim).

Metrics: test loss (our stand-in for perplexity), test accuracy and the
relative weight error ``‖W − Ŵ‖²/‖W‖²``. ``held`` = at 3 bits, mean test
loss of GWQ ≤ magnitude < none (the catalog's direction). Settings fixed
before the first run, not tuned.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0)
  config = ml_collections.ConfigDict()
  config.name = "gwq_outliers_digits"
  config.runner = "experiments.gwq_outliers_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Keeping the ~1 % of weights with the largest loss gradient in float "
      "(found from a single calibration sample) and quantizing the rest with "
      "group-wise RTN loses less than keeping the largest-magnitude weights "
      "or no outliers at 3 bits — Shao et al., 'GWQ: Gradient-Aware Weight "
      "Quantization for Large Language Models', 2024, arXiv:2411.00850.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (128, 128)
  config.dense_steps = 20 if arg.quick else 300
  config.learning_rate = 3e-3
  config.calibration_size = 64
  config.bits = (3, 2)
  config.quant_kw = dict(group_size=32, axis=0, symmetric=False)
  config.outlier_frac = 0.01
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.gwq_fn = "jaxkit.quantization.gwq_quantize"
  config.dequantize_fn = "jaxkit.quantization.dequantize"
  config.saliencies = ("none", "magnitude", "GWQ (grad)", "taylor")
  config.arms = [dict(name=f"W{b} {s}", bits=b, saliency=s)
                 for b in config.bits for s in config.saliencies]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
