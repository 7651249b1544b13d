r"""Dual-head (DHO) vs single-head semi-supervised KD (seed 000, E9).

Launch (full, 5 seeds, about a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/dho_semisup_digits.py \
      --workdir=runs/dho_semisup_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/dho_semisup_digits.py:quick \
      --workdir=runs/dho_semisup_digits_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``steps=N``, ``alpha=F`` (DHO's inference mixing weight).

Seed catalog 000 #26 (DHO, Kang et al. 2025), miniature experiment E9.
``sklearn.datasets.load_digits``, the fixed 1000 / 797 split of
``kd_digits``. The teacher stands in for the paper's zero-shot
vision-language model: a *linear* softmax classifier trained on all 1000
training labels (full-batch Adam, 300 steps; good but clearly below an MLP,
so the students can beat it). Per seed, only 2 % or 10 % of the training
images keep their label (stratified: 2 resp. 10 per class); the teacher's
probabilities are available for all 1000. Student: MLP 64→64 (ReLU) and
two linear heads, full-batch Adam (lr 1e-2), the same initialisation for
every arm of a seed. Arms (settings fixed before the first run):

* ``CE (labelled only)``: one head, cross-entropy on the labelled images;
* ``single head, CE + KD``: one head, CE on the labelled images + KL(p_T ‖
  p_student) on all images (the same two terms as DHO, unweighted);
* ``DHO``: ``jaxkit.losses.dho_loss`` (supervised head on the labelled
  images, KD head on all), prediction ``jaxkit.losses.dho_predict`` with
  α = 0.5 (the heads' probabilities averaged).

Metric: clean test accuracy at 2 % and 10 % labels. ``held`` = DHO >
single-head CE + KD at both label fractions (mean over seeds); "the gap is
largest at 2 %" and "DHO > teacher" are reported as checks.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds``, ``steps``, ``alpha``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0, alpha=0.5)
  config = ml_collections.ConfigDict()
  config.name = "dho_semisup_digits"
  config.runner = "experiments.dho_semisup_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "In semi-supervised distillation from a strong teacher, giving the "
      "supervised (CE) and distillation (KD) signals separate prediction "
      "heads on a shared backbone and mixing their outputs at inference "
      "(DHO) beats single-head CE + KD, most of all with very few labels — "
      "Kang, Lee, Jang, Hwang, 'Simple yet Effective Semi-supervised "
      "Knowledge Distillation from Vision-Language Models via Dual-Head "
      "Optimization', 2025, arXiv:2505.07675.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.labels_per_class = [2, 10]
  config.teacher = dict(learning_rate=1e-2, steps=300)
  config.hidden = 64
  config.learning_rate = 1e-2
  config.steps = arg.steps or (40 if arg.quick else 400)
  config.alpha = arg.alpha

  config.dho_fn = "jaxkit.losses.dho_loss"
  config.dho_predict_fn = "jaxkit.losses.dho_predict"
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.kl_fn = "jaxkit.divergences.kl"
  config.mean_fn = "jaxkit.masked_mean"
  config.optimizer_fn = "optax.adam"
  config.arms = [
      dict(name="CE (labelled only)", loss="ce"),
      dict(name="single head, CE + KD", loss="single_kd"),
      dict(name="DHO", loss="dho"),
  ]
  config.transfer_guard = "disallow"
  # O0 compiles fastest (the quick variant is mostly compilation); the full
  # variant's training loop runs several times faster at XLA's default level.
  config.compiler_options = (dict(xla_backend_optimization_level=0)
                             if arg.quick else {})
  return config
