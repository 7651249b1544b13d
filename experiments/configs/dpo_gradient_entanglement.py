r"""Gradient entanglement in DPO: predicted vs observed (seed 000, E14).

Launch (full, 5 seeds, about a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/dpo_gradient_entanglement.py \
      --workdir=runs/dpo_gradient_entanglement

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/dpo_gradient_entanglement.py:quick \
      --workdir=runs/dpo_gradient_entanglement_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``steps=N``, ``lr=F``.

Seed catalog 000 #8 (Yuan et al. 2024), miniature experiment E14. A tiny
language model: a bigram LM over 16 tokens (embedding 16×8 plus a BOS row,
output 8×16 + bias; log π(y) = Σ_t log softmax(E[y_{t−1}] W + b)[y_t]),
sequences of length 8. Per seed, 64 preference pairs: the chosen sequence is
uniform random; the rejected one copies its first ``k`` tokens and differs
at every later position. An arm is an overlap k ∈ {0, 4, 6, 7} (token
overlap 0 … 7/8). Training: DPO (``jaxkit.losses.dpo_loss``, β = 0.1,
π_ref = the initial model) with plain SGD (lr 0.5), **one pair per step**
(epochs of a fresh random order), so the first-order analysis is exact up to
the step size. At every step, ``jaxkit.losses.gradient_entanglement`` on the
pair's ∇log π(y_c) and ∇log π(y_r) predicts whether log π(y_c) falls
(⟨g_c, g_r⟩ > ‖g_c‖²) and whether log π(y_r) rises (⟨g_c, g_r⟩ > ‖g_r‖²);
after the step the observed changes are recorded. Settings fixed before
the first run.

Metrics per overlap: agreement between the predicted and the observed sign
of Δlog π(y_c) (fraction of steps), the fraction of steps on which
log π(y_c) fell, the same two for log π(y_r) (rises), and the change of the
mean chosen log-probability over the data set from start to end. ``held`` =
the predicted sign of Δlog π(y_c) matches the observed one on ≥ 90 % of
steps (mean over seeds) at every overlap **and** the chosen log-probability
falls on a larger fraction of steps at the largest overlap than at overlap
0.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds``, ``steps``, ``lr``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0, lr=0.5)
  config = ml_collections.ConfigDict()
  config.name = "dpo_gradient_entanglement"
  config.runner = "experiments.dpo_gradient_entanglement.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "In margin-based alignment (DPO) the chosen and rejected "
      "log-probabilities move together through their gradients' inner "
      "product: log π(y_c) falls when ⟨∇log π(y_c), ∇log π(y_r)⟩ > "
      "‖∇log π(y_c)‖², which the first-order condition predicts and which "
      "happens more often the more tokens the two responses share — Yuan, "
      "Jin, Zhang, Zhang, Liu, Zhong, 'A Common Pitfall of Margin-based "
      "Language Model Alignment: Gradient Entanglement', 2024, "
      "arXiv:2410.13828.")
  config.task = dict(vocab=16, length=8, embed=8, num_pairs=64)
  config.beta = 0.1
  config.learning_rate = arg.lr
  config.steps = arg.steps or (64 if arg.quick else 640)
  config.agreement_threshold = 0.9

  config.dpo_fn = "jaxkit.losses.dpo_loss"
  config.entanglement_fn = "jaxkit.losses.gradient_entanglement"
  config.optimizer_fn = "optax.sgd"
  config.arms = [
      dict(name="overlap 0/8", shared=0),
      dict(name="overlap 4/8", shared=4),
      dict(name="overlap 6/8", shared=6),
      dict(name="overlap 7/8", shared=7),
  ]
  config.transfer_guard = "disallow"
  # O0 compiles fastest (the quick variant is mostly compilation); the full
  # variant's training loop runs several times faster at XLA's default level.
  config.compiler_options = (dict(xla_backend_optimization_level=0)
                             if arg.quick else {})
  return config
