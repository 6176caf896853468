"""Bounds of what a program may attach to a batch: its quantity, its attributes, and the
reason of a scrap (docs/protocol.md, "Attributes and scrap").

Pure. The protocol checks them when a cycle is produced or scrapped and on every durable
write (fos_agent.protocol.transitions), and the peer layer can check an offered batch with
the same functions before it reaches the protocol, so a peer cannot make a WAL hold more
than a local program could.

Attributes are a small dict of string keys to strings or numbers (a serial number, a
measurement, a quality flag). Stored as a tuple of (key, value) pairs sorted by key, so a
`Batch` stays hashable and two equal dicts give equal batches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from fos_raft.model import MAX_QTY, FosError

AttrValue = str | int | float
Attrs = tuple[tuple[str, AttrValue], ...]

MAX_ATTRS = 32            # keys per batch
MAX_ATTR_KEY_LEN = 64     # characters per key
MAX_ATTR_VALUE_LEN = 256  # characters per string value
MAX_ATTRS_BYTES = 4096    # the whole dict as compact JSON (UTF-8)
MAX_SCRAP_REASON_LEN = 256
MAX_INT_ATTR = 2**63 - 1  # an int value fits the wire's int64

__all__ = [
    "MAX_ATTRS",
    "MAX_ATTRS_BYTES",
    "MAX_ATTR_KEY_LEN",
    "MAX_ATTR_VALUE_LEN",
    "MAX_QTY",
    "MAX_SCRAP_REASON_LEN",
    "AttrValue",
    "Attrs",
    "LimitError",
    "attrs_dict",
    "check_attrs",
    "check_qty",
    "check_reason",
    "checked_output",
    "normalize_attrs",
]


class LimitError(FosError, ValueError):
    """A quantity, attribute set or scrap reason outside its bounds; says which and why."""


def check_qty(qty: object) -> int:
    if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_QTY:
        raise LimitError(f"output quantity must be an integer in 1..{MAX_QTY}, got {qty!r}")
    return qty


def _check_text(what: str, text: str, limit: int) -> None:
    if not text or len(text) > limit:
        raise LimitError(f"{what} must be 1..{limit} characters, got {len(text)}")
    if not text.isprintable():
        raise LimitError(f"{what} {text[:40]!r} holds a control or format character")


def _check_value(key: str, value: object) -> AttrValue:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise LimitError(f"attribute {key!r}: a value is a string or a number, "
                         f"got {type(value).__name__}")
    if isinstance(value, str):
        if len(value) > MAX_ATTR_VALUE_LEN:
            raise LimitError(f"attribute {key!r}: a string value is at most "
                             f"{MAX_ATTR_VALUE_LEN} characters, got {len(value)}")
        if value and not value.isprintable():
            raise LimitError(f"attribute {key!r}: the value holds a control or format "
                             "character")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise LimitError(f"attribute {key!r}: a number must be finite, got {value!r}")
    elif not -MAX_INT_ATTR - 1 <= value <= MAX_INT_ATTR:
        raise LimitError(f"attribute {key!r}: an integer must fit 64 bits")
    return value


def check_attrs(attrs: Attrs) -> Attrs:
    """``attrs`` (sorted pairs) within the bounds, or LimitError."""
    if len(attrs) > MAX_ATTRS:
        raise LimitError(f"at most {MAX_ATTRS} attributes, got {len(attrs)}")
    last = ""
    for i, pair in enumerate(attrs):
        if not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise LimitError(f"attribute {i} is not a (key, value) pair")
        key, value = pair
        _check_text("an attribute key", key, MAX_ATTR_KEY_LEN)
        if i and key <= last:
            raise LimitError("attributes must be sorted by key, each key once")
        last = key
        _check_value(key, value)
    if attrs and len(attrs_json(attrs).encode()) > MAX_ATTRS_BYTES:
        raise LimitError(f"attributes take at most {MAX_ATTRS_BYTES} bytes as JSON")
    return attrs


def normalize_attrs(attrs: Mapping[str, AttrValue] | None) -> Attrs:
    """A program's dict as the sorted, checked pairs a `Batch` carries."""
    if not attrs:
        return ()
    if not isinstance(attrs, Mapping):
        raise LimitError(f"attributes are a dict, got {type(attrs).__name__}")
    for key in attrs:
        if not isinstance(key, str):
            raise LimitError(f"an attribute key is a string, got {key!r}")
    return check_attrs(tuple(sorted(attrs.items())))


def checked_output(qty: object, attrs: Mapping[str, AttrValue] | None
                   ) -> tuple[int | None, Attrs]:
    """A program's ``emit(qty=, attrs=)`` as the protocol takes them, or LimitError."""
    return (None if qty is None else check_qty(qty)), normalize_attrs(attrs)


def attrs_dict(attrs: Attrs) -> dict[str, AttrValue]:
    return dict(attrs)


def attrs_json(attrs: Attrs) -> str:
    """The compact JSON object of ``attrs`` (keys in order): what the bound counts."""
    return json.dumps(dict(attrs), separators=(",", ":"), ensure_ascii=False)


def check_reason(reason: object) -> str:
    if not isinstance(reason, str):
        raise LimitError(f"a scrap reason is a string, got {type(reason).__name__}")
    _check_text("a scrap reason", reason, MAX_SCRAP_REASON_LEN)
    return reason
