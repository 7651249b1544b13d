"""Executes every Colab notebook in ``colab/`` offline on CPU; checks the committed files.

Each notebook runs top to bottom in a fresh IPython kernel (``nbclient``) of
*this* interpreter: the test writes its own kernelspec (``sys.executable -m
ipykernel_launcher``) into a temporary directory instead of trusting whatever
``python3`` kernel the machine has registered, so a fresh clone with ``make
test`` runs the notebooks against the checkout's ``.venv``. The kernel gets
``JAX_PLATFORMS=cpu`` and the Hugging Face offline switches; the notebooks'
first cells then only import jaxkit (their ``%pip install`` branch is for
Colab and must never run here — a kernel without network would fail on it).

Also checked: the committed notebooks carry no outputs, execution counts or
widget state, and equal what ``colab/_build.py`` writes (the notebooks are
generated from that script).

Per-notebook wall times (and the slowest cells) are printed; run with ``-s``
to see them. Set ``JAXKIT_NOTEBOOK_OUTPUT_DIR`` to keep the executed copies
(with their outputs and plots) there for inspection.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLAB = ROOT / "colab"
NOTEBOOKS = sorted(COLAB.glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
KERNEL_NAME = "jaxkit-notebook-test"
CELL_TIMEOUT_S = 600

# The environment the kernel runs in: offline, CPU, and XLA's default flags
# (the test session's XLA_FLAGS — 8 host devices, -O0 backend — are not
# inherited: -O0 makes the compute-heavy cells several times slower, and
# notebook 05 asks for its 8 devices itself, as on a CPU Colab runtime).
KERNEL_ENV = {
    "XLA_FLAGS": "",
    "JAX_PLATFORMS": "cpu",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TQDM_DISABLE": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}


def _load_build_script():
  spec = importlib.util.spec_from_file_location("colab_build", COLAB / "_build.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_there_are_five_notebooks():
  assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


def test_notebooks_equal_the_build_script():
  build = _load_build_script()
  assert sorted(build.NOTEBOOKS) == IDS
  for path in NOTEBOOKS:
    assert path.read_text(encoding="utf-8") == build.render(path.stem), (
        f"{path.name} differs from colab/_build.py's output: edit the script and "
        "run `python colab/_build.py`.")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_has_no_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  assert "widgets" not in nb.metadata, f"{path.name}: widget state committed"
  assert nb.cells[0].cell_type == "markdown", "a title cell comes first"
  setup = nb.cells[1]
  assert setup.cell_type == "code" and "import jaxkit" in setup.source
  assert "except ImportError" in setup.source and "%pip install" in setup.source
  for i, cell in enumerate(nb.cells):
    if cell.cell_type != "code":
      continue
    assert cell.outputs == [], f"{path.name} cell {i} has outputs"
    assert cell.execution_count is None, f"{path.name} cell {i} was executed"
    assert "execution" not in cell.metadata, f"{path.name} cell {i}: timings"
    assert "jaxkit._src" not in cell.source, f"{path.name} cell {i}: private API"
    # `experiments/` is not part of the installed package (Colab has no checkout).
    assert "import experiments" not in cell.source and (
        "from experiments" not in cell.source), f"{path.name} cell {i}"


def _kernel_manager(tmp_path: pathlib.Path) -> KernelManager:
  """A kernel manager whose only kernelspec launches this interpreter."""
  spec_dir = tmp_path / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  env = dict(KERNEL_ENV)
  env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
               "{connection_file}"],
      "display_name": "jaxkit test kernel",
      "language": "python",
      "env": env,
  }))
  ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")],
                          ensure_native_kernel=False)
  assert ksm.get_kernel_spec(KERNEL_NAME).argv[0] == sys.executable
  return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)


# The probe cell appended to every executed copy: which interpreter and
# environment the notebook really ran in.
_PROBE = ("import sys, os, jax\n"
          "print(repr((sys.executable, os.environ.get('HF_HUB_OFFLINE'), "
          "jax.default_backend())))")


# Executing the notebooks takes ~4 CPU-minutes, so CI runs it as its own step
# (`make notebooks`, called by .ci/run) rather than inside `make test`.
@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_executes(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  nb.cells.append(nbformat.v4.new_code_cell(_PROBE))
  client = nbclient.NotebookClient(
      nb, km=_kernel_manager(tmp_path), timeout=CELL_TIMEOUT_S,
      startup_timeout=180, kernel_name=KERNEL_NAME, allow_errors=False,
      resources={"metadata": {"path": str(tmp_path)}})
  cell_times = []

  def on_cell_executed(cell, cell_index, execute_reply):
    del execute_reply
    cell_times.append((time.perf_counter() - t_cell[0], cell_index))
    t_cell[0] = time.perf_counter()

  t_cell = [time.perf_counter()]
  client.on_cell_executed = on_cell_executed
  t0 = time.perf_counter()
  client.execute()   # raises CellExecutionError (with the traceback) on error
  wall = time.perf_counter() - t0

  out_dir = os.environ.get("JAXKIT_NOTEBOOK_OUTPUT_DIR")
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    nbformat.write(nb, os.path.join(out_dir, path.name))
  probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
  assert repr((sys.executable, "1", "cpu")) in probe, probe
  slowest = ", ".join(f"cell {i}: {t:.1f}s"
                      for t, i in sorted(cell_times, reverse=True)[:3])
  load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
  print(f"\n{path.name}: {wall:.1f} s wall (load average {load}); {slowest}")
