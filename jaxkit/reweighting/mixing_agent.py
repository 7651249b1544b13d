r"""A data-mixing agent's interface: mixture + history in, next mixture out.

Data Mixing Agent (Yang et al., 2025) re-weights the domains of continual
pre-training with a learned policy: after every stretch of training it sees
the trajectory so far — the domain weights it used and the per-domain
evaluation feedback they produced — and outputs the next domain weights. The
policy is trained with reinforcement learning on many such trajectories from
an evaluation environment. This module holds the parts a library can share
(the RL training of a policy network on LLM runs is out of scope):

* :func:`mixing_agent`: the agent as an optax-style ``NamedTuple(init,
  update)`` — the state is the current mixture plus a fixed-length history
  of (mixture, feedback) rounds; ``update(feedback, state, params=...)``
  appends the round and asks a **policy** ``policy(params, state) ->
  logits [K]`` for the next mixture;
* :func:`exponentiated_feedback_policy`: a heuristic policy
  (exponentiated-gradient on the latest per-domain feedback, the
  Group-DRO / DoReMi heuristic family the agent is compared with);
* :func:`quadratic_mixing_env`: a small, differentiable synthetic mixing
  environment (mixture → short gradient-descent run → per-domain losses and
  a reward) for testing agents;
* :func:`rollout_mixing_agent`: runs an agent in an environment for a
  static number of rounds under ``lax.scan``.

Turn the mixture into batches with :func:`jaxkit.reweighting.sample_domains`.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


class MixingAgentState(NamedTuple):
  """State of :func:`mixing_agent` (arrays only: jits, shards, checkpoints).

  Attributes:
    weights: ``[K]`` the mixture to train on next (sums to 1).
    weight_history: ``[H, K]`` the mixtures of the last ``H`` rounds, oldest
      first (rows of unfilled rounds are 0).
    feedback_history: ``[H, M]`` the feedback each of those mixtures
      produced (0 where masked or unfilled).
    feedback_mask: ``bool[H, M]`` which feedback entries are real.
    round_mask: ``bool[H]`` which history rows hold a round.
    count: ``int32[]`` the number of rounds so far.

  Example:
    >>> from jaxkit import reweighting as rw
    >>> agent = rw.mixing_agent(rw.exponentiated_feedback_policy(1.0), 2,
    ...                         history_len=3)
    >>> state = agent.init()
    >>> print(state.weights, state.weight_history.shape, int(state.count))
    [0.5 0.5] (3, 2) 0
  """
  weights: jax.Array
  weight_history: jax.Array
  feedback_history: jax.Array
  feedback_mask: jax.Array
  round_mask: jax.Array
  count: jax.Array


class MixingAgent(NamedTuple):
  """A data-mixing agent, optax style (see :func:`mixing_agent`).

  Attributes:
    init: ``init() -> MixingAgentState``.
    update: ``update(feedback, state, *, where=None, params=None) ->
      (weights [K], new_state)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> agent = rw.mixing_agent(rw.exponentiated_feedback_policy(0.0), 3)
    >>> w, state = agent.update(jnp.ones(3), agent.init())
    >>> print(jnp.round(w, 4), isinstance(agent, rw.MixingAgent))
    [0.3333 0.3333 0.3333] True
  """
  init: Callable[[], MixingAgentState]
  update: Callable[..., tuple[jax.Array, MixingAgentState]]


MixingPolicy = Callable[[Any, MixingAgentState], jax.Array]


def _static_int(value, name: str, lower: int) -> int:
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or value < lower):
    raise ValueError(f"`{name}` must be a static int >= {lower}, got "
                     f"{value!r}.")
  return int(value)


def _check_distribution(p: ArrayLike, k: int, name: str) -> jax.Array:
  p = checks.check_floating(p, name)
  if p.shape != (k,):
    raise ValueError(f"`{name}` must have shape ({k},), got {p.shape}.")
  if checks.is_concrete(p):
    pn = np.asarray(p, np.float64)
    if not np.all(np.isfinite(pn)) or pn.min() < 0 or pn.sum() <= 0:
      raise ValueError(f"`{name}` must be finite, non-negative and not all "
                       f"zero, got {pn}.")
  return p


def mixing_agent(policy: MixingPolicy, num_domains: int, *,
                 num_feedback: int | None = None, history_len: int = 8,
                 initial_weights: ArrayLike | None = None,
                 smoothing: float = 0.0) -> MixingAgent:
  r"""A data-mixing agent: a policy over (mixture, feedback) trajectories.

  The state holds the current mixture :math:`w_t \in \Delta^K` and the last
  ``history_len`` rounds :math:`(w_{t-H+1}, y_{t-H+1}), …, (w_t, y_t)`
  (oldest first), where :math:`y_t \in \mathbb{R}^M` is the evaluation
  feedback (per-domain validation losses, benchmark scores …) measured after
  training on :math:`w_t`. ``update(y_t, state)`` appends the round and
  computes

  .. math::
    w_{t+1} = (1 - c)\,\mathrm{softmax}\big(\pi_\phi(h_t)\big) + c/K,

  with :math:`\pi_\phi` = ``policy(params, state)`` (``state`` already holds
  round :math:`t` in its history and :math:`w_t` in ``weights``) and
  :math:`c` = ``smoothing`` (a floor on every domain's weight). A policy
  returns ``[K]`` logits; ``-inf`` switches a domain off. The policy can be a
  heuristic (:func:`exponentiated_feedback_policy`) or a network with
  parameters ``params`` (the paper's agent is a small transformer over the
  trajectory trained with RL; train one, e.g., by differentiating
  :func:`rollout_mixing_agent` in :func:`quadratic_mixing_env`, or with a
  policy-gradient loss of your choice).

  The mixture is **not** ``stop_gradient``-ed, so a policy can be trained
  through a differentiable environment; wrap it in ``stop_gradient`` before
  it multiplies a training loss. Masked feedback entries (``where``) are
  stored as 0 with ``feedback_mask`` False.

  Deviation from the paper: the agent's policy network, its inputs (the
  paper's per-domain trajectory encoding) and its RL training are not
  prescribed here; this is the interface (state = mixture + history, update
  from evaluation feedback) that such a policy plugs into.

  Args:
    policy: ``policy(params, state: MixingAgentState) -> logits [K]``
      (static, traceable).
    num_domains: ``K`` (static int >= 1).
    num_feedback: ``M``, the length of a feedback vector (static int >= 1;
      default ``K``).
    history_len: ``H``, rounds kept in the state (static int >= 1).
    initial_weights: optional ``[K]`` non-negative starting mixture
      (normalised; default uniform).
    smoothing: :math:`c \in [0, 1]`.

  Returns:
    A :class:`MixingAgent`; ``update(feedback [M], state, *, where=None,
    params=None) -> (weights [K], new_state)``.

  Raises:
    ValueError: bad sizes / ``smoothing`` / ``initial_weights``; at trace
      time, ``feedback`` / ``where`` of the wrong shape or policy logits that
      are not ``[K]``.
    TypeError: ``policy`` not callable, non-floating ``feedback``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> agent = rw.mixing_agent(rw.exponentiated_feedback_policy(1.0), 2)
    >>> w, state = jax.jit(agent.update)(jnp.array([0., 1.]), agent.init())
    >>> print(jnp.round(w, 4), jnp.round(state.weight_history[-1], 4))
    [0.2689 0.7311] [0.5 0.5]

  References:
    Yang et al., `Data Mixing Agent: Learning to Re-weight Domains for
    Continual Pre-training`, 2025, arXiv:2507.15640.

    Catalog: seed_001 #19.
  """
  if not callable(policy):
    raise TypeError(f"`policy` must be callable, got {policy!r}.")
  k = _static_int(num_domains, "num_domains", 1)
  m = k if num_feedback is None else _static_int(num_feedback,
                                                 "num_feedback", 1)
  h = _static_int(history_len, "history_len", 1)
  checks.check_scalar(smoothing, "smoothing", lower=0.0, upper=1.0)
  if initial_weights is None:
    w0 = jnp.full((k,), 1.0 / k, jnp.float32)
  else:
    w0 = _check_distribution(initial_weights, k, "initial_weights")
    w0 = (w0 / jnp.sum(w0)).astype(jnp.float32)

  def init():
    return MixingAgentState(
        weights=w0, weight_history=jnp.zeros((h, k), jnp.float32),
        feedback_history=jnp.zeros((h, m), jnp.float32),
        feedback_mask=jnp.zeros((h, m), bool),
        round_mask=jnp.zeros((h,), bool), count=jnp.zeros((), jnp.int32))

  def update(feedback, state, *, where=None, params=None):
    y = checks.check_floating(feedback, "feedback")
    if y.shape != (m,):
      raise ValueError(f"`feedback` must have shape ({m},) (num_feedback), "
                       f"got {y.shape}.")
    mask = checks.check_where(where, (m,), "where")
    mask = jnp.ones((m,), bool) if mask is None else mask
    y = jnp.where(mask, y.astype(jnp.float32), 0.0)

    def push(buf, row):
      return jnp.concatenate([buf[1:], row[None].astype(buf.dtype)], axis=0)

    hist = MixingAgentState(
        weights=state.weights,
        weight_history=push(state.weight_history, state.weights),
        feedback_history=push(state.feedback_history, y),
        feedback_mask=push(state.feedback_mask, mask),
        round_mask=push(state.round_mask, jnp.ones((), bool)),
        count=state.count + 1)
    logits = jnp.asarray(policy(params, hist))
    if logits.shape != (k,):
      raise ValueError(f"`policy` must return logits of shape ({k},) "
                       f"(num_domains), got {logits.shape}.")
    w = jax.nn.softmax(logits.astype(jnp.float32))
    w = (1.0 - smoothing) * w + smoothing / k
    return w, hist._replace(weights=w)

  return MixingAgent(init, update)


def exponentiated_feedback_policy(step_size: float) -> MixingPolicy:
  r"""Heuristic policy: exponentiated-gradient step on the latest feedback.

  .. math::
    \pi(h_t) = \log w_t + \eta\, y_t,\qquad
    w_{t+1} \propto w_t \odot e^{\eta y_t},

  with :math:`y_t` the last feedback (one entry per domain, so ``M = K``);
  masked entries contribute 0. With :math:`y` = per-domain evaluation losses
  and :math:`\eta > 0` it moves weight to the domains that lag (Group DRO's
  update, the balanced-performance heuristic that Data Mixing Agent learns
  to generalise); with :math:`\eta < 0` (or scores instead of losses) it
  moves weight to the domains that do well. Ignores ``params``.

  Args:
    step_size: :math:`\eta` (any finite float; 0 keeps the mixture).

  Returns:
    A policy for :func:`mixing_agent`.

  Raises:
    ValueError: non-finite ``step_size``; at trace time, feedback whose
      length is not ``K``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> agent = rw.mixing_agent(rw.exponentiated_feedback_policy(2.0), 2)
    >>> w, state = agent.update(jnp.array([0.5, 0.]), agent.init())
    >>> print(np.round(np.asarray(w), 4))
    [0.7311 0.2689]

  References:
    Yang et al., `Data Mixing Agent`, 2025, arXiv:2507.15640; Sagawa et al.,
    `Distributionally Robust Neural Networks for Group Shifts`, ICLR 2020,
    arXiv:1911.08731.

    Catalog: seed_001 #19.
  """
  checks.check_scalar(step_size, "step_size")

  def policy(params, state):
    del params
    k = state.weights.shape[0]
    if state.feedback_history.shape[1] != k:
      raise ValueError(
          "exponentiated_feedback_policy needs one feedback entry per domain "
          f"(num_feedback == num_domains == {k}), got "
          f"{state.feedback_history.shape[1]}.")
    y = jnp.where(state.feedback_mask[-1], state.feedback_history[-1], 0.0)
    w = state.weights
    log_w = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
    return log_w + step_size * y

  return policy


class MixingEnvState(NamedTuple):
  """State of a :func:`quadratic_mixing_env`: the model and a round counter.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> env = rw.quadratic_mixing_env(jnp.array([[0.], [1.]]))
    >>> print(env.reset())
    MixingEnvState(params=Array([0.], dtype=float32), count=Array(0, dtype=int32))
  """
  params: jax.Array
  count: jax.Array


class MixingEnv(NamedTuple):
  """A mixing environment: ``reset()`` and ``step(state, weights)``.

  Attributes:
    reset: ``reset() -> env_state``.
    step: ``step(env_state, weights [K]) -> (env_state, feedback [K],
      reward [])``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> env = rw.quadratic_mixing_env(jnp.array([[0.], [2.]]),
    ...                               learning_rate=1.0, num_steps=1)
    >>> s, y, r = env.step(env.reset(), jnp.array([0.5, 0.5]))
    >>> print(s.params, y, r)
    [1.] [0.5 0.5] -0.5
  """
  reset: Callable[[], Any]
  step: Callable[..., tuple[Any, jax.Array, jax.Array]]


def quadratic_mixing_env(optima: ArrayLike, *,
                         curvatures: ArrayLike | None = None,
                         init_params: ArrayLike | None = None,
                         learning_rate: float = 0.1, num_steps: int = 10,
                         reward_weights: ArrayLike | None = None) -> MixingEnv:
  r"""A synthetic, differentiable data-mixing environment.

  Domain :math:`k` has the loss :math:`L_k(\theta) = \tfrac12 a_k\|\theta -
  \theta_k\|^2`. One environment step trains on the mixture :math:`w`
  (normalised to sum 1) for ``num_steps`` full-batch gradient steps

  .. math::
    \theta \leftarrow \theta - \alpha \sum_k w_k a_k (\theta - \theta_k),

  then returns the per-domain evaluation losses :math:`y_k = L_k(\theta)` as
  feedback and the reward :math:`r = -\sum_k \rho_k y_k`. In closed form,
  with :math:`A = \sum_k w_k a_k` and :math:`\bar\theta = \sum_k w_k a_k
  \theta_k / A`, one step gives :math:`\theta' = \bar\theta + (1 - \alpha
  A)^n(\theta - \bar\theta)`. Start :math:`\theta` at a "source" optimum and
  put the "target" elsewhere to mimic continual pre-training: a mixture
  trades forgetting (source loss) against learning (target loss); the
  mixture with equal losses is the balanced one. An all-zero mixture does
  not train. Jittable and differentiable in the weights.

  Args:
    optima: ``[K, D]`` floating domain optima :math:`\theta_k`.
    curvatures: optional ``[K]`` positive :math:`a_k` (default 1).
    init_params: optional ``[D]`` starting :math:`\theta` (default 0).
    learning_rate: :math:`\alpha > 0`; :math:`\alpha \max_k a_k \le 2` for a
      stable run.
    num_steps: gradient steps per environment step (static int >= 1).
    reward_weights: optional ``[K]`` non-negative :math:`\rho` (default
      uniform :math:`1/K`).

  Returns:
    A :class:`MixingEnv` whose state is a :class:`MixingEnvState`.

  Raises:
    ValueError: bad shapes or values of the arguments; at trace time,
      ``weights`` not of shape ``[K]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> env = rw.quadratic_mixing_env(jnp.array([[0.], [1.]]),
    ...                               learning_rate=0.5, num_steps=2)
    >>> s, y, r = env.step(env.reset(), jnp.array([0., 1.]))
    >>> print(s.params, y)
    [0.75] [0.28125 0.03125]

  References:
    Yang et al., `Data Mixing Agent: Learning to Re-weight Domains for
    Continual Pre-training`, 2025, arXiv:2507.15640.

    Catalog: seed_001 #19.
  """
  theta_k = checks.check_floating(optima, "optima")
  checks.check_rank(theta_k, 2, "optima")
  k, d = theta_k.shape
  if k == 0:
    raise ValueError("`optima` needs at least one domain (row).")
  theta_k = theta_k.astype(jnp.float32)
  if curvatures is None:
    a = jnp.ones((k,), jnp.float32)
  else:
    a = checks.check_floating(curvatures, "curvatures")
    if a.shape != (k,):
      raise ValueError(f"`curvatures` must have shape ({k},), got {a.shape}.")
    if checks.is_concrete(a) and not np.all(np.asarray(a) > 0):
      raise ValueError(f"`curvatures` must be positive, got {np.asarray(a)}.")
    a = a.astype(jnp.float32)
  if init_params is None:
    theta0 = jnp.zeros((d,), jnp.float32)
  else:
    theta0 = checks.check_floating(init_params, "init_params")
    if theta0.shape != (d,):
      raise ValueError(f"`init_params` must have shape ({d},), got "
                       f"{theta0.shape}.")
    theta0 = theta0.astype(jnp.float32)
  checks.check_scalar(learning_rate, "learning_rate", positive=True)
  n = _static_int(num_steps, "num_steps", 1)
  if reward_weights is None:
    rho = jnp.full((k,), 1.0 / k, jnp.float32)
  else:
    rho = _check_distribution(reward_weights, k, "reward_weights")
    rho = rho.astype(jnp.float32)

  def losses(theta):
    return 0.5 * a * jnp.sum(jnp.square(theta[None, :] - theta_k), axis=1)

  def reset():
    return MixingEnvState(theta0, jnp.zeros((), jnp.int32))

  def step(state, weights):
    w = checks.check_floating(weights, "weights")
    if w.shape != (k,):
      raise ValueError(f"`weights` must have shape ({k},), got {w.shape}.")
    w = w.astype(jnp.float32)
    total = jnp.sum(w)
    w = jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 0.0)
    wa = w * a

    def gd(_, theta):
      return theta - learning_rate * jnp.sum(
          wa[:, None] * (theta[None, :] - theta_k), axis=0)

    theta = jax.lax.fori_loop(0, n, gd, state.params)
    y = losses(theta)
    return MixingEnvState(theta, state.count + 1), y, -jnp.sum(rho * y)

  return MixingEnv(reset, step)


class MixingRollout(NamedTuple):
  """Trajectory of :func:`rollout_mixing_agent`.

  Attributes:
    weights: ``[T, K]`` the mixture used in every round.
    feedback: ``[T, M]`` the feedback it produced.
    rewards: ``[T]`` the rewards.
    agent_state: the final :class:`MixingAgentState`.
    env_state: the final environment state.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxkit import reweighting as rw
    >>> env = rw.quadratic_mixing_env(jnp.array([[0.], [1.]]))
    >>> agent = rw.mixing_agent(rw.exponentiated_feedback_policy(0.0), 2)
    >>> out = rw.rollout_mixing_agent(agent, env, 3)
    >>> print(out.weights.shape, out.rewards.shape)
    (3, 2) (3,)
  """
  weights: jax.Array
  feedback: jax.Array
  rewards: jax.Array
  agent_state: MixingAgentState
  env_state: Any


def rollout_mixing_agent(agent: MixingAgent, env: MixingEnv,
                         num_rounds: int, *, params: Any = None,
                         agent_state: MixingAgentState | None = None,
                         env_state: Any = None) -> MixingRollout:
  r"""Runs an agent in an environment for ``num_rounds`` rounds.

  Round :math:`t`: train on :math:`w_t` (``agent_state.weights``) —
  ``env_state, y_t, r_t = env.step(env_state, w_t)`` — then
  :math:`w_{t+1}` = ``agent.update(y_t, agent_state, params=params)``.
  A ``lax.scan``: jittable (``agent``, ``env``, ``num_rounds`` static) and
  differentiable in ``params`` when the environment is (e.g.
  ``jax.grad(lambda p: rollout(..., params=p).rewards.sum())`` trains a
  policy on :func:`quadratic_mixing_env`).

  .. math::
    (\theta_{t+1}, y_t, r_t) = \mathrm{env}(\theta_t, w_t),\qquad
    w_{t+1} = \mathrm{agent}(y_t, h_t).

  Args:
    agent: a :class:`MixingAgent`.
    env: a :class:`MixingEnv` (or any ``(reset, step)`` pair of that form).
    num_rounds: ``T`` (static int >= 0).
    params: the policy parameters passed to ``agent.update``.
    agent_state: optional starting agent state (default ``agent.init()``).
    env_state: optional starting environment state (default
      ``env.reset()``).

  Returns:
    A :class:`MixingRollout`.

  Raises:
    ValueError: bad ``num_rounds``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> env = rw.quadratic_mixing_env(jnp.array([[0.], [1.]]),
    ...                               curvatures=jnp.array([1., 4.]))
    >>> agent = rw.mixing_agent(rw.exponentiated_feedback_policy(2.0), 2)
    >>> out = rw.rollout_mixing_agent(agent, env, 30)
    >>> print(np.round(np.asarray(out.weights[-1]), 3),
    ...       np.round(np.asarray(out.feedback[-1]), 3))
    [0.667 0.333] [0.222 0.222]

  References:
    Yang et al., `Data Mixing Agent: Learning to Re-weight Domains for
    Continual Pre-training`, 2025, arXiv:2507.15640.

    Catalog: seed_001 #19.
  """
  t = _static_int(num_rounds, "num_rounds", 0)
  a_state = agent.init() if agent_state is None else agent_state
  e_state = env.reset() if env_state is None else env_state

  def body(carry, _):
    a_s, e_s = carry
    w = a_s.weights
    e_s, y, r = env.step(e_s, w)
    _, a_s = agent.update(y, a_s, params=params)
    return (a_s, e_s), (w, y, r)

  (a_state, e_state), (ws, ys, rs) = jax.lax.scan(body, (a_state, e_state),
                                                  None, length=t)
  return MixingRollout(ws, ys, rs, a_state, e_state)
