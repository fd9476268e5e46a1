"""A source's files read together from real Azurite: one reading per moment across files, the later upload wins."""

from __future__ import annotations

import time

from shared.settings import PROJECT_ROOT
from shared.source_data import ACCEPTED, ERROR_KEY, STATUS_KEY, WARNING_KEY, load_frames
from shared.spec import load_spec
from tests.conftest import monthly_csv, station_frame

SPEC = load_spec(PROJECT_ROOT / "specs" / "air-quality.json")


def test_readings_repeated_across_files_count_once_and_the_later_upload_wins(storage, source_id):
    other = f"{source_id}-b"
    march = monthly_csv("Dongsi", [(2016, 3)])[(2016, 3)]
    storage.write("raw", f"{source_id}/2016/03/01/march.csv", march)
    storage.write("raw", f"{other}/2016/03/01/march.csv", march)  # another source, same moments: not a repeat
    time.sleep(1.1)  # blob creation times have one-second resolution
    frame = station_frame("Dongsi")
    correction = frame[(frame.year == 2016) & (frame.month == 3) & (frame.day <= 2)].copy()
    correction["PM10"] = 999.0
    storage.write("raw", f"{source_id}/2016/03/01/march-corrected.csv", correction.to_csv(index=False).encode())
    names = [f"{source_id}/2016/03/01/march-corrected.csv", f"{source_id}/2016/03/01/march.csv", f"{other}/2016/03/01/march.csv"]

    rows, problems = load_frames(storage, "raw", names, SPEC)

    mine = rows.loc[rows["_source_blob"].str.startswith(f"{source_id}/")]
    theirs = rows.loc[rows["_source_blob"].str.startswith(f"{other}/")]
    assert len(mine) == len(theirs) == 31 * 24  # each moment once per source, whatever the file count
    corrected = mine.loc[mine["_timestamp"] < "2016-03-03"]
    assert (corrected["PM10"] == 999.0).all() and (corrected["_source_blob"].str.endswith("march-corrected.csv")).all()
    assert (mine.loc[mine["_timestamp"] >= "2016-03-03", "PM10"] != 999.0).all()
    [problem] = problems
    assert (
        problem["blob"].endswith("march-corrected.csv") and "48 row(s) repeat readings already uploaded in" in problem["warning"]
    )
    marked = storage.info("raw", f"{source_id}/2016/03/01/march-corrected.csv").metadata
    assert marked[STATUS_KEY] == "accepted_with_warnings" and "this later upload's values are used" in marked[WARNING_KEY]
    # Marking moved the corrected file's Last-Modified, not its creation time: the order, and so the rows, hold.
    again, _ = load_frames(storage, "raw", list(reversed(names)), SPEC)
    assert (
        again.sort_values(["_source_blob", "_timestamp"])
        .reset_index(drop=True)
        .equals(rows.sort_values(["_source_blob", "_timestamp"]).reset_index(drop=True))
    )


def test_marking_a_file_is_not_new_data_for_reconcile(storage, source_id):
    from types import SimpleNamespace

    from shared.reconcile import sources_needing_a_run
    from shared.settings import load_settings

    ports = SimpleNamespace(settings=load_settings(), storage=storage)
    name = f"{source_id}/2016/03/01/march.csv"
    storage.write("raw", name, monthly_csv("Dongsi", [(2016, 3)])[(2016, 3)])
    assert source_id in [item["source_id"] for item in sources_needing_a_run(ports)]
    # A run read it and marked it (its Last-Modified moves); until it is uploaded again it is not news.
    storage.set_metadata("raw", name, {STATUS_KEY: "accepted_with_warnings", WARNING_KEY: "1 row(s) dropped"})
    assert source_id not in [item["source_id"] for item in sources_needing_a_run(ports)]
    storage.write("raw", name, monthly_csv("Dongsi", [(2016, 3)])[(2016, 3)])  # a re-upload clears the verdict
    assert source_id in [item["source_id"] for item in sources_needing_a_run(ports)]


def test_a_file_rejected_earlier_is_read_again_and_its_verdict_cleared_once_it_passes(storage, source_id):
    """A rejection can stop holding (a size limit raised, the spec fixed, a device clock caught up): the file is
    judged again by every run, never dropped for good, and a stale verdict's text does not linger."""
    name = f"{source_id}/2016/03/01/march.csv"
    storage.write("raw", name, monthly_csv("Dongsi", [(2016, 3)])[(2016, 3)])

    rows, [problem] = load_frames(storage, "raw", [name], SPEC, max_bytes=100)
    assert rows.empty and problem["status"] == "rejected" and "expected at most 100" in problem["error"]
    assert storage.info("raw", name).metadata[STATUS_KEY] == "rejected"

    rows, problems = load_frames(storage, "raw", [name], SPEC)  # the limit is back to its default
    assert len(rows) == 31 * 24 and problems == []
    metadata = storage.info("raw", name).metadata
    assert metadata[STATUS_KEY] == ACCEPTED and ERROR_KEY not in metadata

    storage.set_metadata("raw", name, {STATUS_KEY: "accepted_with_warnings", WARNING_KEY: "1 row(s) dropped"})
    load_frames(storage, "raw", [name], SPEC)
    metadata = storage.info("raw", name).metadata
    assert metadata[STATUS_KEY] == ACCEPTED and WARNING_KEY not in metadata


def test_resolve_data_lists_files_rejected_earlier_but_not_an_empty_one(storage, source_id, local_ports):
    from activities.resolve_data import resolve_data
    from shared import codec

    rejected = f"{source_id}/2016/03/01/march.csv"
    empty = f"{source_id}/2016/03/02/empty.csv"
    storage.write("raw", rejected, monthly_csv("Dongsi", [(2016, 3)])[(2016, 3)])
    storage.set_metadata("raw", rejected, {STATUS_KEY: "rejected", ERROR_KEY: "the file is 60000 bytes; expected at most 100"})
    storage.write("raw", empty, b"")
    result = resolve_data({"source_id": source_id, "run_id": "r1", "start": "2016-03-01", "end": "2016-04-01"})
    manifest = codec.loads(storage.read(*result["manifest_uri"].split("/", 1))[0])
    assert manifest["blobs"] == [rejected]
    assert [item["blob"] for item in manifest["skipped"]] == [empty] and "empty" in manifest["skipped"][0]["reason"]
    marked = storage.info("raw", empty)
    again = resolve_data({"source_id": source_id, "run_id": "r2", "start": "2016-03-01", "end": "2016-04-01"})
    assert again["skipped_count"] == 1 and storage.info("raw", empty).etag == marked.etag  # not marked twice


def test_the_repeat_warning_counts_the_named_files_rows_once_however_many_older_files_held_them(storage, source_id):
    march = monthly_csv("Dongsi", [(2016, 3)])[(2016, 3)]
    names = [f"{source_id}/2016/03/01/copy-{index}.csv" for index in range(3)]
    for name in names:
        storage.write("raw", name, march)
        time.sleep(1.1)  # blob creation times have one-second resolution
    rows, problems = load_frames(storage, "raw", names, SPEC, mark=False)
    assert len(rows) == 31 * 24
    [problem] = [item for item in problems if item["blob"] == names[-1]]
    assert "744 row(s) repeat readings already uploaded in" in problem["warning"]  # not 1488: two older copies


def test_a_range_without_files_says_where_the_sources_files_are(storage, source_id, local_ports):
    from activities.resolve_data import resolve_data

    storage.write("raw", f"{source_id}/2016/03/01/march.csv", monthly_csv("Dongsi", [(2016, 3)])[(2016, 3)])
    storage.write("raw", f"{source_id}/2099/01/01/misdated.csv", monthly_csv("Dongsi", [(2016, 4)])[(2016, 4)])
    before = resolve_data({"source_id": source_id, "run_id": "r1", "start": "2015-01-01", "end": "2016-01-01"})
    assert before["blob_count"] == 0 and before["not_read_after_end"] == {
        "count": 2,
        "earliest": f"{source_id}/2016/03/01/march.csv",
    }
    assert "2 file(s) of this source are dated on or after the range's end 2016-01-01" in before["not_read_hint"]
    after = resolve_data({"source_id": source_id, "run_id": "r2", "start": "2100-01-01", "end": "2100-02-01"})
    assert after["blob_count"] == 0 and after["not_read_hint"].startswith("the range starts after all of this source's files")
    assert f"the newest {source_id}/2099/01/01/misdated.csv" in after["not_read_hint"]
