"""Tests for jaxkit.reweighting.mixing_agent (Data Mixing Agent interface).

Oracles: a numpy exponentiated-gradient loop (w <- w exp(eta y) / Z, masked
feedback contributing 0, then the smoothing floor), a numpy ring buffer of the
last H rounds, a numpy gradient-descent loop of the quadratic environment, and
the hand-derived balanced mixture of the 2-domain environment: optima 0 and 1,
curvatures 1 and 4, losses equal at theta = 2/3 (loss 2/9), reached by the
mixture w = (2/3, 1/3) (theta_bar = 4 w_1 / (w_0 + 4 w_1)).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import reweighting as rw


def test_agent_update_matches_numpy_eg_and_ring_buffer():
  eta, c, h = 0.7, 0.1, 2
  w0 = np.array([0.2, 0.3, 0.5])
  agent = rw.mixing_agent(rw.exponentiated_feedback_policy(eta), 3,
                          history_len=h, initial_weights=w0 * 2,
                          smoothing=c)
  state, upd = agent.init(), jax.jit(agent.update)
  np.testing.assert_allclose(state.weights, w0, rtol=1e-6)
  rng = np.random.default_rng(0)
  w, rows = w0.copy(), []
  for t in range(3):
    y = rng.normal(size=3).astype(np.float32)
    m = np.array([True, t != 1, True])
    out, state = upd(y, state, where=m)
    rows.append((w.copy(), np.where(m, y, 0.0), m))
    q = w * np.exp(eta * np.where(m, y, 0.0))
    w = (1 - c) * q / q.sum() + c / 3
    np.testing.assert_allclose(out, w, rtol=1e-5)
    np.testing.assert_allclose(state.weights, w, rtol=1e-5)
    last = rows[-h:]
    pad = h - len(last)
    np.testing.assert_allclose(state.weight_history[pad:],
                               [r[0] for r in last], rtol=1e-5)
    np.testing.assert_allclose(state.feedback_history[pad:],
                               [r[1] for r in last], rtol=1e-6)
    np.testing.assert_array_equal(state.feedback_mask[pad:],
                                  [r[2] for r in last])
    np.testing.assert_array_equal(state.round_mask,
                                  np.arange(h) >= pad)
    assert not np.any(state.feedback_mask[:pad])
    assert int(state.count) == t + 1
  # NaN feedback under a mask never reaches the weights.
  out, _ = upd(np.array([np.nan, 1.0, 0.0], np.float32), state,
               where=np.array([False, True, True]))
  assert np.all(np.isfinite(out))
  # The state is a pytree of arrays (jit / checkpoint friendly).
  assert all(isinstance(l, jax.Array) for l in jax.tree.leaves(state))


def test_learned_policy_sees_history_and_params():
  # M = 2 feedback entries, K = 3 domains, a linear policy on the summed
  # feedback history: logits = W @ sum_h y_h.
  policy = lambda p, s: p @ jnp.sum(s.feedback_history, axis=0)
  agent = rw.mixing_agent(policy, 3, num_feedback=2, history_len=4)
  wmat = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], np.float32)
  ys = [np.array([0.5, 1.0]), np.array([-1.0, 2.0])]
  state = agent.init()
  for y in ys:
    out, state = agent.update(y.astype(np.float32), state, params=wmat)
  z = wmat @ (ys[0] + ys[1])
  np.testing.assert_allclose(out, np.exp(z) / np.exp(z).sum(), rtol=1e-5)


def test_quadratic_env_matches_numpy_gd():
  optima = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 3.0]], np.float32)
  a = np.array([1.0, 2.0, 0.5], np.float32)
  rho = np.array([0.2, 0.3, 0.5], np.float32)
  theta0 = np.array([0.5, 0.5], np.float32)
  env = rw.quadratic_mixing_env(optima, curvatures=a, init_params=theta0,
                                learning_rate=0.3, num_steps=4,
                                reward_weights=rho)
  w = np.array([1.0, 2.0, 1.0])  # normalised by the environment
  theta = theta0.astype(np.float64)
  for _ in range(4):
    theta = theta - 0.3 * ((w / 4 * a)[:, None] * (theta - optima)).sum(0)
  losses = 0.5 * a * ((theta - optima) ** 2).sum(1)
  s, y, r = jax.jit(env.step)(env.reset(), jnp.asarray(w, jnp.float32))
  np.testing.assert_allclose(s.params, theta, rtol=1e-5)
  np.testing.assert_allclose(y, losses, rtol=1e-5)
  np.testing.assert_allclose(r, -(rho * losses).sum(), rtol=1e-5)
  assert int(s.count) == 1
  # An all-zero mixture does not train.
  s0, _, _ = env.step(env.reset(), jnp.zeros(3))
  np.testing.assert_array_equal(s0.params, theta0)


def test_rollout_balances_and_is_differentiable():
  env = rw.quadratic_mixing_env(np.array([[0.0], [1.0]], np.float32),
                                curvatures=np.array([1.0, 4.0], np.float32),
                                learning_rate=0.1, num_steps=10)
  agent = rw.mixing_agent(rw.exponentiated_feedback_policy(2.0), 2)
  out = jax.jit(rw.rollout_mixing_agent, static_argnums=(0, 1, 2))(
      agent, env, 40)
  np.testing.assert_allclose(out.weights[-1], [2 / 3, 1 / 3], atol=1e-3)
  np.testing.assert_allclose(out.feedback[-1], [2 / 9, 2 / 9], atol=1e-3)
  np.testing.assert_array_equal(out.weights[0], [0.5, 0.5])
  assert int(out.agent_state.count) == 40 and int(out.env_state.count) == 40
  # Uniform mixing never balances: its fixed point (theta = 0.8) has a worst
  # loss 0.32 > 2/9.
  fixed = rw.rollout_mixing_agent(
      rw.mixing_agent(rw.exponentiated_feedback_policy(0.0), 2), env, 40)
  np.testing.assert_allclose(fixed.feedback[-1].max(), 0.32, atol=1e-3)
  # Gradient of the total reward with respect to a linear policy's params.
  policy = lambda p, s: p * s.feedback_history[-1]
  lin = rw.mixing_agent(policy, 2, history_len=1)
  total = lambda p: jnp.sum(rw.rollout_mixing_agent(lin, env, 3,
                                                    params=p).rewards)
  g = jax.jit(jax.grad(total))(jnp.float32(1.0))
  eps = 1e-2
  fd = (total(jnp.float32(1.0 + eps)) - total(jnp.float32(1.0 - eps))) / (
      2 * eps)
  assert np.isfinite(g) and g != 0.0
  np.testing.assert_allclose(g, fd, rtol=2e-2)


def test_bad_inputs():
  pol = rw.exponentiated_feedback_policy(1.0)
  with pytest.raises(TypeError, match="policy"):
    rw.mixing_agent(None, 2)
  with pytest.raises(ValueError, match="num_domains"):
    rw.mixing_agent(pol, 0)
  with pytest.raises(ValueError, match="history_len"):
    rw.mixing_agent(pol, 2, history_len=0)
  with pytest.raises(ValueError, match="smoothing"):
    rw.mixing_agent(pol, 2, smoothing=1.5)
  with pytest.raises(ValueError, match="initial_weights"):
    rw.mixing_agent(pol, 2, initial_weights=jnp.array([1.0, -1.0]))
  with pytest.raises(ValueError, match="initial_weights"):
    rw.mixing_agent(pol, 2, initial_weights=jnp.array([0.0, 0.0]))
  agent = rw.mixing_agent(pol, 2)
  with pytest.raises(ValueError, match="feedback"):
    agent.update(jnp.ones(3), agent.init())
  with pytest.raises(TypeError, match="feedback"):
    agent.update(jnp.ones(2, jnp.int32), agent.init())
  with pytest.raises(ValueError, match="num_feedback == num_domains"):
    mis = rw.mixing_agent(pol, 2, num_feedback=3)
    mis.update(jnp.ones(3), mis.init())
  bad = rw.mixing_agent(lambda p, s: jnp.zeros(3), 2)
  with pytest.raises(ValueError, match="logits"):
    bad.update(jnp.ones(2), bad.init())
  with pytest.raises(ValueError, match="curvatures"):
    rw.quadratic_mixing_env(jnp.zeros((2, 1)), curvatures=jnp.array([1., 0.]))
  with pytest.raises(ValueError, match="learning_rate"):
    rw.quadratic_mixing_env(jnp.zeros((2, 1)), learning_rate=0.0)
  env = rw.quadratic_mixing_env(jnp.zeros((2, 1)))
  with pytest.raises(ValueError, match="weights"):
    env.step(env.reset(), jnp.ones(3))
  with pytest.raises(ValueError, match="num_rounds"):
    rw.rollout_mixing_agent(agent, env, -1)
