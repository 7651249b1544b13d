"""Runner of ``configs/lost_vs_lowrank.py`` (issue 7: LOST vs low-rank vs dense).

Trains a ReLU MLP 64 → H → H → 10 on scikit-learn's digits from scratch,
full-batch Adam, seeds vmapped, with its two hidden kernels parameterised as

* ``dense``: full ``[in, H]`` kernels (the unconstrained reference, more
  parameters);
* ``dense (small)``: full kernels of a narrower MLP whose hidden-layer
  parameter count matches the budget;
* ``low-rank``: ``A B`` with rank ``r`` (the budget);
* ``LOST``: ``A B + S`` with a smaller rank plus a channel-wise sparse ``S``
  (``jaxkit.sparsity.lost_init`` / ``lost_weight``), the number of kept
  channels chosen so that the parameter count matches ``low-rank``'s.

Low-rank and LOST are initialised from the SVD of the same random He kernel.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.cast_nm_digits import _he
from experiments.kd_digits import load_split

METRICS = ("test loss", "test accuracy", "hidden-layer params")


def _hidden_params(kind, shapes, rank, channels):
  total = 0
  for (a, b), k in zip(shapes, channels):
    if kind == "dense":
      total += a * b
    elif kind == "lowrank":
      total += rank * (a + b)
    else:
      total += rank * (a + b) + a * k
  return total


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; returns the result dict."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  lost_init, lost_weight = fns[config.lost_init_fn], fns[config.lost_weight_fn]
  ce, adam = fns[config.ce_fn], fns[config.optimizer_fn]
  task = dict(config.task)
  xtr, ytr, xte, yte = load_split(fns[task.pop("data_fn")], **task)
  seeds = list(range(config.seeds))
  h, r_lr, r_lost = config.hidden, config.rank_lowrank, config.rank_lost
  dim, ncls = xtr.shape[1], 10
  shapes = [(dim, h), (h, h)]
  budget = _hidden_params("lowrank", shapes, r_lr, [0, 0])
  # LOST: channels per layer so that rank_lost·(a+b) + a·k ≈ the low-rank
  # budget of that layer.
  ks = [max(1, int(round((r_lr - r_lost) * (a + b) / a))) for a, b in shapes]
  sp = [1.0 - k / b for k, (a, b) in zip(ks, shapes)]
  # Dense (small): width w with dim·w + w·w = budget.
  w_small = int((-dim + math.sqrt(dim * dim + 4 * budget)) / 2)
  counts = {
      "dense": _hidden_params("dense", shapes, 0, [0, 0]),
      "dense (small)": dim * w_small + w_small * w_small,
      "low-rank": budget,
      "LOST": _hidden_params("lost", shapes, r_lost, ks),
  }
  compiler_options = dict(config.get("compiler_options", {})) or None
  data = jax.device_put((xtr, ytr, xte, yte))
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  opt = adam(learning_rate=config.learning_rate)

  def make(kind):
    def init(key):
      k1, k2, k3 = jax.random.split(key, 3)
      width = w_small if kind == "dense (small)" else h
      w1, w2 = _he(k1, dim, width), _he(k2, width, width)
      head = dict(w=_he(k3, width, ncls), b=jnp.zeros(ncls))
      struct = ()
      if kind in ("dense", "dense (small)"):
        layers = [dict(w=w1), dict(w=w2)]
      elif kind == "low-rank":
        layers = []
        for w in (w1, w2):
          p = lost_init(w, rank=r_lr, sparsity=0.0)
          layers.append(dict(a=p.a, b=p.b))
      else:
        layers, struct = [], []
        for w, s in zip((w1, w2), sp):
          p = lost_init(w, rank=r_lost, sparsity=s)
          layers.append(dict(a=p.a, b=p.b, s=p.s))
          struct.append(p.channels)
        struct = tuple(struct)
      for lyr in layers:
        lyr["bias"] = jnp.zeros(width)
      return dict(layers=layers, head=head), struct

    def kernel(lyr, ch):
      if "w" in lyr:
        return lyr["w"]
      if "s" not in lyr:
        return lyr["a"] @ lyr["b"]
      return lost_weight(fns[config.lost_params_ref](lyr["a"], lyr["b"],
                                                     lyr["s"], ch))

    def forward(params, struct, x):
      hdn = x
      for i, lyr in enumerate(params["layers"]):
        ch = struct[i] if struct else None
        hdn = jax.nn.relu(hdn @ kernel(lyr, ch) + lyr["bias"])
      return hdn @ params["head"]["w"] + params["head"]["b"]

    def train(key, data):
      xtr, ytr, xte, yte = data
      params, struct = init(key)

      def loss(p):
        return jnp.mean(ce(forward(p, struct, xtr), ytr))

      def step(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = opt.update(g, s, p)
        p = jax.tree.map(jnp.add, p, u)
        logits = forward(p, struct, xte)
        return (p, s), jnp.mean(ce(logits, yte))

      (params, _), curve = jax.lax.scan(step, (params, opt.init(params)), None,
                                        length=config.steps)
      logits = forward(params, struct, xte)
      acc = jnp.mean((jnp.argmax(logits, -1) == yte).astype(jnp.float32))
      return {"test loss": jnp.mean(ce(logits, yte)), "test accuracy": acc}, curve

    return jax.jit(jax.vmap(train, in_axes=(0, None)),
                   compiler_options=compiler_options)

  per_seed = {m: {} for m in METRICS}
  curves = {}
  names = harness.arm_names(config, ("low-rank", "LOST"))
  for arm in config.arms:
    name = arm["name"]
    with harness.transfer_guard(config):
      m, curve = make(arm["kind"])(keys, data)
    m, curve = jax.device_get((m, curve))
    curves[name] = np.asarray(curve)
    for k in ("test loss", "test accuracy"):
      per_seed[k][name] = np.asarray(m[k]).tolist()
    per_seed["hidden-layer params"][name] = [float(counts[name])] * len(seeds)
    print(f"  {name:14s} test loss {np.mean(m['test loss']):.4f} acc "
          f"{np.mean(m['test accuracy']):.4f} params {counts[name]}", flush=True)

  mean = {k: {a: float(np.mean(v)) for a, v in d.items()}
          for k, d in per_seed.items()}
  held = bool(mean["test loss"]["LOST"] <= mean["test loss"]["low-rank"])
  checks = [("LOST test loss ≤ low-rank test loss (decides `held`)", held),
            ("LOST test accuracy ≥ low-rank", bool(
                mean["test accuracy"]["LOST"] >= mean["test accuracy"]["low-rank"])),
            ("LOST test loss ≤ dense (small)", bool(
                mean["test loss"]["LOST"] <= mean["test loss"]["dense (small)"]))]
  fmt = ", ".join(f"{a} {mean['test loss'][a]:.4f} / {mean['test accuracy'][a]:.4f}"
                  for a in names)
  verdict = (f"Mean test loss / accuracy over {len(seeds)} seeds: {fmt}. LOST "
             f"≤ low-rank at equal parameters "
             f"{'held' if held else 'did NOT hold'}.")

  fig, ax = plt.subplots(figsize=(6, 3.8))
  for i, a in enumerate(names):
    ax.plot(curves[a].mean(0), color=f"C{i}", label=f"{a} ({counts[a]} params)")
  ax.set_xlabel("Adam step (full batch)")
  ax.set_ylabel("test cross-entropy (mean over seeds)")
  ax.set_yscale("log")
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "test_loss.png")

  notes = harness.checks_markdown(checks)
  notes += ["", f"Hidden width H = {h}; low-rank rank {r_lr}; LOST rank "
            f"{r_lost} with {ks} kept channels per layer (channel sparsity "
            f"{[round(s, 3) for s in sp]}); dense (small) width {w_small}. "
            "Output layer dense in every arm (not counted)."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              metrics=[harness.metric(k, per_seed[k]) for k in METRICS],
              headline="test loss", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              param_counts=counts, seeds=seeds, notes_md="\n".join(notes))
