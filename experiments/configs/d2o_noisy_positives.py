r"""D2O vs DPO when some "positives" are bad (Duan et al., 2024).

Launch (full, seconds on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/d2o_noisy_positives.py \
      --workdir=runs/d2o_noisy_positives

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/d2o_noisy_positives.py:quick \
      --workdir=runs/d2o_noisy_positives_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``steps=N``, ``noise=F``, e.g. ``...py:quick,noise=0.5``.

Seed catalog 000 #28 / 003 #15 (D2O). The bandit of
``fdpo_divergence_diversity`` (16 prompts × 32 responses, π_ref = softmax of
N(0, 1) logits, hidden reward r* ~ N(0, 1), 4096 Bradley–Terry pairs from
π_ref; its ``make_task`` is reused), with noisy positives: in a fraction
``noise`` of the pairs the chosen response is replaced by a *bad* one, drawn
from π_ref restricted to the responses whose r* is in the prompt's bottom
``bad_quantile``. The rejected responses are left as labelled. Each pair also
carries K = ``num_samples`` offline samples from π_ref(·|x).

Arms (a tabular policy initialised at log π_ref, full-batch Adam):

* DPO: ``jaxkit.losses.dpo_loss`` on (noisy chosen, rejected), β = 0.1;
* D2O: ``jaxkit.losses.d2o_loss`` on (K π_ref samples as pseudo-positives,
  rejected as the negative), β = α = 0.1, both reference policies = π_ref.
  D2O never sees the (noisy) chosen responses.

Metrics of the final policy, exact over the 32 responses and averaged over
prompts: E_π[r*], KL(π‖π_ref) (``jaxkit.divergences.reverse_kl``), entropy,
and the instability "peak − final E_π[r*]" over the training curve. Every seed
draws its own π_ref, r*, data set and noise.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``, ``noise=F``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0, noise=0.3)
  config = ml_collections.ConfigDict()
  config.name = "d2o_noisy_positives"
  config.runner = "experiments.d2o_noisy_positives.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)

  config.claim = (
      "Aligning from human negatives plus self-generated samples (D2O) is "
      "more robust than DPO when the 'positive' responses are noisy: D2O "
      "reaches a higher reward and trains more stably — Duan, Yi, Zhang, Lu, "
      "Xie, Gu, 'Negating Negatives: Alignment with Human Negative Samples "
      "via Distributional Dispreference Optimization', 2024, "
      "arXiv:2403.03419.")

  # The task: fdpo_divergence_diversity's bandit (its make_task) + noise.
  config.task = dict(
      num_prompts=16,
      num_responses=32,
      ref_scale=1.0,            # std of π_ref's logits
      reward_scale=1.0,         # Bradley–Terry temperature on r* ~ N(0, 1)
      num_pairs=4096,           # preference pairs (all prompts together)
  )
  config.noise = dict(
      fraction=arg.noise,       # share of pairs whose chosen is made bad
      bad_quantile=0.25,        # "bad" = r* in the prompt's bottom quarter
      num_samples=4,            # K offline π_ref samples per pair (D2O)
  )

  # jaxkit functions, by dotted name (resolved once at start-up).
  config.dpo_fn = "jaxkit.losses.dpo_loss"
  config.d2o_fn = "jaxkit.losses.d2o_loss"
  config.kl_fn = "jaxkit.divergences.reverse_kl"   # KL(π‖π_ref), π_ref first
  config.optimizer_fn = "optax.adam"

  # Arms: `loss` picks the jaxkit function; `kw` are its keyword arguments.
  config.arms = [
      dict(name="DPO", loss="dpo", kw=dict(beta=0.1)),
      dict(name="D2O", loss="d2o", kw=dict(beta=0.1, alpha=0.1)),
  ]

  config.steps = arg.steps or (60 if arg.quick else 1000)
  config.learning_rate = 0.05

  config.transfer_guard = "disallow"  # around the jitted training loops
  # Compiling dominates the run time of these tiny programs.
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
