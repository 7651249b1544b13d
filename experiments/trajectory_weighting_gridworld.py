"""Runner of ``configs/trajectory_weighting_gridworld.py`` (seed 001 #11).

Per seed: roll out the mixed data set in a deterministic gridworld (numpy,
vectorised over trajectories), compute each arm's per-transition sampling
probabilities (jaxkit), fit tabular behaviour cloning on a sample and
evaluate the policy's expected return exactly by dynamic programming.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments import harness

METRICS = ("expected return (stochastic BC policy)",
           "expected return (greedy BC policy)",
           "sampled transitions from expert trajectories")
# up, down, left, right as (drow, dcol).
_MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])


def _step(state, action, size):
  nxt = np.clip(state + _MOVES[action], 0, size - 1)
  return nxt


def rollout(rng, starts, policy, *, size, horizon):
  """Rolls out trajectories; returns per-trajectory (states, actions, len, G).

  ``policy(rng, pos [N, 2]) -> actions [N]``. States are flat cell indices
  ``row * size + col``; padded after the end.
  """
  n = len(starts)
  goal = np.array([size - 1, size - 1])
  pos = starts.copy()
  done = np.zeros(n, bool)
  states = np.zeros((n, horizon), np.int64)
  actions = np.zeros((n, horizon), np.int64)
  lengths = np.zeros(n, np.int64)
  steps_to_goal = np.full(n, -1)
  for t in range(horizon):
    a = policy(rng, pos)
    states[:, t] = pos[:, 0] * size + pos[:, 1]
    actions[:, t] = a
    lengths += ~done
    nxt = _step(pos, a, size)
    reach = ~done & np.all(nxt == goal, -1)
    steps_to_goal[reach] = t
    pos = np.where(done[:, None], pos, nxt)
    done |= reach
  return states, actions, lengths, steps_to_goal


def expert_policy(rng, pos, size):
  """A shortest path to the bottom-right corner, ties broken at random."""
  can_down = pos[:, 0] < size - 1
  can_right = pos[:, 1] < size - 1
  pick_down = np.where(can_down & can_right, rng.uniform(size=len(pos)) < 0.5,
                       can_down)
  return np.where(pick_down, 1, 3)


def evaluate(pi, *, size, horizon, discount):
  """Expected discounted return of π [S, 4] from a uniform non-goal start."""
  s = np.arange(size * size)
  rc = np.stack([s // size, s % size], -1)
  goal = size * size - 1
  nxt = np.stack([(lambda p: p[:, 0] * size + p[:, 1])(_step(rc, a, size))
                  for a in range(4)], -1)                  # [S, 4]
  v = np.zeros(size * size)
  for _ in range(horizon):
    r = (nxt == goal).astype(np.float64)
    q = r + discount * np.where(nxt == goal, 0.0, v[nxt])
    v = np.sum(pi * q, -1)
  return float(np.mean(np.delete(v, goal)))


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Runs every arm over all seeds; returns the result dict."""
  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("uniform", "RW", "AW"))
  rw, aw = fns[config.rw_fn], fns[config.aw_fn]
  env, data = dict(config.env), dict(config.data)
  size, horizon, gamma = env["size"], env["horizon"], env["discount"]
  per_seed = {k: {a: [] for a in arm_names} for k in METRICS}
  ref = {"random policy": [], "expert policy": []}
  for seed in seeds:
    rng = np.random.RandomState(seed)
    n = data["num_trajectories"]
    cells = np.array([[r, c] for r in range(size) for c in range(size)
                      if (r, c) != (size - 1, size - 1)])
    starts = cells[rng.randint(len(cells), size=n)]
    is_expert = rng.uniform(size=n) < data["expert_fraction"]
    pol = lambda rg, pos: np.where(
        is_expert, expert_policy(rg, pos, size), rg.randint(4, size=len(pos)))
    states, actions, lengths, t_goal = rollout(rng, starts, pol, size=size,
                                               horizon=horizon)
    returns = np.where(t_goal >= 0, gamma ** np.maximum(t_goal, 0), 0.0)
    s0 = starts.astype(np.float32) / (size - 1)
    valid = np.arange(horizon)[None] < lengths[:, None]
    flat_traj = np.repeat(np.arange(n), horizon)[valid.reshape(-1)]
    flat_s = states[valid]
    flat_a = actions[valid]
    for arm in config.arms:
      kind = arm["weighting"]
      if kind == "uniform":
        p_traj = np.full(n, 1.0 / lengths.sum())
      elif kind == "rw":
        p_traj = np.asarray(rw(returns.astype(np.float32), lengths,
                               alpha=float(arm["alpha"])), np.float64)
      elif kind == "aw":
        p_traj = np.asarray(aw(returns.astype(np.float32), s0, lengths,
                               alpha=float(arm["alpha"])), np.float64)
      else:
        raise ValueError(f"arm {arm['name']!r}: weighting must be uniform, "
                         f"rw or aw, got {kind!r}")
      p = p_traj[flat_traj]
      p = p / p.sum()
      idx = np.random.RandomState(10_000 + seed).choice(
          len(p), size=data["num_samples"], p=p)
      counts = np.zeros((size * size, 4))
      np.add.at(counts, (flat_s[idx], flat_a[idx]), 1.0)
      pi = (counts + data["smoothing"]) / (
          counts.sum(-1, keepdims=True) + 4 * data["smoothing"])
      greedy = np.eye(4)[np.argmax(counts + 1e-9 * rng.uniform(
          size=counts.shape), -1)]
      greedy[counts.sum(-1) == 0] = 0.25
      name = arm["name"]
      per_seed[METRICS[0]][name].append(
          evaluate(pi, size=size, horizon=horizon, discount=gamma))
      per_seed[METRICS[1]][name].append(
          evaluate(greedy, size=size, horizon=horizon, discount=gamma))
      per_seed[METRICS[2]][name].append(float(np.mean(is_expert[
          flat_traj[idx]])))
    ref["random policy"].append(evaluate(np.full((size * size, 4), 0.25),
                                         size=size, horizon=horizon,
                                         discount=gamma))
    exp_pi = np.zeros((size * size, 4))
    rc = np.stack([np.arange(size * size) // size,
                   np.arange(size * size) % size], -1)
    exp_pi[:, 1] = np.where(rc[:, 1] < size - 1,
                            np.where(rc[:, 0] < size - 1, 0.5, 0.0), 1.0)
    exp_pi[:, 3] = 1.0 - exp_pi[:, 1]
    ref["expert policy"].append(evaluate(exp_pi, size=size, horizon=horizon,
                                         discount=gamma))
  for k in METRICS[:2]:
    per_seed[k].update(ref)
  for a in arm_names:
    print(f"  {a:8s} return {np.mean(per_seed[METRICS[0]][a]):.4f} ± "
          f"{harness.sample_std(per_seed[METRICS[0]][a]):.4f}  greedy "
          f"{np.mean(per_seed[METRICS[1]][a]):.4f}  expert share "
          f"{np.mean(per_seed[METRICS[2]][a]):.3f}", flush=True)
  m = {k: {a: float(np.mean(v)) for a, v in per_seed[k].items()}
       for k in METRICS}
  ret = m[METRICS[0]]
  c_rw = bool(ret["RW"] > ret["uniform"])
  c_aw = bool(ret["AW"] > ret["uniform"])
  held = c_rw and c_aw
  checks = [("RW > uniform (decides `held`)", c_rw),
            ("AW > uniform (decides `held`)", c_aw),
            ("AW ≥ RW", bool(ret["AW"] >= ret["RW"])),
            ("greedy policy: RW and AW > uniform",
             bool(min(m[METRICS[1]]["RW"], m[METRICS[1]]["AW"])
                  > m[METRICS[1]]["uniform"]))]
  verdict = (
      f"Mean expected return of the BC policy over {len(seeds)} seeds: "
      + ", ".join(f"{a} {ret[a]:.4f}" for a in arm_names)
      + f" (random policy {ret['random policy']:.4f}, expert "
      f"{ret['expert policy']:.4f}) — RW and AW > uniform "
      f"{'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]
  notes = harness.checks_markdown(checks)
  notes += ["", "The first two checks decide `held`. `random policy` and "
            "`expert policy` are reference rows (the data's two behaviour "
            "policies, evaluated exactly)."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline=METRICS[0], held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
