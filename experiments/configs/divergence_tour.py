r"""A tour of every divergence in ``jaxkit.divergences``, with sanity checks.

Launch (this is ``make demo``):

  python -m experiments.main \
      --config=experiments/configs/divergence_tour.py \
      --workdir=runs/divergence_tour

Quick variant (fewer samples and seeds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/divergence_tour.py:quick \
      --workdir=runs/divergence_tour_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``samples=N`` (points per sample set).

Prints a table of every divergence evaluated on example inputs: two
categorical distributions over 6 outcomes (the f-divergences, Amari α,
Rényi), two 2-D Gaussians (closed forms) and samples drawn from those
Gaussians (Sinkhorn, Sinkhorn divergence, MMD², Cauchy–Schwarz). Each entry of
``config.table`` names its function by dotted path with its kwargs and the kind
of input it takes; a function that does not exist fails the run at start-up.
The run checks textbook identities numerically (on the example pair and on
random Dirichlet pairs) and plots every f-generator f(t), t ∈ (0, 4], with its
f-DPG pseudo-reward.
"""

from __future__ import annotations

import ml_collections

from experiments import harness

_D = "jaxkit.divergences."


def _entry(name, fn, inputs, **kw):
  return dict(name=name, fn=_D + fn, inputs=inputs, kw=kw)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``samples=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, samples=0)
  config = ml_collections.ConfigDict()
  config.name = "divergence_tour"
  config.runner = "experiments.divergence_tour.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 3)

  config.claim = (
      "Textbook identities of divergences hold numerically for jaxkit's "
      "implementations: JS ≤ log 2; Pinsker TV ≤ sqrt(KL/2); squared "
      "Hellinger ≤ KL; D_gan = 2·JS; the Csiszár dual D_f(P‖Q) = "
      "D_f◇(Q‖P) for every generator; the named divergences equal "
      "f_divergence with their generator; Jeffreys = KL + reverse KL; Amari "
      "α=½ = 2·Hellinger², α=2 = ½·Pearson χ²; Rényi R_α = log(1 + "
      "α(α−1)·D_α)/(α−1) and is non-decreasing in α (R_½ ≤ KL ≤ R_2), also "
      "for Gaussians in closed form; sample-based divergences separate two "
      "different distributions from two samples of the same one — "
      "Csiszár 1967; Nowozin et al., 'f-GAN', arXiv:1606.00709; van Erven & "
      "Harremoës, 'Rényi Divergence and Kullback–Leibler Divergence', "
      "arXiv:1206.2459; Gretton et al., 'A Kernel Two-Sample Test', JMLR "
      "2012; Feydy et al., 'Interpolating between Optimal Transport and MMD "
      "using Sinkhorn Divergences', arXiv:1810.08278.")

  # Example inputs.
  config.categorical = dict(
      p=[0.30, 0.25, 0.20, 0.12, 0.08, 0.05],
      q=[0.10, 0.15, 0.20, 0.20, 0.15, 0.20],
      num_random_pairs=64,        # Dirichlet pairs for the identity checks
      dirichlet_concentration=0.5,
  )
  config.gaussians = dict(
      mean_p=[0.0, 0.0], cov_p=[[1.0, 0.5], [0.5, 1.0]],
      mean_q=[1.0, -0.5], cov_q=[[1.5, 0.2], [0.2, 1.2]],
  )
  config.samples = dict(num_samples=arg.samples or (128 if arg.quick else 512))

  # The table: every divergence, by dotted name + kwargs + input kind
  # ('categorical': (log_p, log_q); 'gaussian': (mean_p, cov_p, mean_q,
  # cov_q); 'samples': (x ~ P, y ~ Q)). Functions returning (value, aux) are
  # reduced to the value.
  config.table = [
      _entry("kl", "kl", "categorical"),
      _entry("reverse_kl", "reverse_kl", "categorical"),
      _entry("js", "js", "categorical"),
      _entry("tv", "tv", "categorical"),
      _entry("pearson_chi2", "pearson_chi2", "categorical"),
      _entry("neyman_chi2", "neyman_chi2", "categorical"),
      _entry("squared_hellinger", "squared_hellinger", "categorical"),
      _entry("jeffreys", "jeffreys", "categorical"),
      _entry("amari_alpha(0.5)", "amari_alpha", "categorical", alpha=0.5),
      _entry("amari_alpha(2)", "amari_alpha", "categorical", alpha=2.0),
      _entry("renyi(0.5)", "renyi", "categorical", alpha=0.5),
      _entry("renyi(2)", "renyi", "categorical", alpha=2.0),
      _entry("f_divergence(gan)", "f_divergence", "categorical",
             generator="gan"),
      _entry("gaussian_kl", "gaussian_kl", "gaussian"),
      _entry("gaussian_w2", "gaussian_w2", "gaussian"),
      _entry("gaussian_cauchy_schwarz", "gaussian_cauchy_schwarz", "gaussian"),
      _entry("gaussian_renyi(0.5)", "gaussian_renyi", "gaussian", alpha=0.5),
      _entry("gaussian_renyi(2)", "gaussian_renyi", "gaussian", alpha=2.0),
      _entry("sinkhorn", "sinkhorn", "samples", epsilon=0.1),
      _entry("sinkhorn_divergence", "sinkhorn_divergence", "samples",
             epsilon=0.1),
      _entry("mmd2", "mmd2", "samples", bandwidth=1.0),
      _entry("cauchy_schwarz", "cauchy_schwarz", "samples", bandwidth=0.5),
  ]

  # Library pieces the identity checks and the plot use.
  config.f_divergence_fn = _D + "f_divergence"
  config.get_generator_fn = _D + "get_generator"
  config.csiszar_dual_fn = _D + "csiszar_dual"
  config.generator_names_ref = _D + "GENERATOR_NAMES"  # *_ref: any object
  # Parameters for the generators that need them (one curve per entry).
  config.generator_params = dict(amari_alpha=[dict(alpha=0.5),
                                              dict(alpha=2.0)])

  config.rtol = 1e-4                # equalities (float32)
  config.atol = 1e-5
  return config
