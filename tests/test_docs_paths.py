"""README.md and docs/ name only things that exist: file paths, module files, ``python -m``
entry points and dotted names of factoryOS modules (and their attributes). Keeps the docs in
step with the layout (issue 9). Static: nothing is run, modules are only imported."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_DIRS = ("fos_raft", "fos_agent", "bench", "scripts", "examples", "tests", "fos_pb")

PATH_RE = re.compile(r"(?<![\w/.$~-])((?:\.\./|\./)?(?:[\w.-]+/)+[\w.-]+\.(?:py|md|toml|proto))\b")
BARE_PY_RE = re.compile(r"(?<![\w/.-])([a-z_][\w]*\.py)\b")
RUN_MODULE_RE = re.compile(r"python -m ([\w.]+)")
DOTTED_RE = re.compile(r"\b((?:fos_raft|fos_agent|bench|fos_pb)(?:\.\w+)+)")

MODULE_FILES = {p.name for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")}
OTHER_PROJECTS_FILES = {"_state.py"}  # h11's, the model of fos_agent.protocol's layout


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is a module, not a package
        return False


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_paths_exist(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted({
        p for p in PATH_RE.findall(text)
        if not (doc.parent / p).exists() and not (ROOT / p).exists()
    })
    assert missing == [], f"{doc.name} names paths that do not exist: {missing}"
    unknown = sorted(set(BARE_PY_RE.findall(text)) - MODULE_FILES - OTHER_PROJECTS_FILES)
    assert unknown == [], f"{doc.name} names module files that do not exist: {unknown}"


@pytest.mark.parametrize("doc", DOCS, ids=_ids(DOCS))
def test_python_m_entry_points_and_dotted_names_exist(doc: Path) -> None:
    text = doc.read_text()
    bad = [m for m in sorted(set(RUN_MODULE_RE.findall(text)))
           if m != "pytest" and not _is_module(m)]
    assert bad == [], f"{doc.name}: python -m of modules that do not exist: {bad}"
    for name in sorted(set(DOTTED_RE.findall(text))):
        parts = name.split(".")
        # the longest prefix that is a module; at most two attributes (Class.method) after it
        for i in range(len(parts), 0, -1):
            if _is_module(".".join(parts[:i])):
                break
        rest = parts[i:]
        assert len(rest) <= 2, f"{doc.name}: {name} is not a module or a name in one"
        obj = importlib.import_module(".".join(parts[:i]))
        for attr in rest:
            assert hasattr(obj, attr), f"{doc.name}: {name}: no {attr!r}"
            obj = getattr(obj, attr)
