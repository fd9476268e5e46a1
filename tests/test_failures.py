"""Bad input and failures on the real local stack; exactly one champion per source throughout."""

from __future__ import annotations

import dataclasses
import io
import uuid

import pandas as pd
import pytest

from shared.source_data import ERROR_KEY, STATUS_KEY, WARNING_KEY
from tests.conftest import gzip_bytes, monthly_csv, months_from, raw_name
from tests.stack_helpers import ChampionWatch, call, fast_settings, running_stack, wait_for_runs


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fast_spec_path):
    settings = fast_settings(fast_spec_path, MULTILINE_MAX_BLOB_BYTES=400_000, MULTILINE_DEBOUNCE_SECONDS=2.5)
    with running_stack(tmp_path_factory.mktemp("failures"), settings) as running:
        yield running


def healthy(stack, source_id, station, months):
    for (year, month), payload in monthly_csv(station, months).items():
        stack.ports.storage.write("raw", raw_name(source_id, year, month), payload)


def test_bad_files_are_kept_marked_and_named_while_the_rest_trains(stack):
    good, bad = f"Good-{uuid.uuid4().hex[:6]}", f"Bad-{uuid.uuid4().hex[:6]}"
    month = monthly_csv("Shunyi" if False else "Dongsi", [(2015, 8)])[(2015, 8)]
    text = month.decode()
    header, rows = text.split("\n", 1)
    frame = pd.read_csv(io.BytesIO(month))
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    future = frame.head(30).assign(year=2090)
    partly_future = pd.concat([frame.iloc[:48], future.head(5)])
    no_target = frame.head(30).assign(**{"PM2.5": None})
    wrong_types = frame.head(60).astype({"PM10": object})
    wrong_types.loc[wrong_types.index[:3], "PM10"] = "n/a?"
    rejected = {
        "header-only.csv": (header + "\n").encode(),
        "semicolons.csv": text.replace(",", ";").encode(),
        "latin1.csv": (header + "\n" + rows.replace("NW", "N\u00c9", 1)).encode("latin-1"),
        "missing-columns.csv": frame.drop(columns=["CO"]).to_csv(index=False).encode(),
        "all-text.csv": frame.head(20).assign(PM10="high").to_csv(index=False).encode(),
        "truncated.csv.gz": gzip_bytes(month)[:-200],
        "corrupt.parquet": parquet.getvalue()[: len(parquet.getvalue()) // 2],
        "too-big.csv": month * 8,
        "all-future.csv": future.to_csv(index=False).encode(),
        "no-target.csv": no_target.to_csv(index=False).encode(),
    }
    expected = {
        "header-only.csv": "has a header but no rows",
        "semicolons.csv": "separated by ';'; expected ','",
        "latin1.csv": "not UTF-8",
        "missing-columns.csv": "missing column(s) ['CO']",
        "all-text.csv": "column 'PM10' should be numeric",
        "truncated.csv.gz": "gzip data is truncated",
        "corrupt.parquet": "not a complete Parquet file",
        "too-big.csv": "expected at most 400000",
        "all-future.csv": "stamped in the future",
        "no-target.csv": "'PM2.5' (the target) is empty in every row",
    }
    warned = {
        "bom.csv": b"\xef\xbb\xbf" + frame.iloc[48:96].to_csv(index=False).encode(),
        "extra-column.csv": frame.iloc[96:144].assign(firmware="1.2").to_csv(index=False).encode(),
        "some-text.csv": wrong_types.iloc[:48].to_csv(index=False).encode(),
        "duplicates.csv": pd.concat([frame.iloc[144:192], frame.iloc[150:160]]).to_csv(index=False).encode(),
        "partly-future.csv": partly_future.to_csv(index=False).encode(),
    }
    storage = stack.ports.storage
    with ChampionWatch(stack.ports.registry, [good, bad]):
        healthy(stack, good, "Dongsi", months_from(2015, 9, 3))
        healthy(stack, bad, "Dongsi", months_from(2015, 9, 3))
        for file_name, payload in {**rejected, **warned}.items():
            storage.write("raw", f"{bad}/2015/08/01/{file_name}", payload)
        storage.write("raw", f"{bad}/2015/08/02/empty.csv", b"")
        good_runs = wait_for_runs(stack, good, 1)
        bad_runs = wait_for_runs(stack, bad, 1)
    # Uploads slower than the debounce make a follow-up run: the first run that trained carries the verdicts.
    good_run = next(run for run in good_runs if run.get("training"))
    bad_run = next(run for run in bad_runs if run.get("training"))
    assert good_run["outcome"] == "promoted" and good_run["training"]["result"]["rejected_blobs"] == 0
    assert bad_run["outcome"] == "promoted"  # the valid data still trained a model
    result = bad_run["training"]["result"]
    assert result["rejected_blobs"] == len(rejected) and result["train_rows"] > 1000
    on_run = {item["blob"].rsplit("/", 1)[1]: item for item in bad_run["training"]["rejected"]}
    skipped = [item["reason"] for run in bad_runs for item in run["manifest"]["skipped"]]
    assert any("empty.csv': the file is empty (0 bytes)" in reason for reason in skipped), skipped
    assert storage.info("raw", f"{bad}/2015/08/02/empty.csv").metadata[STATUS_KEY] == "rejected"  # marked too
    for file_name, payload in {**rejected, **warned}.items():
        name = f"{bad}/2015/08/01/{file_name}"
        assert storage.read("raw", name)[0] == payload  # kept untouched
        metadata = storage.info("raw", name).metadata
        if file_name in rejected:
            message = metadata[ERROR_KEY]
            assert metadata[STATUS_KEY] == "rejected" and expected[file_name] in message, (file_name, message)
            assert f"source '{bad}'" in message and f"blob '{name}'" in message
            assert on_run[file_name]["error"] == message or on_run[file_name]["error"].startswith(message[:200])
        elif file_name == "extra-column.csv":
            assert STATUS_KEY not in metadata  # extra columns are ignored: the spec names the columns used
        else:
            assert metadata[STATUS_KEY] == "accepted_with_warnings", (file_name, metadata)
            assert f"source '{bad}'" in metadata[WARNING_KEY]
    warnings = {name: storage.info("raw", f"{bad}/2015/08/01/{name}").metadata.get(WARNING_KEY, "") for name in warned}
    assert "byte-order mark" in warnings["bom.csv"]
    assert "'PM10': 3 value(s) are not numbers" in warnings["some-text.csv"]
    assert "10 row(s) repeat the timestamp" in warnings["duplicates.csv"]
    assert "5 row(s) are stamped in the future" in warnings["partly-future.csv"]


def test_a_manual_retrain_with_a_bad_body_is_refused_naming_the_field(stack):
    source_id = f"Body-{uuid.uuid4().hex[:6]}"
    path = f"/api/sources/{source_id}/retrain"
    cases = {
        "start": {"start": "yesterday", "end": "2016-01-01"},
        "end": {"start": "2016-03-01", "end": "2016-01-01"},
        "filters.nope": {"start": "2016-01-01", "end": "2016-02-01", "filters": {"nope": 1}},
        "filters.TEMP.min": {"start": "2016-01-01", "end": "2016-02-01", "filters": {"TEMP": {"min": "cold"}}},
        "colour": {"start": "2016-01-01", "end": "2016-02-01", "colour": "red"},
        "filters.wd": {"start": "2016-01-01", "end": "2016-02-01", "filters": {"wd": {"min": 1}}},
    }
    for field, body in cases.items():
        status, answer = call(stack, "POST", path, body)
        assert status == 400 and answer["field"] == field and field.split(".")[-1] in answer["error"], answer
    status, answer = call(stack, "POST", path, {"start": "2016-01-01T00:00:00+08:00", "end": "2016-02-01T00:00:00"})
    assert status == 400 and "time zone" in answer["error"]
    status, answer = call(stack, "POST", path, {"start": "1990-01-01", "end": "2016-01-01"})
    assert status == 400 and "at most 3660" in answer["error"]
    assert call(stack, "POST", path, raw=b"{not json")[0] == 400


def test_training_that_fails_or_passes_its_deadline_ends_the_run_and_keeps_the_champion(stack):
    source_id = f"Train-{uuid.uuid4().hex[:6]}"
    registry, orchestrations = stack.ports.registry, stack.orchestrations
    healthy(stack, source_id, "Guanyuan", months_from(2015, 9, 3))
    [first] = wait_for_runs(stack, source_id, 1)
    champion = registry.champion(source_id)[0]
    assert first["outcome"] == "promoted" and champion == 1
    with ChampionWatch(registry, [source_id]) as watch:
        # Too little data in range: the job fails and says why.
        assert call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "2015-09-01", "end": "2015-09-03"})[0] == 202
        failed = wait_for_runs(stack, source_id, 2)[-1]
        # A job that never finishes in time: canceled at the deadline.
        settings = orchestrations.settings
        orchestrations.settings = dataclasses.replace(settings, training_deadline_seconds=0.5)
        try:
            assert (
                call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "2015-09-01", "end": "2015-12-01"})[0] == 202
            )
            timed_out = wait_for_runs(stack, source_id, 3)[-1]
        finally:
            orchestrations.settings = settings
    assert failed["outcome"] == "training_failed" and "training rows" in failed["error"]
    assert timed_out["outcome"] == "training_timed_out" and "not finished after" in timed_out["error"]
    assert stack.ports.training.status(timed_out["training"]["job_id"])["state"] == "canceled"
    assert failed["champion_version"] == timed_out["champion_version"] == champion  # the runs name the champion they left
    assert watch.versions(source_id) == [champion] and registry.champion(source_id)[0] == champion


def test_a_failed_image_build_keeps_the_champion_and_is_retried_on_the_next_run(stack):
    source_id = f"Build-{uuid.uuid4().hex[:6]}"
    images = stack.ports.images
    timeout = images.timeout
    with ChampionWatch(stack.ports.registry, [source_id]) as watch:
        images.timeout = 0.001  # the smoke test cannot finish: the build fails
        try:
            healthy(stack, source_id, "Huairou", months_from(2015, 9, 3))
            [first] = wait_for_runs(stack, source_id, 1)
        finally:
            images.timeout = timeout
        assert first["outcome"] == "promoted" and first["image"]["state"] == "failed" and "image build failed" in first["error"]
        assert images.image_for(source_id, 1) is None
        assert call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "2015-09-01", "end": "2015-12-01"})[0] == 202
        second = wait_for_runs(stack, source_id, 2)[-1]
    assert second["champion_version"] == 1 and second["image"]["state"] == "succeeded"
    assert images.image_for(source_id, 1)["state"] == "succeeded"
    assert watch.versions(source_id) == [1]


class CompetingRegistry:
    """The real registry, with another writer moving the champion just before each promotion."""

    def __init__(self, registry):
        self.registry = registry
        self.competitors: list[int] = []

    def __getattr__(self, name):
        return getattr(self.registry, name)

    def set_champion(self, source_id, version, expected_etag, reason, **options):
        rival = self.registry.register(source_id, self.registry.model_bytes(source_id, version), {"rival": True})
        current, etag = self.registry.champion(source_id)
        self.registry.set_champion(source_id, rival, etag, "a concurrent promotion")
        self.competitors.append(rival)
        return self.registry.set_champion(source_id, version, expected_etag, reason, **options)


def test_a_champion_compare_and_swap_conflict_leaves_one_champion(stack):
    source_id = f"Cas-{uuid.uuid4().hex[:6]}"
    real = stack.ports.registry
    competing = CompetingRegistry(real)
    with ChampionWatch(real, [source_id]) as watch:
        stack.ports.registry = competing
        try:
            healthy(stack, source_id, "Nongzhanguan", months_from(2015, 9, 3))
            [run] = wait_for_runs(stack, source_id, 1)
        finally:
            stack.ports.registry = real
    [rival] = competing.competitors
    assert run["promotion"]["promoted"] is False and "changed while deciding" in run["promotion"]["reason"]
    assert run["outcome"] == "kept" and run["champion_version"] == rival == real.champion(source_id)[0]
    assert watch.versions(source_id) == [rival]


def test_a_retrain_says_which_older_files_its_range_left_unread(stack):
    """A file's folder date is when its rows start: a three-month file dated January is not read for a range
    that starts in March (beyond the slack), and the run says so instead of reporting no data unexplained."""
    source_id = f"Long-{uuid.uuid4().hex[:6]}"
    frame = pd.concat([pd.read_csv(io.BytesIO(payload)) for payload in monthly_csv("Dongsi", months_from(2015, 1, 3)).values()])
    stack.ports.storage.write("raw", f"{source_id}/2015/01/01/quarter.csv", frame.to_csv(index=False).encode())
    wait_for_runs(stack, source_id, 1)  # the upload's own run reads everything
    status, answer = call(stack, "POST", f"/api/sources/{source_id}/retrain", {"start": "2015-03-01", "end": "2015-04-01"})
    assert status == 202, answer
    first, second = wait_for_runs(stack, source_id, 2)
    assert second["trigger"] == "manual" and second["outcome"] == "no_data"
    assert "1 file(s) of this source are dated before 2015-01-29 and were not read" in second["error"]
    assert f"{source_id}/2015/01/01/quarter.csv" in second["error"] and "MULTILINE_BLOB_DATE_SLACK_DAYS=31" in second["error"]
    assert second["manifest"]["not_read_before_start"] == {
        "count": 1,
        "newest": f"{source_id}/2015/01/01/quarter.csv",
        "cutoff": "2015-01-29",
    }


def test_one_source_status_says_why_and_which_files_had_problems(stack, capsys):
    from local.cli import main

    mixed, rejected_only = f"Mixed-{uuid.uuid4().hex[:6]}", f"Rejects-{uuid.uuid4().hex[:6]}"
    broken = b"year,month\n2015,8\n"
    healthy(stack, mixed, "Dongsi", months_from(2015, 9, 3))
    stack.ports.storage.write("raw", f"{mixed}/2015/08/01/broken.csv", broken)
    stack.ports.storage.write("raw", f"{mixed}/2015/08/02/empty.csv", b"")  # rejected before training
    for day in ("01", "02"):
        stack.ports.storage.write("raw", f"{rejected_only}/2015/08/{day}/broken.csv", broken)
    [mixed_run] = wait_for_runs(stack, mixed, 1)
    [failed_run] = wait_for_runs(stack, rejected_only, 1)
    assert mixed_run["outcome"] == "promoted" and failed_run["outcome"] == "training_failed"

    assert main(["status", mixed, "--url", stack.base_url]) == 0
    out = capsys.readouterr().out
    assert f"rejected: source '{mixed}', blob '{mixed}/2015/08/01/broken.csv': missing column(s)" in out
    status, view = call(stack, "GET", f"/api/sources/{mixed}")
    assert status == 200 and [item["blob"] for item in view["problem_files"]] == [
        f"{mixed}/2015/08/02/empty.csv",
        f"{mixed}/2015/08/01/broken.csv",
    ]
    assert "the file is empty (0 bytes)" in view["problem_files"][0]["error"]

    assert main(["status", rejected_only, "--url", stack.base_url]) == 0
    out = capsys.readouterr().out
    reason = next(line for line in out.splitlines() if line.startswith("reason: "))
    assert "no valid rows in the requested range; 2 file(s) rejected, e.g. source " in reason and "missing column(s)" in reason
