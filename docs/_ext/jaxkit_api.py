"""Sphinx extension: API pages of jaxkit generated from the code.

``.. jaxkit-module:: jaxkit.losses`` expands to

* the module docstring,
* a *Paper methods* table: every public object whose docstring has a
  ``References:`` section, with the first reference and its catalog entries
  (``Catalog: seed_000 #2.`` tags; see ``PAPERS.md``),
* the autodoc entries of every public name, grouped by the sub-module that
  defines it.

Public names come from ``tools/check_docstrings.py`` (``__all__`` or the names
the package's ``__init__.py`` imports), the same walk the coverage check uses,
so a new export shows up here without editing any page.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pathlib
import re
import sys
import types

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_checker():
  name = "jaxkit_tools_check_docstrings"
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.spec_from_file_location(
      name, _ROOT / "tools" / "check_docstrings.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def _first_reference(refs: str) -> str:
  """The first paragraph of a References section, as one RST line."""
  paragraphs, current = [], []
  for line in refs.splitlines():
    if line.strip():
      current.append(line.strip())
    elif current:
      paragraphs.append(current)
      current = []
  if current:
    paragraphs.append(current)
  for para in paragraphs:
    text = " ".join(para)
    if text.startswith("Catalog:"):
      continue
    text = re.sub(r"\s*Catalog:\s*seed_\d{3} #\d+(\s*,\s*seed_\d{3} #\d+)*\.?",
                  "", text)
    # Anonymous links: the same title may be cited by several objects.
    return re.sub(r"`_(?!_)", "`__", text)
  return ""


def _kind(obj) -> str:
  if inspect.isclass(obj):
    return "exception" if issubclass(obj, BaseException) else "class"
  return "function"


def _defining_module(obj, fallback: str) -> str:
  mod = getattr(obj, "__module__", None) or fallback
  return mod if mod.startswith("jaxkit") else fallback


def module_rst(module_name: str) -> list[str]:
  """The RST of one module page body."""
  checker = _load_checker()
  short = module_name.split(".", 1)[1]
  module = importlib.import_module(module_name)
  lines = [f".. automodule:: {module_name}", "   :no-members:", ""]
  objects = checker.public_objects([short])

  rows = []
  for item in objects:
    refs = checker.sections(item.doc).get("References")
    if refs is None:
      continue
    tags = ", ".join(f"{s} #{n}" for s, n in checker.catalog_tags(item.doc))
    rows.append((f":{_role(item.obj)}:`~{item.name}`",
                 _first_reference(refs) or "(see docstring)", tags or "--"))
  lines += ["Paper methods", "-------------", "",
            f"{len(rows)} public objects of ``{module_name}`` cite a paper in "
            "their *References*; the catalog column links them to the paper "
            "catalog (see ``PAPERS.md``).", ""]
  if rows:
    lines += [".. list-table::", "   :header-rows: 1", "   :widths: 25 60 15",
              "", "   * - Object", "     - Reference", "     - Catalog"]
    for name, ref, tags in rows:
      lines += [f"   * - {name}", f"     - {ref}", f"     - {tags}"]
    lines.append("")

  # Exported data (tuples, dicts, ...) first, then objects by sub-module.
  data = [n for n in checker.exported_names(module)
          if not isinstance(getattr(module, n), types.ModuleType)
          and not callable(getattr(module, n))]
  lines += ["API", "---", ""]
  if data:
    lines += ["Constants", "~~~~~~~~~", ""]
    for n in data:
      lines += [f".. py:data:: {module_name}.{n}",
                f"   :value: {_short_repr(getattr(module, n))}", ""]
  groups: dict[str, list] = {}
  for item in objects:
    groups.setdefault(_defining_module(item.obj, module_name), []).append(item)
  for group in sorted(groups):
    title = f"``{group}``"
    lines += [title, "~" * len(title), ""]
    for item in groups[group]:
      directive = {"class": "autoclass", "exception": "autoexception",
                   "function": "autofunction"}[_kind(item.obj)]
      lines.append(f".. {directive}:: {item.name}")
      if directive == "autoclass":
        lines.append("   :members:")
      lines.append("")
  return lines


def _role(obj) -> str:
  return {"class": "class", "exception": "exc", "function": "func"}[_kind(obj)]


def _short_repr(value, limit: int = 120) -> str:
  text = repr(value)
  if len(text) > limit:
    text = text[:limit - 3] + "..."
  return text.replace("`", "'")


class JaxkitModule(SphinxDirective):
  """``.. jaxkit-module:: jaxkit.<module>``: a whole generated module page."""
  required_arguments = 1
  has_content = False
  option_spec = {"debug": directives.flag}

  def run(self):
    lines = module_rst(self.arguments[0])
    source = f"<jaxkit-module {self.arguments[0]}>"
    content = StringList(lines, source=source)
    node = nodes.section()
    node.document = self.state.document
    self.state.nested_parse(content, self.content_offset, node,
                            match_titles=True)
    return node.children


def setup(app):
  app.add_directive("jaxkit-module", JaxkitModule)
  return {"version": "0.1", "parallel_read_safe": True,
          "parallel_write_safe": True}
