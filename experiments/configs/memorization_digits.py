r"""Feldman memorization scores on digits: who is memorised, and what removing them costs.

Launch (full, 5 seeds, under a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/memorization_digits.py \
      --workdir=runs/memorization_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/memorization_digits.py:quick \
      --workdir=runs/memorization_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``runs=N`` (subsampled
fits per seed).

Issue 10, miniature experiment seed_000 E26 (catalog #57).
``sklearn.datasets.load_digits`` (features / 16, fixed 1000 / 797 split).
Per seed, ``runs`` = 64 softmax-regression models (``W [64, 10] + b``, 150
full-batch Adam steps, lr 0.05) are trained with ``jax.vmap`` on independent
random 50 % subsets of the 1000 training examples;
``jaxkit.selection.memorization_scores(correct, included)`` gives every
training example's score ``Pr[correct | in S] − Pr[correct | not in S]``.
Then the same model is retrained on the full training set minus 100
examples (10 %), three ways (the arms):

* ``remove top-mem``: the 100 highest memorization scores;
* ``remove random``: 100 uniformly random examples;
* ``remove bottom-mem``: the 100 lowest scores;

plus ``full`` (nothing removed) for scale. Metrics: test accuracy, and
test accuracy of the class that loses the most (worst per-class accuracy).
Also reported: the atypicality of the removed set (mean distance to the
example's own class mean in pixel space, divided by the mean over all
training examples). ``held`` = mean test accuracy after removing the
top-mem examples < after removing random ones (Feldman & Zhang's
marginal-utility claim). Settings fixed before the first run.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``runs=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, runs=0)
  config = ml_collections.ConfigDict()
  config.name = "memorization_digits"
  config.runner = "experiments.memorization_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Examples with high memorization scores (correct when trained on, "
      "wrong when held out) are atypical, and removing them from the "
      "training set costs more test accuracy than removing the same number "
      "of random examples — Feldman & Zhang, 'What Neural Networks Memorize "
      "and Why', NeurIPS 2020, arXiv:2008.03703 (Feldman, STOC 2020, "
      "arXiv:1906.05271).")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.runs = arg.runs or (16 if arg.quick else 64)
  config.subset_fraction = 0.5
  config.steps = 60 if arg.quick else 150
  config.learning_rate = 0.05
  config.num_removed = 100
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.mem_fn = "jaxkit.selection.memorization_scores"
  config.arms = [
      dict(name="remove top-mem", kind="top"),
      dict(name="remove random", kind="random"),
      dict(name="remove bottom-mem", kind="bottom"),
      dict(name="full", kind="none"),
  ]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
