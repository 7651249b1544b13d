r"""LOST vs low-rank vs dense at equal parameters: an MLP on digits from scratch.

Launch (full, 3 seeds, about a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/lost_vs_lowrank.py \
      --workdir=runs/lost_vs_lowrank

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/lost_vs_lowrank.py:quick \
      --workdir=runs/lost_vs_lowrank_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``steps=N``.

Issue 7, miniature of LOST (Li et al. 2025): pre-training with a low-rank
plus channel-wise sparse parameterisation beats pure low-rank training at the
same parameter budget. ``sklearn.datasets.load_digits`` (1000 train / 797
test, fixed split). MLP 64 → 128 → 128 → 10; the two hidden kernels are
parameterised per arm (see ``experiments/lost_vs_lowrank.py``): low-rank rank
16 is the budget; LOST uses rank 8 plus kept channels matching that budget;
``dense (small)`` is a narrower dense MLP with the same hidden-layer
parameter count; ``dense`` (width 128) is the unconstrained reference. All
arms: full-batch Adam, lr 3e-3, the same steps. The ranks, widths and lr were
set once before the first run and not tuned. ``held`` = mean test
cross-entropy of LOST ≤ low-rank's.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "lost_vs_lowrank"
  config.runner = "experiments.lost_vs_lowrank.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 3)
  config.claim = (
      "At an equal parameter budget, a low-rank + channel-wise sparse (LOST) "
      "parameterisation trains to a lower loss than pure low-rank — Li et al., "
      "'LOST: Low-rank and Sparse Pre-training for Large Language Models', "
      "2025, arXiv:2508.02668.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = 64 if arg.quick else 128
  config.rank_lowrank = 16
  config.rank_lost = 8
  config.learning_rate = 3e-3
  config.steps = arg.steps or (8 if arg.quick else 400)
  config.lost_init_fn = "jaxkit.sparsity.lost_init"
  config.lost_weight_fn = "jaxkit.sparsity.lost_weight"
  config.lost_params_ref = "jaxkit.sparsity.LostParams"
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.arms = [
      dict(name="dense", kind="dense"),
      dict(name="dense (small)", kind="dense (small)"),
      dict(name="low-rank", kind="low-rank"),
      dict(name="LOST", kind="LOST"),
  ]
  config.transfer_guard = "disallow"
  # Compiling dominates the run time of these tiny programs.
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
