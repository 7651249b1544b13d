"""The docs site (docs/) builds from the docstrings with no Sphinx warning."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


# CI builds the site as its own step (`make docs`, called by .ci/run, same
# -W flags); `make test-all` runs this test too.
@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
  pytest.importorskip("sphinx")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  # -W turns every warning into an error; --keep-going reports all of them.
  cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E",
         "-b", "html", "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"),
         str(tmp_path / "html")]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, (
      f"sphinx-build failed (rc={proc.returncode}); warnings/errors:\n"
      f"{proc.stderr[-8000:]}")
  for page in ("index", "api/divergences", "api/losses", "api/reweighting",
               "api/selection", "api/quantization", "api/sparsity",
               "api/kernels", "api/nn", "api/train"):
    assert (tmp_path / "html" / f"{page}.html").is_file(), page
  losses = (tmp_path / "html" / "api" / "losses.html").read_text()
  # The generated paper table and the autodoc entries are there.
  assert "Paper methods" in losses
  assert 'id="jaxkit.losses.dpo_loss"' in losses
