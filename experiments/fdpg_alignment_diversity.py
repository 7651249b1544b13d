"""Runner of ``configs/fdpg_alignment_diversity.py`` (seed 003, X1; f-DPG).

For each seed: draw a target p over the enumerable sequence space, then for
each mode (``exact`` / ``sampled``) and each arm (an f-generator) train a
factorised per-position softmax policy π_θ to minimise D_f(p‖π_θ), and
measure alignment, entropy and the two KLs of the final policy exactly. Seeds
run in parallel (``jax.vmap``); each (mode, arm) is one jitted ``lax.scan``.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

# The seed catalog's pilot (exact minimisation with scipy), for the plot.
PILOT = {
    "reverse KL": (0.89, 1.93),
    "JS": (0.45, 3.17),
    "TV": (0.49, 2.93),
    "forward KL": (0.29, 4.00),
    "target p": (0.95, 2.95),
}


def sequence_space(vocab: int, length: int) -> np.ndarray:
  """All ``vocab**length`` sequences, ``[N, length]`` int32, in index order."""
  return np.array(list(itertools.product(range(vocab), repeat=length)),
                  dtype=np.int32)


def sequence_index(x: jax.Array, vocab: int) -> jax.Array:
  """Index in :func:`sequence_space` of sequences ``x[..., length]``."""
  length = x.shape[-1]
  weights = vocab ** jnp.arange(length - 1, -1, -1)
  return jnp.sum(x * weights, axis=-1)


def make_target(key: jax.Array, xs: jax.Array, *, vocab: int, length: int,
                bonus: float, base_concentration: float) -> jax.Array:
  """log p over the space: p ∝ Π_i a_i(x_i) · exp(bonus · 1[x1 = x2])."""
  a = jax.random.dirichlet(key, jnp.full((vocab,), base_concentration),
                           shape=(length,))                     # [L, V]
  log_a = jnp.log(a)
  log_base = jnp.sum(log_a[jnp.arange(length), xs], axis=-1)   # [N]
  log_unnorm = log_base + bonus * (xs[:, 0] == xs[:, 1])
  return log_unnorm - jax.nn.logsumexp(log_unnorm)


def policy_log_probs(theta: jax.Array, x: jax.Array) -> jax.Array:
  """log π_θ(x) of a factorised per-position softmax; ``theta``: [L, V]."""
  log_pos = jax.nn.log_softmax(theta, axis=-1)
  return jnp.sum(log_pos[jnp.arange(theta.shape[0]), x], axis=-1)


def sample_policy(theta: jax.Array, u: jax.Array) -> jax.Array:
  """Samples ``x[..., L]`` from π_θ by inverse CDF of uniforms ``u[..., L]``.

  (The uniforms are drawn once, outside the training programs, so that
  the random-number generator is compiled once rather than once per arm.)
  """
  cdf = jnp.cumsum(jax.nn.softmax(theta, axis=-1), axis=-1)       # [L, V]
  return jnp.sum(u[..., None] > cdf[:, :-1], axis=-1).astype(jnp.int32)


def _metrics(log_p, log_pi, aligned, kl_fn, reverse_kl_fn):
  pi = jnp.exp(log_pi)
  return dict(
      alignment=jnp.sum(pi * aligned),
      entropy=-jnp.sum(pi * log_pi),
      forward_kl=kl_fn(log_p, log_pi),
      reverse_kl=reverse_kl_fn(log_p, log_pi),
  )


def _optimizer(config, fns, mode_cfg):
  schedule = fns[config.schedule_fn](
      init_value=mode_cfg["learning_rate"], decay_steps=mode_cfg["steps"],
      alpha=mode_cfg["final_lr_fraction"])
  return fns[config.optimizer_fn](learning_rate=schedule)


def _train_exact(config, fns, generators, xs, aligned):
  """Returns ``train(arm, theta0, log_p, uniforms) -> (theta, curve)``.

  ``arm`` indexes ``generators`` (``lax.switch``), so one compiled program
  trains every arm (vmapped over arms and seeds).
  """
  cfg = config.exact
  loss_fn = fns[cfg["loss_fn"]]
  opt = _optimizer(config, fns, cfg)

  def train(arm, theta, log_p, uniforms):
    del uniforms  # exact mode: no sampling
    branches = [
        (lambda th, g=g: loss_fn(log_p, policy_log_probs(th, xs), g))
        for g in generators]

    def step(carry, _):
      theta, state = carry
      g = jax.grad(lambda th: jax.lax.switch(arm, branches, th))(theta)
      updates, state = opt.update(g, state, theta)
      theta = theta + updates
      log_pi = policy_log_probs(theta, xs)
      return (theta, state), jnp.sum(jnp.exp(log_pi) * aligned)

    (theta, _), curve = jax.lax.scan(step, (theta, opt.init(theta)), None,
                                     length=cfg["steps"])
    return theta, curve

  return train


def _train_sampled(config, fns, generators, xs, aligned):
  """Returns ``train(arm, theta0, log_p, uniforms) -> (theta, curve)``.

  Each step draws ``num_samples`` sequences from π_θ (inverse CDF of the
  step's uniforms), computes the pseudo-rewards, the baseline and the
  gradient of ``score_function_surrogate``, and takes an Adam step.
  """
  cfg = config.sampled
  surrogate_fn = fns[cfg["loss_fn"]]
  opt = _optimizer(config, fns, cfg)
  vocab = config.task["vocab"]
  baseline_kind = cfg["baseline"]
  if baseline_kind not in ("ema", "batch_mean", "none"):
    raise ValueError("config.sampled.baseline must be 'ema', 'batch_mean' or "
                     f"'none', got {baseline_kind!r}")
  decay = cfg["ema_decay"]

  def grad_and_reward(generator, theta, x, log_p_x, ema, i):
    log_q_x = policy_log_probs(theta, x)
    reward = generator.pseudo_reward(log_p_x - log_q_x)
    batch_mean = jnp.mean(reward)
    if baseline_kind == "ema":
      # The EMA of past batches (independent of this batch: no bias);
      # the first step uses its own batch mean.
      b = jnp.where(i == 0, batch_mean, ema)
    elif baseline_kind == "batch_mean":
      b = batch_mean
    else:
      b = jnp.zeros(())
    b = jax.lax.stop_gradient(b)

    def loss(theta):
      return surrogate_fn(policy_log_probs(theta, x), log_p_x, generator,
                          baseline=b)

    return jax.grad(loss)(theta), batch_mean

  branches = [functools.partial(grad_and_reward, g) for g in generators]

  def train(arm, theta, log_p, uniforms):

    def step(carry, inputs):
      theta, state, ema = carry
      i, u = inputs
      x = sample_policy(theta, u)                                  # [n, L]
      log_p_x = log_p[sequence_index(x, vocab)]
      g, batch_mean = jax.lax.switch(arm, branches, theta, x, log_p_x, ema, i)
      updates, state = opt.update(g, state, theta)
      theta = theta + updates
      ema = jnp.where(i == 0, batch_mean, decay * ema + (1 - decay) * batch_mean)
      log_pi = policy_log_probs(theta, xs)
      return (theta, state, ema), jnp.sum(jnp.exp(log_pi) * aligned)

    carry = (theta, opt.init(theta), jnp.zeros(()))
    (theta, _, _), curve = jax.lax.scan(
        step, carry, (jnp.arange(uniforms.shape[0]), uniforms))
    return theta, curve

  return train



def _check_claim(summary: dict[str, dict[str, float]], target: dict[str, float],
                 margin: float) -> list[tuple[str, bool]]:
  """The claim's orderings on the mean over seeds (one mode)."""
  a = {k: v["alignment"] for k, v in summary.items()}
  h = {k: v["entropy"] for k, v in summary.items()}
  rkl, js, fkl = "reverse KL", "JS", "forward KL"
  others = [k for k in summary if k not in (rkl, fkl)]
  checks = [
      ("reverse KL has the highest alignment",
       all(a[rkl] > a[k] for k in summary if k != rkl)),
      ("reverse KL has the lowest entropy",
       all(h[rkl] < h[k] for k in summary if k != rkl)),
      ("reverse KL entropy < target entropy", h[rkl] < target["entropy"]),
      ("forward KL has the lowest alignment",
       all(a[fkl] < a[k] for k in summary if k != fkl)),
      ("forward KL has the highest entropy",
       all(h[fkl] > h[k] for k in summary if k != fkl)),
      (f"JS alignment − forward-KL alignment ≥ {margin:g}",
       a[js] - a[fkl] >= margin),
      ("JS (and TV) sit between: alignment and entropy strictly inside "
       "(reverse KL, forward KL)",
       all(a[fkl] < a[k] < a[rkl] and h[rkl] < h[k] < h[fkl] for k in others)),
  ]
  return checks


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Runs every (mode, arm) over all seeds; returns the result dict."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  task = config.task
  vocab, length = task["vocab"], task["length"]
  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("reverse KL", "JS", "forward KL"))
  kl_fn, reverse_kl_fn = fns[config.kl_fn], fns[config.reverse_kl_fn]


  xs = jax.device_put(sequence_space(vocab, length))
  aligned = (xs[:, 0] == xs[:, 1]).astype(jnp.float32)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  task_keys, init_keys, sample_keys = jax.vmap(
      lambda k: jax.random.split(k, 3), out_axes=1)(keys)
  steps = {mode: config[mode]["steps"] for mode in config.modes}
  n = config.sampled["num_samples"] if "sampled" in config.modes else 1

  # All randomness is drawn here, once: the training programs (one per mode
  # and arm) then contain no random-number generator to compile.
  @jax.jit
  def randomness(init_keys, sample_keys):
    theta0 = config.init_scale * jax.vmap(
        lambda k: jax.random.normal(k, (length, vocab)))(init_keys)
    uniforms = jax.vmap(lambda k: jax.random.uniform(
        k, (steps.get("sampled", 1), n, length)))(sample_keys)
    return theta0, uniforms

  @jax.jit
  def targets(k):
    log_p = jax.vmap(lambda kk: make_target(
        kk, xs, vocab=vocab, length=length, bonus=task["bonus"],
        base_concentration=task["base_concentration"]))(k)
    ent = jax.vmap(lambda lp: -jnp.sum(jnp.exp(lp) * lp))(log_p)
    al = jax.vmap(lambda lp: jnp.sum(jnp.exp(lp) * aligned))(log_p)
    return log_p, al, ent

  with harness.transfer_guard(config):
    log_p, target_align, target_ent = targets(task_keys)
    theta0, uniforms = randomness(init_keys, sample_keys)

  per_seed: dict[str, dict[str, list[float]]] = {}   # metric -> arm -> seeds
  curves: dict[str, np.ndarray] = {}
  summary: dict[str, dict[str, dict[str, float]]] = {}
  metric_names = ("alignment", "entropy", "forward_kl", "reverse_kl")
  # XLA's backend optimisations cost more compile time than they save here.
  compiler_options = dict(config.get("compiler_options", {})) or None
  generators = [fns[config.generator_fn](arm["generator"],
                                         **arm["generator_kw"])
                for arm in config.arms]
  for mode in config.modes:
    if mode not in ("exact", "sampled"):
      raise ValueError(f"unknown mode {mode!r}; expected 'exact'/'sampled'")
    summary[mode] = {}
    maker = _train_exact if mode == "exact" else _train_sampled
    train = maker(config, fns, generators, xs, aligned)

    @functools.partial(jax.jit, compiler_options=compiler_options)
    def go(theta0, lp, uniforms, train=train):
      def one_arm(arm):
        theta, curve = jax.vmap(train, in_axes=(None, 0, 0, 0))(
            arm, theta0, lp, uniforms)
        log_pi = jax.vmap(policy_log_probs, in_axes=(0, None))(theta, xs)
        m = jax.vmap(lambda a, b: _metrics(a, b, aligned, kl_fn,
                                           reverse_kl_fn))(lp, log_pi)
        return m, curve
      return jax.vmap(one_arm)(jnp.arange(len(generators)))  # [A, S, ...]

    with harness.transfer_guard(config):
      m_all, curve_all = go(theta0, log_p, uniforms)
    m_all, curve_all = jax.device_get((m_all, curve_all))
    for a, arm in enumerate(config.arms):
      m = {k: np.asarray(v[a]) for k, v in m_all.items()}
      curves[f"{arm['name']} [{mode}]"] = np.asarray(curve_all[a])
      summary[mode][arm["name"]] = {k: float(np.mean(m[k])) for k in m}
      for name in metric_names:
        per_seed.setdefault(f"{name} [{mode}]", {})[arm["name"]] = (
            m[name].tolist())
      print(f"  {mode:8s} {arm['name']:12s} alignment "
            f"{np.mean(m['alignment']):.3f} ± {harness.sample_std(m['alignment']):.3f}  "
            f"entropy {np.mean(m['entropy']):.3f} ± "
            f"{harness.sample_std(m['entropy']):.3f}", flush=True)

  target_align, target_ent = jax.device_get((target_align, target_ent))
  target = dict(alignment=float(np.mean(target_align)),
                entropy=float(np.mean(target_ent)))
  for mode in config.modes:
    per_seed[f"alignment [{mode}]"]["target p"] = target_align.tolist()
    per_seed[f"entropy [{mode}]"]["target p"] = target_ent.tolist()

  # The claim, per mode.
  checks = {mode: _check_claim(summary[mode], target, config.wide_margin)
            for mode in config.modes}
  held = all(ok for mode in checks for _, ok in checks[mode])
  failed = [f"{mode}: {name}" for mode in checks for name, ok in checks[mode]
            if not ok]
  n_checks = sum(len(c) for c in checks.values())
  verdict = (
      f"{n_checks - len(failed)}/{n_checks} ordering checks on the mean over "
      f"{len(seeds)} seeds held in modes {list(config.modes)} (reverse KL "
      "highest alignment & lowest entropy, below the target's; forward KL "
      f"lowest alignment & highest entropy; JS beats forward KL by ≥ "
      f"{config.wide_margin:g} alignment; JS/TV in between)"
      + ("." if held else f"; failed: {'; '.join(failed)}."))

  order = [f"{m} [{mode}]" for m in metric_names for mode in config.modes]
  headline = "alignment [sampled]" if "sampled" in config.modes else order[0]
  metrics = [harness.metric(name, per_seed[name]) for name in order]

  # Plots: alignment vs entropy, and the training curves.
  fig, ax = plt.subplots(figsize=(5.5, 4.2))
  markers = {"exact": "o", "sampled": "^"}
  for i, arm in enumerate(arm_names):
    for mode in config.modes:
      a = per_seed[f"alignment [{mode}]"][arm]
      h = per_seed[f"entropy [{mode}]"][arm]
      ax.scatter(h, a, color=f"C{i}", marker=markers[mode], alpha=0.6,
                 label=f"{arm} ({mode})")
    if arm in PILOT:
      ax.scatter(PILOT[arm][1], PILOT[arm][0], color=f"C{i}", marker="x",
                 s=60)
  ax.scatter(target_ent, target_align, color="k", marker="*", s=80,
             label="target p")
  ax.set_xlabel("entropy H(π) [nats]")
  ax.set_ylabel("alignment E_π[1[x1 = x2]]")
  ax.set_title("f-DPG: alignment vs diversity (x = seed pilot)", fontsize=9)
  ax.legend(fontsize=6, ncol=2)
  harness.save_figure(fig, workdir, "alignment_vs_entropy.png")

  fig, axes = plt.subplots(1, len(config.modes),
                           figsize=(5 * len(config.modes), 3.5), squeeze=False)
  for ax, mode in zip(axes[0], config.modes):
    for i, arm in enumerate(arm_names):
      c = curves[f"{arm} [{mode}]"]
      ax.plot(c.mean(0), color=f"C{i}", label=arm)
    ax.axhline(target["alignment"], color="k", ls="--", lw=0.8,
               label="target p")
    ax.set_title(f"{mode}: alignment during training (mean over seeds)",
                 fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "training_curves.png")

  notes = ["## Ordering checks (mean over seeds)", ""]
  for mode in config.modes:
    for name, ok in checks[mode]:
      notes.append(f"- [{'x' if ok else ' '}] {mode}: {name}")
  notes += ["", "Seed-catalog pilot (exact scipy minimisation, one target): "
            + "; ".join(f"{k} → alignment {v[0]}, H = {v[1]}"
                        for k, v in PILOT.items()) + "."]

  return dict(
      name=config.name,
      claim=config.claim,
      arms=[dict(arm, divergence=f"D_f(p‖π_θ), f = {arm['generator']}")
            for arm in config.arms],
      metrics=metrics,
      headline=headline,
      held=held,
      verdict=verdict,
      checks={mode: [dict(check=n, held=ok) for n, ok in checks[mode]]
              for mode in config.modes},
      summary=summary,
      target=target,
      seeds=seeds,
      notes_md="\n".join(notes),
  )
