"""The first product's critical path (pure part of bench.first_product_path)."""

from __future__ import annotations

from bench.first_product_path import Made, critical_path


def test_the_path_follows_the_latest_input_back_to_a_source():
    made = [
        Made("a:1", "a", 1.0, ()), Made("a:2", "a", 2.0, ()), Made("b:1", "b", 1.1, ()),
        Made("m:1", "m", 3.1, ("a:2", "b:1")),  # waited for a's second batch
        Made("f:1", "f", 4.2, ("m:1",)), Made("f:2", "f", 5.0, ("m:1",)),
    ]
    path = critical_path(made)
    assert [m.batch_id for m in path] == ["f:1", "m:1", "a:2"]
    assert critical_path([]) == []
    # an input made before the index was read (compacted away) ends the walk there
    assert [m.batch_id for m in critical_path([Made("f:1", "f", 2.0, ("gone:1",))])] == ["f:1"]
