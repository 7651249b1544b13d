r"""ShrinkMatch vs FixMatch, 5 labels per class (seed 001, (3)-14).

Launch (full, 5 seeds, about a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/shrinkmatch_digits.py \
      --workdir=runs/shrinkmatch_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/shrinkmatch_digits.py:quick \
      --workdir=runs/shrinkmatch_digits_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``steps=N``.

Seed catalog 001 #4 (Yang, Zhao, Qi, Shi, ICCV 2023), miniature experiment
(3)-14. ``sklearn.datasets.load_digits`` (pixels scaled to [0, 1]), the
fixed 1000 / 797 split of ``kd_digits``; per seed 5 labelled images per
class (50), and all 1000 training images as the unlabelled set. Weak view:
x + N(0, 0.05²); strong view: x + N(0, 0.3²), then 20 % of the pixels set
to 0 (fresh draws every step). Model: MLP 64→128 (ReLU) with a main head
and an auxiliary head (ShrinkMatch applies its loss to an auxiliary head, as
the authors' code does), full-batch Adam (lr 3e-3), the same initialisation
for every arm of a seed; confidence threshold τ = 0.95. Arms (settings
fixed before the first run):

* ``supervised (50 labels)``: cross-entropy on the labelled weak views;
* ``FixMatch``: + ``jaxkit.losses.fixmatch_loss`` (hard pseudo-labels,
  weight 1, mean over the unlabelled set);
* ``ShrinkMatch``: FixMatch + ``jaxkit.losses.shrinkmatch_loss`` on the
  auxiliary head's strong-view logits, its batch mean multiplied by the
  running fraction of certain samples (reweighting principle 2; the
  authors' EMA has momentum 0.999 over ~10⁶ iterations — over our few
  hundred full-batch steps we use its bias-corrected form, i.e. about the
  running mean; our choice).

Metrics: test accuracy of the main head (headline); the fraction of the
unlabelled set that contributes to the unsupervised loss (FixMatch:
max p_w ≥ τ; ShrinkMatch: also the uncertain samples whose shrunk-space
confidence reaches τ) and the accuracy of the pseudo-labels of the
contributing samples, both averaged over the last quarter of training.
``held`` = ShrinkMatch's mean test accuracy ≥ FixMatch's **and** its mean
contributing fraction is higher (the catalog's expected direction).
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds``, ``steps``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "shrinkmatch_digits"
  config.runner = "experiments.shrinkmatch_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Shrinking the class space of uncertain unlabelled samples (dropping "
      "their confusion classes until the top class is confident) lets "
      "ShrinkMatch use more unlabelled data than FixMatch's confidence "
      "threshold, with at least FixMatch's accuracy — Yang, Zhao, Qi, Shi, "
      "'Shrinking Class Space for Enhanced Certainty in Semi-Supervised "
      "Learning', ICCV 2023, arXiv:2308.06777.")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0, labels_per_class=5)
  config.augment = dict(weak_noise=0.05, strong_noise=0.3, dropout=0.2)
  config.hidden = 64 if arg.quick else 128
  config.learning_rate = 3e-3
  config.threshold = 0.95
  config.unlabeled_weight = 1.0
  config.shrink_weight = 1.0
  config.steps = arg.steps or (12 if arg.quick else 500)

  config.fixmatch_fn = "jaxkit.losses.fixmatch_loss"
  config.shrinkmatch_fn = "jaxkit.losses.shrinkmatch_loss"
  config.shrink_mask_fn = "jaxkit.losses.shrink_class_mask"
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.mean_fn = "jaxkit.masked_mean"
  config.optimizer_fn = "optax.adam"
  config.arms = [
      dict(name="supervised (50 labels)", loss="supervised"),
      dict(name="FixMatch", loss="fixmatch"),
      dict(name="ShrinkMatch", loss="shrinkmatch"),
  ]
  config.transfer_guard = "disallow"
  # O0 compiles fastest (the quick variant is mostly compilation); the full
  # variant's training loop runs several times faster at XLA's default level.
  config.compiler_options = (dict(xla_backend_optimization_level=0)
                             if arg.quick else {})
  return config
