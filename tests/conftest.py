"""Shared test configuration.

Hypothesis profiles: `default` keeps `make test` fast on 2 cores; `HYPOTHESIS_PROFILE=deep`
runs 50x more examples (run it before resolving protocol/planner changes).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep",
    parent=settings.get_profile("default"),
    max_examples=5000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
