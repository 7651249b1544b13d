"""Docstring coverage of the public API (tools/check_docstrings.py)."""

from __future__ import annotations

from tests.docs._tools import load_tool


def _checker():
  return load_tool("check_docstrings")


def test_every_public_object_has_docstring_example_and_references():
  problems = _checker().check()
  assert not problems, (
      "Docstring coverage problems (see tools/check_docstrings.py for the "
      "rules; run `PYTHONPATH=. python tools/check_docstrings.py`):\n"
      + "\n".join(problems))


def test_walk_sees_the_public_api():
  c = _checker()
  names = {o.name for o in c.public_objects()}
  # From __all__, from __init__ imports, and from an exported sub-module.
  assert "jaxkit.train.fit" in names
  assert "jaxkit.losses.dpo_loss" in names
  assert "jaxkit.kernels.masks.CausalMask" in names
  assert not any(n.split(".")[-1].startswith("_") for n in names)
  assert len(names) > 300


def _fake(doc):
  return _checker().PublicObject("jaxkit.fake.f", "fake", _Obj(doc))


class _Obj:
  def __init__(self, doc):
    self.__doc__ = doc

  def __call__(self):  # documentable: callable
    pass


def test_rules_on_synthetic_docstrings():
  c = _checker()
  good = ('Summary.\n\nExample:\n  >>> 1 + 1\n  2\n\nReferences:\n'
          '  Someone, A paper, 2024.\n  Catalog: seed_000 #2, seed_003 #19.\n')
  assert c.findings_for(_fake(good)) == []
  assert c.catalog_tags(good) == [("seed_000", 2), ("seed_003", 19)]
  assert c.findings_for(_fake("")) == ["no docstring"]
  assert c.findings_for(_fake("Summary.\n\nExample:\n  1 + 1\n")) == [
      "no example"]
  # A `>>>` outside the Example section does not count.
  assert "no example" in c.findings_for(_fake("Summary.\n\n  >>> 1\n  1\n"))
  tag_outside = ("Summary. Catalog: seed_000 #2.\n\nExamples:\n  >>> 1\n  1\n"
                 "\nReferences:\n  A paper.\n")
  assert c.findings_for(_fake(tag_outside)) == ["tag outside references"]
  no_refs = "Summary.\n\nExample:\n  >>> 1\n  1\n\nCatalog: seed_000 #2.\n"
  assert c.findings_for(_fake(no_refs)) == ["no references"]
  bad = ("Summary.\n\nExample:\n  >>> 1\n  1\n\nReferences:\n"
         "  Catalog: seed 0 #2\n")
  assert c.findings_for(_fake(bad)) == ["bad tag"]


def test_stale_allowlist_entry_fails(tmp_path):
  c = _checker()
  allow = tmp_path / "allow.txt"
  allow.write_text("jaxkit.losses.dpo_loss no example -- pretend gap\n")
  problems = c.check(["losses"], allow)
  assert any("jaxkit.losses.dpo_loss: stale allowlist" in p for p in problems)
