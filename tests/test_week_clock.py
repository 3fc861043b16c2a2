"""The aggregate tests' clock, ``week_clock.next_monday_1230_ms``, at edge instants.

libfaketime cannot move a whole test run (redis-server's allocator crashes under it),
so the helper takes the present as an argument and is checked at the instants where
a date helper goes wrong: on a Monday either side of 12:30, at midnight, at the end
of a month and a year, on a leap day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.week_clock import HOUR_MS, next_monday_1230_ms, utc_text

WEEK_MS = 7 * 24 * HOUR_MS


def _epoch_s(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ("2026-12-07T12:29:59.999", "2026-12-07 12:30"),  # Monday, just before
        ("2026-12-07T12:30:00", "2026-12-14 12:30"),  # Monday, exactly: strictly after
        ("2026-12-07T00:00:00", "2026-12-07 12:30"),  # Monday midnight
        ("2026-12-06T23:59:59.999", "2026-12-07 12:30"),  # Sunday, last instant
        ("2026-12-31T23:59:59.999", "2027-01-04 12:30"),  # the end of a year
        ("2028-02-29T13:00:00", "2028-03-06 12:30"),  # a leap day
        ("2029-12-31T12:45:00", "2030-01-07 12:30"),  # a Monday 31 December, after 12:30
    ],
)
def test_now_is_the_next_monday_1230_strictly_after_the_present(
    present: str, expected: str
) -> None:
    assert utc_text(next_monday_1230_ms(_epoch_s(present))) == expected


def test_every_hour_of_two_years_gets_a_now_less_than_a_week_ahead() -> None:
    # The tests write up to five weeks before NOW and Redis expires an hour 35 days
    # after it ends: NOW must never be behind the present, nor more than a week ahead.
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    while moment.year < 2029:
        present_ms = moment.timestamp() * 1000.0
        now = next_monday_1230_ms(moment.timestamp())
        assert 0 < now - present_ms <= WEEK_MS
        chosen = datetime.fromtimestamp(now / 1000.0, UTC)
        assert (chosen.weekday(), chosen.hour, chosen.minute) == (0, 12, 30)
        moment += timedelta(hours=1, minutes=7)  # steps that visit every minute offset
