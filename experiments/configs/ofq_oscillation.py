r"""OFQ on digits: weight oscillation of StatsQ vs LSQ in 2-bit QAT.

Launch (full, 5 seeds, a few minutes at most on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/ofq_oscillation.py \
      --workdir=runs/ofq_oscillation

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/ofq_oscillation.py:quick \
      --workdir=runs/ofq_oscillation_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``steps=N`` (QAT steps).

Issue 6, miniature experiment (seed_001 #13 / seed_002 #29, OFQ).
``sklearn.datasets.load_digits``, fixed split. Per seed an MLP 64→128→10 is
trained in float (full-batch Adam), then fine-tuned with 2-bit weights (both
kernels; activations float) for ``steps`` full-batch Adam steps per arm:

* ``LSQ``: ``jaxkit.quantization.lsq_fake_quant`` with a learnable
  per-output-channel step (LSQ initialisation, signed range [−2, 1]);
* ``StatsQ``: ``jaxkit.quantization.statsq_quantize`` (scale 2·mean|w| per
  output channel, no learnable scale);
* ``StatsQ+freeze``: StatsQ plus the oscillation tracker
  (``jaxkit.quantization.oscillation_update``, EMA momentum 0.9) freezing
  weights whose oscillation frequency exceeds 0.1 at the rounded EMA of
  their level.

Per step, the integer level of every weight is tracked
(``oscillation_update``); an oscillation is a level change opposite to the
previous one. Metrics: oscillation rate (mean fraction of weights that
oscillate per step, second half of QAT) and test accuracy. ``held`` =
StatsQ's oscillation rate < LSQ's. Thresholds fixed before the first run.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "ofq_oscillation"
  config.runner = "experiments.ofq_oscillation.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Low-bit QAT with a learnable step (LSQ) makes weights oscillate "
      "between quantization levels; OFQ's statistics-based StatsQ quantizer "
      "oscillates less, and freezing oscillating weights reduces it further "
      "— Liu et al., 'Oscillation-free Quantization for Low-bit Vision "
      "Transformers', ICML 2023, arXiv:2302.02210.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = 64 if arg.quick else 128
  config.bits = 2
  config.fp_steps = 20 if arg.quick else 300
  config.steps = arg.steps or (15 if arg.quick else 400)
  config.learning_rate = 3e-3
  config.qat_learning_rate = 1e-3
  config.momentum = 0.9
  config.freeze_threshold = 0.1
  config.lsq_fn = "jaxkit.quantization.lsq_fake_quant"
  config.lsq_init_fn = "jaxkit.quantization.lsq_init_scale"
  config.statsq_fn = "jaxkit.quantization.statsq_quantize"
  config.statsq_levels_fn = "jaxkit.quantization.statsq_levels"
  config.osc_init_fn = "jaxkit.quantization.oscillation_init"
  config.osc_update_fn = "jaxkit.quantization.oscillation_update"
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.arms = [dict(name="LSQ", quantizer="lsq", freeze=False),
                 dict(name="StatsQ", quantizer="statsq", freeze=False),
                 dict(name="StatsQ+freeze", quantizer="statsq", freeze=True)]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
