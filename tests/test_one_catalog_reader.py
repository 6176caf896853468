"""One reader of ``[[node]]`` tables: a bad node gives the same ``FILE:LINE: message``
through ``fosctl apply``'s catalog reader (fos_raft.cli.catalog_file) and through fos-sim's
scenario reader (bench.sim.scenario), whether the nodes are inline or in a catalog file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.sim.events import ScenarioError
from bench.sim.scenario import load_scenario
from fos_raft.cli.catalog_file import CatalogFileError, load_catalog

GOOD = (
    '[[node]]\nid = "saw-1"\naddress = "127.0.0.1:7201"\n'
    'produces = { item = "wood", qty = 3 }\n\n'
)
BAD_NODES = {
    "unknown key": '[[node]]\nid = "p"\naddress = "127.0.0.1:7202"\n'
                   'produces = { item = "frame", qty = 1 }\ncolour = "red"\n',
    "zero qty": '[[node]]\nid = "p"\naddress = "127.0.0.1:7202"\n'
                'produces = { item = "frame", qty = 0 }\n',
    "float capacity": '[[node]]\nid = "p"\naddress = "127.0.0.1:7202"\n'
                      'produces = { item = "frame", qty = 1 }\ncapacity = 1.5\n',
    "requires not a list": '[[node]]\nid = "p"\naddress = "127.0.0.1:7202"\n'
                           'produces = { item = "frame", qty = 1 }\nrequires = "wood"\n',
    "duplicate id": '[[node]]\nid = "saw-1"\naddress = "127.0.0.1:7202"\n'
                    'produces = { item = "wood", qty = 3 }\n',
    "duplicate address": '[[node]]\nid = "p"\naddress = "127.0.0.1:7201"\n'
                         'produces = { item = "frame", qty = 1 }\n',
    "cycle": '[[node]]\nid = "p"\naddress = "127.0.0.1:7202"\n'
             'produces = { item = "frame", qty = 1 }\nrequires = [{ item = "glass", qty = 1 }]\n'
             '\n[[node]]\nid = "q"\naddress = "127.0.0.1:7203"\n'
             'produces = { item = "glass", qty = 1 }\nrequires = [{ item = "frame", qty = 1 }]\n',
}


def _scenario_error(path: Path) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return str(caught.value)


@pytest.mark.parametrize("bad", sorted(BAD_NODES))
def test_a_bad_node_gives_the_same_file_line_error_through_both_readers(
    tmp_path: Path, bad: str
) -> None:
    text = GOOD + BAD_NODES[bad]
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(text)
    with pytest.raises(CatalogFileError) as caught:
        load_catalog(catalog)
    err = caught.value
    assert err.line is not None and err.line > GOOD.count("\n"), str(err)

    inline = tmp_path / "inline.toml"  # the same tables inline, on the same lines
    inline.write_text(text)
    assert _scenario_error(inline) == f"{inline}:{err.line}: {err.message}"

    by_file = tmp_path / "by-file.toml"  # the catalog file named by the scenario
    by_file.write_text('[sim]\ncatalog = "catalog.toml"\n')
    assert _scenario_error(by_file) == str(err)


def test_nodes_may_leave_out_the_address_inline_and_in_catalog_files(tmp_path: Path) -> None:
    """fos-sim gives inline nodes its own ports; a catalog file's node without an address
    waits for its agent to say where it listens (UNKNOWN_ADDRESS until then)."""
    from fos_raft.cli.catalog_file import UNKNOWN_ADDRESS

    text = '[[node]]\nid = "saw-1"\nproduces = { item = "wood", qty = 3 }\n'
    path = tmp_path / "s.toml"
    path.write_text(text + '[[node]]\nid = "saw-2"\nproduces = { item = "wood", qty = 3 }\n')
    scenario = load_scenario(path)
    assert scenario.nodes is not None and [s.node_id for s in scenario.nodes] == ["saw-1", "saw-2"]
    assert all(s.address != UNKNOWN_ADDRESS for s in scenario.nodes)
    path.write_text(text)
    assert [s.address for s in load_catalog(path)] == [UNKNOWN_ADDRESS]


def test_an_event_node_spec_is_checked_by_the_catalog_rules(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GOOD + '[[event]]\nat = 1\naction = "add-node"\nnode = "p"\n'
                    'produces = { item = "frame", qty = 1 }\ncapacity = 1.5\n')
    assert _scenario_error(path) == (
        f"{path} event[0]: node 'p': 'capacity' must be an integer, got a float")
