"""Runner of ``configs/memorization_digits.py`` (issue 10: Feldman memorization).

Per seed (vmapped): ``runs`` subsampled softmax-regression fits (vmapped)
give the memorization scores; then one retraining per arm (vmapped over a
per-arm ``[N]`` keep mask).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split
from experiments.maskllm_digits import seed_plot

METRICS = ("test accuracy", "worst-class test accuracy",
           "atypicality of removed set")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Scores memorization per seed, then retrains without each removed set."""
  seeds = list(range(config.seeds))
  names = harness.arm_names(config, ("remove top-mem", "remove random"))
  kinds = [a["kind"] for a in config.arms]
  ce, adam, mem_fn = (fns[config.ce_fn], fns[config.optimizer_fn],
                      fns[config.mem_fn])
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  n, d = xtr.shape
  c = int(max(ytr.max(), yte.max())) + 1
  k_rm = config.num_removed
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  opt = adam(learning_rate=config.learning_rate)

  def fit(weights, x, y):
    """Softmax regression on the examples with weight 1 (mean over them)."""
    p0 = dict(w=jnp.zeros((d, c)), b=jnp.zeros((c,)))

    def loss(p):
      return (jnp.sum(weights * ce(x @ p["w"] + p["b"], y))
              / jnp.sum(weights))

    def step(carry, _):
      p, s = carry
      u, s = opt.update(jax.grad(loss)(p), s, p)
      return (jax.tree.map(jnp.add, p, u), s), None

    (p, _), _ = jax.lax.scan(step, (p0, opt.init(p0)), None,
                             length=config.steps)
    return p

  def per_seed(key, data):
    xtr, ytr, xte, yte = data
    k_sub, k_rand = jax.random.split(key)
    included = (jax.random.uniform(k_sub, (config.runs, n))
                < config.subset_fraction)
    params = jax.vmap(lambda m: fit(m.astype(jnp.float32), xtr, ytr))(
        included)
    correct = jax.vmap(lambda p: jnp.argmax(xtr @ p["w"] + p["b"], -1)
                       == ytr)(params)
    mem = mem_fn(correct, included)
    order = jnp.argsort(-mem)
    rand = jax.random.permutation(k_rand, n)
    removed = {"top": order[:k_rm], "bottom": order[-k_rm:],
               "random": rand[:k_rm], "none": None}
    centroids = jax.vmap(lambda k: jnp.sum(jnp.where((ytr == k)[:, None],
                                                     xtr, 0.0), 0)
                         / jnp.sum(ytr == k))(jnp.arange(c))
    dist = jnp.linalg.norm(xtr - centroids[ytr], axis=-1)
    keep, atyp = [], []
    for kind in kinds:
      r = removed[kind]
      if r is None:
        keep.append(jnp.ones((n,)))
        atyp.append(jnp.nan)
      else:
        keep.append(jnp.ones((n,)).at[r].set(0.0))
        atyp.append(jnp.mean(dist[r]) / jnp.mean(dist))
    keep = jnp.stack(keep)
    ps = jax.vmap(lambda w: fit(w, xtr, ytr))(keep)
    pred = jax.vmap(lambda p: jnp.argmax(xte @ p["w"] + p["b"], -1))(ps)
    hit = (pred == yte).astype(jnp.float32)
    acc = hit.mean(-1)
    per_class = jax.vmap(lambda h: jax.vmap(
        lambda k: jnp.sum(jnp.where(yte == k, h, 0.0))
        / jnp.sum(yte == k))(jnp.arange(c)))(hit)
    return acc, per_class.min(-1), jnp.stack(atyp), mem

  with harness.transfer_guard(config):
    acc, worst, atyp, mem = jax.jit(jax.vmap(per_seed, in_axes=(0, None)),
                                    compiler_options=copts)(keys, data)
  acc, worst, atyp, mem = (np.asarray(a) for a in
                           jax.device_get((acc, worst, atyp, mem)))
  per = {k: {} for k in METRICS}
  for j, a in enumerate(names):
    per[METRICS[0]][a] = acc[:, j].tolist()
    per[METRICS[1]][a] = worst[:, j].tolist()
    if kinds[j] != "none":
      per[METRICS[2]][a] = atyp[:, j].tolist()
  mean = {k: {a: float(np.mean(v)) for a, v in per[k].items()} for k in per}
  for a in names:
    print(f"  {a:18s} test acc {mean[METRICS[0]][a]:.4f} worst class "
          f"{mean[METRICS[1]][a]:.4f} atypicality "
          f"{mean[METRICS[2]].get(a, float('nan')):.3f}", flush=True)
  c_acc = mean[METRICS[0]]["remove top-mem"] < mean[METRICS[0]]["remove random"]
  held = bool(c_acc)
  checks = [("test accuracy after removing top-mem < after removing random "
             "(decides `held`)", bool(c_acc)),
            ("top-mem examples are atypical (atypicality > 1)",
             bool(mean[METRICS[2]]["remove top-mem"] > 1.0)),
            ("worst-class accuracy after removing top-mem < after random",
             bool(mean[METRICS[1]]["remove top-mem"]
                  < mean[METRICS[1]]["remove random"]))]
  if "remove bottom-mem" in mean[METRICS[0]]:
    checks.append(("removing bottom-mem costs least (accuracy ≥ random)",
                   bool(mean[METRICS[0]]["remove bottom-mem"]
                        >= mean[METRICS[0]]["remove random"])))
  wins = int(np.sum(np.asarray(per[METRICS[0]]["remove top-mem"])
                    < np.asarray(per[METRICS[0]]["remove random"])))
  frac_pos = float(np.mean(mem > 0))
  verdict = (f"Mean test accuracy over {len(seeds)} seeds ({config.runs} "
             "subsampled fits each): "
             + ", ".join(f"{a} {mean[METRICS[0]][a]:.4f}" for a in names)
             + f"; top-mem removal below random removal on {wins}/"
             f"{len(seeds)} seeds — {'held' if held else 'did NOT hold'}.")
  seed_plot(per[METRICS[0]], names, "test accuracy", workdir, "accuracy.png",
            f"softmax regression, {k_rm} training examples removed")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5, 3.2))
  ax.hist(mem.reshape(-1), bins=40, color="C0")
  ax.set_xlabel("memorization score")
  ax.set_ylabel("training examples (all seeds)")
  harness.save_figure(fig, workdir, "memorization_hist.png")
  notes = harness.checks_markdown(checks)
  notes += ["", f"{frac_pos:.1%} of the training examples have a positive "
            f"score; mean score {float(mem.mean()):.4f}, max "
            f"{float(mem.max()):.3f}. Softmax regression, {config.steps} "
            f"full-batch Adam steps, lr {config.learning_rate}."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per[k]) for k in METRICS],
              headline="test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
