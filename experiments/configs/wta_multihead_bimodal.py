r"""Multi-head winner-takes-all regression on bimodal targets (seed 000, E21).

Launch (full, 5 seeds, under a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/wta_multihead_bimodal.py \
      --workdir=runs/wta_multihead_bimodal

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/wta_multihead_bimodal.py:quick \
      --workdir=runs/wta_multihead_bimodal_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``steps=N``, ``heads=N``.

Seed catalog 000 #34 (multi-output deblurring, Liu et al. 2025), miniature
experiment E21. An ambiguous 1-D regression: x ~ U(−1, 1) and
y = sin(3x) + s·``gap`` + N(0, ``noise``²) with a fair coin s = ±1, so for
every x the target has two modes 2·``gap`` = 1.6 apart (512 training points,
2048 test points, fresh per seed). Model: MLP 1→64→64→H (tanh), full-batch
Adam (lr 3e-3), the same initialisation for every arm of a seed. Arms
(settings fixed before the first run):

* ``single head``: squared error of head 0 only (the other heads are
  unused: the network is then exactly a one-head MLP);
* ``H heads, mean loss``: the mean of the H heads' squared errors (a
  control: more outputs, no competition);
* ``H heads, WTA``: ``jaxkit.losses.multi_head_min_loss`` on the H
  squared errors (hard minimum, the paper's "best overall" training);
* ``H heads, relaxed WTA``: the same with ``relaxation`` ε = 0.05
  (Rupprecht et al. 2017).

Metrics on the test set: best-of-heads MSE (min over the arm's heads of the
squared error, the paper's "best overall" evaluation; headline), mode
coverage (fraction of test points where *both* modes have a head within
0.25 of them) and the single head's distance to the midpoint sin(3x).
``held`` = the WTA arm's mean best-of-heads MSE is below a quarter of the
single head's (the catalog's "≪"; the factor was fixed before any run).
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds``, ``steps``, ``heads``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0, heads=4)
  config = ml_collections.ConfigDict()
  config.name = "wta_multihead_bimodal"
  config.runner = "experiments.wta_multihead_bimodal.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Training several output heads with a winner-takes-all (minimum over "
      "heads) loss lets the heads cover the modes of an ambiguous target, so "
      "the best-of-heads error is far below a single head's, which regresses "
      "to the mean between the modes — Liu et al., 'Multi-Outputs Is All "
      "You Need For Deblur', 2025, arXiv:2502.18287 (with Rupprecht et al., "
      "arXiv:1612.00197).")
  config.task = dict(num_train=512, num_test=2048, gap=0.8, noise=0.05,
                     coverage_radius=0.25)
  config.heads = arg.heads
  config.hidden = 64
  config.learning_rate = 3e-3
  config.steps = arg.steps or (150 if arg.quick else 3000)
  config.held_factor = 0.25

  config.wta_fn = "jaxkit.losses.multi_head_min_loss"
  config.optimizer_fn = "optax.adam"
  config.arms = [
      dict(name="single head", loss="single", relaxation=0.0),
      dict(name="H heads, mean loss", loss="mean", relaxation=0.0),
      dict(name="H heads, WTA", loss="wta", relaxation=0.0),
      dict(name="H heads, relaxed WTA (ε=0.05)", loss="wta",
           relaxation=0.05),
  ]
  config.transfer_guard = "disallow"
  # O0 compiles fastest (the quick variant is mostly compilation); the full
  # variant's training loop runs several times faster at XLA's default level.
  config.compiler_options = (dict(xla_backend_optimization_level=0)
                             if arg.quick else {})
  return config
