"""The declarative catalog file (TOML): load, validate fully, and write back.

A catalog file lists the stages of a factory as ``[[node]]`` tables (docs/catalog.md).
``fosctl apply`` loads it with :func:`load_catalog`, which checks everything it can before a
single request is sent: TOML syntax, unknown keys, wrong types, each spec on its own
(``NodeSpec.validate``), duplicate ids and addresses, and cycles in the item graph. Errors
carry the file and the line of the offending ``[[node]]`` table or key where tomllib allows
(tomllib reports positions only for syntax errors, so semantic errors are located by a small
scan of the text for table headers and keys).

The one reader of ``[[node]]`` tables: fos-sim's scenario files (bench.sim.scenario) call
:func:`specs_from_tables` for their inline catalog and :func:`spec_from_table` for the node
specs of their events, so a bad ``[[node]]`` gives the same ``FILE:LINE: message`` through
``fosctl apply`` and ``fos-sim --scenario``.

Pure: reads a file or a string, no network, no clock.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fos_raft.model import MAX_QTY, ItemReq, ModelError, NodeSpec, find_item_cycle

NODE_KEYS = ("id", "address", "produces", "requires", "capacity", "target_per_hour")
ITEM_KEYS = ("item", "qty")
_REQUIRED_NODE_KEYS = ("id", "produces")
_ANY_HEADER_RE = re.compile(r"^\s*\[")
_TOML_LINE_RE = re.compile(r"at line (\d+)")
LineOf = Callable[[str | None], int | None]  # key (None: the table itself) -> its line


class CatalogFileError(ValueError):
    """An invalid catalog file. ``str()`` gives ``FILE:LINE: message`` (line when known)."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class TableLocator:
    """Finds the line of the k-th ``[[name]]`` header (``[[node]]`` by default) and of keys
    inside it."""

    lines: tuple[str, ...]
    headers: tuple[int, ...]  # 0-based line index of each [[name]] header, in order

    @classmethod
    def of(cls, text: str, name: str = "node") -> TableLocator:
        header_re = re.compile(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]\s*(#.*)?$")
        lines = tuple(text.splitlines())
        headers = tuple(i for i, ln in enumerate(lines) if header_re.match(ln))
        return cls(lines, headers)

    def node_line(self, index: int) -> int | None:
        return self.headers[index] + 1 if index < len(self.headers) else None

    def key_line(self, index: int, key: str) -> int | None:
        """Line of ``key = ...`` inside the index-th node table, else the table's line."""
        if index >= len(self.headers):
            return None
        start = self.headers[index] + 1
        key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(start, len(self.lines)):
            if _ANY_HEADER_RE.match(self.lines[i]):
                break
            if key_re.match(self.lines[i]):
                return i + 1
        return self.headers[index] + 1

    def line_of(self, index: int) -> LineOf:
        """The lines of the index-th table: of a key, or (None) of its header."""
        return lambda key: self.key_line(index, key) if key else self.node_line(index)


# The address of a catalog node that gives none: where its agent listens is its agent's to
# say (it registers or rejoins with it). ".invalid" never resolves (RFC 2606), and a node
# that has not started is dialled by nobody.
UNKNOWN_ADDRESS = "address-unknown.invalid:1"


def parse_catalog(text: str, path: str = "<catalog>") -> list[NodeSpec]:
    """Parse and fully validate catalog ``text``; return its specs in file order."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE_RE.search(str(exc))
        line = int(match.group(1)) if match else None
        raise CatalogFileError(path, line, f"not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"node"})
    if unknown:
        raise CatalogFileError(
            path, _top_level_line(TableLocator.of(text), unknown[0]),
            f"unknown top-level key {unknown[0]!r}; a catalog has only [[node]] tables",
        )
    return specs_from_tables(doc.get("node", []), text, path, default_address=UNKNOWN_ADDRESS)


def specs_from_tables(
    nodes: Any, text: str, path: str, *, default_address: str | None = None
) -> list[NodeSpec]:
    """Validate the ``[[node]]`` tables ``nodes`` of a TOML document (parsed from ``text``,
    which locates errors) as one catalog: each spec, duplicate ids and addresses, cycles.

    ``default_address``: the address of a table that gives none (fos-sim assigns its own
    ports); None makes ``address`` required. Only given addresses must be unique."""
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        raise CatalogFileError(path, None, "'node' must be an array of tables ([[node]])")
    if not nodes:
        raise CatalogFileError(path, None, "no [[node]] tables: the catalog is empty")
    locator = TableLocator.of(text)

    specs: list[NodeSpec] = []
    first_line_of_id: dict[str, int | None] = {}
    id_of_address: dict[str, str] = {}
    for index, table in enumerate(nodes):
        spec = spec_from_table(table, path, locator.line_of(index),
                               ordinal=f"node #{index + 1}", default_address=default_address)
        line = locator.node_line(index)
        if spec.node_id in first_line_of_id:
            first = first_line_of_id[spec.node_id]
            also = f" (first at line {first})" if first is not None else ""
            raise CatalogFileError(path, line, f"duplicate node id {spec.node_id!r}{also}")
        if "address" in table and spec.address in id_of_address:
            raise CatalogFileError(
                path, locator.key_line(index, "address"),
                f"node {spec.node_id!r}: address {spec.address!r} is already used by node "
                f"{id_of_address[spec.address]!r}; every agent needs its own address",
            )
        first_line_of_id[spec.node_id] = line
        if "address" in table:
            id_of_address[spec.address] = spec.node_id
        specs.append(spec)

    cycle = find_item_cycle(specs)
    if cycle is not None:
        # Point at the first node that closes a link of the cycle.
        index = next(
            i for i, spec in enumerate(specs)
            if spec.produces.item == cycle[0] and cycle[1] in spec.required_items
        )
        raise CatalogFileError(
            path, locator.key_line(index, "requires"), cycle_message(cycle, specs)
        )
    return specs


def load_catalog(path: str | Path) -> list[NodeSpec]:
    """Read and validate the catalog file at ``path`` (see :func:`parse_catalog`)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogFileError(name, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CatalogFileError(name, None, f"not UTF-8 text: {exc.reason}") from None
    return parse_catalog(text, name)


def load_targets(path: str | Path) -> dict[str, float]:
    """Production targets per item (batches per hour): the sum of ``target_per_hour`` over
    the nodes that make it. The file is checked as a catalog first."""
    load_catalog(path)
    doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    targets: dict[str, float] = {}
    for table in doc.get("node", []):
        if "target_per_hour" in table:
            item = table["produces"]["item"] if isinstance(table["produces"], dict) else ""
            targets[item] = targets.get(item, 0.0) + float(table["target_per_hour"])
    return targets


def cycle_message(cycle: Sequence[str], specs: Iterable[NodeSpec]) -> str:
    """Explain an item cycle ``[a, b, a]`` by naming a node behind each link."""
    makers: dict[tuple[str, str], str] = {}
    for spec in specs:
        for req in spec.requires:
            makers.setdefault((spec.produces.item, req.item), spec.node_id)
    links = [
        f"{a} needs {b} (node {makers[(a, b)]!r})"
        for a, b in itertools.pairwise(cycle)
        if (a, b) in makers
    ]
    return f"the item graph has a cycle {' -> '.join(cycle)}: " + ", ".join(links)


def _top_level_line(locator: TableLocator, key: str) -> int | None:
    key_re = re.compile(rf"^\s*(\[+\s*)?{re.escape(key)}\b")
    for i, ln in enumerate(locator.lines):
        if key_re.match(ln):
            return i + 1
    return None


def spec_from_table(
    table: Mapping[str, Any], path: str, line_of: LineOf | None = None, *,
    ordinal: str = "node", default_address: str | None = None,
) -> NodeSpec:
    """One ``[[node]]`` table as a validated NodeSpec, or CatalogFileError ``path:line``
    (``line_of`` finds the line of a key; without it errors carry ``path`` only).
    ``ordinal`` names the table in errors while it has no valid id; ``default_address`` as
    in :func:`specs_from_tables`."""
    def fail(key: str | None, message: str) -> CatalogFileError:
        return CatalogFileError(path, line_of(key) if line_of else None, message)

    if default_address is not None and "address" not in table:
        table = {**table, "address": default_address}
    node_id = table.get("id")
    label = f"node {node_id!r}" if isinstance(node_id, str) and node_id else ordinal
    for key in table:
        if key not in NODE_KEYS:
            raise fail(
                key, f"{label}: unknown key {key!r}; allowed keys: {', '.join(NODE_KEYS)}"
            )
    for key in _REQUIRED_NODE_KEYS:
        if key not in table:
            raise fail(None, f"{label}: missing required key {key!r}")
    target = table.get("target_per_hour", 1)
    if isinstance(target, bool) or not isinstance(target, int | float) or not target > 0:
        raise fail("target_per_hour", f"{label}: 'target_per_hour' must be a positive number "
                   "(finished batches per hour this node should make)")
    for key in ("id", "address"):
        if not isinstance(table[key], str):
            raise fail(key, f"{label}: {key!r} must be a string, got {_type_name(table[key])}")

    produces = _item_req(table["produces"], f"{label} produces", lambda m: fail("produces", m))
    raw_requires = table.get("requires", [])
    if not isinstance(raw_requires, list):
        raise fail(
            "requires",
            f"{label}: 'requires' must be a list of {{ item = \"...\", qty = N }}, "
            f"got {_type_name(raw_requires)}",
        )
    requires = tuple(
        _item_req(r, f"{label} requires[{i}]", lambda m: fail("requires", m))
        for i, r in enumerate(raw_requires)
    )
    capacity = table.get("capacity", 1)
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise fail(
            "capacity", f"{label}: 'capacity' must be an integer, got {_type_name(capacity)}"
        )

    spec = NodeSpec(
        node_id=table["id"],
        address=table["address"],
        produces=produces,
        requires=requires,
        capacity=capacity,
    )
    try:
        spec.validate()
    except ModelError as exc:
        raise fail(_key_named_in(exc.message), exc.message) from None
    return spec


def _key_named_in(message: str) -> str | None:
    """The node key a model error is about (its earliest mention), so the error points at
    that key's line rather than only at the table."""
    rest = re.sub(r"^node '[^']*'", "", message)
    found = [
        (rest.find(word), key)
        for word, key in (
            ("node id", "id"), ("address", "address"), ("capacity", "capacity"),
            ("requires", "requires"), ("required", "requires"), ("produces", "produces"),
        )
        if word in rest
    ]
    return min(found)[1] if found else None


def _item_req(value: Any, where: str, fail: Any) -> ItemReq:
    if not isinstance(value, dict):
        raise fail(f"{where} must be {{ item = \"...\", qty = N }}, got {_type_name(value)}")
    for key in value:
        if key not in ITEM_KEYS:
            raise fail(f"{where}: unknown key {key!r}; allowed keys: item, qty")
    if "item" not in value or "qty" not in value:
        raise fail(f"{where} needs both 'item' and 'qty'")
    item, qty = value["item"], value["qty"]
    if not isinstance(item, str):
        raise fail(f"{where}: 'item' must be a string, got {_type_name(item)}")
    if isinstance(qty, bool) or not isinstance(qty, int):
        raise fail(f"{where}: 'qty' must be an integer, got {_type_name(qty)}")
    if qty > MAX_QTY:  # before the wire's int64 would overflow
        raise fail(f"{where}: 'qty' must be at most {MAX_QTY}, got {qty}")
    return ItemReq(item, qty)


def _type_name(value: Any) -> str:
    names = {
        bool: "a boolean", int: "an integer", float: "a float", str: "a string",
        list: "an array", dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _toml_str(value: str) -> str:
    # JSON string escapes (\", \\, \n, \uXXXX) are valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


def _toml_item(req: ItemReq) -> str:
    return f"{{ item = {_toml_str(req.item)}, qty = {req.qty} }}"


def dump_catalog(specs: Iterable[NodeSpec], header: str = "") -> str:
    """Write specs as a catalog file that :func:`parse_catalog` reads back unchanged."""
    out: list[str] = []
    if header:
        out.extend(f"# {ln}".rstrip() for ln in header.splitlines())
        out.append("")
    for spec in specs:
        requires = ", ".join(_toml_item(r) for r in spec.requires)
        out.append("[[node]]")
        out.append(f"id = {_toml_str(spec.node_id)}")
        out.append(f"address = {_toml_str(spec.address)}")
        out.append(f"produces = {_toml_item(spec.produces)}")
        out.append(f"requires = [{requires}]")
        if spec.capacity != 1:
            out.append(f"capacity = {spec.capacity}")
        out.append("")
    return "\n".join(out)
