"""The TOML catalog file: the shipped example, round trips, and every validation error with
the line it points at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fos_raft.cli.catalog_file import CatalogFileError, dump_catalog, load_catalog, parse_catalog
from fos_raft.model import ItemReq, NodeSpec, find_item_cycle

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "window-factory.toml"
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"

GOOD = """\
# a comment
[[node]]
id = "saw-1"
address = "127.0.0.1:7201"
produces = { item = "wood", qty = 3 }
requires = []

[[node]]
id = "press-1"
address = "127.0.0.1:7202"
produces = { item = "frame", qty = 1 }
requires = [{ item = "wood", qty = 3 }]
capacity = 2
"""


def test_example_is_the_window_chain_with_two_suppliers_per_item():
    specs = load_catalog(EXAMPLE)
    by_item: dict[str, list[NodeSpec]] = {}
    for spec in specs:
        by_item.setdefault(spec.produces.item, []).append(spec)
    assert sorted(by_item) == ["glass", "window", "window_frame", "wood"]
    assert all(len(v) == 2 for v in by_item.values())
    assert {r.item for s in by_item["window"] for r in s.requires} == {"window_frame", "glass"}
    assert {r.item for s in by_item["window_frame"] for r in s.requires} == {"wood"}
    assert all(s.address.startswith("127.0.0.1:72") for s in specs)
    assert find_item_cycle(specs) is None


def test_parse_gives_specs_in_file_order_with_defaults():
    specs = parse_catalog(GOOD)
    assert specs == [
        NodeSpec("saw-1", "127.0.0.1:7201", ItemReq("wood", 3), (), 1),
        NodeSpec("press-1", "127.0.0.1:7202", ItemReq("frame", 1), (ItemReq("wood", 3),), 2),
    ]


def test_requires_may_be_omitted_and_array_of_tables_form_works():
    text = """\
[[node]]
id = "a"
address = "h:1"
[node.produces]
item = "w"
qty = 1

[[node]]
id = "b"
address = "h:2"
produces = { item = "x", qty = 2 }
[[node.requires]]
item = "w"
qty = 4
"""
    a, b = parse_catalog(text)
    assert a.requires == ()
    assert b.requires == (ItemReq("w", 4),)


ids = st.from_regex(r"[a-z][a-z0-9_.\-]{0,12}", fullmatch=True)


@st.composite
def catalogs(draw) -> list[NodeSpec]:
    """Layered catalogs (node i may only require items of earlier layers): acyclic."""
    n = draw(st.integers(1, 12))
    node_ids = draw(st.lists(ids, min_size=n, max_size=n, unique=True))
    items = draw(st.lists(ids, min_size=n, max_size=n))
    specs = []
    for i, node_id in enumerate(node_ids):
        earlier = sorted({items[j] for j in range(i) if items[j] != items[i]})
        # an item made by a later layer must not be required here, or a cycle could form
        earlier = [it for it in earlier if it not in items[i:]]
        chosen = []
        if earlier:
            chosen = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))
        specs.append(
            NodeSpec(
                node_id=node_id,
                address=f"127.0.0.1:{7000 + i}",
                produces=ItemReq(items[i], draw(st.integers(1, 10**6))),
                requires=tuple(ItemReq(it, draw(st.integers(1, 99))) for it in chosen),
                capacity=draw(st.integers(1, 1000)),
            )
        )
    return specs


@settings(max_examples=200 * (50 if DEEP else 1))
@given(catalogs())
def test_dump_then_parse_round_trips(specs):
    assert parse_catalog(dump_catalog(specs, header="exported\nby a test")) == specs


def test_a_node_may_leave_its_address_to_its_agent():
    from fos_raft.cli.catalog_file import UNKNOWN_ADDRESS

    (spec,) = parse_catalog(node(address=None))
    assert spec.address == UNKNOWN_ADDRESS
    two = parse_catalog(node(address=None) + node(id='"b"', address=None))
    assert [s.address for s in two] == [UNKNOWN_ADDRESS] * 2  # no "address already used"


def node(extra: str = "", **fields: str) -> str:
    base = {
        "id": '"a"',
        "address": '"127.0.0.1:1"',
        "produces": '{ item = "w", qty = 1 }',
    }
    base.update(fields)
    body = "\n".join(f"{k} = {v}" for k, v in base.items() if v is not None)
    return f"[[node]]\n{body}\n{extra}"


# (text, expected line, words the message must contain)
BAD = [
    ("[[node]\n", 1, ["not valid TOML"]),
    ("", None, ["empty"]),
    ('title = "x"\n' + node(), 1, ["unknown top-level key 'title'"]),
    ('node = "x"\n', None, ["array of tables"]),
    (node(colour='"red"'), 5, ["unknown key 'colour'", "allowed keys"]),
    (node(produces=None), 1, ["missing required key 'produces'"]),
    (node(id="7"), 2, ["'id' must be a string", "an integer"]),
    (node(produces='"w:1"'), 4, ["produces", "item = "]),
    (node(produces='{ item = "w", qty = 1.5 }'), 4, ["'qty' must be an integer", "a float"]),
    (node(produces='{ item = "w", qty = true }'), 4, ["'qty' must be an integer", "boolean"]),
    (node(produces='{ item = "w", qty = 0 }'), 4, ["positive integer"]),
    (node(produces='{ item = "w", qty = 1000000001 }'), 4, ["'qty' must be at most"]),
    (node(produces='{ item = "w", qty = 99999999999999999999 }'), 4, ["'qty' must be at most"]),
    (node(requires='[{ item = "x", qty = 9223372036854775808 }]'), 5, ["'qty' must be at most"]),
    (node(produces='{ item = "w", count = 1 }'), 4, ["unknown key 'count'"]),
    (node(produces='{ item = "w" }'), 4, ["needs both 'item' and 'qty'"]),
    (node(requires='{ item = "x", qty = 1 }'), 5, ["'requires' must be a list"]),
    (node(requires='[{ item = "x", qty = -2 }]'), 5, ["positive integer"]),
    (node(requires='[{ item = "w", qty = 1 }]'), 5, ["requires its own product"]),
    (node(requires='[{ item = "x", qty = 1 }, { item = "x", qty = 2 }]'), 5, ["twice"]),
    (node(capacity='"2"'), 5, ["'capacity' must be an integer"]),
    (node(capacity="0"), 5, ["capacity must be in"]),
    (node(address='"nowhere"'), 3, ["not host:port"]),
    (node(id='"has space"'), 2, ["may only contain"]),
    (node(id='""'), 2, ["must not be empty"]),
    (node() + "\n" + node(address='"127.0.0.1:2"'), 6, ["duplicate node id 'a'", "line 1"]),
    (node() + "\n" + node(id='"b"'), 8, ["address '127.0.0.1:1' is already used by node 'a'"]),
    (
        node(requires='[{ item = "v", qty = 1 }]')
        + "\n"
        + node(id='"b"', address='"127.0.0.1:2"', produces='{ item = "v", qty = 1 }',
               requires='[{ item = "w", qty = 1 }]'),
        11,  # the `requires` of the node closing the first link (b: v needs w)
        ["cycle v -> w -> v", "v needs w (node 'b')", "w needs v (node 'a')"],
    ),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD)
def test_invalid_catalog_is_refused_with_file_line_and_reason(text, line, words):
    with pytest.raises(CatalogFileError) as info:
        parse_catalog(text, "plant.toml")
    err = info.value
    assert err.path == "plant.toml"
    assert err.line == line, str(err)
    prefix = f"plant.toml:{line}: " if line is not None else "plant.toml: "
    assert str(err).startswith(prefix)
    for word in words:
        assert word in err.message, (word, err.message)


def test_missing_and_non_utf8_files_are_clear_errors(tmp_path):
    with pytest.raises(CatalogFileError, match="cannot read"):
        load_catalog(tmp_path / "absent.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[[node]]")
    with pytest.raises(CatalogFileError, match="not UTF-8"):
        load_catalog(binary)
