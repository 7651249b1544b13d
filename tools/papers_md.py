r"""Generates ``PAPERS.md``: every catalog paper -> code, tests, experiments.

The paper catalogs (``../shared/papers/seed_00{0,1,2,3}.md``) are not in the
repository, so their index is copied into ``docs/catalog_index.tsv`` by
``--refresh-catalog`` and committed; the generator reads only that file. For
``seed_000`` and ``seed_003`` the rows come from the catalog's *Index* table;
``seed_001`` and ``seed_002`` have no Index table, so their rows come from the
entry headers (``### N. Title — category``) and each entry's *Category* and
*Priority* lines. The ``note`` column keeps each entry's *Priority* line (the
reason an entry is out of scope).

For each catalog entry the table lists

* the jaxkit functions that implement it: every public object (the walk of
  ``tools/check_docstrings.py``) whose docstring's ``References:`` section
  carries the tag ``Catalog: seed_000 #2.``;
* the tests that check it: ``tests/**/*_test.py`` files that name one of those
  functions (as a whole word);
* the experiments that reproduce it: ``experiments/configs/*.py`` files that
  name one of the functions (bare or dotted, e.g. ``losses.dpo_loss``) or the
  catalog id (``seed_000 #2`` / ``seed_000#2``);
* or, with no implementation, why: the catalog's reason for entries whose
  priority is out-of-scope, else the hand-written reason in
  ``docs/papers_status.tsv`` (default ``not implemented yet``).

Usage::

  PYTHONPATH=. python tools/papers_md.py                    # writes PAPERS.md
  PYTHONPATH=. python tools/papers_md.py --check            # exit 1 if stale
  PYTHONPATH=. python tools/papers_md.py --refresh-catalog [--papers-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python tools/papers_md.py` from a checkout
  sys.path.insert(0, str(REPO))
CATALOG_TSV = REPO / "docs" / "catalog_index.tsv"
STATUS_TSV = REPO / "docs" / "papers_status.tsv"
PAPERS_MD = REPO / "PAPERS.md"
DEFAULT_PAPERS_DIR = REPO.parent / "shared" / "papers"
SEEDS = ("seed_000", "seed_001", "seed_002", "seed_003")
CATALOG_FIELDS = ("seed", "num", "title", "category", "priority", "note")
REGENERATE = "python tools/papers_md.py"


# ----------------------------------------------------------------------------
# Catalog parsing (--refresh-catalog).
# ----------------------------------------------------------------------------


def _clean(text: str) -> str:
  text = re.sub(r"\*\*|`", "", text)
  return re.sub(r"\s+", " ", text).strip().replace("\t", " ")


def normalize_priority(text: str) -> str:
  """``core`` / ``secondary`` / ``out-of-scope``: the first one named."""
  low = text.lower()
  found = [(low.find(p), p) for p in ("out-of-scope", "secondary", "core")
           if p in low]
  if not found:
    raise ValueError(f"no priority in {text!r}")
  return min(found)[1]


def _entry_sections(lines: list[str]) -> dict[int, list[str]]:
  """``{number: lines}`` of the ``### N. ...`` entries of the catalog body."""
  out: dict[int, list[str]] = {}
  current = None
  started = False
  for line in lines:
    m = re.match(r"^### (\d+)\. ", line)
    if m:
      started = True
      current = int(m.group(1))
      out[current] = [line]
      continue
    if started and line.startswith("## "):
      break  # the entries end at the next top-level section
    if current is not None:
      out[current].append(line)
  return out


def _field(entry: list[str], name: str) -> str:
  """The text of a ``- **Name:** ...`` bullet, with its continuation lines."""
  for i, line in enumerate(entry):
    m = re.match(r"^- \*\*" + name + r"(?::\*\*|\*\*:)\s*(.*)$", line)
    if m:
      parts = [m.group(1)]
      for cont in entry[i + 1:]:
        if not cont.strip() or not cont[0].isspace():
          break
        parts.append(cont)
      return _clean(" ".join(parts))
  return ""


def parse_catalog(path: pathlib.Path) -> list[dict[str, str]]:
  """Rows ``CATALOG_FIELDS`` of one catalog file."""
  seed = path.stem
  lines = path.read_text().splitlines()
  entries = _entry_sections(lines)
  rows = []
  index = []
  in_index = False
  for line in lines:
    if line.strip() == "## Index":
      in_index = True
      continue
    if in_index and line.startswith("## "):
      break
    m = re.match(r"^\|\s*(\d+)\s*\|(.*)\|(.*)\|(.*)\|\s*$", line)
    if in_index and m:
      index.append((int(m.group(1)), _clean(m.group(2)), _clean(m.group(3)),
                    _clean(m.group(4))))
  if index:
    for num, title, category, priority in index:
      note = _field(entries.get(num, []), "Priority")
      rows.append(dict(seed=seed, num=str(num), title=title,
                       category=category,
                       priority=normalize_priority(priority),
                       note=note or priority))
  else:
    for num, entry in sorted(entries.items()):
      header = _clean(re.sub(r"^### \d+\.\s*", "", entry[0]))
      category = _field(entry, "Category")
      title = header
      if not category and " — " in header:
        title, category = header.rsplit(" — ", 1)
      note = _field(entry, "Priority")
      rows.append(dict(seed=seed, num=str(num), title=title.strip(),
                       category=category.strip(),
                       priority=normalize_priority(note), note=note))
  if not rows:
    raise ValueError(f"{path}: no Index rows and no entries found.")
  return rows


def refresh_catalog(papers_dir: pathlib.Path,
                    out: pathlib.Path = CATALOG_TSV) -> int:
  rows = []
  for seed in SEEDS:
    rows += parse_catalog(papers_dir / f"{seed}.md")
  lines = ["\t".join(CATALOG_FIELDS)]
  lines += ["\t".join(r[f] for f in CATALOG_FIELDS) for r in rows]
  out.write_text("\n".join(lines) + "\n")
  return len(rows)


# ----------------------------------------------------------------------------
# Reading the committed data.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Entry:
  seed: str
  num: int
  title: str
  category: str
  priority: str
  note: str

  @property
  def key(self) -> tuple[str, int]:
    return (self.seed, self.num)

  @property
  def label(self) -> str:
    return f"{self.seed} #{self.num}"


def read_catalog(path: pathlib.Path = CATALOG_TSV) -> list[Entry]:
  lines = path.read_text().splitlines()
  header = tuple(lines[0].split("\t"))
  if header != CATALOG_FIELDS:
    raise ValueError(f"{path}: header {header} != {CATALOG_FIELDS}")
  out = []
  for line in lines[1:]:
    r = dict(zip(CATALOG_FIELDS, line.split("\t")))
    out.append(Entry(r["seed"], int(r["num"]), r["title"], r["category"],
                     r["priority"], r["note"]))
  return out


def read_status(path: pathlib.Path = STATUS_TSV) -> dict[tuple[str, int], str]:
  """``{(seed, num): reason}`` from ``docs/papers_status.tsv`` (``#`` comments)."""
  out = {}
  if not path.exists():
    return out
  for lineno, raw in enumerate(path.read_text().splitlines(), 1):
    if not raw.strip() or raw.startswith("#"):
      continue
    parts = raw.split("\t")
    if len(parts) != 3 or not re.fullmatch(r"seed_\d{3}", parts[0]):
      raise ValueError(f"{path}:{lineno}: expected 'seed<TAB>num<TAB>reason', "
                       f"got {raw!r}")
    out[(parts[0], int(parts[1]))] = parts[2].strip()
  return out


def _checker():
  name = "jaxkit_tools_check_docstrings"
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(
        name, REPO / "tools" / "check_docstrings.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]


def implementations() -> dict[tuple[str, int], list[str]]:
  """``{(seed, num): [qualified public names]}`` from the docstring tags."""
  checker = _checker()
  out: dict[tuple[str, int], list[str]] = {}
  for item in checker.public_objects():
    for tag in checker.catalog_tags(item.doc):
      names = out.setdefault(tag, [])
      if item.name not in names:
        names.append(item.name)
  return out


@functools.lru_cache(maxsize=None)
def _text(path: pathlib.Path) -> str:
  return path.read_text(errors="replace")


@functools.lru_cache(maxsize=None)
def _word_re(name: str) -> re.Pattern:
  # A whole word; ``losses.kd_loss`` matches ``kd_loss``, ``sinkhorn_kd_loss``
  # does not.
  return re.compile(r"(?<!\w)" + re.escape(name) + r"(?!\w)")


def _scan(paths: list[pathlib.Path], names: list[str],
          entry: Entry | None = None) -> list[str]:
  short = sorted({n.rsplit(".", 1)[1] for n in names})
  pats = [_word_re(s) for s in short]
  if entry is not None:
    pats.append(re.compile(re.escape(entry.seed) + r"\s*#\s*" +
                           str(entry.num) + r"(?!\d)"))
  hits = []
  for path in paths:
    text = _text(path)
    if any(p.search(text) for p in pats):
      hits.append(path.relative_to(REPO).as_posix())
  return hits


def test_files() -> list[pathlib.Path]:
  return sorted(p for p in (REPO / "tests").rglob("*_test.py")
                if "docs" not in p.relative_to(REPO / "tests").parts[:1])


def experiment_configs() -> list[pathlib.Path]:
  return sorted(p for p in (REPO / "experiments" / "configs").glob("*.py")
                if p.name != "__init__.py")


_RUNNER_RE = re.compile(r"""runner\s*=\s*["']experiments\.([\w.]+)\.\w+["']""")


def _scan_experiments(configs: list[pathlib.Path], names: list[str],
                      entry: Entry) -> list[str]:
  """Configs whose text, or whose runner module's text, names the entry.

  A config names it with the catalog id, or with one of the functions (bare
  or dotted); its runner (``config.runner = "experiments.<module>.run"``) is
  the code that calls the functions, so it is read too.
  """
  hits = []
  for config in configs:
    paths = [config]
    for module in _RUNNER_RE.findall(_text(config)):
      runner = REPO / "experiments" / (module.replace(".", "/") + ".py")
      if runner.is_file():
        paths.append(runner)
    if _scan(paths, names, entry):
      hits.append(config.relative_to(REPO).as_posix())
  return hits


# ----------------------------------------------------------------------------
# Rendering.
# ----------------------------------------------------------------------------


def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def _code_list(items: list[str]) -> str:
  return "<br>".join(f"`{i}`" for i in items) if items else "—"


def out_of_scope_reason(entry: Entry) -> str:
  note = re.sub(r"^out-of-scope\s*[—:.,;-]*\s*", "", entry.note,
                flags=re.IGNORECASE).strip(" .;—-")
  reason = note or f"category: {entry.category}"
  return f"out of scope (catalog): {reason}"


def render() -> str:
  catalog = read_catalog()
  status = read_status()
  impl = implementations()
  tests = test_files()
  configs = experiment_configs()
  known = {e.key for e in catalog}
  unknown_tags = sorted(set(impl) - known)
  if unknown_tags:
    raise ValueError("docstring catalog tags name no catalog entry: "
                     + ", ".join(f"{s} #{n}" for s, n in unknown_tags))
  stale_status = sorted(k for k in status if k not in known or k in impl)
  if stale_status:
    raise ValueError(
        f"{STATUS_TSV.relative_to(REPO)} lists entries that are implemented "
        "or not in the catalog (remove them): "
        + ", ".join(f"{s} #{n}" for s, n in stale_status))

  rows = []
  counts = dict(entries=len(catalog), implemented=0, tested=0, experiment=0,
                out_of_scope=0, missing=0)
  for e in catalog:
    names = impl.get(e.key, [])
    t = _scan(tests, names) if names else []
    x = _scan_experiments(configs, names, e)
    if names:
      counts["implemented"] += 1
      counts["tested"] += bool(t)
      counts["experiment"] += bool(x)
      state = "implemented"
      if e.priority == "out-of-scope":
        state += " (catalog: out-of-scope)"
    elif e.priority == "out-of-scope":
      counts["out_of_scope"] += 1
      state = out_of_scope_reason(e)
    else:
      counts["missing"] += 1
      state = status.get(e.key, "not implemented yet")
      state = f"missing ({e.priority}): {state}"
    rows.append((e, names, t, x, state))

  out = [
      "# Papers → code",
      "",
      f"<!-- Generated by `{REGENERATE}` from docs/catalog_index.tsv, "
      "docs/papers_status.tsv, the `Catalog:` tags in the docstrings, tests/ "
      "and experiments/configs/. Do not edit by hand. -->",
      "",
      "Every paper of the four catalogs (`seed_000`–`seed_003`), the public "
      "jaxkit functions that implement it (docstring tag "
      "`Catalog: seed_00N #k.` in *References*), the test files that name "
      "those functions, the experiment configs that name them or the catalog "
      "id (in the config or in its runner module), or why nothing implements "
      "it.",
      "",
      "## Summary",
      "",
      "| | count |",
      "|---|---:|",
      f"| catalog entries | {counts['entries']} |",
      f"| implemented | {counts['implemented']} |",
      f"| implemented and tested | {counts['tested']} |",
      f"| implemented with an experiment | {counts['experiment']} |",
      f"| out of scope (catalog priority) | {counts['out_of_scope']} |",
      f"| missing (in scope, not implemented) | {counts['missing']} |",
      "",
  ]
  for seed in SEEDS:
    out += [f"## {seed}", "",
            "| # | paper | priority | jaxkit | tests | experiments | status |",
            "|---:|---|---|---|---|---|---|"]
    for e, names, t, x, state in rows:
      if e.seed != seed:
        continue
      out.append(
          f"| {e.num} | {_cell(e.title)} | {e.priority} | "
          f"{_code_list(names)} | {_code_list(t)} | {_code_list(x)} | "
          f"{_cell(state)} |")
    out.append("")
  return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--refresh-catalog", action="store_true",
                      help="re-read the catalogs into docs/catalog_index.tsv")
  parser.add_argument("--papers-dir", type=pathlib.Path,
                      default=DEFAULT_PAPERS_DIR)
  parser.add_argument("--check", action="store_true",
                      help="exit 1 if PAPERS.md is not current")
  args = parser.parse_args(argv)
  if args.refresh_catalog:
    n = refresh_catalog(args.papers_dir)
    print(f"wrote {n} catalog rows to {CATALOG_TSV.relative_to(REPO)}")
    return 0
  text = render()
  if args.check:
    current = PAPERS_MD.read_text() if PAPERS_MD.exists() else ""
    if current != text:
      print(f"PAPERS.md is not current; regenerate it with `{REGENERATE}`.",
            file=sys.stderr)
      return 1
    return 0
  PAPERS_MD.write_text(text)
  print(f"wrote {PAPERS_MD.relative_to(REPO)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
