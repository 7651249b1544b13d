r"""QAT scaling law: fit δ(N, D, G) = k·D^γD·(log2 G)^γG / N^γN on a mini-grid.

Launch (full, 3 seeds, a few minutes at most on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/qat_scaling_law.py \
      --workdir=runs/qat_scaling_law

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/qat_scaling_law.py:quick \
      --workdir=runs/qat_scaling_law_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``steps=N``.

Issue 6, miniature experiment (seed_002 #73). Generated data: a fixed random
teacher MLP 64→128→8 (tanh) gives regression targets y = f(x) + 0.1·ε for
Gaussian x. For each student width N (32, 64, 128) (hidden units of a 64→N→8 ReLU MLP),
training-set size D (256, 1024, 4096) and quantization group size G
(4, 16, 64), a student is trained
with full-batch Adam twice from the same initialisation: in float, and with
W4A4 quantization-aware training (``jaxkit.quantization.fake_quant``,
symmetric 4-bit, groups of G consecutive elements along the input axis of
both kernels and along the feature axis of both layers' input activations,
straight-through gradients). The quantization error is
δ = test MSE(QAT) − test MSE(float) on 4096 held-out points (quick: 256), averaged over
seeds, and ``jaxkit.quantization.fit_qat_scaling_law`` fits k, γ_D, γ_G, γ_N
in log space. Non-positive δ (QAT no worse than float) are floored at 1e-6
before the fit and counted in the notes.

``held`` = the three fitted signs match the paper: γ_N > 0 (error falls
with model size), γ_D > 0 (rises with data), γ_G > 0 (rises with group
size). The grid was fixed before the first run.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "qat_scaling_law"
  config.runner = "experiments.qat_scaling_law.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (1 if arg.quick else 3)
  config.claim = (
      "The W4A4 QAT quantization error follows δ = k·D^γD·(log2 G)^γG/N^γN "
      "with γN, γD, γG > 0: it falls with model size and rises with training "
      "data and group size — Chen et al., 'Scaling Law for Quantization-Aware "
      "Training', arXiv:2505.14302, 2025.")
  config.d_in = 64
  config.d_out = 8
  config.teacher_hidden = 128
  config.noise = 0.1
  config.n_test = 256 if arg.quick else 4096
  config.widths = (16, 64) if arg.quick else (32, 64, 128)
  config.data_sizes = (64, 256) if arg.quick else (256, 1024, 4096)
  config.group_sizes = (4, 64) if arg.quick else (4, 16, 64)
  config.bits = 4
  config.steps = arg.steps or (10 if arg.quick else 300)
  config.learning_rate = 3e-3
  config.fake_quant_fn = "jaxkit.quantization.fake_quant"
  config.fit_fn = "jaxkit.quantization.fit_qat_scaling_law"
  config.optimizer_fn = "optax.adam"
  config.arms = [dict(name="float"), dict(name="W4A4 QAT")]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
