"""Runner of ``configs/ldr_label_noise.py`` (issue 3: LDR-KL / ALDR-KL vs CE).

For each noise rate, corrupts the training labels per seed, trains every arm
with full-batch Adam (one jitted ``lax.scan`` per arm and rate, seeds
vmapped) and measures clean test accuracy.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import _init_mlp
from experiments.kd_digits import _mlp
from experiments.kd_digits import load_split


def noisy_labels(y, num_classes, rate, seed):
  """Symmetric noise: with prob. ``rate`` a uniformly drawn other class."""
  rng = np.random.RandomState(1000 + seed)
  flip = rng.uniform(size=y.shape) < rate
  other = (y + rng.randint(1, num_classes, size=y.shape)) % num_classes
  return np.where(flip, other, y).astype(np.int32)


def _ldr_scores(z):
  """The authors' LDRLoss_V1 normalisation: softplus, divide by row mean."""
  z = jax.nn.softplus(z)
  return z / jnp.mean(z, axis=-1, keepdims=True)


def _aldr_scores(z):
  """The authors' ALDRLoss_V1 normalisation: divide by row L1 norm / C."""
  return z / (jnp.sum(jnp.abs(z), axis=-1, keepdims=True) / z.shape[-1]
              + 1e-12)


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm at every noise rate over all seeds."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("CE", "LDR-KL", "ALDR-KL"))
  ce_fn, ldr_fn = fns[config.ce_fn], fns[config.ldr_fn]
  aldr_fn, lambdas_fn = fns[config.aldr_fn], fns[config.lambdas_fn]
  mean, adam = fns[config.mean_fn], fns[config.optimizer_fn]
  compiler_options = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  num_classes = 10
  sizes = (xtr.shape[1], config.hidden, num_classes)
  opt = adam(learning_rate=config.learning_rate)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))

  def make_train(arm):
    kind = arm["loss"]

    def loss(params, x, y, lam_prev):
      z = _mlp(params, x)[0]
      if kind == "ce":
        return mean(ce_fn(z, y))
      if kind == "ldr":
        return mean(ldr_fn(_ldr_scores(z), y, **config.ldr_kw))
      return mean(aldr_fn(_aldr_scores(z), y, lam_prev=lam_prev,
                          **config.aldr_kw))

    def train(key, x, y, xte, yte):
      params = _init_mlp(key, sizes)
      lam = jnp.full(y.shape, config.aldr_kw["lam0"], jnp.float32)

      def step(carry, _):
        p, s, lam = carry
        if kind == "aldr":
          lam = lambdas_fn(_aldr_scores(_mlp(p, x)[0]),
                           lam0=config.aldr_kw["lam0"],
                           alpha=config.aldr_kw["alpha"], lam_prev=lam)
        g = jax.grad(loss)(p, x, y, lam)
        u, s = opt.update(g, s, p)
        return (jax.tree.map(jnp.add, p, u), s, lam), None

      (params, _, _), _ = jax.lax.scan(step, (params, opt.init(params), lam),
                                       None, length=config.steps)
      pred = jnp.argmax(_mlp(params, xte)[0], -1)
      return jnp.mean((pred == yte).astype(jnp.float32))

    return jax.jit(jax.vmap(train, in_axes=(0, 0, 0, None, None)),
                   compiler_options=compiler_options)

  names = [f"test accuracy (noise {r:.0%})" for r in config.noise_rates]
  per_seed = {n: {} for n in names}
  trainers = {a["name"]: make_train(a) for a in config.arms}
  for rate, mname in zip(config.noise_rates, names):
    ys = np.stack([noisy_labels(ytr, num_classes, rate, s) for s in seeds])
    data = jax.device_put((np.broadcast_to(xtr, (len(seeds),) + xtr.shape),
                           ys, xte, yte))
    for arm in config.arms:
      with harness.transfer_guard(config):
        acc = trainers[arm["name"]](keys, *data)
      acc = np.asarray(jax.device_get(acc))
      per_seed[mname][arm["name"]] = acc.tolist()
      print(f"  noise {rate:.0%} {arm['name']:8s} test acc {acc.mean():.4f} "
            f"± {harness.sample_std(acc):.4f}", flush=True)

  m = {n: {a: float(np.mean(per_seed[n][a])) for a in arm_names}
       for n in names}
  hi, lo = names[-1], names[0]
  robust = bool(max(m[hi]["LDR-KL"], m[hi]["ALDR-KL"]) >= m[hi]["CE"])
  clean = bool(m[lo]["LDR-KL"] >= m[lo]["CE"] - 0.02)
  held = robust and clean
  checks = [(f"max(LDR-KL, ALDR-KL) ≥ CE at {hi}", robust),
            (f"LDR-KL ≥ CE − 0.02 at {lo}", clean)]
  checks += [(f"{a} ≥ CE at {n}", bool(m[n][a] >= m[n]["CE"]))
             for n in names for a in ("LDR-KL", "ALDR-KL")]
  verdict = ("Clean test accuracy (mean over %d seeds): " % len(seeds)
             + "; ".join(n.split("(")[1].rstrip(")") + ": " + ", ".join(
                 f"{a} {m[n][a]:.4f}" for a in arm_names) for n in names)
             + f" — robust-at-high-noise {'held' if robust else 'did NOT hold'}"
             f", competitive-when-clean {'held' if clean else 'did NOT hold'}.")
  metrics = [harness.metric(n, per_seed[n]) for n in names]

  fig, ax = plt.subplots(figsize=(6, 3.8))
  rates = [100 * r for r in config.noise_rates]
  for i, a in enumerate(arm_names):
    mu = [m[n][a] for n in names]
    sd = [harness.sample_std(per_seed[n][a]) for n in names]
    ax.errorbar(rates, mu, yerr=sd, color=f"C{i}", marker="o", capsize=3,
                label=a)
  ax.set_xlabel("symmetric label noise (%)")
  ax.set_ylabel("clean test accuracy")
  ax.set_title("digits MLP, full-batch Adam", fontsize=9)
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "accuracy_vs_noise.png")
  notes = harness.checks_markdown(checks)
  notes += ["", "The first two checks decide `held`."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline=hi, held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
