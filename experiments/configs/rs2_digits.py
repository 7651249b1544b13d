r"""RS2 vs static subsets on digits: time-to-accuracy at 10 % of the data per epoch.

Launch (full, 5 seeds, about a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/rs2_digits.py \
      --workdir=runs/rs2_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/rs2_digits.py:quick \
      --workdir=runs/rs2_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``epochs=N``.

Issue 10, miniature experiment seed_001 §3 #6 (RS2, catalog #15).
``sklearn.datasets.load_digits`` (features / 16, fixed 1000 / 797 split).
Every arm trains the same ReLU MLP 64 → 128 → 10 (same per-seed init) with
Adam (lr 1e-3), minibatches of 25, on a subset of 100 examples (10 %) per
epoch, for the same number of epochs (100; 400 steps), shuffling the
epoch's subset into minibatches each epoch:

* ``RS2``: a fresh subset every epoch, ``jaxkit.selection.rs2_indices``
  (without replacement: walk through a random permutation, reshuffle when
  exhausted);
* ``static random``: one random 10 % subset, fixed for the whole run;
* ``static EL2N (hard)``: the 10 % highest EL2N scores
  (``el2n_scores`` of a proxy model trained 20 full-batch Adam steps on all
  the data, per seed; ``prune_by_score(keep='hard')``, the data-diet rule);
* ``static EL2N (easy)``: the 10 % lowest EL2N scores (``keep='easy'``, the
  rule Sorscher et al. recommend for small budgets).

Metrics: steps to reach 93 % test accuracy (evaluated after every epoch; a
run that never reaches it counts as the step budget + one epoch) and the
final test accuracy. ``held`` = RS2's mean steps-to-target is below every
static arm's **and** RS2's mean final accuracy is above every static arm's.
Target and all settings fixed before the first run, not tuned.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``epochs=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, epochs=0)
  config = ml_collections.ConfigDict()
  config.name = "rs2_digits"
  config.runner = "experiments.rs2_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Repeated random sampling — a new random subset of the data every "
      "epoch (RS2, without replacement) — reaches a target accuracy in less "
      "time than training on a static subset of the same per-epoch size, "
      "random or chosen by a pruning score — Okanovic et al., 'Repeated "
      "Random Sampling for Minimizing the Time-to-Accuracy of Learning', "
      "ICLR 2024, arXiv:2305.18424 (EL2N: Paul et al., arXiv:2107.07075).")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (128,)
  config.fraction = 0.1
  config.batch_size = 25
  config.epochs = arg.epochs or (30 if arg.quick else 100)
  config.learning_rate = 1e-3
  config.target_accuracy = 0.93
  config.proxy_steps = 20
  config.proxy_learning_rate = 3e-3
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.rs2_fn = "jaxkit.selection.rs2_indices"
  config.el2n_fn = "jaxkit.selection.el2n_scores"
  config.prune_fn = "jaxkit.selection.prune_by_score"
  config.arms = [
      dict(name="RS2", kind="rs2"),
      dict(name="static random", kind="random"),
      dict(name="static EL2N (hard)", kind="hard"),
      dict(name="static EL2N (easy)", kind="easy"),
  ]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
