"""Runner of ``configs/maskllm_digits.py`` (issue 10: MaskLLM vs one-shot 2:4).

Also holds the small digits-MLP helpers (``init_mlp``, ``mlp``,
``train_dense``, ``layer_inputs``) that the other compression runners of
issue 10 import (``dsnot_wanda_digits``, ``wina_teal_digits``,
``gwq_outliers_digits``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split

METRICS = ("test accuracy", "test loss")


def init_mlp(key, sizes):
  """He-initialised dense layers ``sizes[0] → … → sizes[-1]``."""
  keys = jax.random.split(key, len(sizes) - 1)
  return [dict(w=jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a),
               b=jnp.zeros((b,)))
          for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp(params, x, kernels=None):
  """ReLU MLP logits; ``kernels`` (optional) replace the ``w`` of each layer."""
  h = x
  n = len(params)
  for i, p in enumerate(params):
    w = p["w"] if kernels is None else kernels[i]
    h = h @ w + p["b"]
    if i < n - 1:
      h = jax.nn.relu(h)
  return h


def layer_inputs(params, x, kernels=None):
  """The input of every layer (``[N, in_l]`` list) of :func:`mlp`."""
  h, out = x, []
  for i, p in enumerate(params):
    out.append(h)
    w = p["w"] if kernels is None else kernels[i]
    h = h @ w + p["b"]
    if i < len(params) - 1:
      h = jax.nn.relu(h)
  return out


def train_dense(key, xtr, ytr, *, sizes, steps, learning_rate, ce, adam):
  """Full-batch Adam training of :func:`mlp` (traceable; vmap over keys)."""
  params = init_mlp(key, sizes)
  opt = adam(learning_rate=learning_rate)

  def loss(p):
    return jnp.mean(ce(mlp(p, xtr), ytr))

  def step(carry, _):
    p, s = carry
    u, s = opt.update(jax.grad(loss)(p), s, p)
    return (jax.tree.map(jnp.add, p, u), s), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None,
                                length=steps)
  return params


def evaluate(params, x, y, ce, kernels=None):
  """``{"test accuracy", "test loss"}`` of :func:`mlp` on ``(x, y)``."""
  logits = mlp(params, x, kernels)
  return {"test accuracy": jnp.mean((jnp.argmax(logits, -1) == y)
                                    .astype(jnp.float32)),
          "test loss": jnp.mean(ce(logits, y))}


def seed_plot(per_seed, names, ylabel, workdir, fname, title=""):
  """Per-seed scatter + mean ± std per arm."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 3.6))
  for i, a in enumerate(names):
    v = per_seed[a]
    ax.scatter([i] * len(v), v, color=f"C{i % 10}", alpha=0.7)
    ax.errorbar(i + 0.15, np.mean(v), yerr=harness.sample_std(v), fmt="o",
                color="k", capsize=3)
  ax.set_xticks(range(len(names)))
  ax.set_xticklabels(names, fontsize=7, rotation=20)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title, fontsize=9)
  harness.save_figure(fig, workdir, fname)


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the dense MLP per seed, then builds every arm's 2:4 masks."""
  seeds = list(range(config.seeds))
  names = harness.arm_names(config, ("magnitude 2:4", "Wanda 2:4",
                                     "MaskLLM (magnitude prior)"))
  ce, adam = fns[config.ce_fn], fns[config.optimizer_fn]
  nm_mask, wanda = fns[config.nm_mask_fn], fns[config.wanda_fn]
  m_init, m_sample = fns[config.init_fn], fns[config.sample_fn]
  m_loss, m_hard = fns[config.loss_fn], fns[config.hard_fn]
  m_sched = fns[config.schedule_fn]
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  sizes = (xtr.shape[1], *config.hidden, 10)
  nm = dict(n=config.n, m=config.m)
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))

  def dense(key, data):
    xtr, ytr, xte, yte = data
    p = train_dense(key, xtr, ytr, sizes=sizes, steps=config.dense_steps,
                    learning_rate=config.learning_rate, ce=ce, adam=adam)
    return p, evaluate(p, xte, yte, ce)

  with harness.transfer_guard(config):
    params, dense_m = jax.jit(jax.vmap(dense, in_axes=(0, None)),
                              compiler_options=copts)(keys, data)

  def ws_of(params):
    return [p["w"] for p in params]

  def prepare(params, key, data):
    """One-shot masks and MaskLLM initial logits of every arm."""
    xtr = data[0]
    ws = ws_of(params)
    acts = layer_inputs(params, xtr)
    mag = [nm_mask(jnp.abs(w), **nm) for w in ws]
    out = {}
    ks = jax.random.split(key, len(ws))
    for arm in config.arms:
      if arm["kind"] == "magnitude":
        out[arm["name"]] = mag
      elif arm["kind"] == "wanda":
        out[arm["name"]] = [nm_mask(wanda(w, a), **nm)
                            for w, a in zip(ws, acts)]
      else:
        strength = config.prior_strength if arm["prior"] else 0.0
        out[arm["name"]] = [
            m_init(w, prior=mk if arm["prior"] else None,
                   prior_strength=strength, init_std=config.init_std,
                   key=k, **nm) for w, mk, k in zip(ws, mag, ks)]
    return out

  def learn(params, logits, key, data):
    """MaskLLM: trains the mask logits only (weights frozen)."""
    xtr, ytr = data[0], data[1]
    ws = [jax.lax.stop_gradient(w) for w in ws_of(params)]
    opt = adam(learning_rate=config.mask_learning_rate)

    def loss(lg, t, k):
      tau, kappa = m_sched(t, config.steps,
                           temperature=tuple(config.temperature),
                           scale=tuple(config.logit_scale))
      kk = jax.random.split(k, len(ws))
      soft = [m_sample(l, kj, temperature=tau, scale=kappa, **nm)
              for l, kj in zip(lg, kk)]
      task_loss = jnp.mean(ce(mlp(params, xtr, [w * s for w, s in
                                                zip(ws, soft)]), ytr))
      return m_loss(task_loss, ws, soft, weight_reg=config.weight_reg)

    def step(carry, t):
      lg, s = carry
      g = jax.grad(loss)(lg, t, jax.random.fold_in(key, t))
      u, s = opt.update(g, s, lg)
      return (jax.tree.map(jnp.add, lg, u), s), None

    (logits, _), _ = jax.lax.scan(step, (logits, opt.init(logits)),
                                  jnp.arange(config.steps))
    return [m_hard(l, **nm) for l in logits]

  def score(params, masks, data):
    ws = ws_of(params)
    out = evaluate(params, data[2], data[3], ce,
                   [w * mk for w, mk in zip(ws, masks)])
    mag = [nm_mask(jnp.abs(w), **nm) for w in ws]
    out["mask overlap with magnitude"] = (
        sum(jnp.sum(a & b) for a, b in zip(masks, mag))
        / sum(jnp.sum(b) for b in mag))
    return out

  def vm(f, axes):
    return jax.jit(jax.vmap(f, in_axes=axes), compiler_options=copts)
  prepare_j = vm(prepare, (0, 0, None))
  learn_j = vm(learn, (0, 0, 0, None))
  score_j = vm(score, (0, 0, None))
  mask_keys = jax.device_put(jax.vmap(
      lambda k: jax.random.fold_in(k, 1))(keys))
  metrics = METRICS + ("mask overlap with magnitude",)
  per_seed = {k: {} for k in metrics}
  with harness.transfer_guard(config):
    prepared = prepare_j(params, keys, data)
  for arm in config.arms:
    with harness.transfer_guard(config):
      masks = prepared[arm["name"]]
      if arm["kind"] == "maskllm":
        masks = learn_j(params, masks, mask_keys, data)
      m = jax.device_get(score_j(params, masks, data))
    for k in metrics:
      per_seed[k][arm["name"]] = np.asarray(m[k]).tolist()
    print(f"  {arm['name']:28s} test acc {np.mean(m['test accuracy']):.4f} "
          f"loss {np.mean(m['test loss']):.4f} overlap "
          f"{np.mean(m['mask overlap with magnitude']):.3f}", flush=True)
  dense_m = jax.device_get(dense_m)
  for k in METRICS:
    per_seed[k]["dense"] = np.asarray(dense_m[k]).tolist()
  acc = {a: float(np.mean(v)) for a, v in per_seed["test accuracy"].items()}
  best_oneshot = max(acc["magnitude 2:4"], acc["Wanda 2:4"])
  held = bool(acc["MaskLLM (magnitude prior)"] > best_oneshot)
  checks = [("MaskLLM (magnitude prior) > max(magnitude, Wanda) 2:4 "
             "(decides `held`)", held)]
  if "MaskLLM (no prior)" in acc:
    checks.append(("MaskLLM (no prior) > max(magnitude, Wanda) 2:4",
                   bool(acc["MaskLLM (no prior)"] > best_oneshot)))
  wins = int(np.sum(np.asarray(per_seed["test accuracy"]
                               ["MaskLLM (magnitude prior)"])
                    > np.maximum(per_seed["test accuracy"]["magnitude 2:4"],
                                 per_seed["test accuracy"]["Wanda 2:4"])))
  fmt = ", ".join(f"{a} {acc[a]:.4f}" for a in names + ["dense"])
  verdict = (f"Mean 2:4 test accuracy over {len(seeds)} seeds (weights "
             f"frozen): {fmt}; MaskLLM (magnitude prior) beats the best "
             f"one-shot mask on {wins}/{len(seeds)} seeds — "
             f"{'held' if held else 'did NOT hold'}.")
  seed_plot(per_seed["test accuracy"], names + ["dense"], "test accuracy",
            workdir, "accuracy.png", "digits MLP, frozen weights, 2:4 masks")
  notes = harness.checks_markdown(checks)
  notes += ["", f"MLP {' → '.join(map(str, sizes))}; all three kernels "
            f"{config.n}:{config.m} along the input axis; MaskLLM: "
            f"{config.steps} full-batch Adam steps on the mask logits only. "
            "`mask overlap with magnitude` = fraction of the magnitude 2:4 "
            "mask's kept weights that the arm also keeps."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per_seed[k]) for k in metrics],
              headline="test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
