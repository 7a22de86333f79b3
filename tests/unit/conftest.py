"""Hypothesis settings for every property test here: no wall-clock limits.

On a busy machine (the suite runs beside other work) generating and running an example
can take far longer than Hypothesis's defaults allow: a 200 ms deadline per example, and
the `too_slow` / `data_too_large` health checks, which fail a test for how long
generation took, not for what it found. The tests check results only; the number of
examples is unchanged.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "batch-enrich",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("batch-enrich")
