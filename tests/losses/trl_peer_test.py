"""jaxkit's preference / distillation losses side by side with TRL itself.

TRL is a test-only peer (the ``test`` extra). TRL 1.16 computes the DPO
losses inside ``DPOTrainer._compute_loss`` (after a model forward), so the
test calls that method unbound on a stub ``self`` holding only the
attributes it reads, with a fake model whose per-token log-probabilities sum
to the random sequence log-probabilities, and precomputed reference
log-probabilities. ``CPOTrainer.cpo_loss``, ``ORPOTrainer.odds_ratio_loss``
and ``GKDTrainer.generalized_jsd_loss`` are called the same way (or as the
static method they are). No trainer, model or dataset is built.

TRL 1.16's ``alpha_divergence`` clamps the exponent
:math:`(\\alpha-1)\\lambda` at 80; :func:`jaxkit.losses.fdpo_loss` clips at
80 too, so the two agree above it as well (tested).
"""

from __future__ import annotations

import collections
import types

import numpy as np
import pytest

trl = pytest.importorskip("trl")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

from jaxkit.losses import dpo_loss  # noqa: E402
from jaxkit.losses import fdpo_loss  # noqa: E402
from jaxkit.losses import hinge_dpo_loss  # noqa: E402
from jaxkit.losses import ipo_loss  # noqa: E402
from jaxkit.losses import kd_loss  # noqa: E402
from jaxkit.losses import orpo_loss  # noqa: E402
from jaxkit.losses import preference_loss  # noqa: E402
from jaxkit.losses import robust_dpo_loss  # noqa: E402
from jaxkit.losses import simpo_loss  # noqa: E402

DPOTrainer = pytest.importorskip("trl.trainer.dpo_trainer").DPOTrainer
CPOTrainer = pytest.importorskip("trl.experimental.cpo.cpo_trainer").CPOTrainer
ORPOTrainer = pytest.importorskip(
    "trl.experimental.orpo.orpo_trainer").ORPOTrainer
GKDTrainer = pytest.importorskip("trl.experimental.gkd.gkd_trainer").GKDTrainer

B = 8
T = 6  # completion positions; TRL reads lengths from completion_mask.sum()
RTOL, ATOL = 1e-5, 1e-6


class _Accelerator:
  device = torch.device("cpu")

  def gather_for_metrics(self, x):
    return x

  def gather(self, x):
    return x


def _trl_dpo(pc, pr, rc, rr, lc, lr, *, loss_type, beta, label_smoothing=0.0,
             f_divergence_type="reverse_kl", alpha_coef=1.0):
  """Per-pair TRL DPO losses: one `_compute_loss` call per pair (B = 1)."""
  out = []
  for i in range(len(pc)):
    stub = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True),
        accelerator=_Accelerator(), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type=f_divergence_type,
        f_alpha_divergence_coef=alpha_coef, loss_types=[loss_type],
        loss_weights=[1.0], beta=beta, label_smoothing=label_smoothing,
        use_weighting=False, args=types.SimpleNamespace(discopop_tau=0.05),
        _metrics={"train": collections.defaultdict(list)},
        _total_train_tokens=0, _tp_size=1)
    # Completion mask over T + 1 positions: its row sums are the lengths.
    mask = torch.zeros(2, T + 1, dtype=torch.long)
    mask[0, :lc[i]] = 1
    mask[1, :lr[i]] = 1
    per_token = torch.zeros(2, T, dtype=torch.float32)
    per_token[0, 0], per_token[1, 0] = float(pc[i]), float(pr[i])
    outputs = types.SimpleNamespace(
        log_probs=per_token, entropy=torch.zeros(2, T),
        mean_logits=torch.zeros(2, T), is_top1=torch.zeros(2, T, dtype=bool),
        aux_loss=torch.zeros(()))
    inputs = {
        "input_ids": torch.zeros(2, T + 1, dtype=torch.long),
        "attention_mask": torch.ones(2, T + 1, dtype=torch.long),
        "completion_mask": mask,
        "ref_chosen_logps": torch.tensor([rc[i]], dtype=torch.float32),
        "ref_rejected_logps": torch.tensor([rr[i]], dtype=torch.float32),
    }
    loss = DPOTrainer._compute_loss(stub, lambda **kw: outputs, inputs, False)
    out.append(float(loss))
  return np.array(out)


def _pairs(seed, scale=20.0):
  rng = np.random.default_rng(seed)
  pc, pr, rc, rr = (-rng.uniform(1.0, scale, B).astype(np.float32)
                    for _ in range(4))
  lc = rng.integers(1, T + 2, B)
  lr = rng.integers(1, T + 2, B)
  return pc, pr, rc, rr, lc, lr


def _j(*xs):
  return [jnp.asarray(x) for x in xs]


@pytest.mark.parametrize("loss_type,beta,eps", [
    ("sigmoid", 0.1, 0.0), ("hinge", 0.3, 0.0), ("ipo", 0.4, 0.0),
    ("robust", 0.2, 0.2)])
def test_dpo_loss_types_match_trl(loss_type, beta, eps):
  pc, pr, rc, rr, lc, lr = _pairs(0)
  want = _trl_dpo(pc, pr, rc, rr, lc, lr, loss_type=loss_type, beta=beta,
                  label_smoothing=eps)
  args = _j(pc, pr, rc, rr)
  if loss_type == "sigmoid":
    got = dpo_loss(*args, beta=beta)
    np.testing.assert_allclose(preference_loss(*args, kind="dpo", beta=beta),
                               want, rtol=RTOL, atol=ATOL)
  elif loss_type == "hinge":
    got = hinge_dpo_loss(*args, beta=beta)
  elif loss_type == "ipo":  # TRL divides by the completion lengths
    got = ipo_loss(*args, beta=beta, chosen_lengths=jnp.asarray(lc),
                   rejected_lengths=jnp.asarray(lr))
  else:
    got = robust_dpo_loss(*args, beta=beta, label_smoothing=eps)
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_cdpo_matches_trl_label_smoothed_sigmoid():
  # TRL 1.16's DPOTrainer "sigmoid" ignores label_smoothing; its label-smoothed
  # sigmoid lives in CPOTrainer.cpo_loss, which on the policy log-ratios
  # (pi - ref) is conservative DPO.
  pc, pr, rc, rr, _, _ = _pairs(5)
  want, _, _ = CPOTrainer.cpo_loss(
      _cpo_stub("sigmoid", 0.5, 0.2), torch.tensor(pc - rc),
      torch.tensor(pr - rr))
  args = _j(pc, pr, rc, rr)
  np.testing.assert_allclose(dpo_loss(*args, beta=0.5, label_smoothing=0.2),
                             want.numpy(), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(
      preference_loss(*args, kind="cdpo", beta=0.5, label_smoothing=0.2),
      want.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("divergence,trl_name,coef", [
    ("reverse_kl", "reverse_kl", 1.0), ("forward_kl", "forward_kl", 1.0),
    ("js", "js_divergence", 1.0), ("alpha", "alpha_divergence", 0.5),
    ("alpha", "alpha_divergence", 1.5), ("alpha", "alpha_divergence", 1.0),
    ("alpha", "alpha_divergence", 0.0)])
def test_fdpo_matches_trl(divergence, trl_name, coef):
  pc, pr, rc, rr, lc, lr = _pairs(1, scale=8.0)
  want = _trl_dpo(pc, pr, rc, rr, lc, lr, loss_type="sigmoid", beta=0.3,
                  f_divergence_type=trl_name, alpha_coef=coef)
  got = fdpo_loss(*_j(pc, pr, rc, rr), beta=0.3, divergence=divergence,
                  alpha=coef)
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_fdpo_large_finite_exponents_match_trl():
  # Exponents up to ~70, and (last two pairs) above TRL's clamp at 80 for
  # α = 2: both finite and equal.
  pc = np.array([-1.0, -1.0, -80.0, -3.0, -1.0, -1.0], np.float32)
  rc = np.array([-1.0, -71.0, -10.0, -3.0, -86.0, -2.0], np.float32)
  pr = np.array([-50.0, -2.0, -1.0, -75.0, -1.0, -1.0], np.float32)
  rr = np.array([-2.0, -1.0, -1.0, -5.0, -3.0, -90.0], np.float32)
  ones = np.ones(6, np.int64)
  for name, trl_name, coef in [("forward_kl", "forward_kl", 1.0),
                               ("alpha", "alpha_divergence", 2.0),
                               ("alpha", "alpha_divergence", 0.0)]:
    want = _trl_dpo(pc, pr, rc, rr, ones, ones, loss_type="sigmoid",
                    beta=0.1, f_divergence_type=trl_name, alpha_coef=coef)
    assert np.all(np.isfinite(want))
    got = fdpo_loss(*_j(pc, pr, rc, rr), beta=0.1, divergence=name,
                    alpha=coef)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _cpo_stub(loss_type, beta, eps=0.0, gamma=0.5):
  return types.SimpleNamespace(alpha=0.0, loss_type=loss_type, beta=beta,
                               label_smoothing=eps, simpo_gamma=gamma,
                               accelerator=_Accelerator())


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_simpo_and_cpo_match_trl(eps):
  pc, pr, _, _, lc, lr = _pairs(2)
  avg_c = torch.tensor(pc / lc, dtype=torch.float32)
  avg_r = torch.tensor(pr / lr, dtype=torch.float32)
  # SimPO: TRL's CPOTrainer feeds length-averaged log-probabilities.
  want, _, _ = CPOTrainer.cpo_loss(_cpo_stub("simpo", 2.0, eps, 0.7), avg_c,
                                   avg_r)
  got = simpo_loss(*_j(pc, pr), chosen_lengths=jnp.asarray(lc),
                   rejected_lengths=jnp.asarray(lr), beta=2.0, gamma=0.7,
                   label_smoothing=eps)
  np.testing.assert_allclose(got, want.numpy(), rtol=RTOL, atol=ATOL)
  # CPO's sigmoid / hinge: DPO against a uniform (zero) reference.
  tc, tr = torch.tensor(pc), torch.tensor(pr)
  want, _, _ = CPOTrainer.cpo_loss(_cpo_stub("sigmoid", 0.1, eps), tc, tr)
  got = preference_loss(*_j(pc, pr), kind="cpo", beta=0.1,
                        label_smoothing=eps)
  np.testing.assert_allclose(got, want.numpy(), rtol=RTOL, atol=ATOL)
  want, _, _ = CPOTrainer.cpo_loss(_cpo_stub("hinge", 0.1), tc, tr)
  zeros = jnp.zeros(B)
  got = hinge_dpo_loss(*_j(pc, pr), zeros, zeros, beta=0.1)
  np.testing.assert_allclose(got, want.numpy(), rtol=RTOL, atol=ATOL)


def test_orpo_matches_trl():
  pc, pr, _, _, lc, lr = _pairs(3)
  pc[0] = -1e-3  # average log-prob near 0: log(1 - e^a) near its pole
  stub = types.SimpleNamespace(beta=0.25, accelerator=_Accelerator())
  out = ORPOTrainer.odds_ratio_loss(
      stub, torch.tensor(pc / lc, dtype=torch.float32),
      torch.tensor(pr / lr, dtype=torch.float32))
  got = orpo_loss(*_j(pc, pr), chosen_lengths=jnp.asarray(lc),
                  rejected_lengths=jnp.asarray(lr), beta=0.25)
  # TRL returns beta * log sigma(log-odds) and subtracts it from the NLL.
  np.testing.assert_allclose(got, -out[0].numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("gkd_beta,divergence", [
    (0.0, "kl"), (1.0, "reverse_kl"), (0.5, "js")])
def test_kd_matches_trl_generalized_jsd(gkd_beta, divergence):
  rng = np.random.default_rng(4)
  s = rng.normal(size=(2, 3, 7)).astype(np.float32) * 2
  t = rng.normal(size=(2, 3, 7)).astype(np.float32) * 2
  tau = 1.5
  want = GKDTrainer.generalized_jsd_loss(
      torch.tensor(s), torch.tensor(t), beta=gkd_beta, temperature=tau,
      reduction="none").sum(-1).numpy()
  # jaxkit multiplies by tau^2 (Hinton's convention); GKD does not.
  got = kd_loss(jnp.asarray(s), jnp.asarray(t), temperature=tau,
                divergence=divergence) / tau ** 2
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
