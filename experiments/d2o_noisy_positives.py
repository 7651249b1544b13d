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
from experiments.fdpo_divergence_diversity import add_reference
from experiments.fdpo_divergence_diversity import draw_tasks
from experiments.fdpo_divergence_diversity import jit_trainer
from experiments.fdpo_divergence_diversity import make_task
from experiments.fdpo_divergence_diversity import train_arms

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

  arm_names = harness.arm_names(config, ("DPO", "D2O"))
  dpo_fn, d2o_fn = fns[config.dpo_fn], fns[config.d2o_fn]
  kl_fn = fns[config.kl_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  seeds, task, ref_metrics = draw_tasks(config, functools.partial(
      make_noisy_task, task=dict(config.task), **config.noise), kl_fn)
  pairs = task[2]

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

    def post(m, curve):
      m["reward drop (peak - final)"] = (jnp.max(curve[1])
                                         - m["expected reward"])
      return m

    return jit_trainer(config, loss, opt=opt, kl_fn=kl_fn,
                       curve_keys=("expected reward", "KL(pi||pi_ref)"),
                       post=post)

  per_seed, curves, summary = train_arms(config, make_train, task, METRICS)
  add_reference(per_seed, ref_metrics, METRICS[:3])
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

  harness.plot_curves(curves, arm_names,
                      ("loss", "E_π[r*]", "KL(π‖π_ref)"), workdir)

  notes = harness.checks_markdown(checks)
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
