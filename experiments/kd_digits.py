"""Runner of ``configs/kd_digits.py`` (issue 4: KD / ND / PLD / DHKD on digits).

Loads scikit-learn's bundled digits, splits them once, trains one wide
teacher MLP per seed (seeds in parallel with ``jax.vmap``), then for each arm
trains the narrow student from the same per-seed initialisation with
full-batch Adam (one jitted ``lax.scan`` per arm, seeds vmapped) and measures
its test accuracy after every step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("test accuracy", "agreement with teacher")


def _init_mlp(key, sizes):
  """He-initialised dense layers ``sizes[0] → … → sizes[-1]``."""
  layers = []
  for k, (a, b) in zip(jax.random.split(key, len(sizes) - 1),
                       zip(sizes[:-1], sizes[1:])):
    layers.append(dict(w=jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a),
                       b=jnp.zeros((b,))))
  return layers


def _mlp(layers, x):
  """Returns (logits, penultimate features) of a ReLU MLP."""
  h = x
  for p in layers[:-1]:
    h = jax.nn.relu(h @ p["w"] + p["b"])
  return h @ layers[-1]["w"] + layers[-1]["b"], h


def _dense(p, x):
  return x @ p["w"] + p["b"]



def load_split(data_fn, *, train_size: int, split_seed: int):
  """Returns (x_train, y_train, x_test, y_test) as numpy arrays."""
  data = data_fn()
  x = np.asarray(data.data, np.float32) / 16.0
  y = np.asarray(data.target, np.int32)
  perm = np.random.RandomState(split_seed).permutation(len(y))
  tr, te = perm[:train_size], perm[train_size:]
  return x[tr], y[tr], x[te], y[te]


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the teacher and every student arm over all seeds."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  # `held`: accuracy of arm `better` >= arm `baseline` (CE+KD vs CE unless
  # the config names another pair, e.g. SinKD vs KD).
  better, baseline = tuple(config.get("held_check", ("CE+KD", "CE")))
  arm_names = harness.arm_names(config, (baseline, better))
  ce_fn, kd_fn, nd_fn = (fns[config.ce_fn], fns[config.kd_fn],
                         fns[config.nd_fn])
  means_fn, pld_fn, dhkd_fn = (fns[config.class_means_fn], fns[config.pld_fn],
                               fns[config.dhkd_fn])
  mean = fns[config.mean_fn]
  adam = fns[config.optimizer_fn]
  compiler_options = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  num_classes = int(max(ytr.max(), yte.max())) + 1
  dim = xtr.shape[1]


  xtr, ytr, xte, yte = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))

  def accuracy(logits, y):
    return jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))

  # ---- Teacher: wide MLP, full-batch Adam on CE. ----------------------------
  t_sizes = (dim, *config.teacher["hidden"], num_classes)
  t_opt = adam(learning_rate=config.teacher["learning_rate"])

  # The data go in as jit arguments, not closed-over constants: the labels'
  # eager range check in jaxkit.losses would otherwise hit a tracer.
  data = (xtr, ytr, xte, yte)

  def train_teacher(key, data):
    xtr, ytr, xte, yte = data
    params = _init_mlp(jax.random.fold_in(key, 0), t_sizes)

    def loss(p):
      return mean(ce_fn(_mlp(p, xtr)[0], ytr))

    def step(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = t_opt.update(g, s, p)
      return (jax.tree.map(jnp.add, p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, t_opt.init(params)), None,
                                  length=config.teacher["steps"])
    t_logits, t_emb = _mlp(params, xtr)
    te_logits, _ = _mlp(params, xte)
    return (t_logits, t_emb, means_fn(t_emb, ytr, num_classes),
            jnp.argmax(te_logits, -1), accuracy(te_logits, yte))

  with harness.transfer_guard(config):
    t_logits, t_emb, t_means, t_pred, t_acc = jax.jit(
        jax.vmap(train_teacher, in_axes=(0, None)),
        compiler_options=compiler_options)(keys, data)

  # ---- Students. --------------------------------------------------------------
  hidden = tuple(config.student["hidden"])
  s_sizes = (dim, *hidden, num_classes)
  feat_dim = hidden[-1] if hidden else dim
  emb_dim = t_emb.shape[-1]
  s_opt = adam(learning_rate=config.student["learning_rate"])

  def init_student(key):
    k_mlp, k_aux, k_proj = jax.random.split(jax.random.fold_in(key, 1), 3)
    return dict(mlp=_init_mlp(k_mlp, s_sizes),
                aux=_init_mlp(k_aux, (feat_dim, num_classes))[0],
                proj=_init_mlp(k_proj, (feat_dim, emb_dim))[0])

  def make_train(arm):
    w = {k: float(arm.get(k, 0.0))
         for k in ("ce", "kd", "nd", "pld", "dhkd", "sinkd")}

    def loss(params, tl, te, tm, xtr, ytr):
      logits, feats = _mlp(params["mlp"], xtr)
      total = 0.0
      if w["ce"]:
        total += w["ce"] * mean(ce_fn(logits, ytr))
      if w["kd"]:
        total += w["kd"] * mean(kd_fn(logits, tl, **config.kd_kw))
      if w["nd"]:
        emb = _dense(params["proj"], feats)
        total += w["nd"] * mean(nd_fn(emb, te, tm, ytr))
      if w["pld"]:
        total += w["pld"] * mean(pld_fn(logits, tl, ytr, **config.pld_kw))
      if w["sinkd"]:
        # SinKD couples the batch: one OT problem over all training rows.
        total += w["sinkd"] * fns[config.sinkd_fn](logits, tl,
                                                    **config.sinkd_kw)
      if w["dhkd"]:
        aux = _dense(params["aux"], feats)
        total += w["dhkd"] * mean(dhkd_fn(logits, aux, tl, ytr,
                                          **config.dhkd_kw))
      return total

    def train(key, tl, te, tm, tpred, data):
      xtr, ytr, xte, yte = data
      params = init_student(key)

      def step(carry, _):
        p, s = carry
        value, g = jax.value_and_grad(loss)(p, tl, te, tm, xtr, ytr)
        u, s = s_opt.update(g, s, p)
        p = jax.tree.map(jnp.add, p, u)
        return (p, s), (value, accuracy(_mlp(p["mlp"], xte)[0], yte))

      (params, _), curve = jax.lax.scan(
          step, (params, s_opt.init(params)), None, length=config.steps)
      logits = _mlp(params["mlp"], xte)[0]
      agree = jnp.mean((jnp.argmax(logits, -1) == tpred).astype(jnp.float32))
      return {"test accuracy": accuracy(logits, yte),
              "agreement with teacher": agree}, curve

    return jax.jit(jax.vmap(train, in_axes=(0, 0, 0, 0, 0, None)),
                   compiler_options=compiler_options)

  per_seed: dict[str, dict[str, list[float]]] = {m: {} for m in METRICS}
  curves = {}
  summary = {}
  for arm in config.arms:
    with harness.transfer_guard(config):
      m, curve = make_train(arm)(keys, t_logits, t_emb, t_means, t_pred, data)
    m, curve = jax.device_get((m, curve))
    curves[arm["name"]] = [np.asarray(c) for c in curve]
    summary[arm["name"]] = {k: float(np.mean(v)) for k, v in m.items()}
    for k in METRICS:
      per_seed[k][arm["name"]] = np.asarray(m[k]).tolist()
    acc = m["test accuracy"]
    print(f"  {arm['name']:9s} test acc {np.mean(acc):.4f} ± {harness.sample_std(acc):.4f}",
          flush=True)
  t_acc = np.asarray(jax.device_get(t_acc))
  per_seed["test accuracy"]["teacher"] = t_acc.tolist()
  per_seed["agreement with teacher"]["teacher"] = [1.0] * len(seeds)
  print(f"  {'teacher':9s} test acc {t_acc.mean():.4f} ± {harness.sample_std(t_acc):.4f}",
        flush=True)

  acc = {a: summary[a]["test accuracy"] for a in arm_names}
  held = bool(acc[better] >= acc[baseline])
  checks = [(f"{better} ≥ {baseline} (decides `held`)", held)]
  checks += [(f"{a} ≥ CE", bool(acc[a] >= acc["CE"]))
             for a in arm_names if a not in ("CE", better, baseline)]
  fmt = ", ".join(f"{a} {acc[a]:.4f}" for a in arm_names)
  verdict = (
      f"Mean student test accuracy over {len(seeds)} seeds: {fmt} (teacher "
      f"{t_acc.mean():.4f}) — {better} ≥ {baseline} "
      f"{'held' if held else 'did NOT hold'}; other arms ≥ CE: "
      + ", ".join(f"{n.split(' ')[0]} {'yes' if ok else 'no'}"
                  for n, ok in checks[1:]) + ".")

  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  # Plots: per-seed test accuracy per arm, and test accuracy during training.
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  ax = axes[0]
  for i, a in enumerate(arm_names):
    v = per_seed["test accuracy"][a]
    ax.scatter([i] * len(v), v, color=f"C{i}", alpha=0.7)
    ax.errorbar(i + 0.15, np.mean(v), yerr=harness.sample_std(v), fmt="o", color="k",
                capsize=3)
  ax.axhline(t_acc.mean(), color="gray", ls="--", label="teacher (mean)")
  ax.set_xticks(range(len(arm_names)))
  ax.set_xticklabels(arm_names, fontsize=8)
  ax.set_ylabel("student test accuracy")
  ax.set_title("digits: per-seed (dots) and mean ± std", fontsize=9)
  ax.legend(fontsize=7)
  ax = axes[1]
  for i, a in enumerate(arm_names):
    ax.plot(curves[a][1].mean(0), color=f"C{i}", label=a)
  ax.set_xlabel("Adam step (full batch)")
  ax.set_ylabel("test accuracy (mean over seeds)")
  lo = min(float(curves[a][1].mean(0)[-1]) for a in arm_names)
  ax.set_ylim(max(0.0, lo - 0.1), 1.0)
  ax.legend(fontsize=7)
  ax.set_title("student test accuracy during training", fontsize=9)
  harness.save_figure(fig, workdir, "student_accuracy.png")

  notes = harness.checks_markdown(checks)
  notes += ["", "`teacher` is the wide MLP (for scale). Only the first check "
            "decides `held`. Student: "
            f"{' → '.join(map(str, s_sizes))}; teacher: "
            f"{' → '.join(map(str, t_sizes))}; train / test = "
            f"{int(xtr.shape[0])} / {int(xte.shape[0])}."]

  return dict(
      name=config.name,
      claim=config.claim,
      arms=[dict(arm) for arm in config.arms],
      metrics=metrics,
      headline="test accuracy",
      held=held,
      verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks],
      summary=summary,
      teacher_test_accuracy=float(t_acc.mean()),
      seeds=seeds,
      notes_md="\n".join(notes),
  )
