"""Imports a script of ``tools/`` (not a package) as a module, once."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_tool(stem: str):
  """``tools/<stem>.py`` as a module, cached in ``sys.modules``."""
  name = f"jaxkit_tools_{stem}"
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "tools" / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]
