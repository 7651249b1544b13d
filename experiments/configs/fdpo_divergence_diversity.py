r"""f-DPO: the divergence trades diversity for reward (Wang et al., 2023).

Launch (full, seconds on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/fdpo_divergence_diversity.py \
      --workdir=runs/fdpo_divergence_diversity

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/fdpo_divergence_diversity.py:quick \
      --workdir=runs/fdpo_divergence_diversity_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``steps=N``, e.g. ``...py:quick,seeds=3``.

Seed catalog 003, experiment X2. A bandit with 16 prompts × 32 candidate
responses: π_ref(·|x) = softmax of N(0, ref_scale²) logits, a hidden reward
r*(x, y) ~ N(0, 1). A fixed data set of preference pairs (y1, y2 drawn
independently from π_ref, prompt uniform) is labelled by Bradley–Terry,
P(y1 ≻ y2) = σ(reward_scale · (r*(y1) − r*(y2))). A tabular policy (one logit
per prompt × response, initialised at log π_ref) is trained full-batch with
Adam on ``jaxkit.losses.fdpo_loss`` (the log-probabilities are the policy's
and π_ref's at the pair's responses) for each divergence: reverse KL (= DPO),
JS, α-divergence with α ∈ {0.5, 0.3}, and forward KL (α = 0, which
``fdpo_loss`` maps to ``'forward_kl'``).

Metrics of the final policy, exact over the 32 responses and averaged over
prompts: expected true reward E_π[r*], entropy H(π) (nats) and KL(π‖π_ref)
(``jaxkit.divergences.reverse_kl`` with π_ref as the target). Every seed draws
its own π_ref, r* and data set.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "fdpo_divergence_diversity"
  config.runner = "experiments.fdpo_divergence_diversity.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 3)

  config.claim = (
      "Replacing DPO's reverse-KL regulariser by other f-divergences trades "
      "alignment for diversity: entropy (diversity) of the trained policy "
      "rises from reverse KL → JS → forward KL (α-divergences in between) "
      "while the expected reward falls — Wang, Jiang, Yang, Liu, Chen, "
      "'Beyond Reverse KL: Generalizing Direct Preference Optimization with "
      "Diverse Divergence Constraints', 2023, arXiv:2309.16240.")

  # The task (seed catalog 003, X2).
  config.task = dict(
      num_prompts=16,
      num_responses=32,
      ref_scale=1.0,            # std of π_ref's logits
      reward_scale=1.0,         # Bradley–Terry temperature on r* ~ N(0, 1)
      num_pairs=4096,           # preference pairs (all prompts together)
  )

  # jaxkit functions, by dotted name (resolved once at start-up).
  config.loss_fn = "jaxkit.losses.fdpo_loss"
  config.kl_fn = "jaxkit.divergences.reverse_kl"   # KL(π‖π_ref), π_ref first
  config.optimizer_fn = "optax.adam"

  # Arms: `divergence` / `alpha` are fdpo_loss's keyword arguments.
  config.arms = [
      dict(name="reverse KL", divergence="reverse_kl", alpha=1.0),
      dict(name="JS", divergence="js", alpha=1.0),
      dict(name="alpha=0.5", divergence="alpha", alpha=0.5),
      dict(name="alpha=0.3", divergence="alpha", alpha=0.3),
      dict(name="forward KL", divergence="alpha", alpha=0.0),
  ]

  config.beta = 0.1
  config.steps = arg.steps or (60 if arg.quick else 1000)
  config.learning_rate = 0.05

  config.transfer_guard = "disallow"  # around the jitted training loops
  # Compiling dominates the run time of these tiny programs.
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
