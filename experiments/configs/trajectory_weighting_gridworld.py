r"""Return- / advantage-weighted trajectory sampling (seed 001, (3)-9).

Launch (full, 5 seeds, seconds on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/trajectory_weighting_gridworld.py \
      --workdir=runs/trajectory_weighting_gridworld

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/trajectory_weighting_gridworld.py:quick \
      --workdir=runs/trajectory_weighting_gridworld_quick

Arguments after ``:`` (comma-separated): ``quick``, ``seeds=N``,
``expert=F`` (fraction of expert trajectories), ``alpha=F``.

Seed catalog 001 #11 (Hong, Kumar, Agrawal, ICLR 2023), miniature
experiment (3)-9. A deterministic 10×10 gridworld (4 moves, walls clamp),
goal in the corner (9, 9), reward 1 on reaching it (the episode ends),
discount 0.95, horizon 40; start states uniform over the other 99 cells.
Data set per seed: 1000 trajectories, 95 % from the uniform random policy
and 5 % (``expert``) from an expert (a shortest path, ties broken at
random). Learner: tabular behaviour cloning — 20 000 transitions are drawn
with replacement from the arm's per-transition sampling distribution,
π(a|s) ∝ count(s, a) + 0.01 (uniform where a state was never drawn).
Arms (settings fixed before the first run; α = 0.1 is the library's and
the paper's default):

* ``uniform``: every transition equally likely (plain BC);
* ``RW``: ``jaxkit.reweighting.return_weighted_probs`` (α = 0.1);
* ``AW``: ``jaxkit.reweighting.advantage_weighted_probs`` (α = 0.1, the
  value baseline a linear fit of the return on the start cell's
  normalised coordinates).

Metric: the BC policy's expected discounted return from a uniform start
state, computed exactly by dynamic programming over the horizon (headline:
the stochastic policy; the greedy policy's return is reported too).
``held`` = mean return of RW > uniform **and** AW > uniform (the catalog's
"RW/AW sampling gives a higher evaluation return than uniform").
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config (``arg``: quick, seeds, expert, alpha)."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, expert=0.05, alpha=0.1)
  config = ml_collections.ConfigDict()
  config.name = "trajectory_weighting_gridworld"
  config.runner = "experiments.trajectory_weighting_gridworld.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "On a mixed offline data set dominated by poor trajectories, sampling "
      "transitions in proportion to their trajectory's (return- or "
      "advantage-) weight lets an offline learner exploit the few good "
      "trajectories: RW / AW sampling gives a higher evaluation return than "
      "uniform sampling — Hong, Kumar, Agrawal, 'Harnessing Mixed Offline "
      "Reinforcement Learning Datasets via Trajectory Weighting', ICLR "
      "2023, arXiv:2306.13085.")
  config.env = dict(size=10, horizon=40, discount=0.95)
  config.data = dict(num_trajectories=300 if arg.quick else 1000,
                     expert_fraction=arg.expert,
                     num_samples=5000 if arg.quick else 20000,
                     smoothing=0.01)
  config.rw_fn = "jaxkit.reweighting.return_weighted_probs"
  config.aw_fn = "jaxkit.reweighting.advantage_weighted_probs"
  config.arms = [
      dict(name="uniform", weighting="uniform"),
      dict(name="RW", weighting="rw", alpha=arg.alpha),
      dict(name="AW", weighting="aw", alpha=arg.alpha),
  ]
  return config
