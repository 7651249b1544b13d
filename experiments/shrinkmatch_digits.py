"""Runner of ``configs/shrinkmatch_digits.py`` (seed 001 (3)-14; ShrinkMatch).

Per seed: choose the labelled images; then train every arm with fresh weak
and strong views each step. The arm picks its loss by a code, so arms ×
seeds are vmapped in one jitted ``lax.scan``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.dho_semisup_digits import label_mask
from experiments.kd_digits import _init_mlp
from experiments.kd_digits import load_split

METRICS = ("test accuracy", "unlabelled fraction contributing",
           "pseudo-label accuracy (contributing)")
_KIND = {"supervised": 0, "fixmatch": 1, "shrinkmatch": 2}


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; returns the result dict."""
  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("FixMatch", "ShrinkMatch"))
  fixmatch, shrinkmatch = fns[config.fixmatch_fn], fns[config.shrinkmatch_fn]
  shrink_mask, ce_fn = fns[config.shrink_mask_fn], fns[config.ce_fn]
  mean = fns[config.mean_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  task = dict(config.task)
  per_class = task.pop("labels_per_class")
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  num_classes, hidden = 10, config.hidden
  for a in config.arms:
    if a["loss"] not in _KIND:
      raise ValueError(f"arm {a['name']!r}: loss must be one of "
                       f"{sorted(_KIND)}, got {a['loss']!r}")
  kinds = np.asarray([_KIND[a["loss"]] for a in config.arms])
  masks = np.stack([label_mask(ytr, per_class, s) for s in seeds])
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  aug, tau, steps = dict(config.augment), config.threshold, config.steps
  tail = max(1, steps // 4)

  def net(p, x):
    h = jax.nn.relu(x @ p["body"][0]["w"] + p["body"][0]["b"])
    return (h @ p["main"]["w"] + p["main"]["b"],
            h @ p["aux"]["w"] + p["aux"]["b"])

  def views(key, x):
    kw, ks, kd = jax.random.split(key, 3)
    weak = x + aug["weak_noise"] * jax.random.normal(kw, x.shape)
    strong = x + aug["strong_noise"] * jax.random.normal(ks, x.shape)
    keep = jax.random.uniform(kd, x.shape) >= aug["dropout"]
    return weak, jnp.where(keep, strong, 0.0)

  def train(kind, key, mask, x, y, xte, yte):
    kb, km, ka, kv = jax.random.split(key, 4)
    head = lambda k: dict(w=jax.random.normal(k, (hidden, num_classes))
                          * jnp.sqrt(2.0 / hidden), b=jnp.zeros(num_classes))
    params = dict(body=_init_mlp(kb, (x.shape[1], hidden, num_classes))[:1],
                  main=head(km), aux=head(ka))

    def loss(p, weak, strong, ratio):
      zw, _ = net(p, weak)
      zs, zs_aux = net(p, strong)
      pw = jax.lax.stop_gradient(jax.nn.softmax(zw, -1))
      sup = mean(ce_fn(zw, y), where=mask)
      fm = jnp.mean(fixmatch(zs, pw, threshold=tau))
      sm = jnp.mean(shrinkmatch(zs_aux, pw, threshold=tau)) * ratio
      return (sup + jnp.where(kind >= 1, config.unlabeled_weight * fm, 0.0)
              + jnp.where(kind == 2, config.shrink_weight * sm, 0.0))

    def step(carry, t):
      p, s, ema = carry
      weak, strong = views(jax.random.fold_in(kv, t), x)
      pw = jax.nn.softmax(net(p, weak)[0], -1)
      certain = jnp.max(pw, -1) >= tau
      _, _, ok = shrink_mask(pw, threshold=tau)
      # Bias-corrected EMA (momentum 0.999) of the certain fraction.
      ema = 0.999 * ema + 0.001 * jnp.mean(certain)
      ratio = ema / (1.0 - 0.999 ** (t + 1.0))
      u, s = opt.update(jax.grad(loss)(p, weak, strong, ratio), s, p)
      p = jax.tree.map(jnp.add, p, u)
      used = jnp.where(kind == 0, False,
                       certain | jnp.where(kind == 2, ok & ~certain, False))
      pl_acc = (jnp.sum(used & (jnp.argmax(pw, -1) == y))
                / jnp.maximum(jnp.sum(used), 1))
      return (p, s, ema), (jnp.mean(used), pl_acc)

    (params, _, _), (frac, pl_acc) = jax.lax.scan(
        step, (params, opt.init(params), jnp.zeros(())), jnp.arange(steps))
    acc = jnp.mean(jnp.argmax(net(params, xte)[0], -1) == yte)
    return acc, jnp.mean(frac[-tail:]), jnp.mean(pl_acc[-tail:]), frac

  compiler_options = dict(config.get("compiler_options", {})) or None
  fn = jax.vmap(jax.vmap(train, in_axes=(None, 0, 0, None, None, None, None)),
                in_axes=(0, None, None, None, None, None, None))
  data = jax.device_put((kinds, keys, masks, xtr, ytr, xte, yte))
  with harness.transfer_guard(config):
    acc, frac, pl_acc, curves = jax.device_get(
        jax.jit(fn, compiler_options=compiler_options)(*data))

  per_seed = {k: {} for k in METRICS}
  for i, a in enumerate(arm_names):
    for k, v in zip(METRICS, (acc, frac, pl_acc)):
      per_seed[k][a] = np.asarray(v[i]).tolist()
    print(f"  {a:24s} test acc {acc[i].mean():.4f} ± "
          f"{harness.sample_std(acc[i]):.4f}  contributing "
          f"{frac[i].mean():.3f}  pseudo-label acc {pl_acc[i].mean():.3f}",
          flush=True)
  m = {k: {a: float(np.mean(per_seed[k][a])) for a in arm_names}
       for k in METRICS}
  a_, f_ = m["test accuracy"], m["unlabelled fraction contributing"]
  c_acc = bool(a_["ShrinkMatch"] >= a_["FixMatch"])
  c_frac = bool(f_["ShrinkMatch"] > f_["FixMatch"])
  held = c_acc and c_frac
  checks = [("test accuracy ShrinkMatch ≥ FixMatch (decides `held`)", c_acc),
            ("contributing fraction ShrinkMatch > FixMatch (decides `held`)",
             c_frac)]
  if "supervised (50 labels)" in a_:
    checks.append(("FixMatch > supervised only",
                   bool(a_["FixMatch"] > a_["supervised (50 labels)"])))
  verdict = (
      f"Mean over {len(seeds)} seeds: test accuracy "
      + ", ".join(f"{a} {a_[a]:.4f}" for a in arm_names)
      + "; unlabelled fraction contributing (last quarter) "
      + ", ".join(f"{a} {f_[a]:.3f}" for a in arm_names)
      + f" — ShrinkMatch ≥ FixMatch with more data used "
      f"{'held' if held else 'did NOT hold'} (accuracy "
      f"{'yes' if c_acc else 'no'}, fraction {'yes' if c_frac else 'no'}).")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]
  harness.plot_curves({a: [curves[i]] for i, a in enumerate(arm_names)},
                      arm_names, ("unlabelled fraction contributing",),
                      workdir)
  notes = harness.checks_markdown(checks)
  notes += ["", "The first two checks decide `held`. Contributing = counted "
            "in the unsupervised loss at that step (weight > 0 before the "
            "confidence weighting)."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
