"""The packages as a user gets them: the wheel and the sdist are built from this tree
(offline: setuptools from this venv, no build isolation), each installed into a fresh venv
(``--no-deps --no-index``; the dependencies come from this venv's site-packages through a
.pth, so nothing is downloaded), and every console script declared in pyproject.toml runs
``--version`` from outside the source tree. Also: deploy/Dockerfile copies every package the
wheel is built from (the image is not built here: no container engine on the test host)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
PACKAGES = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _run(argv: list[str], cwd: Path, timeout: float = 60.0) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _build(kind: str, out: Path) -> Path:
    """The wheel or the sdist, built from a copy of the tree (no build dir left here)."""
    src = out / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", "*.log", "node_modules"))
    dist = out / "dist"
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
          f"getattr(b, 'build_{kind}')(sys.argv[1])", str(dist)], cwd=src, timeout=90)
    (built,) = dist.iterdir()
    return built


def _fresh_venv(where: Path) -> Path:
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    # this venv's dependencies, but not its .pth files (the editable install of this tree)
    (Path(site.stdout.strip()) / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"])
    return python


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_built_package_installs_and_every_console_script_runs(kind: str, tmp_path: Path):
    built = _build(kind, tmp_path)
    if kind == "wheel":
        names = zipfile.ZipFile(built).namelist()
        for package in PACKAGES:
            assert any(n.startswith(f"{package}/") for n in names), f"{package} not in wheel"
    python = _fresh_venv(tmp_path / "venv")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--no-build-isolation", "--disable-pip-version-check", str(built)],
         cwd=tmp_path, timeout=90)
    away = tmp_path / "elsewhere"  # not the source tree: only the installed files count
    away.mkdir()
    for script in SCRIPTS:
        out = _run([str(python.parent / script), "--version"], cwd=away)
        assert "0." in out or PYPROJECT["project"]["version"] in out, f"{script}: {out}"


def test_dockerfile_copies_every_packaged_package():
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    copied = {line.split()[1] for line in lines
              if line.startswith("COPY ") and "--from" not in line}
    assert [p for p in PACKAGES if p not in copied] == []
    if shutil.which("docker") is None and shutil.which("podman") is None:
        pytest.skip("the image build itself needs a container engine (none on this host)")


def test_mypy_of_a_user_program_outside_the_checkout(tmp_path: Path) -> None:
    """A factory program type-checked against the installed fos_agent from its own
    directory (the package ships py.typed; `make` installs it so mypy can find it)."""
    prog = tmp_path / "press.py"
    prog.write_text(
        "from fos_agent import ItemReq, SyncAgent\n\n\n"
        "def main() -> None:\n"
        "    with SyncAgent('p-1', ItemReq('x', 1), coordinators=['127.0.0.1:1'],\n"
        "                   data_dir='d') as agent:\n"
        "        for inputs in agent.cycles():\n"
        "            agent.emit(inputs, qty=2, attrs={'serial': 'S-1'})\n"
        "            agent.scrap(inputs, 'bad')\n"
        "            agent.emit(inputs, qty='2')  # a type error mypy must see\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir",
         str(tmp_path / "cache"), prog.name], cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    assert "import-not-found" not in result.stdout, result.stdout
    assert 'Argument "qty"' in result.stdout and result.stdout.count("error:") == 1, \
        result.stdout
