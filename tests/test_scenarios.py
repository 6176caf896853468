"""Scenario transcripts (tests/scenarios/*.txt) run in the simulated factory
(fos_agent.testing.factory.script): each command's output must equal the expected block,
and no expectation may say ``not ok``.

After a deliberate change of behaviour, regenerate the expected blocks with
``FOS_REWRITE_SCENARIOS=1 .venv/bin/python -m pytest tests/test_scenarios.py`` and read
the diff before committing it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from fos_agent.testing.factory.script import run_text

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.txt"))
REWRITE = os.environ.get("FOS_REWRITE_SCENARIOS") == "1"


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 5


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    text = path.read_text()
    actual, problems = run_text(text, random.Random)
    if REWRITE:
        path.write_text(actual)
        problems = [p for p in problems if p.split(": ", 1)[-1].startswith(("not ok", "error"))]
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_a_transcript_replays_exactly() -> None:
    """The same transcript and seed give the same output, line for line."""
    text = SCENARIOS[0].read_text()
    first, again = (run_text(text, random.Random)[0] for _ in range(2))
    assert first == again
