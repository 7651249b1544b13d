r"""WINA vs TEAL on digits: training-free activation sparsity at 30 / 50 / 65 %.

Launch (full, 5 seeds, well under a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/wina_teal_digits.py \
      --workdir=runs/wina_teal_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/wina_teal_digits.py:quick \
      --workdir=runs/wina_teal_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``.

Issue 10, miniature experiment seed_002 E12 (WINA, catalog #25; TEAL).
``sklearn.datasets.load_digits`` (features / 16, fixed 1000 / 797 split).
Per seed a dense ReLU MLP 64 → 128 → 128 → 10 is trained full-batch with
Adam. At inference, the input of **every** dense layer (pixels included) is
sparsified per example, the network run sequentially (each layer sees the
sparsified network's activations), at each sparsity ``s`` ∈ {0.3, 0.5,
0.65}:

* ``TEAL``: ``jaxkit.sparsity.teal_mask(x, sparsity=s)`` (keep the largest
  ``|x_i|``);
* ``WINA``: ``jaxkit.sparsity.wina_mask(x, W, sparsity=s)`` (keep the
  largest ``|x_i|·‖W_{i,:}‖₂``), no SVD orthogonalisation, the same
  sparsity in every layer (the paper's uniform setting).

Metrics on the test set: layer-output error (mean over the three layers of
``‖(x ⊙ M) W − x W‖² / ‖x W‖²``, ``x`` the layer's input in the sparsified
network), relative logit error vs the dense network, and test accuracy.
``held`` = at every sparsity, WINA's mean layer-output error < TEAL's.
Accuracy is reported as a check. Settings fixed before the first run.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0)
  config = ml_collections.ConfigDict()
  config.name = "wina_teal_digits"
  config.runner = "experiments.wina_teal_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Choosing the active inputs of each layer by |x_i| times the norm of "
      "the weights they multiply (WINA) gives a smaller layer-output error "
      "than choosing by |x_i| alone (TEAL) at the same activation sparsity — "
      "Chen et al., 'WINA: Weight Informed Neuron Activation for "
      "Accelerating Large Language Model Inference', 2025, arXiv:2505.19427 "
      "(TEAL: Liu et al., ICLR 2025, arXiv:2408.14690).")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (128, 128)
  config.dense_steps = 20 if arg.quick else 300
  config.learning_rate = 3e-3
  config.sparsities = (0.3, 0.5, 0.65)
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.teal_fn = "jaxkit.sparsity.teal_mask"
  config.wina_fn = "jaxkit.sparsity.wina_mask"
  config.methods = ("TEAL", "WINA")
  config.arms = [dict(name=f"{m} {int(round(100 * s))}%", method=m,
                      sparsity=s)
                 for s in config.sparsities for m in config.methods]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
