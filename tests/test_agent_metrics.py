"""The agent's histograms: fixed buckets, the reroute clock, and their Prometheus text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from fos_agent.core.metrics import LATENCY_BUCKETS, Buckets, Metrics, registry_for


class Source:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics


@given(st.lists(st.floats(0, 100, allow_nan=False), max_size=50))
def test_buckets_are_cumulative_and_count_everything(values: list[float]):
    buckets = Buckets()
    for v in values:
        buckets.observe(v)
    cumulative = buckets.cumulative()
    counts = [c for _, c in cumulative]
    assert counts == sorted(counts) and counts[-1] == len(values)
    for (bound, count) in cumulative:
        limit = float("inf") if bound == "+Inf" else float(bound)
        assert count == sum(1 for v in values if v <= limit)
    assert buckets.total == sum(values)
    assert len(cumulative) == len(LATENCY_BUCKETS)


def test_reroute_clock_runs_from_a_lost_supplier_to_the_first_batch_of_another():
    m = Metrics("frame-1")
    m.suppliers_changed({"wood": ["saw-1", "saw-2"]})
    m.receipt("saw-1", "wood", "saw-1:1")
    assert m.histograms["reroute_seconds"].cumulative()[-1][1] == 0  # nothing lost yet
    m.suppliers_changed({"wood": ["saw-2"]})  # saw-1 left the flow
    m.receipt("saw-1", "wood", "saw-1:2")  # a late batch of the old supplier: not rerouted
    assert m.histograms["reroute_seconds"].cumulative()[-1][1] == 0
    m.receipt("saw-2", "wood", "saw-2:1")
    m.receipt("saw-2", "wood", "saw-2:2")  # only the first one counts
    assert m.histograms["reroute_seconds"].cumulative()[-1][1] == 1
    m.suppliers_changed({"wood": ["saw-2", "saw-3"]})  # capacity added: no reroute
    m.receipt("saw-3", "wood", "saw-3:1")
    assert m.histograms["reroute_seconds"].cumulative()[-1][1] == 1


def test_histograms_in_prometheus_text():
    m = Metrics("frame-1")
    m.observe("wal_commit_seconds", 0.002)
    m.rpc_time("RequestBatch", 0.01)
    registry, _ = registry_for([Source(m)])
    text = generate_latest(registry).decode()
    assert 'fos_agent_wal_commit_seconds_bucket{le="0.0025",node="frame-1"} 1.0' in text
    assert 'fos_agent_wal_commit_seconds_bucket{le="0.001",node="frame-1"} 0.0' in text
    assert 'fos_agent_rpc_seconds_count{kind="RequestBatch",node="frame-1"} 1.0' in text
    assert 'fos_agent_reroute_seconds_count{node="frame-1"} 0.0' in text
