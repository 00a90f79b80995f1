"""The import graph of the indexer package, from its source: packages, arrows, line counts, and cycles.

    python scripts/import_graph.py            # packages with line counts, arrows between them, cycles
    python scripts/import_graph.py --modules  # the same between modules

Every ``import`` counts, at module level or inside a function (a lazy import is still an arrow), except
those under ``if TYPE_CHECKING:`` (annotations only, never executed). Exits 1 when there is a cycle
between packages, an arrow the design forbids (see ``FORBIDDEN``), or a breach of the house rules that
an arrow does not show (see ``rule_breaches``):

- nothing below the face imports ``indexer.index`` (the ``Index``), not even under ``TYPE_CHECKING``:
  a domain takes the parts it uses, and never calls back up;
- only ``config.py``, ``_faults.py`` (the tests' hooks) and the face (``cli/``, ``service/``) read the
  environment (``os.environ``,
  ``os.getenv``; setting one variable for a library, ``os.environ[NAME] = value``, is not a read);
- a model name's scheme (``"local-dir:"``, ``"hf-hub:"``) is spelled only in ``models/spec.py``, which
  parses names.

Files that still break a rule while the house is rebuilt are listed in ``*_ALLOWED_FOR_NOW``; an entry
that no longer breaks it fails too, so that the lists only shrink.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "indexer"

# The design's floors (DESIGN.md): the face on top, then Index, then the domains, then the base.
# Top-level modules count as the package "indexer" (index.py, config.py, errors.py, demo.py, synthetic.py).
FORBIDDEN = {
    ("store", "*"): "store imports nothing above it (errors and config only)",
    ("models", "store"): "models never touch the catalog",
    ("query", "ingest"): "queries never ingest",
    ("media", "*"): "media imports nothing above it (errors only)",
    ("context", "ingest"): "the context sits below the domains",
    ("context", "query"): "the context sits below the domains",
    ("context", "audit"): "the context sits below the domains",
    ("context", "heads"): "the context sits below the domains",
    ("context", "distributed"): "the context sits below the domains",
}
BASE = {"indexer.errors", "indexer.config", "indexer.fileio", "indexer._faults"}  # leaves anyone may import

FACE = ("cli/", "service/", "__main__.py")  # paths relative to indexer/
ENV_READERS = ("config.py", "_faults.py")  # besides the face (_faults: the tests' hooks, read once)
MODEL_NAME_PARSER = "models/spec.py"
MODEL_SCHEMES = ("local-dir:", "hf-hub:")
INDEX_MODULES = {"indexer.index"}  # the facade, above every domain
# Today's exceptions, removed as their owners finish (issue 17); no new entries.
ENV_READ_ALLOWED_FOR_NOW = {
    "distributed/cluster.py",
}
INDEX_IMPORT_ALLOWED_FOR_NOW: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_of(module: str) -> str:
    if module == "indexer.__main__":
        return "cli"  # ``python -m indexer`` is the command line
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (ROOT / parts[1]).is_dir()) else "indexer"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        lines.add(inner.lineno)
    return lines


def imports_of(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("indexer"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("indexer"):
                # "from . import bundled" imports a module of the package, not the package's own code.
                submodules = [a.name for a in node.names
                              if (ROOT.parent / (target.replace(".", "/") + "/" + a.name + ".py")).exists()]
                found.update(f"{target}.{name}" for name in submodules)
                if len(submodules) < len(node.names):
                    found.add(target)
    return found - {module}


def _import_targets(node: ast.AST, module: str, is_package: bool) -> set[str]:
    """The modules an import statement names (``from . import x`` names ``pkg.x`` and ``pkg``)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        return {target} | {f"{target}.{a.name}" for a in node.names}
    return set()


def _env_reads(tree: ast.AST) -> list[int]:
    """Lines that read the environment: any use of ``os.environ`` or ``os.getenv`` but assigning or
    deleting one key (``os.environ[NAME] = value``), and ``from os import environ, getenv``."""
    writes = {id(node.value) for node in ast.walk(tree)
              if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del))}
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv")
                and isinstance(node.value, ast.Name) and node.value.id == "os" and id(node) not in writes):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" \
                and any(a.name in ("environ", "environb", "getenv") for a in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def rule_breaches(path: Path, module: str) -> dict[str, list[str]]:
    """What ``path`` does against the house rules (see the module's docstring), by rule."""
    relative = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(), str(path))
    found: dict[str, list[str]] = defaultdict(list)
    below_face = not relative.startswith(FACE) and (
        "/" in relative or module in BASE)  # the domains and the base; top-level modules sit at Index's height
    if below_face:
        for node in ast.walk(tree):
            targets = _import_targets(node, module, path.name == "__init__.py")
            if targets & INDEX_MODULES or "indexer.Index" in targets:
                found["index"].append(f"{relative}:{node.lineno}: imports the Index")
    if not relative.startswith(FACE) and relative not in ENV_READERS:
        found["env"] += [f"{relative}:{line}: reads the environment" for line in _env_reads(tree)]
    if relative != MODEL_NAME_PARSER:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.startswith(MODEL_SCHEMES):
                found["scheme"].append(f"{relative}:{node.lineno}: spells {node.value.split(':')[0]}: "
                                       f"(ModelSpec's source and folder say it)")
    return found


def check_rules() -> list[str]:
    """The breaches of the house rules outside the allow-lists, and the allow-lists' stale entries."""
    allowed = {"index": INDEX_IMPORT_ALLOWED_FOR_NOW, "env": ENV_READ_ALLOWED_FOR_NOW, "scheme": set()}
    names = {"index": "INDEX_IMPORT_ALLOWED_FOR_NOW", "env": "ENV_READ_ALLOWED_FOR_NOW"}
    bad: list[str] = []
    breaking: dict[str, set[str]] = defaultdict(set)
    for path in sorted(ROOT.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for rule, lines in rule_breaches(path, module_name(path)).items():
            relative = path.relative_to(ROOT).as_posix()
            breaking[rule].add(relative)
            if relative not in allowed[rule]:
                bad += lines
    for rule, name in names.items():
        bad += [f"{name} lists {relative}, which no longer breaks the rule: remove the entry"
                for relative in sorted(allowed[rule] - breaking[rule])]
    return bad


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's smallest form, by depth-first search (graphs here are small)."""
    cycles: set[tuple[str, ...]] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt == path[0]:
                rotation = min(range(len(path)), key=lambda i: path[i:] + path[:i])
                cycles.add(tuple(path[rotation:] + path[:rotation]))
            elif nxt not in path and nxt > path[0]:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return [list(c) for c in sorted(cycles)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", action="store_true", help="the graph between modules instead of packages")
    args = parser.parse_args()
    modules: dict[str, set[str]] = {}
    lines: dict[str, int] = defaultdict(int)
    for path in sorted(ROOT.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = module_name(path)
        modules[name] = imports_of(path, name)
        lines[package_of(name)] += len(path.read_text().splitlines())
    known = set(modules)
    if args.modules:
        graph = {m: {t for t in targets if t in known} for m, targets in modules.items()}
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '-'}")
        cycles = find_cycles(graph)
        print("cycles:", "none" if not cycles else "; ".join(" -> ".join(c + c[:1]) for c in cycles))
        return 1 if cycles else 0
    graph = defaultdict(set)
    for m, targets in modules.items():
        for t in targets:
            if t in known and package_of(t) != package_of(m) and t not in BASE:
                graph[package_of(m)].add(package_of(t))
    packages = sorted(set(lines))
    print("package      lines  imports")
    for p in packages:
        print(f"{p:<10} {lines[p]:>7}  {', '.join(sorted(graph.get(p, ()))) or '-'}")
    print(f"{'total':<10} {sum(lines.values()):>7}")
    cycles = find_cycles(dict(graph))
    print("cycles between packages:", "none" if not cycles else "; ".join(" -> ".join(c + c[:1]) for c in cycles))
    bad = [f"{a} -> {b}: {why}" for (a, b_rule), why in FORBIDDEN.items() for b in graph.get(a, ())
           if b_rule in ("*", b)]
    for line in bad:
        print("forbidden:", line)
    breaches = check_rules()
    for line in breaches:
        print("rule:", line)
    print("house rules (Index imports, environment reads, model-name schemes):",
          "kept" if not breaches else f"{len(breaches)} breaches",
          f"({len(INDEX_IMPORT_ALLOWED_FOR_NOW)} + {len(ENV_READ_ALLOWED_FOR_NOW)} files allowed for now)")
    return 1 if cycles or bad or breaches else 0


if __name__ == "__main__":
    sys.exit(main())
