from datetime import date

import pytest

from shared.blob_layout import BlobPathError, blob_name_from_url, parse_raw_blob_name

PATTERN, MAX = r"[A-Za-z0-9][A-Za-z0-9_-]*", 63


def test_parses_a_raw_blob_name():
    path = parse_raw_blob_name("Dongsi/2016/03/01/2016-03.csv", PATTERN, MAX)
    assert (path.source_id, path.day, path.file_name) == ("Dongsi", date(2016, 3, 1), "2016-03.csv")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Dongsi/2016/03/2016-03.csv", "4 path segments"),
        ("../2016/03/01/x.csv", "allowed pattern"),
        ("Dongsi/2016/02/30/x.csv", "not a calendar date"),
        ("Dongsi/2016/3/01/x.csv", "not yyyy/mm/dd"),
        ("Dongsi/2016/03/01/x.txt", "must end with"),
        ("a" * 64 + "/2016/03/01/x.csv", "at most 63"),
    ],
)
def test_rejects_names_outside_the_layout_with_the_reason(name, message):
    with pytest.raises(BlobPathError, match=message):
        parse_raw_blob_name(name, PATTERN, MAX)


def test_url_is_decoded_exactly_once_and_container_must_match():
    url = "https://acct.blob.core.windows.net/raw/Dongsi/2016/03/01/a%2520b.csv"
    assert blob_name_from_url(url, "raw") == "Dongsi/2016/03/01/a%20b.csv"
    assert blob_name_from_url("http://127.0.0.1:10000/devstoreaccount1/raw/S/2016/03/01/x.csv", "raw") == "S/2016/03/01/x.csv"
    assert blob_name_from_url("https://acct.blob.core.windows.net/models/S/2016/03/01/x.csv", "raw") is None
