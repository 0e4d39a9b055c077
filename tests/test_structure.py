"""The architecture rules the developers' guide states, checked on the source (ast; nothing is imported).

(a) no import cycle among crossmodal_demo modules (module- and function-level imports alike);
(b) imports point down the layers config/errors/vectors → ingest → encoders → index → retrieval →
    analysis → app / cli (app and cli never import each other);
(c) no environment read (``os.environ`` / ``os.getenv`` / ``environ[``) outside config.py;
(d) no module over 400 lines (demo_data excluded);
(e) no function-level import of a crossmodal_demo module (function-level imports are for lazy
    loading of heavy third-party libraries only, never to dodge a cycle).
Imports under ``if TYPE_CHECKING:`` are annotations only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "crossmodal_demo"
LAYERS = {"config": 0, "errors": 0, "vectors": 0, "ingest": 1, "encoders": 2, "index": 3, "retrieval": 4,
          "analysis": 5, "app": 6, "cli": 6, "__main__": 6, "demo_data": 6}
TOP = {"app", "cli"}  # the two front ends: each may import every layer below, never the other
MAX_LINES = 400
ENV_ALLOWED = {"crossmodal_demo.config"}
# The one environment write allowed outside config.py: a process default set by an entry point.
ENV_SETDEFAULT_OK = {"TOKENIZERS_PARALLELISM"}

# Known violations in files owned by others, listed explicitly so they are not forgotten; the owner
# empties these. Every other module must pass as it is.
ALLOW_LONG: set[str] = set()
ALLOW_ENV: set[str] = set()
ALLOW_FUNCTION_IMPORTS: set[str] = set()
ALLOW_UPWARD: set[tuple[str, str]] = set()
ALLOW_CYCLE_EDGES: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(name: str) -> list[tuple[str, bool]]:
    """(imported crossmodal_demo module, inside a function?) for every runtime import of module ``name``."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, in_func)
                continue
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, func) for a in child.names if a.name.startswith("crossmodal_demo"))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("crossmodal_demo"):
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    out.append((sub if sub in MODULES else child.module, func))  # type: ignore[arg-type]
            visit(child, func)

    visit(tree, False)
    return [(m, f) for m, f in out if m in MODULES]


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


GRAPH = {m: _imports(m) for m in MODULES}


def test_no_import_cycles() -> None:
    edges = {m: sorted({t for t, _ in deps if t != m and (m, t) not in ALLOW_CYCLE_EDGES}) for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges.get(m, []):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_imports_point_down_the_layers() -> None:
    bad = []
    for m, deps in GRAPH.items():
        lm = _layer(m)
        for t, _ in deps:
            lt = _layer(t)
            if lm is None or lt is None or (m, t) in ALLOW_UPWARD:
                continue
            a, b = m.split(".")[1], t.split(".")[1]
            if lt > lm or (a in TOP and b in TOP and a != b):
                bad.append(f"{m} imports {t}")
    assert not bad, "imports pointing up (or between app and cli):\n" + "\n".join(sorted(bad))


def test_no_function_level_imports_of_the_package() -> None:
    bad = sorted({f"{m} imports {t} inside a function" for m, deps in GRAPH.items() if m not in ALLOW_FUNCTION_IMPORTS for t, f in deps if f})
    assert not bad, "function-level imports of crossmodal_demo modules (import at the top instead):\n" + "\n".join(bad)


def _env_reads(name: str) -> list[str]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    ok_nodes: set[int] = set()
    for node in ast.walk(tree):  # os.environ.setdefault("TOKENIZERS_PARALLELISM", ...) is allowed
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "setdefault"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in ENV_SETDEFAULT_OK
        ):
            ok_nodes.add(id(node.func.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb") and id(node) not in ok_nodes:
            found.append(f"{name}:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in ("environ", "getenv") for a in node.names):
            found.append(f"{name}:{node.lineno} from os import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Name) and node.id == "environ":
            found.append(f"{name}:{node.lineno} environ")
    return found


def test_settings_are_read_in_config_only() -> None:
    bad = [r for m in MODULES if m not in ENV_ALLOWED | ALLOW_ENV for r in _env_reads(m)]
    assert not bad, "environment read outside config.py (add a Config field instead):\n" + "\n".join(bad)


def test_modules_stay_short() -> None:
    long = {
        m: n
        for m, f in MODULES.items()
        if ".demo_data" not in m and m not in ALLOW_LONG and (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_fakes_cover_the_offline_preset() -> None:
    from crossmodal_demo.encoders.offline import OFFLINE
    from tests.fakes import fake_overrides

    fakes = fake_overrides()
    assert set(fakes) == set(OFFLINE.encoders)
    for spec in OFFLINE.specs:
        enc = fakes[spec.name]
        assert (enc.modality, enc.space, enc.dim) == (spec.modality, spec.space, spec.dim)
