"""The attribute table's conversions (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.directory.schema import _from_postal, _to_postal, format_time, parse_time


@pytest.mark.parametrize(("value", "expected"), [
    ("20261124120820Z", datetime(2026, 11, 24, 12, 8, 20, tzinfo=UTC)),
    ("20261124120820.123456Z", datetime(2026, 11, 24, 12, 8, 20, tzinfo=UTC)),
    ("000001010000Z", None),  # ppolicy's "locked forever", not a moment
    ("20261399120820Z", None),
    ("garbage", None),
    ("", None),
    (None, None),
])
def test_generalized_time(value: str | None, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_time_round_trip() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment


@pytest.mark.parametrize("address", ["1 Road\nLondon", "a $ sign\\back", "single"])
def test_postal_address_round_trip(address: str) -> None:
    assert "\n" not in _to_postal(address)
    assert _from_postal(_to_postal(address)) == address
