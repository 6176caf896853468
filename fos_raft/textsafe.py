"""Escaping of text that came from the cluster before it reaches a terminal, a log line or
a web page. Pure.

Anything a node, an agent or an old journal record supplies (addresses, down reasons,
replica addresses, batch ids) may hold bytes a terminal obeys: ESC starts sequences that
clear the screen or set the window title, C1 codes (U+0080..U+009F) do the same on some
terminals, and the bidi controls reorder what is shown so that one value looks like
another. `escape` replaces each such character by a visible escape (``\\x1b``,
``\\u202e``); every other character, backslash included, is left as it is, so clean text
prints unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["UNSAFE", "escape", "escape_data", "is_clean", "page_json"]

# C0 and DEL, C1, the Arabic letter mark, LRM/RLM, line and paragraph separators, the
# bidi embeddings/overrides/isolates, and lone surrogates (they cannot even be encoded).
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _x(char: str) -> str:
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _u(char: str) -> str:
    # The spelling JSON and TOML basic strings read back as the same character.
    return _SHORT.get(char) or f"\\u{ord(char):04x}"


def escape(text: object, keep: str = "", unicode_style: bool = False) -> str:
    """``text`` (str() of it) with every unsafe character spelt out: ``\\n``, ``\\t``,
    ``\\r``, ``\\xNN`` below U+0100, ``\\uNNNN`` above (``unicode_style``: always ``\\uNNNN``,
    valid inside JSON and TOML strings). ``keep``: unsafe characters to leave alone (e.g.
    ``"\\n"`` for text that is several lines on purpose)."""
    value = text if isinstance(text, str) else str(text)
    spell = _u if unicode_style else _x
    return UNSAFE.sub(lambda m: m.group() if m.group() in keep else spell(m.group()), value)


def is_clean(text: str) -> bool:
    """No unsafe character at all (`escape` would return it unchanged)."""
    return UNSAFE.search(text) is None


def escape_data(value: Any) -> Any:
    """A copy of plain data (dicts, lists, tuples, scalars) with every string escaped,
    keys too; for documents whose strings are shown to a person as they are."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return {escape_data(k): escape_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_data(v) for v in value]
    return value


_HTML_IN_JSON = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
# How json.dumps (ensure_ascii) spells an UNSAFE character; a match may also be a false
# alarm (an escaped backslash before "n", a non-BMP character), which only costs time.
_UNSAFE_IN_JSON = re.compile(
    r"\\(?:[bfnrt]|u(?:00[01]|007f|00[89]|061c|200[ef]|202[89a-e]|206[6-9]|d[89a-f]))")


def page_json(value: Any) -> str:
    """Compact JSON for a page: strings escaped (`escape_data`), ASCII only, and ``<``,
    ``>``, ``&`` as ``\\u003c``-style escapes, so the document holds no markup a
    browser could pick up even if it sniffed it as HTML. Decodes to the escaped data."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    if _UNSAFE_IN_JSON.search(text):  # the common, clean document skips the walk
        text = json.dumps(escape_data(value), separators=(",", ":"), ensure_ascii=True)
    return re.sub("[<>&]", lambda m: _HTML_IN_JSON[m.group()], text)
