"""Runner of ``configs/ptq_granularity_digits.py`` (issue 6: whitepaper PTQ/QAT)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.kd_digits import load_split

METRICS = ("test accuracy",)


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the BN-MLP per seed, folds BN, runs each PTQ / QAT arm."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("W4 per-tensor", "W4 per-channel",
                                         "W4 QAT"))
  fold, fq = fns[config.fold_fn], fns[config.fake_quant_fn]
  ce, adam = fns[config.ce_fn], fns[config.optimizer_fn]
  copts = dict(config.get("compiler_options", {})) or None
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  n_cls = int(max(ytr.max(), yte.max())) + 1
  sizes = (xtr.shape[1], *config.hidden, n_cls)
  eps = config.bn_epsilon
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))

  def init(key):
    ks = jax.random.split(key, len(sizes) - 1)
    layers = []
    for i, (k, a, b) in enumerate(zip(ks, sizes[:-1], sizes[1:])):
      p = dict(w=jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a),
               b=jnp.zeros(b))
      if i < len(sizes) - 2:
        p.update(gamma=jnp.ones(b), beta=jnp.zeros(b))
      layers.append(p)
    return layers

  def bn_forward(layers, x):
    """Training-mode forward (full-batch statistics); returns logits, stats."""
    h, stats = x, []
    for p in layers[:-1]:
      z = h @ p["w"] + p["b"]
      mu, var = jnp.mean(z, 0), jnp.var(z, 0)
      stats.append((mu, var))
      h = jax.nn.relu(p["gamma"] * (z - mu) * jax.lax.rsqrt(var + eps)
                      + p["beta"])
    return h @ layers[-1]["w"] + layers[-1]["b"], stats

  def folded_forward(folded, x, quant=None):
    h = x
    for i, (w, b) in enumerate(folded):
      if quant is not None:
        w = quant(w)
      h = h @ w + b
      if i < len(folded) - 1:
        h = jax.nn.relu(h)
    return h

  def acc(logits, y):
    return jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))

  def quantizer(bits, axis):
    if bits == 0:
      return None
    ax = None if axis == "tensor" else 0
    return lambda w: fq(w, bits=bits, axis=ax)

  opt = adam(learning_rate=config.learning_rate)
  qopt = adam(learning_rate=config.qat_learning_rate)

  def per_seed(key, data):
    xtr, ytr, xte, yte = data
    params = init(key)

    def loss(p):
      return jnp.mean(ce(bn_forward(p, xtr)[0], ytr))

    def step(carry, _):
      p, s = carry
      u, s = opt.update(jax.grad(loss)(p), s, p)
      return (jax.tree.map(jnp.add, p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None,
                                  length=config.steps)
    _, stats = bn_forward(params, xtr)
    folded = []
    for p, (mu, var) in zip(params[:-1], stats):
      folded.append(fold(p["w"], p["b"], mean=mu, var=var, scale=p["gamma"],
                         offset=p["beta"], epsilon=eps))
    folded.append((params[-1]["w"], params[-1]["b"]))
    out = {}
    for arm in config.arms:
      quant = quantizer(arm["bits"], arm["axis"])
      f = folded
      if arm["qat"]:
        def qloss(fp, quant=quant):
          return jnp.mean(ce(folded_forward(fp, xtr, quant), ytr))

        def qstep(carry, _, qloss=qloss):
          p, s = carry
          u, s = qopt.update(jax.grad(qloss)(p), s, p)
          return (jax.tree.map(jnp.add, p, u), s), None

        (f, _), _ = jax.lax.scan(qstep, (folded, qopt.init(folded)), None,
                                 length=config.qat_steps)
      out[arm["name"]] = acc(folded_forward(f, xte, quant), yte)
    ranges = jnp.stack([jnp.max(jnp.abs(w), 0).max() / jnp.max(jnp.abs(w), 0
                                                                ).min()
                        for w, _ in folded[:-1]])
    return out, ranges

  with harness.transfer_guard(config):
    out, ranges = jax.jit(jax.vmap(per_seed, in_axes=(0, None)),
                          compiler_options=copts)(keys, data)
  out, ranges = jax.device_get((out, ranges))
  per = {a: np.asarray(out[a]).tolist() for a in arm_names}
  mean = {a: float(np.mean(per[a])) for a in arm_names}
  for a in arm_names:
    print(f"  {a:16s} test acc {mean[a]:.4f} ± {harness.sample_std(per[a]):.4f}",
          flush=True)
  c1 = bool(mean["W4 per-channel"] >= mean["W4 per-tensor"])
  c2 = bool(mean["W4 QAT"] >= mean["W4 per-channel"])
  held = c1 and c2
  checks = [("W4 per-channel ≥ W4 per-tensor (decides `held`)", c1),
            ("W4 QAT ≥ W4 per-channel PTQ (decides `held`)", c2)]
  if "W8 per-channel" in mean and "FP" in mean:
    checks.append(("W8 per-channel within 1 point of FP",
                   bool(mean["FP"] - mean["W8 per-channel"] <= 0.01)))
  verdict = (", ".join(f"{a} {mean[a]:.4f}" for a in arm_names)
             + f" (mean test accuracy, {len(seeds)} seeds); per-channel ≥ "
             f"per-tensor at W4: {'yes' if c1 else 'no'}; QAT ≥ PTQ at W4: "
             f"{'yes' if c2 else 'no'} — {'held' if held else 'did NOT hold'}.")

  fig, ax = plt.subplots(figsize=(7, 3.6))
  for i, a in enumerate(arm_names):
    ax.scatter([i] * len(per[a]), per[a], color=f"C{i}", alpha=0.7)
    ax.errorbar(i + 0.15, mean[a], yerr=harness.sample_std(per[a]), fmt="o",
                color="k", capsize=3)
  ax.set_xticks(range(len(arm_names)))
  ax.set_xticklabels(arm_names, fontsize=7, rotation=20)
  ax.set_ylabel("test accuracy")
  ax.set_title("digits MLP, BN folded: PTQ granularity and W4 QAT", fontsize=9)
  harness.save_figure(fig, workdir, "accuracy.png")

  notes = harness.checks_markdown(checks)
  notes += ["", "Ratio of the largest to the smallest per-output-channel "
            "abs-max of the folded hidden kernels (mean over seeds): "
            + ", ".join(f"{r:.1f}" for r in np.mean(ranges, 0))
            + " — the spread a single per-tensor scale must cover."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric("test accuracy", per)],
              headline="test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              channel_range_ratio=np.mean(ranges, 0).tolist(),
              seeds=seeds, notes_md="\n".join(notes))
