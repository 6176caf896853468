"""fos-sim's live view: the progress bar has a line of its own and the states are explained."""

from __future__ import annotations

from rich.console import Console

from bench.sim.view import LEGEND, LiveView, NodeRow, Snapshot


def _screen(snap: Snapshot) -> list[str]:
    console = Console(width=120, record=True, force_terminal=False, color_system=None)
    view = LiveView(console)
    view.snap = snap
    console.print(view._render())
    return console.export_text().splitlines()


def test_progress_bar_and_table_header_are_on_separate_lines_and_the_legend_explains():
    snap = Snapshot("demo", 30.0, 60.0, nodes=(
        NodeRow("saw-1", "wood", "alive", True, 3, 4, 1),
        NodeRow("saw-2", "wood", "down?", False, 1, 4, 2),
        NodeRow("frame-1", "frame", "dead", False, 2, 4, 1),
    ))
    lines = _screen(snap)
    bar = next(i for i, line in enumerate(lines) if "━" in line)
    assert "50%" in lines[bar] and "node" not in lines[bar]
    assert lines[bar + 1].split()[:3] == ["node", "item", "state"]
    for state, meaning in LEGEND:
        assert any(line.split()[:1] == [state] and meaning in line for line in lines), state


def test_the_header_names_the_floor_display_when_one_runs():
    snap = Snapshot("demo", 1.0, 60.0, dashboard_url="http://127.0.0.1:8080/")
    assert "floor display: http://127.0.0.1:8080/" in _screen(snap)
    assert not any("floor display" in line for line in _screen(Snapshot("demo", 1.0, 60.0)))
