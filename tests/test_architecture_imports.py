"""The rooms of the code and the direction of their imports (docs/ARCHITECTURE.md).

Every module of ``lib/``, the app shell ``apps/`` and ``main.py`` belongs to one room; a module
may import its own room and the rooms below it, never one above. Imports inside functions count
as much as those at the top of a file: a circle hidden in a function is still a circle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The room order, top to bottom, written down once: (room, the module prefixes it holds).
ROOMS = (
    ("commands", ("main", "lib.commands")),
    ("app shell", ("apps",)),
    ("configs", ("lib.configs",)),
    ("tasks", ("lib.tasks",)),
    ("server", ("lib.server",)),
    ("training", ("lib.training",)),
    ("cohort", ("lib.cohort",)),
    ("evaluation", ("lib.evaluation",)),
    ("inference", ("lib.inference",)),
    ("models", ("lib.models",)),
    ("data", ("lib.data",)),
    ("annotations", ("lib.annotations",)),
    ("transforms", ("lib.transforms",)),
    ("networks", ("lib.networks",)),
    ("ground", ("lib.errors", "lib.files", "lib.identifiers", "lib.label_aliases", "lib.labels", "lib.options",
                "lib.paths", "lib.settings")),
)
OUTSIDE = ("bench", "tests")  # the product never imports its benchmarks or its tests


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> int | None:
    """Index of the room holding ``module`` (the longest matching prefix), None if none does."""
    best = None
    for index, (_, prefixes) in enumerate(ROOMS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def product_files() -> list[Path]:
    return sorted([*(ROOT / "lib").rglob("*.py"), *(ROOT / "apps").rglob("*.py"), ROOT / "main.py"])


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, top level or inside a function; ``from a
    import b`` gives ``a.b`` (b may be a module), relative imports are made absolute."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def test_every_module_of_the_product_is_in_a_room():
    homeless = [module_name(p) for p in product_files() if room_of(module_name(p)) is None and module_name(p) != "lib"]
    assert not homeless, f"modules in no room (add them to ROOMS): {homeless}"


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    here = room_of(module_name(path))
    wrong = []
    for line, target in imported_modules(path):
        if target.split(".")[0] in OUTSIDE:
            wrong.append(f"line {line}: {target} is outside the product")
            continue
        there = room_of(target)
        if there is not None and here is not None and there < here:
            wrong.append(f"line {line}: {target} ({ROOMS[there][0]}) is above {ROOMS[here][0]}")
    assert not wrong, f"{path.relative_to(ROOT)} imports upward:\n" + "\n".join(wrong)


def test_the_checker_sees_upward_imports_also_inside_functions(tmp_path, monkeypatch):
    """The test above could pass by seeing nothing: a hidden upward import must be found."""
    lib = tmp_path / "lib" / "evaluation"
    lib.mkdir(parents=True)
    (lib / "run.py").write_text("def model_paths():\n    from lib.configs.base import X\n    return X\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imported_modules(lib / "run.py") == [(2, "lib.configs.base.X")]
    with pytest.raises(AssertionError, match="lib.configs.base.X \\(configs\\) is above evaluation"):
        test_imports_point_down(lib / "run.py")


def test_test_modules_have_unique_names():
    """tests/ mirrors lib/ without packages, so pytest imports each test file as a top-level module
    by its file name: two files of one name stop the whole run at collection (CI did, once)."""
    names: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {name: paths for name, paths in names.items() if len(paths) > 1}
