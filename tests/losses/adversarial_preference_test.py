"""Tests for jaxkit.losses.adversarial_preference against numpy oracles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.losses import c_adv_ipo_loss, embedding_pgd


def _np_pgd(grad_fn, e, m, eps, eta, n):
  """Sign descent + per-token l2 rescaling, written from the formula."""
  d = np.zeros_like(e)
  for _ in range(n):
    d = d - eta * np.sign(grad_fn(e + m * d) * m)
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    d = m * d * np.minimum(1.0, eps / np.maximum(norm, 1e-30))
  return d


def test_embedding_pgd_matches_numpy_on_a_quadratic():
  rng = np.random.default_rng(0)
  e = rng.normal(size=(2, 3, 4))
  target = rng.normal(size=(2, 3, 4))
  m = (rng.uniform(size=(2, 3, 1)) < 0.7).astype(np.float64)
  loss = lambda x: 0.5 * jnp.sum((x - target) ** 2, axis=(1, 2))  # [B]
  got = jax.jit(lambda e: embedding_pgd(loss, e, eps=0.3, step_size=0.07,
                                        n_steps=6, where=m[..., 0] > 0))(
                                            jnp.asarray(e))
  want = _np_pgd(lambda x: x - target, e, m, 0.3, 0.07, 6)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  norms = np.linalg.norm(np.asarray(got), axis=-1)
  assert np.all(norms <= 0.3 + 1e-5) and np.all(norms[m[..., 0] == 0] == 0)
  # The attack lowers the attack loss.
  assert np.all(np.asarray(loss(e + got)) < np.asarray(loss(e)))


def test_embedding_pgd_linear_loss_closed_form_and_no_gradient():
  w = jnp.array([[[0.5, -2.0, 1.0, -1.0]], [[3.0, 1.0, -1.0, 2.0]]])
  e = jnp.ones((2, 1, 4))
  delta = embedding_pgd(lambda x: jnp.sum(x * w), e, eps=0.8, step_size=0.1,
                        n_steps=20)
  # Sign steps hit the ball and stay at -eps * sign(w) / sqrt(D).
  np.testing.assert_allclose(delta, -0.8 * np.sign(w) / 2.0, rtol=1e-6)
  g = jax.grad(lambda e: jnp.sum(embedding_pgd(
      lambda x: jnp.sum(x * w), e, eps=0.8, step_size=0.1, n_steps=3)))(e)
  np.testing.assert_array_equal(g, 0.0)
  np.testing.assert_array_equal(
      embedding_pgd(lambda x: jnp.sum(x), e, eps=1.0, step_size=1.0,
                    n_steps=0), 0.0)


def test_embedding_pgd_bad_inputs():
  e = jnp.zeros((2, 3, 4))
  f = lambda x: jnp.sum(x)
  with pytest.raises(ValueError, match="eps"):
    embedding_pgd(f, e, eps=0.0, step_size=0.1, n_steps=1)
  with pytest.raises(ValueError, match="step_size"):
    embedding_pgd(f, e, eps=1.0, step_size=-1.0, n_steps=1)
  with pytest.raises(TypeError, match="n_steps"):
    embedding_pgd(f, e, eps=1.0, step_size=0.1, n_steps=2.0)
  with pytest.raises(ValueError, match="n_steps"):
    embedding_pgd(f, e, eps=1.0, step_size=0.1, n_steps=-1)
  with pytest.raises(ValueError, match="rank"):
    embedding_pgd(f, jnp.zeros((4,)), eps=1.0, step_size=0.1, n_steps=1)
  with pytest.raises(TypeError, match="embeddings"):
    embedding_pgd(f, jnp.zeros((2, 3), int), eps=1.0, step_size=0.1,
                  n_steps=1)
  with pytest.raises(ValueError, match="where"):
    embedding_pgd(f, e, eps=1.0, step_size=0.1, n_steps=1,
                  where=jnp.ones((2, 4), bool))


def _np_cadv_ipo(pc, pr, rc, rr, cm, rm, beta, floor):
  prc = np.where(pr < floor, 0.0, pr) if floor is not None else pr
  mean = lambda x, m: (x * m).sum(-1) / np.maximum(m.sum(-1), 1)
  h = (mean(pc, cm) - mean(rc, cm)) - (mean(prc, rm) - mean(rr, rm))
  return (h - 1 / (2 * beta)) ** 2


@pytest.mark.parametrize("floor", [None, -2.0])
def test_c_adv_ipo_matches_numpy(floor):
  rng = np.random.default_rng(1)
  pc, rc = -rng.exponential(size=(4, 5)), -rng.exponential(size=(4, 5))
  pr, rr = -rng.exponential(2.0, size=(4, 6)), -rng.exponential(size=(4, 6))
  cm = np.arange(5)[None] < np.array([[5], [3], [1], [4]])
  rm = np.arange(6)[None] < np.array([[6], [2], [5], [1]])
  got = jax.jit(lambda *a: c_adv_ipo_loss(
      *a, beta=0.25, chosen_where=cm, rejected_where=rm,
      rejected_floor=floor))(*(jnp.asarray(x, jnp.float32)
                               for x in (pc, pr, rc, rr)))
  np.testing.assert_allclose(
      got, _np_cadv_ipo(pc, pr, rc, rr, cm, rm, 0.25, floor), rtol=1e-5)
  # Without masks and floor it is IPO on the length-averaged log-probs.
  np.testing.assert_allclose(
      c_adv_ipo_loss(pc, pr, rc, rr, beta=0.5),
      _np_cadv_ipo(pc, pr, rc, rr, np.ones_like(pc), np.ones_like(pr), 0.5,
                   None), rtol=1e-5, atol=1e-7)


def test_c_adv_ipo_masks_floor_gradients_and_fully_masked():
  pc = jnp.array([[-1.0, jnp.nan], [-2.0, -1.0]])
  pr = jnp.array([[-6.0, -1.0, jnp.nan], [-1.0, -1.0, -1.0]])
  rc, rr = jnp.zeros_like(pc) - 1.0, jnp.zeros_like(pr) - 1.0
  cm = jnp.array([[True, False], [False, False]])  # row 1: fully masked
  rm = jnp.array([[True, True, False], [True, True, True]])
  f = lambda pc, pr: c_adv_ipo_loss(pc, pr, rc, rr, beta=1.0, chosen_where=cm,
                                    rejected_where=rm, rejected_floor=-5.0)
  (_, loss), (gc, gr) = jax.jit(jax.value_and_grad(
      lambda a, b: (f(a, b).sum(), f(a, b)), (0, 1), has_aux=True))(pc, pr)
  # Row 0: chosen mean -1 - (-1) = 0; rejected (0 (floored) - 1)/2 + 1 = 0.5.
  np.testing.assert_allclose(loss, [(0 - 0.5 - 0.5) ** 2,
                                    (0 - 0.0 - 0.5) ** 2], rtol=1e-6)
  assert np.all(np.isfinite(gc)) and np.all(np.isfinite(gr))
  assert gr[0, 0] == 0.0 and gr[0, 2] == 0.0 and gc[1].sum() == 0.0
  assert gr[0, 1] != 0.0


def test_c_adv_ipo_bad_inputs():
  a, b = jnp.zeros((2, 3)), jnp.zeros((2, 4))
  with pytest.raises(ValueError, match="beta"):
    c_adv_ipo_loss(a, b, a, b, beta=0.0)
  with pytest.raises(ValueError, match="same shape"):
    c_adv_ipo_loss(a, b, b, b, beta=1.0)
  with pytest.raises(ValueError, match="batch size"):
    c_adv_ipo_loss(a, jnp.zeros((3, 4)), a, jnp.zeros((3, 4)), beta=1.0)
  with pytest.raises(ValueError, match="rank"):
    c_adv_ipo_loss(a[0], b[0], a[0], b[0], beta=1.0)
  with pytest.raises(TypeError, match="policy_chosen_token_logps"):
    c_adv_ipo_loss(jnp.zeros((2, 3), int), b, a, b, beta=1.0)
  with pytest.raises(ValueError, match="rejected_floor"):
    c_adv_ipo_loss(a, b, a, b, beta=1.0, rejected_floor=float("nan"))
  with pytest.raises(ValueError, match="chosen_where"):
    c_adv_ipo_loss(a, b, a, b, beta=1.0, chosen_where=jnp.ones((2, 4), bool))
