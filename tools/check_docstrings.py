r"""Docstring coverage check for jaxkit's public API.

Walks every public function and class of the public modules and lists each one
that breaks a rule. Public means: exported by ``jaxkit.<module>``, i.e. the
names in its ``__all__`` or, for a package without ``__all__``, the names its
``__init__.py`` imports; a sub-module exported that way (``jaxkit.nn.loaders``,
``jaxkit.nn.partitioning``, ``jaxkit.kernels.masks``) contributes its own public
names the same way (``__all__``, else the functions and classes it defines
whose names do not start with ``_``). Data (tuples, dicts, strings) cannot
carry a docstring and is skipped.

The rules (one finding per broken rule and object):

* ``no docstring``: the object has no docstring.
* ``no example``: no ``Example:`` / ``Examples:`` section holding a ``>>>``
  doctest line. (CI runs these doctests with ``pytest --doctest-modules``.)
* ``no references``: a *paper method* has no ``References:`` section. A paper
  method is an object linked to a catalog entry, i.e. its docstring carries a
  catalog tag ``Catalog: seed_000 #2.`` (several entries:
  ``Catalog: seed_000 #48, seed_003 #19.``). Objects of the method modules
  (everything but ``jaxkit.nn``, ``jaxkit.train`` and ``jaxkit.kernels``) that
  cite a paper without a tag are not forced to carry one: many are building
  blocks (``token_log_probs``, ``pack_int4``) shared by several papers.
* ``tag outside references``: a catalog tag that is not inside the
  ``References:`` section (``tools/papers_md.py`` reads tags only from there).
* ``bad tag``: a line starting with ``Catalog:`` that does not parse.

Known gaps live in ``docs/coverage_allowlist.txt``: one ``<qualified name>
<rule> -- <why>`` line each. An allowlisted finding does not fail the check,
but an allowlist entry whose finding is gone does (``stale allowlist``), so
the list can only shrink.

Usage::

  PYTHONPATH=. python tools/check_docstrings.py            # exit 1 on findings
  PYTHONPATH=. python tools/check_docstrings.py --all      # ignore the allowlist
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import pathlib
import re
import sys
import types
from typing import Any, Iterable

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python tools/check_docstrings.py` from a checkout
  sys.path.insert(0, str(REPO))
ALLOWLIST = REPO / "docs" / "coverage_allowlist.txt"

PUBLIC_MODULES = ("divergences", "losses", "reweighting", "selection",
                  "quantization", "sparsity", "kernels", "nn", "train")

RULES = ("no docstring", "no example", "no references",
         "tag outside references", "bad tag")

_SEED = r"seed_\d{3} #\d+"
TAG_RE = re.compile(r"Catalog:\s*(" + _SEED + r"(?:\s*,\s*" + _SEED + r")*)\.?")
_TAG_LINE_RE = re.compile(r"^\s*Catalog:")
_SECTION_RE = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")


@dataclasses.dataclass(frozen=True)
class PublicObject:
  """One public function or class."""
  name: str        # qualified public name, e.g. "jaxkit.losses.dpo_loss"
  module: str      # the public module it is exported from, e.g. "losses"
  obj: Any

  @property
  def doc(self) -> str:
    return inspect.getdoc(self.obj) or ""


def _init_imported_names(module: types.ModuleType) -> list[str]:
  """Names an ``__init__.py`` binds by ``import`` / ``from ... import``."""
  path = getattr(module, "__file__", None)
  if not path:
    return []
  tree = ast.parse(pathlib.Path(path).read_text())
  names = []
  for node in tree.body:
    if isinstance(node, ast.ImportFrom):
      names += [a.asname or a.name for a in node.names]
    elif isinstance(node, ast.Import):
      names += [a.asname or a.name.split(".")[-1] for a in node.names]
  return [n for n in names if not n.startswith("_")]


def exported_names(module: types.ModuleType) -> list[str]:
  """The public names of a module: ``__all__``, else what it imports/defines."""
  if hasattr(module, "__all__"):
    return list(module.__all__)
  if pathlib.Path(module.__file__).name == "__init__.py":
    return _init_imported_names(module)
  return [n for n, v in vars(module).items()
          if not n.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v))
          and getattr(v, "__module__", None) == module.__name__]


def _is_documentable(obj: Any) -> bool:
  if isinstance(obj, types.ModuleType):
    return False
  return callable(obj)


def public_objects(modules: Iterable[str] = PUBLIC_MODULES) -> list[PublicObject]:
  """Every public function and class of ``jaxkit.<module>`` for ``modules``."""
  out = []
  for mod_name in modules:
    module = importlib.import_module(f"jaxkit.{mod_name}")
    for name in exported_names(module):
      obj = getattr(module, name)
      if isinstance(obj, types.ModuleType):
        for sub in exported_names(obj):
          sub_obj = getattr(obj, sub)
          if _is_documentable(sub_obj):
            out.append(PublicObject(f"jaxkit.{mod_name}.{name}.{sub}", mod_name,
                                    sub_obj))
      elif _is_documentable(obj):
        out.append(PublicObject(f"jaxkit.{mod_name}.{name}", mod_name, obj))
  return out


def sections(doc: str) -> dict[str, str]:
  """Google-style sections of a (dedented) docstring: title -> body text.

  A section starts at an unindented ``Title:`` line and runs over the blank
  and indented lines after it.
  """
  result: dict[str, list[str]] = {}
  current = None
  for line in doc.splitlines():
    m = _SECTION_RE.match(line)
    if m and not m.group(1):
      current = m.group(2)
      result.setdefault(current, [])
    elif current is not None and line.strip() and not line[0].isspace():
      current = None
    elif current is not None:
      result[current].append(line)
  return {k: "\n".join(v) for k, v in result.items()}


def catalog_tags(doc: str) -> list[tuple[str, int]]:
  """Catalog entries ``(seed, number)`` named by tags in the References section."""
  refs = sections(doc).get("References", "")
  tags = []
  for m in TAG_RE.finditer(refs):
    for item in re.findall(r"(seed_\d{3}) #(\d+)", m.group(1)):
      tags.append((item[0], int(item[1])))
  return tags


def findings_for(item: PublicObject) -> list[str]:
  """The rules ``item`` breaks (empty when it passes)."""
  doc = item.doc
  if not doc.strip():
    return ["no docstring"]
  out = []
  secs = sections(doc)
  examples = secs.get("Example", "") + secs.get("Examples", "")
  if ">>>" not in examples:
    out.append("no example")
  refs = secs.get("References")
  tag_lines = [l for l in doc.splitlines() if _TAG_LINE_RE.match(l)]
  if any(not TAG_RE.match(l.strip()) for l in tag_lines):
    out.append("bad tag")
  all_tags = TAG_RE.findall(doc)
  if all_tags and refs is None:
    out.append("no references")
  elif all_tags and len(TAG_RE.findall(refs or "")) != len(all_tags):
    out.append("tag outside references")
  return out


def find_all(modules: Iterable[str] = PUBLIC_MODULES) -> list[tuple[str, str]]:
  """All findings ``(qualified name, rule)``, ignoring the allowlist."""
  out = []
  for item in public_objects(modules):
    out += [(item.name, rule) for rule in findings_for(item)]
  return out


def skipped_examples(modules: Iterable[str] = PUBLIC_MODULES) -> list[str]:
  """Objects whose every (non-import) example line is ``# doctest: +SKIP`` (informational).

  They pass the ``no example`` rule (the example is written and was checked
  by hand) but CI does not run them, e.g. because they load a real model.
  """
  out = []
  for item in public_objects(modules):
    secs = sections(item.doc)
    ex = secs.get("Example", "") + secs.get("Examples", "")
    lines = [l for l in ex.splitlines() if l.strip().startswith(">>>")
             and not l.strip()[3:].lstrip().startswith(("import ", "from "))]
    if lines and all("+SKIP" in l for l in lines):
      out.append(item.name)
  return out


def read_allowlist(path: pathlib.Path = ALLOWLIST) -> dict[tuple[str, str], str]:
  """``{(name, rule): why}`` from the allowlist file (``#`` comments)."""
  entries = {}
  if not path.exists():
    return entries
  for lineno, raw in enumerate(path.read_text().splitlines(), 1):
    line = raw.strip()
    if not line or line.startswith("#"):
      continue
    head, sep, why = line.partition(" -- ")
    parts = head.split(maxsplit=1)
    if not sep or not why.strip() or len(parts) != 2 or parts[1] not in RULES:
      raise ValueError(
          f"{path}:{lineno}: expected '<name> <rule> -- <why>' with a rule in "
          f"{RULES}, got {raw!r}")
    entries[(parts[0], parts[1])] = why.strip()
  return entries


def check(modules: Iterable[str] = PUBLIC_MODULES,
          allowlist: pathlib.Path | None = ALLOWLIST) -> list[str]:
  """Problems to report: findings not allowlisted plus stale allowlist entries."""
  modules = tuple(modules)
  found = find_all(modules)
  allowed = read_allowlist(allowlist) if allowlist is not None else {}
  problems = [f"{name}: {rule}" for name, rule in found
              if (name, rule) not in allowed]
  found_set = set(found)
  prefixes = tuple(f"jaxkit.{m}." for m in modules)
  for key in allowed:
    if key[0].startswith(prefixes) and key not in found_set:
      problems.append(f"{key[0]}: stale allowlist ({key[1]} now passes; "
                      f"remove it from {ALLOWLIST.relative_to(REPO)})")
  return problems


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--all", action="store_true",
                      help="report every finding, ignoring the allowlist")
  parser.add_argument("modules", nargs="*", default=list(PUBLIC_MODULES),
                      help="public modules to check (default: all)")
  args = parser.parse_args(argv)
  problems = check(args.modules, None if args.all else ALLOWLIST)
  n = len(public_objects(args.modules))
  for p in problems:
    print(p)
  skipped = skipped_examples(args.modules)
  if skipped:
    print(f"note: {len(skipped)} object(s) have only skipped (+SKIP) examples: "
          + ", ".join(skipped), file=sys.stderr)
  print(f"{len(problems)} problem(s) in {n} public objects.", file=sys.stderr)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
