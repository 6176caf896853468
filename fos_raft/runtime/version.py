"""The running build: package version, and the git commit when run from a checkout.

Shown by every CLI's ``--version`` and exported as ``fos_build_info{version,commit} 1``.
The commit is asked of git at run time (an installed wheel has no checkout: version only);
it is looked up once, lazily, never on a hot path.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DISTRIBUTION = "factoryos"
SOURCE_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def git_commit() -> str:
    """Short commit of the checkout this code runs from ("-dirty" when modified), or ""."""
    if not (SOURCE_ROOT / ".git").exists():
        return ""
    try:
        run = functools.partial(subprocess.run, cwd=SOURCE_ROOT, capture_output=True,
                                text=True, timeout=5, check=True)
        commit = run(["git", "rev-parse", "--short=12", "HEAD"]).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}-dirty" if commit and dirty else commit


def version_text(prog: str) -> str:
    commit = git_commit()
    return f"{prog} {package_version()}" + (f" (commit {commit})" if commit else "")


class _VersionAction(argparse.Action):
    """Like argparse's "version" action, but git runs only when --version is given."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version (and git commit when known) and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(version_text(parser.prog))
        parser.exit()


def add_version_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_VersionAction)


class BuildInfoCollector(Collector):
    """``fos_build_info{version,commit} 1`` (join it onto other series by instance)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily("fos_build_info", "The running factoryOS build",
                                 labels=["version", "commit"])
        info.add_metric([package_version(), git_commit() or "unknown"], 1)
        yield info
