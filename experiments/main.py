r"""Runs one experiment config and writes its result to ``--workdir``.

  python -m experiments.main \
      --config=experiments/configs/divergence_tour.py[:quick] \
      --workdir=runs/divergence_tour

``--config`` is an ml_collections config file (``get_config(arg)``; the text
after ``:`` is its argument) and its fields can be overridden from the command
line (``--config.seeds=3``). The config names its runner
(``config.runner``) and the jaxkit functions it uses by dotted name; the
harness resolves them all once at start-up, runs the runner, and writes
``result.json``, ``result.md`` and PNG plots to ``--workdir``
(see ``experiments/harness.py``).
"""

from __future__ import annotations

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from experiments import harness

config_flags.DEFINE_config_file(
    "config", None, "Experiment configuration file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where results are written.")
# Not `flags.mark_flags_as_required`: `jax.config.parse_flags_with_absl()`
# below validates every flag while it parses only jax's, so required flags
# would fail there; `main` checks them instead.

# Adds jax flags to the program.
jax.config.parse_flags_with_absl()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  missing = [f"--{name}" for name in ("config", "workdir")
             if flags.FLAGS[name].value is None]
  if missing:
    raise app.UsageError(f"{' and '.join(missing)} must be given.")
  harness.run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
