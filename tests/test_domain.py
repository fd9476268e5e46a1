"""The domain on real data: spec parsing, reading files, champion rules (drift: tests/test_drift.py)."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from shared.dataset import TIMESTAMP, DataFileError, apply_filters, read_table
from shared.settings import PROJECT_ROOT
from shared.spec import SpecError, load_spec, parse_spec, spec_of_model
from tests.conftest import decision, monthly_csv

SPEC = load_spec(PROJECT_ROOT / "specs" / "air-quality.json")


def spec_with(**changes):
    raw = json.loads((PROJECT_ROOT / "specs" / "air-quality.json").read_text())
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": "wd"}, "cannot also be a feature"),
        ({"estimator": {"class": "os.system"}}, "must be a scikit-learn class"),
        ({"estimator": {"class": "sklearn.ensemble.NoSuchModel"}}, "cannot be built"),
        ({"loss": "accuracy"}, "loss must be one of"),
        ({"timestamp": {"from_parts": {"year": "year"}}}, "needs year, month, day"),
    ],
)
def test_spec_errors_name_the_field(changes, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_with(**changes))


@pytest.mark.parametrize(
    ("estimator_class", "kind"),
    [
        ("sklearn.cluster.KMeans", "it is a clusterer"),  # the newcomer's spec: trained, promoted and shipped
        ("sklearn.linear_model.LogisticRegression", "it is a classifier"),
        ("sklearn.ensemble.IsolationForest", "it is an outlier detector"),
        ("sklearn.preprocessing.StandardScaler", "it has no prediction task"),
        ("sklearn.utils.Bunch", "it is not a scikit-learn estimator: it builds a Bunch"),
    ],
)
def test_a_spec_whose_estimator_is_not_a_regressor_is_refused(estimator_class, kind):
    with pytest.raises(SpecError) as refused:
        parse_spec(spec_with(estimator={"class": estimator_class, "params": {}}))
    message = str(refused.value)
    assert f"estimator.class {estimator_class!r} is not a regressor ({kind}" in message, message
    assert "expected a scikit-learn regressor" in message and "'PM2.5'" in message and "'rmse'" in message


def test_every_shipped_spec_loads_and_a_regressor_of_any_family_is_accepted():
    shipped = sorted((PROJECT_ROOT / "specs").glob("*.json"))
    assert shipped
    for path in shipped:
        assert load_spec(path).build_estimator() is not None
    ridge = parse_spec(spec_with(estimator={"class": "sklearn.linear_model.Ridge", "params": {"alpha": 2.0}}))
    assert ridge.build_estimator().alpha == 2.0


def test_a_model_registered_with_a_spec_now_refused_is_still_read_so_a_regressor_can_replace_it():
    document = spec_with(estimator={"class": "sklearn.cluster.KMeans", "params": {}})
    spec = spec_of_model({"version": 3, "spec_doc": document}, SPEC)
    assert spec.estimator_class == "sklearn.cluster.KMeans" and spec.features == SPEC.features


def test_reads_a_month_builds_timestamps_and_keeps_missing_values():
    payload = monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)]
    frame = read_table(payload, "Dongsi/2014/05/01/2014-05.csv", SPEC)
    assert len(frame) == 31 * 24
    assert frame[TIMESTAMP].min().isoformat() == "2014-05-01T00:00:00"
    assert frame[TIMESTAMP].max().isoformat() == "2014-05-31T23:00:00"
    assert frame["PM2.5"].dtype == np.float64


def test_missing_column_and_non_numeric_column_are_named():
    payload = monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)].decode()
    without_co = payload.replace(',"CO"', "").replace(",CO,", ",CX,")
    with pytest.raises(DataFileError, match="missing column"):
        read_table(without_co.encode(), "b.csv", SPEC)
    with pytest.raises(DataFileError, match="is empty"):
        read_table(b"", "empty.csv", SPEC)
    header = payload.splitlines()[0]
    garbage = (
        header
        + "\n"
        + "\n".join(",".join("x" if column.strip('"') in ("PM10",) else "1" for column in header.split(",")) for _ in range(3))
    )
    with pytest.raises(DataFileError, match="'PM10' should be numeric"):
        read_table(garbage.encode(), "garbage.csv", SPEC)


def test_filters_by_range_value_list_and_bounds():
    frame = read_table(monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)], "x.csv", SPEC)
    from datetime import datetime

    assert len(apply_filters(frame, datetime(2014, 5, 2), datetime(2014, 5, 3), None)) == 24
    assert set(apply_filters(frame, None, None, {"wd": ["N", "NE"]})["wd"]) == {"N", "NE"}
    assert apply_filters(frame, None, None, {"TEMP": {"min": 20}})["TEMP"].min() >= 20
    with pytest.raises(DataFileError, match="which the data does not have"):
        apply_filters(frame, None, None, {"nope": 1})


def test_champion_rules():
    assert decision().decision == "promote"
    assert decision(champion_version=None, champion_loss=None, champion_train_end=None).decision == "promote"
    kept = decision(challenger_loss=19.9)
    assert kept.decision == "keep" and "margin" in kept.reason
    unfair = decision(champion_train_end="2016-02-10T00:00:00")
    assert unfair.decision == "keep" and "unfair" in unfair.reason
    few = decision(eval_rows=50)
    assert few.decision == "keep" and "at least 200" in few.reason
    assert decision(challenger_loss=float("nan")).decision == "keep"


def test_an_hour_outside_the_day_is_no_timestamp_rather_than_the_next_day():
    lines = monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)].decode().splitlines()
    header, rows = lines[0], lines[1:4]
    hour = header.split(",").index("hour")

    def with_hour(row, value):
        cells = row.split(",")
        cells[hour] = value
        return ",".join(cells)

    odd = [with_hour(rows[0], "25"), with_hour(rows[1], "1.5"), with_hour(rows[2], "-1"), rows[2]]
    warnings = []
    frame = read_table("\n".join([header, *odd]).encode(), "odd.csv", SPEC, warnings=warnings)
    assert [stamp.isoformat() for stamp in frame[TIMESTAMP]] == ["2014-05-01T02:00:00"]
    assert "3 row(s) have no valid timestamp; dropped" in warnings


def test_years_nanoseconds_cannot_hold_and_missing_year_parts_are_no_timestamp():
    import io

    import pandas as pd

    payload = monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)]
    frame = pd.read_csv(io.BytesIO(payload)).head(5)
    frame["year"] = pd.array([20140, 1500, None, 2014, 2014], dtype="Int64")  # a typo, too early, NA (Parquet)
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    warnings = []
    read = read_table(parquet.getvalue(), "odd-years.parquet", SPEC, warnings=warnings)
    assert [stamp.isoformat() for stamp in read[TIMESTAMP]] == ["2014-05-01T03:00:00", "2014-05-01T04:00:00"]
    assert "3 row(s) have no valid timestamp; dropped" in warnings


def test_rows_with_more_fields_than_the_header_are_refused_not_shifted():
    lines = monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)].decode().splitlines()
    first_rows = [lines[0], *(line + ",x,y" for line in lines[1:4]), *lines[4:10]]
    with pytest.raises(DataFileError, match=r"first data row has 2 field\(s\) more than the header's 18"):
        read_table("\n".join(first_rows).encode(), "ragged.csv", SPEC)
    later_rows = [*lines[:5], lines[5] + ",x", *lines[6:10]]
    with pytest.raises(DataFileError, match="Expected 18 fields in line 6, saw 19"):
        read_table("\n".join(later_rows).encode(), "ragged.csv", SPEC)


def test_a_file_whose_rows_are_all_undated_or_in_the_future_is_refused():
    import io

    import pandas as pd

    frame = pd.read_csv(io.BytesIO(monthly_csv("Dongsi", [(2016, 2)])[(2016, 2)])).assign(year=2030)
    # 29 February 2030 is no day; every other row is in the future
    with pytest.raises(DataFileError, match="no row has a usable timestamp: 24 have no valid timestamp and 672 are"):
        read_table(frame.to_csv(index=False).encode(), "future.csv", SPEC)


def test_a_gzip_file_named_csv_and_an_undatable_file_say_what_to_fix():
    import gzip

    payload = monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)]
    with pytest.raises(DataFileError, match=r"the file is gzip-compressed; name it with \.csv\.gz"):
        read_table(gzip.compress(payload), "packed.csv", SPEC)
    typo = payload.replace(b",2014,", b",20140,")
    with pytest.raises(DataFileError, match="the first row has year=20140, .*in the years 1678-2261"):
        read_table(typo, "typo.csv", SPEC)


def test_a_target_of_text_among_gaps_and_a_repeated_column_are_named_as_what_they_are():
    frame = pd.read_csv(io.BytesIO(monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)]))
    text_target = frame.copy()
    text_target["PM2.5"] = [None if index % 3 == 0 else "4.0ug" for index in range(len(frame))]
    with pytest.raises(DataFileError, match=r"column 'PM2.5' should be numeric, found values like '4.0ug'"):
        read_table(text_target.to_csv(index=False).encode(), "units.csv", SPEC)

    doubled = frame.copy()
    doubled.insert(len(doubled.columns), "PM10 again", doubled["PM10"] * 2)
    payload = doubled.to_csv(index=False).replace("PM10 again", "PM10").encode()
    with pytest.raises(DataFileError, match=r"the header names 'PM10' 2 times; expected each column once"):
        read_table(payload, "doubled.csv", SPEC)


def test_a_target_of_only_absurd_values_is_named_as_such_not_as_empty():
    frame = pd.read_csv(io.BytesIO(monthly_csv("Dongsi", [(2014, 5)])[(2014, 5)]))
    frame["PM2.5"] = 1e15
    with pytest.raises(DataFileError, match=r"\(the target\) has no usable value among its 744 \(column 'PM2.5': 744 value"):
        read_table(frame.to_csv(index=False).encode(), "huge.csv", SPEC)
