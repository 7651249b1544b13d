"""Sphinx configuration of the jaxkit docs site (``make docs``).

Plain Sphinx: autodoc + napoleon (Google-style docstrings) + mathjax. The API
pages are generated from the code by the local extension ``_ext/jaxkit_api.py``
(one directive per public module), so they list exactly what the package
exports. Build with ``sphinx-build -W --keep-going -b html docs <out>``.
"""

from __future__ import annotations

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "jaxkit"
author = "jaxkit authors"
copyright = "2025, jaxkit authors"  # noqa: A001
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "jaxkit_api",
]

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path: list[str] = []
html_theme = "alabaster"

# Google style only; keep the docstrings' own sections.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# ``Attributes:`` as :ivar: fields: autodoc documents the fields themselves.
napoleon_use_ivar = True

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
# Type hints are shown as written; do not try to resolve them to targets.
nitpicky = False
suppress_warnings: list[str] = []
