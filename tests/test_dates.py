"""Moments a person sends (a retrain's start and end) are read as ISO 8601 only; moments the code wrote
itself keep being read as before. The HTTP API's answers to the same: tests/test_api.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from shared.dataset import parse_iso_time, parse_time


@pytest.mark.parametrize(
    ("value", "moment", "aware"),
    [
        ("2015-03-01", datetime(2015, 3, 1), False),
        ("2015-03-01T06:30", datetime(2015, 3, 1, 6, 30), False),
        ("2015-03-01T06:30:15", datetime(2015, 3, 1, 6, 30, 15), False),
        ("2015-03-01T06:30:15.25", datetime(2015, 3, 1, 6, 30, 15, 250000), False),
        ("2015-03-01T06:30:15.123456", datetime(2015, 3, 1, 6, 30, 15, 123456), False),
        # Aware moments become naive UTC, as before: Beijing's 08:00 is midnight UTC.
        ("2015-03-01T08:00:00+08:00", datetime(2015, 3, 1), True),
        ("2015-03-01T00:00Z", datetime(2015, 3, 1), True),
        ("2015-03-01T00:00:00-05:30", datetime(2015, 3, 1, 5, 30), True),
    ],
)
def test_iso_dates_and_datetimes_are_read_as_written(value, moment, aware):
    assert parse_iso_time(value) == (moment, aware)
    assert parse_iso_time(value)[0] == parse_time(value)  # the same moment the internal reader sees


@pytest.mark.parametrize(
    "value",
    [
        "01/03/2015",  # the newcomer's curl: read as 3 January (US month-first), meant as 1 March
        "16-01-01",  # the newcomer's CLI: read as 2001-01-16
        "03/01/2015",
        "1.3.2015",
        "2015/03/01",
        "20150301",
        "2015-3-1",
        "2015-03",
        "2015",
        "March 1 2015",
        "yesterday",
        "2015-03-01 00:00",  # ISO 8601 separates date and time with T
        "2015-03-01T00",
        "2015-03-01T00:00:00.1234567",
        "2015-03-01+08:00",
        "2015-03-01T00:00+0800",
        " 2015-03-01",
        "2015-03-01\n",
        "٢٠١٥-٠٣-٠١",  # Arabic-Indic digits
        "NaT",
        "",
    ],
)
def test_anything_else_is_refused_with_the_expected_form_and_what_was_found(value):
    with pytest.raises(ValueError) as refused:
        parse_iso_time(value)
    message = str(refused.value)
    assert "expected an ISO 8601 date or datetime (YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.ffffff]]" in message
    assert f"found {value!r}" in message


@pytest.mark.parametrize("value", ["2015-13-01", "2015-02-30", "2015-03-01T24:00", "2015-03-01T10:61"])
def test_a_date_of_the_right_form_that_is_no_day_is_refused(value):
    with pytest.raises(ValueError, match=f"found {value!r}: "):
        parse_iso_time(value)


def test_the_internal_reader_still_reads_what_the_code_writes():
    """Run requests, manifests and model records carry `isoformat()` strings of datetimes and pandas
    timestamps (registered_at is aware UTC); they keep their meaning."""
    registered = datetime(2016, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert parse_time(registered.isoformat()) == datetime(2016, 5, 1, 12, 0, 0, 123456)
    assert parse_time(pd.Timestamp("2016-05-01 23:00").isoformat()) == datetime(2016, 5, 1, 23)
    assert parse_time(datetime(2016, 5, 1, tzinfo=timezone(timedelta(hours=8))).isoformat()) == datetime(2016, 4, 30, 16)
    assert parse_time(None) is None and parse_time("") is None
