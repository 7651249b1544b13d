"""Runner of ``configs/ofq_oscillation.py`` (issue 6: OFQ/StatsQ vs LSQ)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split

METRICS = ("oscillation rate", "test accuracy", "frozen fraction")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """FP pre-training, then 2-bit QAT per arm with oscillation tracking."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("LSQ", "StatsQ"))
  lsq, lsq_init = fns[config.lsq_fn], fns[config.lsq_init_fn]
  statsq, statsq_lv = fns[config.statsq_fn], fns[config.statsq_levels_fn]
  osc_init, osc_update = fns[config.osc_init_fn], fns[config.osc_update_fn]
  ce, adam = fns[config.ce_fn], fns[config.optimizer_fn]
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  n_cls = int(max(ytr.max(), yte.max())) + 1
  sizes = (xtr.shape[1], config.hidden, n_cls)
  bits = config.bits
  lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
  nlev = 2 ** (bits - 1)
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))

  def mlp(ws, bs, x):
    h = jax.nn.relu(x @ ws[0] + bs[0])
    return h @ ws[1] + bs[1]

  def acc(logits, y):
    return jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))

  def make(arm):
    opt_fp = adam(learning_rate=config.learning_rate)
    opt = adam(learning_rate=config.qat_learning_rate)

    def levels(p):
      if arm["quantizer"] == "lsq":
        return [jnp.round(jnp.clip(w / s, lo, hi)).astype(jnp.int32)
                for w, s in zip(p["w"], p["s"])]
      return [statsq_lv(w, bits=bits, axis=0) for w in p["w"]]

    def qweights(p, frozen):
      out = []
      for i, w in enumerate(p["w"]):
        if arm["quantizer"] == "lsq":
          out.append(lsq(w, p["s"][i], bits=bits))
        else:
          q = statsq(w, bits=bits, axis=0)
          if frozen is not None:
            s = 2.0 * jnp.mean(jnp.abs(w), axis=0, keepdims=True)
            fq = (jnp.round(frozen[i].ema_int) + 0.5) / nlev * s
            q = jnp.where(frozen[i].frozen, jax.lax.stop_gradient(fq), q)
          out.append(q)
      return out

    def train(key, data):
      xtr, ytr, xte, yte = data
      ks = jax.random.split(key, 2)
      p = dict(w=[jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a)
                  for k, a, b in zip(ks, sizes[:-1], sizes[1:])],
               b=[jnp.zeros(b) for b in sizes[1:]])

      def fp_step(c, _):
        p, s = c
        g = jax.grad(lambda q: jnp.mean(ce(mlp(q["w"], q["b"], xtr), ytr)))(p)
        u, s = opt_fp.update(g, s, p)
        return (jax.tree.map(jnp.add, p, u), s), None

      (p, _), _ = jax.lax.scan(fp_step, (p, opt_fp.init(p)), None,
                               length=config.fp_steps)
      p["s"] = [jnp.broadcast_to(lsq_init(w, bits=bits), (1, w.shape[1]))
                for w in p["w"]]
      trackers = [osc_init(lv) for lv in levels(p)]

      def step(c, _):
        p, s, tr = c
        frozen = tr if arm["freeze"] else None

        def loss(q):
          return jnp.mean(ce(mlp(qweights(q, frozen), q["b"], xtr), ytr))

        g = jax.grad(loss)(p)
        if arm["quantizer"] != "lsq":
          g["s"] = jax.tree.map(jnp.zeros_like, g["s"])
        u, s = opt.update(g, s, p)
        p = jax.tree.map(jnp.add, p, u)
        new_tr, rates = [], []
        for t, lv in zip(tr, levels(p)):
          t, o = osc_update(t, lv, momentum=config.momentum,
                            threshold=(config.freeze_threshold
                                       if arm["freeze"] else None))
          new_tr.append(t)
          rates.append(jnp.sum(o))
        n_w = sum(w.size for w in p["w"])
        return (p, s, new_tr), sum(rates) / n_w

      (p, _, tr), rate = jax.lax.scan(step, (p, opt.init(p), trackers), None,
                                      length=config.steps)
      frozen = tr if arm["freeze"] else None
      test_acc = acc(mlp(qweights(p, frozen), p["b"], xte), yte)
      n_w = sum(w.size for w in p["w"])
      frozen_frac = sum(jnp.sum(t.frozen) for t in tr) / n_w
      half = config.steps // 2
      return {"oscillation rate": jnp.mean(rate[half:]),
              "test accuracy": test_acc,
              "frozen fraction": frozen_frac}, rate

    return jax.jit(jax.vmap(train, in_axes=(0, None)), compiler_options=copts)

  per = {m: {} for m in METRICS}
  curves = {}
  for arm in config.arms:
    with harness.transfer_guard(config):
      m, rate = make(arm)(keys, data)
    m, rate = jax.device_get((m, rate))
    curves[arm["name"]] = np.asarray(rate)
    for k in METRICS:
      per[k][arm["name"]] = np.asarray(m[k]).tolist()
    print(f"  {arm['name']:14s} osc rate {np.mean(m['oscillation rate']):.5f}"
          f"  test acc {np.mean(m['test accuracy']):.4f}", flush=True)
  mean = {k: {a: float(np.mean(per[k][a])) for a in arm_names}
          for k in METRICS}
  osc = mean["oscillation rate"]
  held = bool(osc["StatsQ"] < osc["LSQ"])
  checks = [("StatsQ oscillation rate < LSQ (decides `held`)", held)]
  if "StatsQ+freeze" in osc:
    checks.append(("StatsQ+freeze oscillation rate < StatsQ",
                   bool(osc["StatsQ+freeze"] < osc["StatsQ"])))
  checks.append(("StatsQ test accuracy ≥ LSQ",
                 bool(mean["test accuracy"]["StatsQ"] >=
                      mean["test accuracy"]["LSQ"])))
  verdict = ("Oscillation rate (second half of 2-bit QAT, mean over "
             f"{len(seeds)} seeds): " + ", ".join(
                 f"{a} {osc[a]:.4f}" for a in arm_names)
             + "; test accuracy: " + ", ".join(
                 f"{a} {mean['test accuracy'][a]:.4f}" for a in arm_names)
             + f" — StatsQ < LSQ {'held' if held else 'did NOT hold'}.")

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  for i, a in enumerate(arm_names):
    axes[0].plot(curves[a].mean(0), color=f"C{i}", label=a)
    v = per["test accuracy"][a]
    axes[1].scatter([i] * len(v), v, color=f"C{i}", alpha=0.7)
  axes[0].set_xlabel("QAT step")
  axes[0].set_ylabel("fraction of weights oscillating")
  axes[0].set_yscale("symlog", linthresh=1e-4)
  axes[0].legend(fontsize=7)
  axes[1].set_xticks(range(len(arm_names)))
  axes[1].set_xticklabels(arm_names, fontsize=7)
  axes[1].set_ylabel("test accuracy (2-bit weights)")
  harness.save_figure(fig, workdir, "oscillation.png")
  notes = harness.checks_markdown(checks)
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per[k]) for k in METRICS],
              headline="oscillation rate", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
