r"""InfoBatch vs random dynamic pruning vs full data on digits, at equal saved cost.

Launch (full, 5 seeds, about a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/infobatch_digits.py \
      --workdir=runs/infobatch_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/infobatch_digits.py:quick \
      --workdir=runs/infobatch_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``epochs=N``.

Issue 10, miniature experiment seed_001 §3 #7 / seed_002 E20 without SeTa
(``jaxkit.selection`` has no SeTa selector; InfoBatch, shipped in the same
reference file, is tested). ``sklearn.datasets.load_digits`` (features / 16,
fixed 1000 / 797 split), ReLU MLP 64 → 128 → 10, Adam (lr 1e-3),
minibatches of 50, ``epochs`` epochs (40); the same per-seed init for every
arm. Each epoch an arm picks the examples it trains on (shuffled, packed
into minibatches; the steps of the pruned examples are not taken):

* ``full``: every example, every epoch;
* ``InfoBatch``: ``jaxkit.selection.infobatch_select(scores,
  keep_ratio=0.5)`` on the last-seen per-example losses (initialised to 1,
  so the first epoch is full; kept "well-learned" examples get loss weight
  1 / 0.5), no pruning in the last 12.5 % of the epochs (annealing,
  δ = 0.875), losses of the examples seen this epoch update the scores;
* ``random pruning``: in every epoch, a uniformly random subset of the
  **same size** as InfoBatch's subset in that epoch of the same seed (equal
  saved cost), loss weights 1.

Metrics: final test accuracy; the cost, i.e. examples trained on relative
to ``full``. ``held`` = InfoBatch's mean test accuracy > random pruning's
**and** ≥ full's − 0.005 ("lossless" within half a point). Settings fixed
before the first run, not tuned.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``epochs=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, epochs=0)
  config = ml_collections.ConfigDict()
  config.name = "infobatch_digits"
  config.runner = "experiments.infobatch_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Dynamically pruning a random share of the well-learned (below-mean "
      "loss) examples each epoch and rescaling the rest (InfoBatch) saves "
      "training cost without losing accuracy, and beats random dynamic "
      "pruning at the same saved cost — Qin et al., 'InfoBatch: Lossless "
      "Training Speed Up by Unbiased Dynamic Data Pruning', ICLR 2024, "
      "arXiv:2303.04947.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (128,)
  config.batch_size = 50
  config.epochs = arg.epochs or (8 if arg.quick else 40)
  config.learning_rate = 1e-3
  config.keep_ratio = 0.5
  config.anneal = 0.875
  config.tolerance = 0.005
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.select_fn = "jaxkit.selection.infobatch_select"
  config.arms = [
      dict(name="full", kind="full"),
      dict(name="InfoBatch", kind="infobatch"),
      dict(name="random pruning", kind="random"),
  ]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
