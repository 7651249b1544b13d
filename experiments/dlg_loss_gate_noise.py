"""Runner of ``configs/dlg_loss_gate_noise.py`` (seed 000, E19; DLG-LC).

Splits digits once, corrupts the training labels per seed and trains the MLP
for every gate rule; the arm picks its rule by a code, so arms × seeds are
vmapped in one jitted ``lax.scan``.
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
from experiments.ldr_label_noise import noisy_labels

METRICS = ("clean test accuracy", "gate precision (kept labels correct)",
           "gate recall (correct labels kept)")
_GATE = {"none": 0, "fixed": 1, "gmm": 2, "gmm_lc": 3}


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; returns the result dict."""
  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(
      config, ("no gate", "fixed gate", "GMM gate (DLG)",
               "GMM gate + correction (DLG-LC)"))
  gate_fn, ce_fn = fns[config.gate_fn], fns[config.ce_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  num_classes = 10
  sizes = (xtr.shape[1], config.hidden, num_classes)
  for a in config.arms:
    if a["gate"] not in _GATE:
      raise ValueError(f"arm {a['name']!r}: gate must be one of "
                       f"{sorted(_GATE)}, got {a['gate']!r}")
  codes = jnp.asarray([_GATE[a["gate"]] for a in config.arms])
  ys = np.stack([noisy_labels(ytr, num_classes, config.noise, s)
                 for s in seeds])
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  warm, thr = config.warmup_steps, config.fixed_threshold
  conf = config.correction_confidence

  def labels_and_mask(code, p, x, y, t):
    """The labels and keep-mask a rule uses at step ``t``."""
    logits = jax.lax.stop_gradient(_mlp(p, x)[0])
    ce = ce_fn(logits, y)
    clean = gate_fn(ce, **config.gmm) > 0.5
    prob = jax.nn.softmax(logits, -1)
    pred = jnp.argmax(prob, -1)
    correct = (~clean) & (jnp.max(prob, -1) > conf)
    keep = jnp.select([code == 0, code == 1, code == 2],
                      [jnp.ones_like(clean), ce < thr, clean],
                      clean | correct)
    labels = jnp.where((code == 3) & correct, pred, y)
    in_warmup = t < warm
    return (jnp.where(in_warmup, y, labels),
            jnp.where(in_warmup, True, keep))

  def train(code, key, y, xtr, ytr, xte, yte):
    params = _init_mlp(key, sizes)

    def step(carry, t):
      p, s = carry
      labels, keep = labels_and_mask(code, p, xtr, y, t)

      def loss(p):
        ce = ce_fn(_mlp(p, xtr)[0], labels)
        return jnp.sum(jnp.where(keep, ce, 0.0)) / jnp.maximum(
            jnp.sum(keep), 1)

      u, s = opt.update(jax.grad(loss)(p), s, p)
      p = jax.tree.map(jnp.add, p, u)
      acc = jnp.mean(jnp.argmax(_mlp(p, xte)[0], -1) == yte)
      return (p, s), (acc, jnp.mean(keep))

    (params, _), (curve, kept) = jax.lax.scan(
        step, (params, opt.init(params)), jnp.arange(config.steps))
    labels, keep = labels_and_mask(code, params, xtr, y, config.steps)
    right = labels == ytr
    precision = jnp.sum(keep & right) / jnp.maximum(jnp.sum(keep), 1)
    recall = jnp.sum(keep & right) / jnp.maximum(jnp.sum(right), 1)
    return curve[-1], precision, recall, curve, kept

  compiler_options = dict(config.get("compiler_options", {})) or None
  fn = jax.vmap(jax.vmap(train, in_axes=(None, 0, 0, None, None, None, None)),
                in_axes=(0, None, None, None, None, None, None))
  data = jax.device_put((codes, keys, ys, xtr, ytr, xte, yte))
  with harness.transfer_guard(config):
    acc, prec, rec, curves, kept = jax.device_get(
        jax.jit(fn, compiler_options=compiler_options)(*data))

  per_seed = {k: {} for k in METRICS}
  for i, a in enumerate(arm_names):
    for k, v in zip(METRICS, (acc, prec, rec)):
      per_seed[k][a] = np.asarray(v[i]).tolist()
    print(f"  {a:32s} test acc {acc[i].mean():.4f} ± "
          f"{harness.sample_std(acc[i]):.4f}  precision {prec[i].mean():.3f}"
          f"  recall {rec[i].mean():.3f}", flush=True)
  m = {k: {a: float(np.mean(per_seed[k][a])) for a in arm_names}
       for k in METRICS}
  a_ = m["clean test accuracy"]
  lc, gmm = "GMM gate + correction (DLG-LC)", "GMM gate (DLG)"
  c1 = bool(a_[lc] > a_[gmm])
  c2 = bool(a_[gmm] > max(a_["fixed gate"], a_["no gate"]))
  held = c1 and c2
  checks = [("GMM + correction > GMM (decides `held`)", c1),
            ("GMM > max(fixed gate, no gate) (decides `held`)", c2),
            ("fixed gate > no gate", bool(a_["fixed gate"] > a_["no gate"])),
            ("GMM gate precision > fixed gate precision",
             bool(m[METRICS[1]][gmm] > m[METRICS[1]]["fixed gate"]))]
  verdict = (
      f"Mean clean test accuracy over {len(seeds)} seeds at "
      f"{config.noise:.0%} noise: "
      + ", ".join(f"{a} {a_[a]:.4f}" for a in arm_names)
      + f" — GMM + correction > GMM > max(fixed, none) "
      f"{'held' if held else 'did NOT hold'} (GMM+LC > GMM "
      f"{'yes' if c1 else 'no'}, GMM > fixed/none {'yes' if c2 else 'no'}).")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]
  harness.plot_curves({a: [curves[i], kept[i]] for i, a in
                       enumerate(arm_names)}, arm_names,
                      ("clean test accuracy", "fraction of examples kept"),
                      workdir)
  notes = harness.checks_markdown(checks)
  notes += ["", "The first two checks decide `held`. Precision / recall are "
            "measured on the labels each rule trains on at the end (for "
            "DLG-LC, corrected labels count as correct when they equal the "
            "true class)."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="clean test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
