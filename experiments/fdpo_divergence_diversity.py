"""Runner of ``configs/fdpo_divergence_diversity.py`` (seed 003, X2; f-DPO).

For each seed: draw π_ref, a hidden reward r* and a Bradley–Terry-labelled
preference data set over a 16-prompt × 32-response bandit; then for each arm
(a divergence of ``jaxkit.losses.fdpo_loss``) train a tabular policy from
π_ref with full-batch Adam and measure E_π[r*], H(π) and KL(π‖π_ref) exactly.
Seeds run in parallel (``jax.vmap``); each arm is one jitted ``lax.scan``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("expected reward", "entropy", "KL(pi||pi_ref)")


def make_task(key: jax.Array, *, num_prompts: int, num_responses: int,
              ref_scale: float, reward_scale: float, num_pairs: int):
  """Draws (log π_ref [P, K], r* [P, K], pairs) for one seed.

  Pairs are ``(prompt, chosen, rejected)`` int32 arrays of length
  ``num_pairs``: both responses drawn from π_ref(·|prompt), ordered by a
  Bradley–Terry draw on ``reward_scale · r*``.
  """
  k_ref, k_r, k_x, k_y1, k_y2, k_lab = jax.random.split(key, 6)
  log_ref = jax.nn.log_softmax(
      ref_scale * jax.random.normal(k_ref, (num_prompts, num_responses)), -1)
  reward = jax.random.normal(k_r, (num_prompts, num_responses))
  x = jax.random.randint(k_x, (num_pairs,), 0, num_prompts)
  y1 = jax.random.categorical(k_y1, log_ref[x])
  y2 = jax.random.categorical(k_y2, log_ref[x])
  p1 = jax.nn.sigmoid(reward_scale * (reward[x, y1] - reward[x, y2]))
  first = jax.random.uniform(k_lab, (num_pairs,)) < p1
  chosen = jnp.where(first, y1, y2)
  rejected = jnp.where(first, y2, y1)
  return log_ref, reward, (x, chosen, rejected)


def policy_metrics(theta, log_ref, reward, kl_fn):
  """Expected hidden reward, entropy and KL(π‖π_ref), means over prompts."""
  log_pi = jax.nn.log_softmax(theta, -1)
  pi = jnp.exp(log_pi)
  return {
      "expected reward": jnp.mean(jnp.sum(pi * reward, -1)),
      "entropy": jnp.mean(-jnp.sum(pi * log_pi, -1)),
      "KL(pi||pi_ref)": jnp.mean(kl_fn(log_ref, log_pi)),
  }


def train_tabular_policy(loss, log_ref, reward, pairs, *, opt, steps, kl_fn,
                         curve_keys):
  """Adam (``opt``) on tabular logits initialised at log π_ref, in one scan.

  ``loss(theta, log_ref, pairs)`` is the scalar objective. Returns the final
  :func:`policy_metrics` and the per-step curve ``(loss, *[metric[k] for k in
  curve_keys])``.
  """

  def step(carry, _):
    theta, state = carry
    value, g = jax.value_and_grad(loss)(theta, log_ref, pairs)
    updates, state = opt.update(g, state, theta)
    theta = theta + updates
    m = policy_metrics(theta, log_ref, reward, kl_fn)
    return (theta, state), (value, *[m[k] for k in curve_keys])

  (theta, _), curve = jax.lax.scan(step, (log_ref, opt.init(log_ref)), None,
                                   length=steps)
  return policy_metrics(theta, log_ref, reward, kl_fn), curve



def train_arms(config, make_train, args, metric_names):
  """Runs ``make_train(arm)(*args)`` for every arm (all seeds at once).

  Returns ``(per_seed, curves, summary)``: ``per_seed[metric][arm]`` lists the
  per-seed values of ``metric_names``, ``curves[arm]`` the per-step curves as
  numpy arrays, and ``summary[arm][metric]`` the mean over seeds.
  """
  per_seed: dict[str, dict[str, list[float]]] = {m: {} for m in metric_names}
  curves, summary = {}, {}
  for arm in config.arms:
    with harness.transfer_guard(config):
      m, curve = make_train(arm)(*args)
    m, curve = jax.device_get((m, curve))
    curves[arm["name"]] = [np.asarray(c) for c in curve]
    summary[arm["name"]] = {k: float(np.mean(v)) for k, v in m.items()}
    for k in metric_names:
      per_seed[k][arm["name"]] = np.asarray(m[k]).tolist()
    print(f"  {arm['name']:11s} " + "  ".join(
        f"{k} {np.mean(m[k]):.3f} ± {harness.sample_std(m[k]):.3f}"
        for k in metric_names), flush=True)
  return per_seed, curves, summary


def draw_tasks(config, task_fn, kl_fn):
  """Draws every seed's task (vmapped ``task_fn(key)``) and π_ref's metrics.

  Returns ``(seeds, (log_ref, reward, pairs), ref_metrics)`` with
  ``ref_metrics`` on the host.
  """
  seeds = list(range(config.seeds))
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  with harness.transfer_guard(config):
    log_ref, reward, pairs = jax.jit(jax.vmap(task_fn))(keys)
    ref_metrics = jax.jit(jax.vmap(
        lambda lr, r: policy_metrics(lr, lr, r, kl_fn)))(log_ref, reward)
  return seeds, (log_ref, reward, pairs), jax.device_get(ref_metrics)


def jit_trainer(config, loss, *, opt, kl_fn, curve_keys, post=None):
  """The jitted, seed-vmapped :func:`train_tabular_policy` of one arm.

  ``post(metrics, curve)`` may add metrics computed from the curves.
  """

  def train(log_ref, reward, pairs):
    m, curve = train_tabular_policy(
        loss, log_ref, reward, pairs, opt=opt, steps=config.steps,
        kl_fn=kl_fn, curve_keys=curve_keys)
    if post is not None:
      m = post(m, curve)
    return m, curve

  compiler_options = dict(config.get("compiler_options", {})) or None
  return jax.jit(jax.vmap(train), compiler_options=compiler_options)


def add_reference(per_seed, ref_metrics, metric_names):
  """Adds π_ref's per-seed metrics as the pseudo-arm ``pi_ref``."""
  for k in metric_names:
    per_seed[k]["pi_ref"] = np.asarray(ref_metrics[k]).tolist()


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; returns the result dict."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  arm_names = harness.arm_names(config, ("reverse KL", "JS", "forward KL"))
  loss_fn, kl_fn = fns[config.loss_fn], fns[config.kl_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  seeds, task, ref_metrics = draw_tasks(
      config, functools.partial(make_task, **config.task), kl_fn)

  def make_train(arm):
    def loss(theta, log_ref, pairs):
      x, c, r = pairs
      log_pi = jax.nn.log_softmax(theta, -1)
      return jnp.mean(loss_fn(log_pi[x, c], log_pi[x, r], log_ref[x, c],
                              log_ref[x, r], beta=config.beta,
                              divergence=arm["divergence"],
                              alpha=float(arm["alpha"])))

    return jit_trainer(config, loss, opt=opt, kl_fn=kl_fn,
                       curve_keys=("entropy", "expected reward"))

  per_seed, curves, summary = train_arms(config, make_train, task, METRICS)
  add_reference(per_seed, ref_metrics, METRICS)

  # The claim: the entropy ordering on the mean over seeds decides `held`;
  # the reward ordering and the α-family monotonicity are reported.
  ent = {a: summary[a]["entropy"] for a in arm_names}
  rew = {a: summary[a]["expected reward"] for a in arm_names}
  held = bool(ent["reverse KL"] < ent["JS"] < ent["forward KL"])
  reward_falls = bool(rew["reverse KL"] > rew["JS"] > rew["forward KL"])
  alpha_arms = sorted(
      [a for a in config.arms if a["divergence"] == "alpha"]
      + [a for a in config.arms if a["divergence"] == "reverse_kl"],
      key=lambda a: -float(a["alpha"]))     # α from 1 (reverse KL) to 0
  alpha_names = [a["name"] for a in alpha_arms]
  alpha_ent_rises = bool(all(
      ent[a] < ent[b] for a, b in zip(alpha_names, alpha_names[1:])))
  alpha_rew_falls = bool(all(
      rew[a] > rew[b] for a, b in zip(alpha_names, alpha_names[1:])))
  checks = [
      ("entropy: reverse KL < JS < forward KL (decides `held`)", held),
      ("expected reward: reverse KL > JS > forward KL", reward_falls),
      (f"entropy rises along α: {' < '.join(alpha_names)}", alpha_ent_rises),
      (f"expected reward falls along α: {' > '.join(alpha_names)}",
       alpha_rew_falls),
  ]
  fmt = lambda d: ", ".join(f"{a} {d[a]:.3f}" for a in arm_names)
  verdict = (
      f"Mean over {len(seeds)} seeds: entropy {fmt(ent)} — the ordering "
      f"reverse KL < JS < forward KL {'held' if held else 'did NOT hold'}; "
      f"expected reward {fmt(rew)} — reverse KL > JS > forward KL "
      f"{'held' if reward_falls else 'did not hold'}.")

  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  # Plots: reward vs entropy, and the training curves.
  fig, ax = plt.subplots(figsize=(5.5, 4.2))
  for i, a in enumerate(arm_names):
    ax.scatter(per_seed["entropy"][a], per_seed["expected reward"][a],
               color=f"C{i}", alpha=0.7, label=a)
  ax.scatter(per_seed["entropy"]["pi_ref"],
             per_seed["expected reward"]["pi_ref"], color="k", marker="*",
             s=80, label="π_ref")
  ax.set_xlabel("entropy H(π) [nats, mean over prompts]")
  ax.set_ylabel("E_π[r*]")
  ax.set_title("f-DPO: reward vs diversity (one point per seed)", fontsize=9)
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "reward_vs_entropy.png")

  harness.plot_curves(curves, arm_names,
                      ("fdpo loss", "entropy", "E_π[r*]"), workdir)

  notes = harness.checks_markdown(checks, "## Ordering checks (mean over seeds)")
  notes += ["", "`pi_ref` is the initial policy (for scale). Only the first "
            "check decides `held`."]

  return dict(
      name=config.name,
      claim=config.claim,
      arms=[dict(arm, loss=f"fdpo_loss(divergence={arm['divergence']!r}, "
                 f"alpha={arm['alpha']})") for arm in config.arms],
      metrics=metrics,
      headline="entropy",
      held=held,
      verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks],
      summary=summary,
      reference=dict({k: float(np.mean(ref_metrics[k])) for k in METRICS}),
      seeds=seeds,
      notes_md="\n".join(notes),
  )
