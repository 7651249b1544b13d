"""Runner of ``configs/d2o_noisy_positives.py`` (seed 000 #28 / 003 #15; D2O).

For each seed: draw the bandit of ``fdpo_divergence_diversity`` (its
``make_task``), corrupt a fraction of the chosen responses with bad ones, and
draw K offline π_ref samples per pair; then for each arm (``dpo_loss`` on the
noisy pairs, ``d2o_loss`` on samples + negatives) train a tabular policy from
π_ref with full-batch Adam and measure E_π[r*], KL(π‖π_ref) and H(π) exactly.
Seeds run in parallel (``jax.vmap``); each arm is one jitted ``lax.scan``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.fdpo_divergence_diversity import make_task
from experiments.fdpo_divergence_diversity import policy_metrics
from experiments.fdpo_divergence_diversity import train_arms
from experiments.fdpo_divergence_diversity import train_tabular_policy

METRICS = ("expected reward", "KL(pi||pi_ref)", "entropy",
           "reward drop (peak - final)")


def make_noisy_task(key: jax.Array, task: dict[str, Any], *, fraction: float,
                    bad_quantile: float, num_samples: int):
  """``make_task``'s bandit with noisy positives and K π_ref samples per pair.

  Returns ``(log_ref [P, R], reward [P, R], (x, chosen, rejected, samples
  [N, K], corrupted [N]))``. A corrupted pair's chosen response is drawn from
  π_ref restricted to the prompt's responses with r* at or below the
  ``bad_quantile`` quantile.
  """
  k_task, k_flip, k_bad, k_s = jax.random.split(key, 4)
  log_ref, reward, (x, chosen, rejected) = make_task(k_task, **task)
  n = x.shape[0]
  cut = jnp.quantile(reward, bad_quantile, axis=-1, keepdims=True)
  bad = reward <= cut                                       # [P, R]
  bad_logits = jnp.where(bad[x], log_ref[x], -jnp.inf)
  bad_y = jax.random.categorical(k_bad, bad_logits)
  corrupted = jax.random.uniform(k_flip, (n,)) < fraction
  chosen = jnp.where(corrupted, bad_y, chosen)
  samples = jax.random.categorical(k_s, log_ref[x], shape=(num_samples, n)).T
  return log_ref, reward, (x, chosen, rejected, samples, corrupted)



def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; returns the result dict."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("DPO", "D2O"))
  dpo_fn, d2o_fn = fns[config.dpo_fn], fns[config.d2o_fn]
  kl_fn = fns[config.kl_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  compiler_options = dict(config.get("compiler_options", {})) or None


  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  tasks = jax.jit(jax.vmap(functools.partial(
      make_noisy_task, task=dict(config.task), **config.noise)))
  with harness.transfer_guard(config):
    log_ref, reward, pairs = tasks(keys)
    ref_metrics = jax.jit(jax.vmap(
        lambda lr, r: policy_metrics(lr, lr, r, kl_fn)))(log_ref, reward)

  def make_train(arm):
    kw = dict(arm["kw"])

    def loss(theta, log_ref, pairs):
      x, c, r, s, _ = pairs
      log_pi = jax.nn.log_softmax(theta, -1)
      if arm["loss"] == "dpo":
        per = dpo_fn(log_pi[x, c], log_pi[x, r], log_ref[x, c],
                     log_ref[x, r], **kw)
      elif arm["loss"] == "d2o":
        xs = x[:, None]
        per = d2o_fn(log_pi[xs, s], log_ref[xs, s], log_pi[x, r],
                     log_ref[x, r], **kw)
      else:
        raise ValueError(f"arm {arm['name']!r}: loss must be 'dpo' or 'd2o', "
                         f"got {arm['loss']!r}")
      return jnp.mean(per)

    def train(log_ref, reward, pairs):
      m, curve = train_tabular_policy(
          loss, log_ref, reward, pairs, opt=opt, steps=config.steps,
          kl_fn=kl_fn, curve_keys=("expected reward", "KL(pi||pi_ref)"))
      m["reward drop (peak - final)"] = (jnp.max(curve[1])
                                         - m["expected reward"])
      return m, curve

    return jax.jit(jax.vmap(train), compiler_options=compiler_options)

  per_seed, curves, summary = train_arms(config, make_train,
                                         (log_ref, reward, pairs), METRICS)
  ref_metrics = jax.device_get(ref_metrics)
  for k in METRICS[:3]:
    per_seed[k]["pi_ref"] = np.asarray(ref_metrics[k]).tolist()
  per_seed[METRICS[3]]["pi_ref"] = [0.0] * len(seeds)
  corrupted = float(np.mean(jax.device_get(pairs[4])))

  rew = {a: summary[a]["expected reward"] for a in arm_names}
  drop = {a: summary[a]["reward drop (peak - final)"] for a in arm_names}
  held = bool(rew["D2O"] > rew["DPO"])
  wins = int(np.sum(np.asarray(per_seed["expected reward"]["D2O"])
                    > np.asarray(per_seed["expected reward"]["DPO"])))
  stabler = bool(drop["D2O"] < drop["DPO"])
  checks = [
      ("mean E_π[r*]: D2O > DPO (decides `held`)", held),
      (f"D2O > DPO on every seed ({wins}/{len(seeds)})", wins == len(seeds)),
      ("reward drop from the training peak: D2O < DPO", stabler),
  ]
  verdict = (
      f"Mean over {len(seeds)} seeds with {corrupted:.0%} of the positives "
      f"corrupted: E_π[r*] D2O {rew['D2O']:.3f} vs DPO {rew['DPO']:.3f} — "
      f"D2O > DPO {'held' if held else 'did NOT hold'} ({wins}/{len(seeds)} "
      f"seeds); peak − final reward D2O {drop['D2O']:.3f} vs DPO "
      f"{drop['DPO']:.3f}.")

  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
  for i, a in enumerate(arm_names):
    for ax, c, title in zip(axes, curves[a],
                            ("loss", "E_π[r*]", "KL(π‖π_ref)")):
      ax.plot(c.mean(0), color=f"C{i}", label=a)
      ax.set_title(f"{title} during training (mean over seeds)", fontsize=9)
      ax.set_xlabel("step")
  axes[0].legend(fontsize=7)
  harness.save_figure(fig, workdir, "training_curves.png")

  notes = ["## Checks (mean over seeds)", ""]
  notes += [f"- [{'x' if ok else ' '}] {name}" for name, ok in checks]
  notes += ["", f"{corrupted:.1%} of the pairs had their chosen response "
            "replaced by a bad one. `pi_ref` is the initial policy (for "
            "scale). Only the first check decides `held`."]

  return dict(
      name=config.name,
      claim=config.claim,
      arms=[dict(name=arm["name"], loss=f"{arm['loss']}_loss",
                 kw=dict(arm["kw"])) for arm in config.arms],
      metrics=metrics,
      headline="expected reward",
      held=held,
      verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks],
      summary=summary,
      corrupted_fraction=corrupted,
      reference={k: float(np.mean(ref_metrics[k])) for k in METRICS[:3]},
      seeds=seeds,
      notes_md="\n".join(notes),
  )
