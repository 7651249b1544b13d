r"""KD vs KD + ND vs PLD vs DHKD: wide teacher MLP → narrow student on digits.

Launch (full, 5 seeds, well under a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/kd_digits.py \
      --workdir=runs/kd_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/kd_digits.py:quick \
      --workdir=runs/kd_digits_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``steps=N`` (student Adam steps), e.g. ``...py:quick,seeds=3``.

Issue 4, miniature experiments. ``sklearn.datasets.load_digits`` (1797 8×8
images, 64 features scaled to [0, 1], 10 classes; bundled with scikit-learn,
no download), one fixed random train / test split (``task.split_seed``). Per
seed, a wide teacher MLP 64→256→256→10 is trained full-batch with Adam on
cross-entropy; then a narrow student MLP 64→16→10 (same initialisation for
every arm of a seed) is trained full-batch with Adam on each arm's loss:

* ``CE``: cross-entropy only (the baseline);
* ``CE+KD``: CE + ``jaxkit.losses.kd_loss`` (τ = 4, ``'kl'``; τ² included);
* ``CE+KD+ND``: CE + KD + ``jaxkit.losses.nd_loss`` on the student's 16-d
  penultimate features mapped to the teacher's 256-d embedding space by a
  learned linear projector (training only, as in the ND paper's code for
  mismatched widths); class means from ``jaxkit.losses.teacher_class_means``
  of the teacher's training-set embeddings;
* ``PLD``: ``jaxkit.losses.pld_loss`` alone (no separate CE term; its first
  rank is already a teacher-weighted CE);
* ``DHKD``: ``jaxkit.losses.dhkd_loss`` (CE + τ²·KL on the main head, logit
  MSE on an auxiliary linear head from the same 16-d features; only the main
  head is evaluated).

The teacher is frozen (its logits / embeddings on the training set are
computed once). Per-example losses are reduced with ``jaxkit.masked_mean``.
Metric: student test accuracy (mean ± std over seeds); teacher accuracy is
reported for scale. ``held`` = mean accuracy of CE+KD ≥ CE.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "kd_digits"
  config.runner = "experiments.kd_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)

  config.claim = (
      "Distilling a wide teacher into a narrow student beats training the "
      "student on labels alone: CE+KD (and KD+ND, PLD, DHKD) students reach "
      "at least the CE-only student's test accuracy — Hinton, Vinyals, Dean, "
      "'Distilling the Knowledge in a Neural Network', 2015, "
      "arXiv:1503.02531; ND: Wang et al. 2023, arXiv:2305.17007; PLD and "
      "DHKD (Yang et al. 2024) as cited in jaxkit.losses.")

  config.task = dict(
      data_fn="sklearn.datasets.load_digits",
      train_size=1000,          # the rest (797) is the test set
      split_seed=0,             # the split is fixed across seeds
  )
  config.teacher = dict(hidden=(64, 64) if arg.quick else (256, 256),
                        steps=30 if arg.quick else 300,
                        learning_rate=3e-3)
  config.student = dict(hidden=(16,), learning_rate=1e-2)
  config.steps = arg.steps or (15 if arg.quick else 400)

  # jaxkit functions, by dotted name (resolved once at start-up).
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.kd_fn = "jaxkit.losses.kd_loss"
  config.nd_fn = "jaxkit.losses.nd_loss"
  config.class_means_fn = "jaxkit.losses.teacher_class_means"
  config.pld_fn = "jaxkit.losses.pld_loss"
  config.dhkd_fn = "jaxkit.losses.dhkd_loss"
  config.mean_fn = "jaxkit.masked_mean"
  config.optimizer_fn = "optax.adam"

  config.kd_kw = dict(temperature=4.0, divergence="kl")
  config.pld_kw = dict(temperature=4.0)
  config.dhkd_kw = dict(temperature=4.0)

  # Arms: weights of each loss term (0 = absent).
  config.arms = [
      dict(name="CE", ce=1.0, kd=0.0, nd=0.0, pld=0.0, dhkd=0.0),
      dict(name="CE+KD", ce=1.0, kd=1.0, nd=0.0, pld=0.0, dhkd=0.0),
      dict(name="CE+KD+ND", ce=1.0, kd=1.0, nd=1.0, pld=0.0, dhkd=0.0),
      dict(name="PLD", ce=0.0, kd=0.0, nd=0.0, pld=1.0, dhkd=0.0),
      dict(name="DHKD", ce=0.0, kd=0.0, nd=0.0, pld=0.0, dhkd=1.0),
  ]

  config.transfer_guard = "disallow"  # around the jitted training loops
  # Compiling dominates the run time of these tiny programs.
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
