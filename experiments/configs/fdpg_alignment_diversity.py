r"""f-DPG: the choice of f trades alignment for diversity (Go et al., 2023).

Launch (full, ~1 min on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/fdpg_alignment_diversity.py \
      --workdir=runs/fdpg_alignment_diversity

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/fdpg_alignment_diversity.py:quick \
      --workdir=runs/fdpg_alignment_diversity_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``steps=N`` (both modes), e.g. ``...py:quick,seeds=3``.

Seed catalog 003, experiment X1. Enumerable sequence space (vocab 4, length 3:
64 sequences); base a(x) = product of random per-position categoricals; target
p(x) ∝ a(x)·exp(4·1[x1 = x2]) (a correlation the factorised per-position
softmax policy π_θ cannot represent, so the divergences disagree on the best
π_θ). Each arm minimises D_f(p‖π_θ) (target first) in two modes:

* ``exact``: ``jaxkit.divergences.f_divergence`` over the 64 sequences,
  autodiff, Adam;
* ``sampled``: the f-DPG score-function estimator
  ``jaxkit.divergences.score_function_surrogate`` on on-policy samples from
  π_θ with a baseline (EMA of the pseudo-reward, or the batch mean), Adam.

Metrics of the final policy (exact, over the 64 sequences): alignment
E_π[1[x1 = x2]], entropy H(π) (nats), KL(p‖π) and KL(π‖p). Every seed draws
its own base a(x) and policy initialisation.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``steps=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, steps=0)
  config = ml_collections.ConfigDict()
  config.name = "fdpg_alignment_diversity"
  config.runner = "experiments.fdpg_alignment_diversity.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)

  config.claim = (
      "Minimising D_f(p‖π_θ) over a restricted policy family, reverse KL is "
      "mode-seeking (highest alignment, lowest entropy, below the target's), "
      "forward KL over-disperses (lowest alignment, highest entropy), and JS "
      "sits between and beats forward KL on alignment by a wide margin — Go, "
      "Korbak, Kruszewski, Rozen, Ryu, Dymetman, 'Aligning Language Models "
      "with Preferences through f-divergence Minimization', ICML 2023, "
      "arXiv:2302.08215.")

  # The task (seed catalog 003, X1).
  config.task = dict(
      vocab=4,
      length=3,
      bonus=4.0,                # log-weight of the constraint x1 == x2
      # Dirichlet concentration of each position of a(x): 10 gives a nearly
      # uniform base, as in the seed catalog's pilot (H(p) ≈ 2.9 nats).
      base_concentration=10.0,
  )

  # jaxkit functions, by dotted name (resolved once at start-up).
  config.generator_fn = "jaxkit.divergences.get_generator"
  config.kl_fn = "jaxkit.divergences.kl"
  config.reverse_kl_fn = "jaxkit.divergences.reverse_kl"

  # Arms: D_f(p‖π_θ) with the target first; `generator` is a name of
  # jaxkit.divergences.GENERATOR_NAMES, `generator_kw` its parameters.
  config.arms = [
      dict(name="reverse KL", generator="reverse_kl", generator_kw={}),
      dict(name="JS", generator="js", generator_kw={}),
      dict(name="TV", generator="tv", generator_kw={}),
      dict(name="forward KL", generator="kl", generator_kw={}),
  ]

  config.init_scale = 0.1       # std of the initial policy logits
  config.optimizer_fn = "optax.adam"
  config.schedule_fn = "optax.cosine_decay_schedule"

  config.modes = ("exact", "sampled")
  config.exact = dict(
      loss_fn="jaxkit.divergences.f_divergence",
      steps=arg.steps or (300 if arg.quick else 1500),
      learning_rate=0.05,
      final_lr_fraction=0.1,
  )
  config.sampled = dict(
      loss_fn="jaxkit.divergences.score_function_surrogate",
      steps=arg.steps or (300 if arg.quick else 2000),
      learning_rate=0.05,
      final_lr_fraction=0.05,
      num_samples=64,
      baseline="ema",           # 'ema' | 'batch_mean' | 'none'
      ema_decay=0.9,
  )

  # The test of the claim, on the mean over seeds in each mode.
  config.wide_margin = 0.1      # JS alignment − forward-KL alignment ≥ this
  config.transfer_guard = "disallow"  # around the jitted training loops
  # Compiling dominates the run time of these tiny programs; XLA's backend
  # optimisations double it and buy nothing measurable here.
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
