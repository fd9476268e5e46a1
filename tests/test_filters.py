"""Retrain filters as the API reads them, applied to rows read from a real file."""

from __future__ import annotations

import pytest

from shared.api import Api, RetrainRequestError
from shared.dataset import apply_filters, read_table
from shared.settings import PROJECT_ROOT, load_settings
from shared.spec import load_spec
from tests.conftest import station_frame
from tests.test_events_property import RecordingOrchestrations


class Ports:
    settings = load_settings()
    spec = load_spec(PROJECT_ROOT / "specs" / "air-quality.json")


def fields(filters: dict) -> dict:
    return Api(Ports(), RecordingOrchestrations())._retrain_fields(
        {"start": "2016-01-01", "end": "2016-02-01", "filters": filters}
    )[2]


def test_a_number_given_for_a_category_is_matched_as_the_text_a_file_holds():
    """`multiline retrain --filter wd=1` sends the number 1; a file's wd column holding 1 is read as the category "1"."""
    frame = station_frame("Dongsi").head(48).copy()
    frame["wd"] = ["1"] * 24 + ["N"] * 24
    rows = read_table(frame.to_csv(index=False).encode(), "Dongsi/2013/03/01/x.csv", Ports.spec)

    assert fields({"wd": 1}) == {"wd": "1"} and fields({"wd": [1, "N", 2.5]}) == {"wd": ["1", "N", "2.5"]}
    assert len(apply_filters(rows, None, None, fields({"wd": 1}))) == 24
    assert len(apply_filters(rows, None, None, fields({"wd": [1, "N"]}))) == 48


@pytest.mark.parametrize(
    "filters, message",
    [
        ({"year": "abc"}, "'year' is numeric; a value must be a finite number, got 'abc'"),
        ({"hour": [1, "x"]}, "'hour' is numeric; a value must be a finite number, got 'x'"),
        ({"wd": True}, "'wd' is categorical; a value must be text or a number, got True"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_naming_the_column(filters, message):
    with pytest.raises(RetrainRequestError, match=message.replace("[", r"\[")):
        fields(filters)
