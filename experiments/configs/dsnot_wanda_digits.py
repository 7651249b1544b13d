r"""DSnoT vs Wanda on digits: training-free mask refinement at 50 / 60 / 70 %.

Launch (full, 5 seeds, about a minute on 2 CPU cores):

  python -m experiments.main \
      --config=experiments/configs/dsnot_wanda_digits.py \
      --workdir=runs/dsnot_wanda_digits

Quick variant (seconds; what CI runs):

  python -m experiments.main \
      --config=experiments/configs/dsnot_wanda_digits.py:quick \
      --workdir=runs/dsnot_wanda_digits_quick

Arguments after ``:``: ``quick``, ``seeds=N``, ``cycles=N`` (DSnoT
``max_cycles``).

Issue 10, miniature experiment seed_000 E3 (DSnoT, catalog #42).
``sklearn.datasets.load_digits`` (features / 16, fixed 1000 / 797 split).
Per seed a dense ReLU MLP 64 → 128 → 128 → 10 is trained full-batch with
Adam. It is then pruned layer by layer, sequentially (each layer's
calibration inputs are the outputs of the already-pruned layers below, as
Wanda / DSnoT do), with no weight update, at each unstructured sparsity
``s`` ∈ {0.5, 0.6, 0.7} (every kernel, per-output-column comparison groups):

* ``Wanda``: ``unstructured_mask(wanda_scores(W, X), sparsity=s,
  per='column')``;
* ``DSnoT``: the Wanda mask refined by ``jaxkit.sparsity.dsnot`` with the
  paper's rule (``exact_guard=False``, ``max_cycles=50``,
  ``update_threshold=0.1``, ``var_power=1``);
* ``DSnoT (guarded)``: the same with jaxkit's ``exact_guard=True`` (a swap
  must also not raise the exact calibration error).

The quick variant drops the guarded arm. Calibration set: the first 256 training examples. Metrics: the relative
layer reconstruction error ``Σ_l ‖X_l W_l − X_l (W_l ⊙ M_l)‖² / Σ_l ‖X_l
W_l‖²`` on the calibration inputs (``jaxkit.sparsity.reconstruction_error``),
test loss and test accuracy. ``held`` = at every sparsity, DSnoT has a lower
mean reconstruction error **and** a lower mean test loss than Wanda. The
catalog's "gap grows with sparsity" is reported as a check, not part of
``held``. Settings fixed before the first run, not tuned.
"""

from __future__ import annotations

import ml_collections

from experiments import harness


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config; ``arg``: ``quick``, ``seeds=N``, ``cycles=N``."""
  arg = harness.parse_arg(arg, quick=False, seeds=0, cycles=0)
  config = ml_collections.ConfigDict()
  config.name = "dsnot_wanda_digits"
  config.runner = "experiments.dsnot_wanda_digits.run"
  config.quick = arg.quick
  config.seeds = arg.seeds or (2 if arg.quick else 5)
  config.claim = (
      "Dynamic Sparse No Training (training-free prune-and-grow swaps driven "
      "by the expected reconstruction error) lowers the reconstruction error "
      "and the evaluation loss of a Wanda-pruned network, more so at higher "
      "sparsity — Zhang et al., 'Dynamic Sparse No Training: Training-Free "
      "Fine-tuning for Sparse LLMs', ICLR 2024, arXiv:2310.08915 (Wanda: "
      "arXiv:2306.11695).")
  config.task = dict(data_fn="sklearn.datasets.load_digits", train_size=1000,
                     split_seed=0)
  config.hidden = (128, 128)
  config.dense_steps = 20 if arg.quick else 300
  config.learning_rate = 3e-3
  config.calibration_size = 256
  config.sparsities = (0.5, 0.6, 0.7)
  config.dsnot_kw = dict(max_cycles=arg.cycles or (10 if arg.quick else 50),
                         update_threshold=0.1, var_power=1.0)
  config.ce_fn = "optax.softmax_cross_entropy_with_integer_labels"
  config.optimizer_fn = "optax.adam"
  config.wanda_fn = "jaxkit.sparsity.wanda_scores"
  config.mask_fn = "jaxkit.sparsity.unstructured_mask"
  config.dsnot_fn = "jaxkit.sparsity.dsnot"
  config.error_fn = "jaxkit.sparsity.reconstruction_error"
  config.methods = [
      dict(name="Wanda", dsnot=False, exact_guard=False),
      dict(name="DSnoT", dsnot=True, exact_guard=False),
      dict(name="DSnoT (guarded)", dsnot=True, exact_guard=True),
  ][:2 if arg.quick else 3]
  config.arms = [dict(name=f"{m['name']} {int(round(100 * s))}%",
                      method=m["name"], sparsity=s)
                 for s in config.sparsities for m in config.methods]
  config.transfer_guard = "disallow"
  config.compiler_options = dict(xla_backend_optimization_level=0)
  return config
