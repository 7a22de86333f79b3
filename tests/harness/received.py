"""What the emulator received, counted per row: every batch body also carries one
marker request (connector/marker.py), which is not a row's request."""

from __future__ import annotations

from collections import Counter
from typing import Any

from connector.marker import is_marker


def row_requests(stats: dict[str, Any]) -> Counter[str]:
    """Requests received per row custom_id (markers left out)."""
    return Counter(
        {cid: n for cid, n in stats["requests_by_custom_id"].items() if not is_marker(cid)}
    )


def markers_received(stats: dict[str, Any]) -> int:
    return sum(n for cid, n in stats["requests_by_custom_id"].items() if is_marker(cid))


def rows_received(stats: dict[str, Any]) -> int:
    """Row requests received in all (the emulator's total less one marker per batch)."""
    return int(stats["requests_received"]) - markers_received(stats)
