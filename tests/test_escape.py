"""Cluster text reaching a terminal, a log or the dashboard page is escaped
(fos_raft.textsafe and its users: fosctl's rendering, the console log renderer, the
dashboard's documents and app.js). Pure, except one test that runs app.js under node."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fos_dashboard import view
from fos_dashboard.collector import Collector
from fos_raft.cli import render
from fos_raft.cli.fosctl_commands import Out
from fos_raft.model import ItemReq, NodeSpec
from fos_raft.runtime.logging import configure_logging, get_logger
from fos_raft.textsafe import UNSAFE, escape, escape_data, is_clean, page_json

EVIL = "\x1b]0;owned\x07\x1b[2J"
BIDI = "\u202eevil\u2066\u2069"
SCRIPT = "<script>alert(1)</script>"
UNSAFE_CHARS = ([chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)]
                + [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
                + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"])
clean_text = st.text(st.characters(blacklist_categories=("Cs",)).filter(lambda c: is_clean(c)))


def test_every_listed_control_and_bidi_character_is_unsafe() -> None:
    for char in UNSAFE_CHARS:
        assert not is_clean(char), hex(ord(char))
        assert is_clean(escape(char))


@given(st.text())
def test_no_unsafe_character_survives_escaping(text: str) -> None:
    out = escape(text)
    assert UNSAFE.search(out) is None
    assert escape(out) == out  # idempotent: escaping twice shows the same text
    assert UNSAFE.search(escape(text, unicode_style=True)) is None


@given(clean_text)
def test_printable_text_is_unchanged(text: str) -> None:
    assert escape(text) == text
    assert escape(text, unicode_style=True) == text


def test_escapes_are_spelt_like_python_and_json() -> None:
    assert escape(EVIL) == "\\x1b]0;owned\\x07\\x1b[2J"
    assert escape("a\nb\tc\r") == "a\\nb\\tc\\r"
    assert escape("\u202e\x9b") == "\\u202e\\x9b"
    assert escape("a\nb\x1b", keep="\n") == "a\nb\\x1b"
    # unicode_style reads back as the same characters in JSON (and TOML) strings
    assert json.loads('"' + escape(EVIL + BIDI, unicode_style=True) + '"') == EVIL + BIDI
    assert escape("C:\\path") == "C:\\path"  # backslashes are printable text


@given(st.recursive(st.text() | st.integers() | st.booleans() | st.none(),
                    lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids)))
def test_page_json_holds_no_control_character_and_no_markup(value: object) -> None:
    text = page_json(value)
    assert text.isascii() and all(c >= " " for c in text)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == json.loads(json.dumps(escape_data(value)))


# ---------------------------------------------------------------- fosctl rendering

BAD_SPEC = NodeSpec("stage-1", EVIL + SCRIPT + ":7000", ItemReq("wood", 1))


def test_node_rows_and_dot_escape_an_old_bad_record() -> None:
    views = [render.NodeView(BAD_SPEC, alive=False, down_reason=BIDI + EVIL)]
    rows = render.node_rows(views)
    assert rows[0][1] == escape(BAD_SPEC.address)
    assert all(is_clean(cell) for cell in rows[0])
    dot = render.flow_dot(render.FlowView(1), views)
    assert is_clean(dot.replace("\n", "")) and "\\\\x1b" in dot


@pytest.mark.parametrize("tty", [False, True])
def test_out_prints_escaped_tables_and_lines(
        tty: bool, capsys: pytest.CaptureFixture[str]) -> None:
    out = Out(as_json=False)
    out.tty = tty  # rich tables on a terminal, plain columns otherwise
    out.table(("node", "reason"), [("a", EVIL + "[bold]x[/bold]" + BIDI)], title=EVIL)
    out.line(f"two\nlines {EVIL}")
    printed = capsys.readouterr().out
    assert is_clean(printed.replace("\n", "")), repr(printed)
    assert "\\x1b]0;owned\\x07" in printed and "[bold]x[/bold]" in printed


def test_out_json_is_ascii_and_exact(capsys: pytest.CaptureFixture[str]) -> None:
    Out(as_json=True).json({"address": EVIL + BIDI})
    printed = capsys.readouterr().out
    assert printed.isascii() and is_clean(printed.replace("\n", ""))
    assert json.loads(printed) == {"address": EVIL + BIDI}


# ---------------------------------------------------------------- logs


def test_console_logs_escape_cluster_strings() -> None:
    stream = io.StringIO()
    configure_logging("test", fmt="console", stream=stream)
    try:
        get_logger("t").warning("rejoin " + EVIL, address=EVIL, reason=BIDI)
        import logging

        logging.getLogger("foreign").warning("raw %s", EVIL)
    finally:
        configure_logging("test", fmt="json", stream=io.StringIO())
    text = stream.getvalue()
    assert is_clean(text.replace("\n", "")), repr(text)
    assert text.count("\n") == 2 and "address=\\x1b]0;owned\\x07" in text


# ---------------------------------------------------------------- dashboard


def bad_snapshot() -> view.Snapshot:
    return view.Snapshot(3, (view.NodeRow("stage-1", EVIL + SCRIPT + ":7000", "wood", 1,
                                          alive=False, down_reason=SCRIPT + BIDI + EVIL),),
                         cluster=view.ClusterRow("r\x1b", 1, True, 3, 9,
                                                 ((SCRIPT, EVIL, True, True),)))


def test_dashboard_document_holds_no_control_character_and_no_markup() -> None:
    collector = Collector(client=None)  # type: ignore[arg-type]  # _publish needs no client
    collector._advance(bad_snapshot())
    text = collector.document
    assert text.isascii() and is_clean(text)
    assert "<script" not in text.lower()
    doc = json.loads(text)
    assert doc["nodes"][0]["address"] == escape(EVIL + SCRIPT + ":7000")
    assert SCRIPT in doc["nodes"][0]["address"]  # decoded: app.js escapes it for HTML


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_app_js_escapes_html_and_control_characters() -> None:
    source = (Path(__file__).parent.parent / "fos_dashboard/static/app.js").read_text()
    start, end = source.index("const UNSAFE"), source.index("function ago(")
    probe = (source[start:end] + "process.stdout.write(JSON.stringify([esc(process.argv[1]),"
             " clean(process.argv[1]), esc('plain text: 3 x wood')]));")
    done = subprocess.run(["node", "-e", probe, EVIL + SCRIPT + BIDI], capture_output=True,
                          text=True, timeout=30, check=True)
    html, text, plain = json.loads(done.stdout)
    assert is_clean(html) and is_clean(text) and "<" not in html
    assert html.startswith("\\x1b]0;owned\\x07\\x1b[2J&lt;script&gt;")
    assert text == escape(EVIL + SCRIPT + BIDI)
    assert plain == "plain text: 3 x wood"
