"""fos_dashboard: the floor display, a read-only web view of a factoryOS cluster.

A client of the coordinator API (WatchFlow, ListNodes, ClusterStatus) that also reads the
agents' Stats, served over HTTP by aiohttp with server-sent events; assets ship in
``static/`` (plain JS + SVG, no CDN, no build step). See docs/dashboard.md.

- ``view``: pure: layout, states in words, events from snapshot diffs (no I/O);
- ``collector``: coordinator watch/polls and agent Stats, the page's state document;
- ``server``: the aiohttp routes (page, assets, JSON, SSE, trace placeholder);
- ``cli``: ``fos-dashboard``.

Layering: imports ``fos_raft.model``, ``fos_raft.api``, ``fos_raft.security``,
``fos_raft.runtime`` and ``fos_pb``; never ``fos_agent`` or ``bench``; nothing in
``fos_raft``/``fos_agent`` imports it (``bench.sim`` starts it as a child process).
"""
