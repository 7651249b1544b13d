"""The experiment sets that ``python -m experiments.reproduce`` runs.

* ``demo``: a curated list of configs (below), run in their full variant
  (every one with ≥ 3 seeds). Chosen to cover the library's areas —
  divergences, preference losses, reweighting, data selection,
  quantization, sparsity and the training stack — with full variants that
  are fast on a 2-core CPU machine, so that the whole list takes under 10
  minutes there even while other jobs load it (the measured times are in the
  comments). Distillation is not in it: its full variants (``kd_digits``,
  ``sinkd_digits``) take about a minute unloaded but several under load.
  Claims that did not hold are in the list as well as claims that did: the
  list was chosen for coverage and speed, not for the answers.
* ``all``: every config file in ``experiments/configs/`` (discovered by
  globbing, so a new config joins it without an edit here).
"""

from __future__ import annotations

import glob
import os

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "configs")

# name -> the area it covers (shown in the report). In the comments: the
# full variant's wall time in seconds (in-process), measured on the shared
# 2-core machine while 4 other jobs ran (load average 8-12); the configs'
# docstrings give the unloaded times, 3-6x lower.
DEMO: dict[str, str] = {
    "divergence_tour": "divergences",                         # 18
    "fdpg_alignment_diversity": "divergences, preference",    # 27
    "fdpo_divergence_diversity": "preference losses",         # 41
    "d2o_noisy_positives": "preference losses",               # 48
    "loss_reweighting_linreg": "reweighting",                 # 19
    "smote_imbalanced": "data selection",                     # 79
    "nupes_heavy_tail": "quantization",                       # 32
    "ptq_granularity_digits": "quantization",                 # 79
    "dsee_digits": "sparsity",                                # 42
    "train_digits_mlp": "training stack (jaxkit.train)",      # 34
}
# Left out for time (loaded full-variant seconds): kd_digits (distillation,
# 302), dsir_text_mixture (selection, 581), madpo_margins (preference, 62),
# lost_vs_lowrank (sparsity, 104).

PRESETS = ("demo", "all")


def discover(config_dir: str = CONFIG_DIR) -> dict[str, str]:
  """Every config in ``config_dir``: ``{name: path}``, sorted by name.

  A config is a ``*.py`` file whose name does not start with ``_``.
  """
  paths = sorted(glob.glob(os.path.join(config_dir, "*.py")))
  return {os.path.basename(p)[:-3]: p for p in paths
          if not os.path.basename(p).startswith("_")}


def names(preset: str, config_dir: str = CONFIG_DIR) -> list[str]:
  """The config names of ``preset`` (``'demo'`` or ``'all'``), in run order.

  Raises:
    ValueError: an unknown preset, or a demo config that does not exist.
  """
  available = discover(config_dir)
  if preset == "all":
    return list(available)
  if preset == "demo":
    missing = [n for n in DEMO if n not in available]
    if missing:
      raise ValueError(f"demo preset names configs that do not exist: "
                       f"{missing} (in {config_dir})")
    return list(DEMO)
  raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
