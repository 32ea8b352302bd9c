"""Import hygiene for services/: no import cycles, no private names imported across modules, no service
importing another service.

Every import counts, also those inside functions and under `if TYPE_CHECKING:` (a cycle that is
only dodged by importing late is still a cycle). Reported:

- cycles: strongly connected components of the module graph (a module importing `a.b` depends on
  `a.b` when that is a module, else on `a`);
- private imports: `from services.x import _name`, `import services.x._mod`, and `mod._name`
  where `mod` is a module imported from services/ (dunder names are fine);
- private members used from outside: `obj._name` (obj not self/cls) where no class of the same
  module defines `_name` (e.g. calling another module's `ingestor._mark()`);
- cross-service imports: a module of one service package (services/ingest, classify, router, console)
  importing another service's package, or dev tooling (services/devtools, the `triage` dispatcher
  services/cli.py); and services/common importing any of those. Services meet only through topics and
  services/common/ (as Alertmanager's api/ and dispatch/ share pkg/labels/, silence/, timeinterval/).
  Dev tooling, offline analysis (services/analysis: `triage backtest`) and the dispatcher sit above the
  services and may import them. `CROSS_SERVICE_ALLOWED`
  lists the few exceptions, each with its reason;
- offline code imported by live code: a module outside `OFFLINE` packages (services/classify/training: the
  training and evaluation code) importing them; the live worker must not load it;
- an empty tree: reading no module at all is a failure, not a pass (a wrong ROOT used to check nothing).

Generated protobuf code (services/common/pb/) is skipped.

    python tools/check_imports.py [ROOT]      ROOT: the repository (default) or its services/ folder;
                                              exit status 1 when anything is found
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "services"
GENERATED = ("services/common/pb/",)
SERVICES = ("ingest", "classify", "router", "console")
SHARED = "common"
TOOLING = ("devtools", "cli", "analysis")
OFFLINE = ("services.classify.training",)
# module -> {service package it may import: why}. Remove an entry when its reason is gone.
CROSS_SERVICE_ALLOWED: dict[str, dict[str, str]] = {}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_names(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        if path.relative_to(root).as_posix().startswith(GENERATED):
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def package_root(root: Path) -> Path:
    """The folder that holds services/: ROOT itself, or its parent when ROOT is the services/ folder."""
    if not (root / PACKAGE).is_dir() and root.name == PACKAGE and (root / "__init__.py").is_file():
        return root.parent
    return root


def _top(module: str) -> str:
    """`services.router.tree` -> `router`; `services.cli` -> `cli`; `services` -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else ""


def cross_service_problem(module: str, target: str) -> str | None:
    """Why `module` may not import `target`, or None when it may."""
    own, other = _top(module), _top(target)
    if not other or other == own or other == SHARED:
        return None
    if own not in SERVICES and own != SHARED:  # dev tooling and the dispatcher start and drive the services
        return None
    if other not in SERVICES and other not in TOOLING:
        return None
    allowed = CROSS_SERVICE_ALLOWED.get(module, {})
    if f"{PACKAGE}.{other}" in allowed:
        return None
    where = "services/common" if own == SHARED else f"service {own}"
    return f"{where} imports {PACKAGE}.{other} ({target}): services meet only through topics and services/common"


def offline_problem(module: str, target: str) -> str | None:
    """Why `module` may not import offline code `target`, or None when it may."""
    if _top(module) in TOOLING:
        return None
    for package in OFFLINE:
        inside = target == package or target.startswith(package + ".")
        if inside and not (module == package or module.startswith(package + ".")):
            return f"imports offline code {target}: the live service must not load {package}"
    return None


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path, modules: dict[str, Path],
               ) -> Iterator[tuple[str, int, str | None]]:
    """(imported module, line, imported name or None) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    yield sub, node.lineno, None
                else:
                    yield base, node.lineno, alias.name


def check(root: Path = REPO) -> list[str]:
    root = package_root(root)
    modules = module_names(root)
    if not modules:
        return [f"no modules read under {root / PACKAGE}: give the repository or its {PACKAGE}/ folder"]
    graph: dict[str, set[str]] = {m: set() for m in modules}
    problems: list[str] = []
    for allowed in sorted(set(CROSS_SERVICE_ALLOWED) - set(modules)):
        if root.resolve() == REPO:  # (a test's small tree holds none of them)
            problems.append(f"CROSS_SERVICE_ALLOWED names {allowed}, which is not a module: remove or rename it")
    for module, path in modules.items():
        rel = path.relative_to(root)
        module_aliases: dict[str, str] = {}
        for target, line, name in imports_of(module, path, modules):
            if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                continue
            if any(_private(part) for part in target.split(".")):
                problems.append(f"{rel}:{line}: imports private module {target}")
            if name is not None and name != "*" and _private(name):
                problems.append(f"{rel}:{line}: imports private name {target}.{name}")
            if target in modules and target != module:
                graph[module].add(target)
            crossing = cross_service_problem(module, target) or offline_problem(module, target)
            if crossing:
                problems.append(f"{rel}:{line}: {crossing}")
        # `mod._name` where `mod` is a services module bound in this file.
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules:
                        module_aliases[alias.asname or alias.name] = sub
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in modules:
                        module_aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in module_aliases and module_aliases[node.value.id] != module):
                problems.append(f"{rel}:{node.lineno}: uses private name "
                                f"{module_aliases[node.value.id]}.{node.attr}")
        own = _private_members(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id not in ("self", "cls") and node.value.id not in module_aliases
                    and node.attr not in own):
                problems.append(f"{rel}:{node.lineno}: uses private member {ast.unparse(node)} "
                                "defined in another module")
    for scc in strongly_connected(graph):
        if len(scc) > 1:
            problems.append("import cycle: " + " <-> ".join(sorted(scc)))
    return list(dict.fromkeys(problems))  # two names from one module on one line: one report


def _private_members(tree: ast.Module) -> set[str]:
    """Private names this module's classes define: methods, class attributes, `self._x = ...`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in ast.walk(node):
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.Name) and isinstance(item.ctx, ast.Store):
                    names.add(item.id)
                elif isinstance(item, ast.Attribute) and isinstance(item.ctx, ast.Store):
                    names.add(item.attr)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
    return {n for n in names if _private(n)}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (module graphs can be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    scc.append(member)
                    if member == node:
                        break
                out.append(scc)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = package_root(Path(args[0]).resolve()) if args else REPO
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"check_imports: {len(problems)} problem(s) in {PACKAGE}/", file=sys.stderr)
        return 1
    print(f"check_imports: {len(module_names(root))} modules, no import cycles, no private cross-module imports, "
          "no cross-service imports")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
