"""Runner of ``configs/decoupled_softmax_multilabel.py`` (issue 3: DEXML).

Generates a multi-positive retrieval task per seed, trains a dual encoder
with each loss (seeds vmapped, one jitted ``lax.scan`` per arm) and measures
precision at 1 and 5 on held-out queries.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("P@1", "P@5", "P@1 (queries with >= 3 positives)")


def make_task(seed, *, num_labels, latent_dim, feature_dim, max_positives,
              noise, num_train, num_test):
  """Returns (x_train, pos_train, x_test, pos_test) as numpy arrays."""
  rng = np.random.RandomState(seed)
  u = rng.randn(num_labels, latent_dim)
  a = rng.randn(feature_dim, latent_dim) / np.sqrt(latent_dim)
  n = num_train + num_test
  pos = np.zeros((n, num_labels), bool)
  for i, k in enumerate(rng.randint(1, max_positives + 1, size=n)):
    pos[i, rng.choice(num_labels, k, replace=False)] = True
  latent = pos @ u / pos.sum(1, keepdims=True)
  x = latent @ a.T + noise * rng.randn(n, feature_dim)
  x = x.astype(np.float32)
  return x[:num_train], pos[:num_train], x[num_train:], pos[num_train:]


def _normalize(v):
  return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains both arms over all seeds; returns the result dict."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("InfoNCE", "DecoupledSoftmax"))
  loss_fns = dict(infonce=fns[config.infonce_fn],
                  decoupled=fns[config.decoupled_fn])
  mean, adam = fns[config.mean_fn], fns[config.optimizer_fn]
  compiler_options = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  tasks = [make_task(s, **task) for s in seeds]
  data = jax.device_put(tuple(np.stack(t) for t in zip(*tasks)))
  opt = adam(learning_rate=config.learning_rate)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  d_in, d_emb, num_labels = task["feature_dim"], config.embed_dim, task[
      "num_labels"]

  def scores(params, x):
    q = _normalize(x @ params["w"])
    return q @ _normalize(params["e"]).T / config.temperature

  def make_train(arm):
    loss_fn = loss_fns[arm["loss"]]

    def train(key, xtr, ptr, xte, pte):
      kw, ke = jax.random.split(jax.random.fold_in(key, 7))
      params = dict(w=jax.random.normal(kw, (d_in, d_emb)) / np.sqrt(d_in),
                    e=jax.random.normal(ke, (num_labels, d_emb)))

      def loss(p):
        return mean(loss_fn(scores(p, xtr), ptr))

      def step(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = opt.update(g, s, p)
        return (jax.tree.map(jnp.add, p, u), s), None

      (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None,
                                    length=config.steps)
      _, top = jax.lax.top_k(scores(params, xte), 5)
      hits = jnp.take_along_axis(pte, top, axis=-1).astype(jnp.float32)
      many = (jnp.sum(pte, -1) >= 3).astype(jnp.float32)
      return {METRICS[0]: jnp.mean(hits[:, 0]),
              METRICS[1]: jnp.mean(jnp.mean(hits, -1)),
              METRICS[2]: jnp.sum(hits[:, 0] * many) / jnp.sum(many)}

    return jax.jit(jax.vmap(train), compiler_options=compiler_options)

  per_seed = {m: {} for m in METRICS}
  for arm in config.arms:
    with harness.transfer_guard(config):
      m = make_train(arm)(keys, *data)
    m = jax.device_get(m)
    for k in METRICS:
      per_seed[k][arm["name"]] = np.asarray(m[k]).tolist()
    print(f"  {arm['name']:16s} " + "  ".join(
        f"{k} {np.mean(m[k]):.4f}" for k in METRICS), flush=True)

  mu = {k: {a: float(np.mean(per_seed[k][a])) for a in arm_names}
        for k in METRICS}
  held = bool(mu["P@1"]["DecoupledSoftmax"] >= mu["P@1"]["InfoNCE"])
  checks = [("DecoupledSoftmax P@1 ≥ InfoNCE (decides `held`)", held)]
  checks += [(f"DecoupledSoftmax {k} ≥ InfoNCE",
              bool(mu[k]["DecoupledSoftmax"] >= mu[k]["InfoNCE"]))
             for k in METRICS[1:]]
  verdict = (f"Held-out precision over {len(seeds)} seeds: " + "; ".join(
      f"{k}: " + ", ".join(f"{a} {mu[k][a]:.4f}" for a in arm_names)
      for k in METRICS) + f" — decoupled ≥ InfoNCE on P@1 "
             f"{'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(k, per_seed[k]) for k in METRICS]

  fig, ax = plt.subplots(figsize=(6, 3.6))
  width = 0.38
  for i, a in enumerate(arm_names):
    ax.bar(np.arange(len(METRICS)) + (i - 0.5) * width,
           [mu[k][a] for k in METRICS], width,
           yerr=[harness.sample_std(per_seed[k][a]) for k in METRICS],
           color=f"C{i}", label=a, capsize=3)
  ax.set_xticks(range(len(METRICS)))
  ax.set_xticklabels(METRICS, fontsize=7)
  ax.set_ylabel("held-out precision")
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "precision.png")
  notes = harness.checks_markdown(checks)
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="P@1", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
