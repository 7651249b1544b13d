"""Runner of ``configs/dho_semisup_digits.py`` (seed 000, E9; DHO).

Trains the linear teacher on all labels (seeds vmapped), then for every
label fraction trains every student arm; the arm picks its loss by a code,
so arms × seeds are one jitted ``lax.scan`` per label fraction (one
compilation: the fractions differ only in the label mask).
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

_KIND = {"ce": 0, "single_kd": 1, "dho": 2}


def label_mask(y, per_class, seed):
  """Stratified: ``per_class`` labelled images per class."""
  rng = np.random.RandomState(3000 + seed)
  mask = np.zeros(len(y), bool)
  for c in np.unique(y):
    mask[rng.choice(np.flatnonzero(y == c), per_class, replace=False)] = True
  return mask


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm at every label fraction over all seeds."""
  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("single head, CE + KD", "DHO"))
  dho, dho_predict = fns[config.dho_fn], fns[config.dho_predict_fn]
  ce_fn, kl_fn, mean = fns[config.ce_fn], fns[config.kl_fn], fns[config.mean_fn]
  adam = fns[config.optimizer_fn]
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  num_classes = 10
  for a in config.arms:
    if a["loss"] not in _KIND:
      raise ValueError(f"arm {a['name']!r}: loss must be one of "
                       f"{sorted(_KIND)}, got {a['loss']!r}")
  kinds = np.asarray([_KIND[a["loss"]] for a in config.arms])
  compiler_options = dict(config.get("compiler_options", {})) or None
  t_opt = adam(learning_rate=config.teacher["learning_rate"])
  opt = adam(learning_rate=config.learning_rate)
  hidden = config.hidden

  def train_teacher(x, y, xt, yt):
    """Returns the teacher's train probabilities and its test accuracy."""
    w = dict(w=jnp.zeros((x.shape[1], num_classes)), b=jnp.zeros(num_classes))

    def step(carry, _):
      p, s = carry
      g = jax.grad(lambda p: jnp.mean(ce_fn(x @ p["w"] + p["b"], y)))(p)
      u, s = t_opt.update(g, s, p)
      return (jax.tree.map(jnp.add, p, u), s), None

    (w, _), _ = jax.lax.scan(step, (w, t_opt.init(w)), None,
                             length=config.teacher["steps"])
    return (jax.nn.softmax(x @ w["w"] + w["b"], -1),
            jnp.mean(jnp.argmax(xt @ w["w"] + w["b"], -1) == yt))

  def student(p, x):
    feats = _mlp(p["body"], x)[1]
    return feats @ p["sup"]["w"] + p["sup"]["b"], feats @ p["kd"]["w"] + \
        p["kd"]["b"]

  def train(kind, key, mask, x, y, pt, xte, yte):
    kb, ks, kk = jax.random.split(key, 3)
    head = lambda k: dict(w=jax.random.normal(k, (hidden, num_classes))
                          * jnp.sqrt(2.0 / hidden), b=jnp.zeros(num_classes))
    # `_init_mlp` with one hidden layer; its output layer is unused.
    params = dict(body=_init_mlp(kb, (x.shape[1], hidden, num_classes)),
                  sup=head(ks), kd=head(kk))
    log_pt = jnp.log(jnp.maximum(pt, 1e-30))

    def loss(p):
      zs, zk = student(p, x)
      ce = mean(ce_fn(zs, y), where=mask)
      kd1 = jnp.mean(kl_fn(log_pt, jax.nn.log_softmax(zs, -1)))
      return jnp.select([kind == 0, kind == 1],
                        [ce, ce + kd1], dho(zs, zk, y, mask, pt))

    def step(carry, _):
      p, s = carry
      u, s = opt.update(jax.grad(loss)(p), s, p)
      return (jax.tree.map(jnp.add, p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None,
                                  length=config.steps)
    zs, zk = student(params, xte)
    probs = jnp.where(kind == 2,
                      dho_predict(zs, zk, alpha=config.alpha),
                      jax.nn.softmax(zs, -1))
    return (jnp.mean(jnp.argmax(probs, -1) == yte),
            jnp.mean(jnp.argmax(zs, -1) == yte),
            jnp.mean(jnp.argmax(zk, -1) == yte))

  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  fn = jax.jit(jax.vmap(jax.vmap(train, in_axes=(None, 0, 0, None, None, None,
                                                 None, None)),
                        in_axes=(0, None, None, None, None, None, None, None)),
               compiler_options=compiler_options)
  with harness.transfer_guard(config):
    x, y, xt, yt, kinds_d = jax.device_put((xtr, ytr, xte, yte, kinds))
    pt, teacher_acc = jax.jit(train_teacher,
                              compiler_options=compiler_options)(x, y, xt, yt)
  teacher_acc = float(jax.device_get(teacher_acc))

  names, per_seed, heads = [], {}, {}
  for per_class in config.labels_per_class:
    frac = per_class * num_classes / len(ytr)
    name = f"test accuracy ({frac:.0%} labels)"
    names.append(name)
    masks = jax.device_put(np.stack([label_mask(ytr, per_class, s)
                                     for s in seeds]))
    with harness.transfer_guard(config):
      acc, acc_sup, acc_kd = jax.device_get(
          fn(kinds_d, keys, masks, x, y, pt, xt, yt))
    per_seed[name] = {a: np.asarray(acc[i]).tolist()
                      for i, a in enumerate(arm_names)}
    per_seed[name]["teacher (linear, all labels)"] = [teacher_acc] * len(seeds)
    for i, a in enumerate(arm_names):
      if config.arms[i]["loss"] == "dho":
        heads[frac] = (float(np.mean(acc_sup[i])), float(np.mean(acc_kd[i])))
      print(f"  {frac:4.0%} labels  {a:22s} test acc {acc[i].mean():.4f} ± "
            f"{harness.sample_std(acc[i]):.4f}", flush=True)
  m = {n: {a: float(np.mean(v)) for a, v in per_seed[n].items()}
       for n in names}
  gaps = {n: m[n]["DHO"] - m[n]["single head, CE + KD"] for n in names}
  held = bool(all(g > 0 for g in gaps.values()))
  checks = [(f"{n}: DHO > single head, CE + KD (decides `held`; gap "
             f"{gaps[n]:+.4f})", bool(gaps[n] > 0)) for n in names]
  checks.append(("the gap is largest at the smallest label fraction",
                 bool(gaps[names[0]] == max(gaps.values()))))
  checks += [(f"{n}: DHO > teacher ({teacher_acc:.4f})",
              bool(m[n]["DHO"] > teacher_acc)) for n in names]
  verdict = (
      f"Mean test accuracy over {len(seeds)} seeds: "
      + "; ".join(n.split("(")[1].rstrip(")") + ": " + ", ".join(
          f"{a} {m[n][a]:.4f}" for a in arm_names) for n in names)
      + f" (linear teacher {teacher_acc:.4f}) — DHO > single-head CE + KD "
      f"at every label fraction {'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(n, per_seed[n]) for n in names]
  notes = harness.checks_markdown(checks)
  notes += ["", "The first checks (one per label fraction) decide `held`. "
            "DHO's heads alone (mean test accuracy, supervised / KD head): "
            + "; ".join(f"{f:.0%} labels {s:.4f} / {k:.4f}"
                        for f, (s, k) in heads.items()) + "."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline=names[0], held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              teacher_accuracy=teacher_acc,
              seeds=seeds, notes_md="\n".join(notes))
