"""PAPERS.md is generated from the code and must be current."""

from __future__ import annotations

import functools

import pytest

from tests.docs._tools import ROOT
from tests.docs._tools import load_tool

# One xdist worker renders PAPERS.md once (``_rendered`` is cached per
# process; rendering imports and walks every public object, ~20 s).
pytestmark = pytest.mark.xdist_group("papers_md")


def _papers_md():
  return load_tool("papers_md")


@functools.lru_cache(maxsize=None)
def _rendered() -> str:
  return _papers_md().render()


def test_papers_md_is_current():
  expected = _rendered()
  path = ROOT / "PAPERS.md"
  current = path.read_text() if path.exists() else ""
  assert current == expected, (
      "PAPERS.md is not current (a docstring `Catalog:` tag, a test, an "
      "experiment config or docs/papers_status.tsv changed); regenerate it "
      "with `python tools/papers_md.py` and commit it.")


def test_catalog_index_is_complete():
  entries = _papers_md().read_catalog()
  counts = {}
  for e in entries:
    counts[e.seed] = counts.get(e.seed, 0) + 1
    assert e.priority in ("core", "secondary", "out-of-scope"), e
    assert e.title and e.note, e
  # Entries per catalog page (58 + 51 + 81 + 32), numbered 1..n without gaps.
  assert counts == {"seed_000": 58, "seed_001": 51, "seed_002": 81,
                    "seed_003": 32}
  for seed, n in counts.items():
    assert sorted(e.num for e in entries if e.seed == seed) == list(
        range(1, n + 1))


def test_every_tag_names_a_catalog_entry_and_is_rendered():
  m = _papers_md()
  known = {e.key for e in m.read_catalog()}
  impl = m.implementations()
  assert impl, "no `Catalog:` tags found in the docstrings"
  assert set(impl) <= known
  text = _rendered()
  for names in impl.values():
    for name in names:
      assert f"`{name}`" in text


def test_refresh_reproduces_committed_index(tmp_path):
  m = _papers_md()
  papers = m.DEFAULT_PAPERS_DIR
  if not (papers / "seed_000.md").exists():
    pytest.skip(f"catalogs not available at {papers}")
  out = tmp_path / "catalog_index.tsv"
  m.refresh_catalog(papers, out)
  assert out.read_text() == m.CATALOG_TSV.read_text()
