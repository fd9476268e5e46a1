"""`multiline upload` on real Azurite: it never replaces an earlier file unasked, and checks a file whatever its --date."""

import json
import os
import signal
import subprocess
import sys

import pytest

from shared.settings import PROJECT_ROOT
from shared.source_data import STATUS_KEY
from tests.conftest import station_frame
from tests.stack_helpers import start_serve


@pytest.fixture
def stack_dir(tmp_path, azurite):
    """A state directory whose stack file names the test Azurite, as `multiline serve` writes it."""
    from local.cli import _stack_file

    _stack_file(tmp_path).write_text(json.dumps({"blob_connection_string": azurite.connection_string}))
    return tmp_path


def month_csv(tmp_path, name: str, month: int) -> bytes:
    frame = station_frame("Dongsi")
    frame[(frame.year == 2016) & (frame.month == month)].to_csv(tmp_path / name, index=False)
    return (tmp_path / name).read_bytes()


def test_upload_never_replaces_an_earlier_file_of_the_same_name_and_day_unless_told(stack_dir, storage, source_id, capsys):
    from local.cli import main

    state = ["--state-dir", str(stack_dir)]
    first = month_csv(stack_dir, "x.csv", 1)
    assert main(["upload", source_id, str(stack_dir / "x.csv"), *state]) == 0
    capsys.readouterr()
    name = f"{source_id}/2016/01/01/x.csv"
    second = month_csv(stack_dir, "x.csv", 2)  # another file under the same name, dated the same day
    assert main(["upload", source_id, str(stack_dir / "x.csv"), "--date", "2016-01-01", *state]) == 1
    refusal = capsys.readouterr().err
    assert f"not uploaded: raw/{name} already exists ({len(first)} bytes, uploaded 20" in refusal
    assert "rename the file" in refusal and "--overwrite" in refusal
    assert storage.read("raw", name)[0] == first  # the earlier data is still there

    storage.set_metadata("raw", name, {STATUS_KEY: "rejected"})  # as a run marks a file it rejected
    assert main(["upload", source_id, str(stack_dir / "x.csv"), "--date", "2016-01-01", *state]) == 1
    assert "marked rejected by a run" in capsys.readouterr().err
    assert storage.info("raw", name).metadata[STATUS_KEY] == "rejected"  # the mark is kept too

    assert main(["upload", source_id, str(stack_dir / "x.csv"), "--date", "2016-01-01", "--overwrite", *state]) == 0
    out = capsys.readouterr().out
    assert f"replaced the earlier raw/{name} ({len(first)} bytes" in out and f"uploaded raw/{name}" in out
    assert storage.read("raw", name)[0] == second
    assert STATUS_KEY not in storage.info("raw", name).metadata  # a new file: the next run judges it afresh
    assert main(["upload", source_id, str(stack_dir / "x.csv"), "--overwrite", *state]) == 0  # nothing to replace: a plain upload
    assert "replaced" not in capsys.readouterr().out
    assert sorted(info.name for info in storage.list("raw", f"{source_id}/")) == [name, f"{source_id}/2016/02/01/x.csv"]


def test_upload_with_a_date_checks_the_file_as_without_one(stack_dir, storage, source_id, capsys):
    from local.cli import main

    state = ["--state-dir", str(stack_dir)]
    (stack_dir / "garbage.csv").write_text("hello\nworld\n")
    (stack_dir / "empty.csv").write_bytes(b"")
    for name in ("garbage.csv", "empty.csv"):
        assert main(["upload", source_id, str(stack_dir / name), "--date", "2016-01-01", *state]) == 1
        refusal = capsys.readouterr().err
        assert refusal.startswith(f"not uploaded: blob '{name}': ") and "every run would reject it" in refusal
    assert list(storage.list("raw", f"{source_id}/")) == []

    frame = station_frame("Dongsi")
    april = frame[(frame.year == 2016) & (frame.month == 4)].reset_index(drop=True)
    april.loc[april.index[1::100], "hour"] = 25  # 8 rows with an hour that is none
    april.to_csv(stack_dir / "warned.csv", index=False)
    assert main(["upload", source_id, str(stack_dir / "warned.csv"), "--date", "2016-03-20", *state]) == 0
    out = capsys.readouterr().out
    assert "warned.csv: its rows start on 2016-04-01; dated 2016-03-20 as --date says" in out
    assert "warned.csv: warning: 8 row(s) have no valid timestamp; dropped" in out
    assert "dated after its first rows" not in out  # dated before its rows: every range that holds them reads it
    april.to_csv(stack_dir / "late.csv", index=False)
    assert main(["upload", source_id, str(stack_dir / "late.csv"), "--date", "2099-01-01", *state]) == 0
    out = capsys.readouterr().out
    assert "late.csv: warning: dated after its first rows" in out and "rows from 2016-04-01 on" in out

    assert main(["upload", source_id, str(stack_dir / "garbage.csv"), "--date", "2016-01-01", "--force", *state]) == 0
    assert "uploaded anyway (--force), dated 2016-01-01" in capsys.readouterr().out
    assert sorted(info.name for info in storage.list("raw", f"{source_id}/")) == [
        f"{source_id}/2016/01/01/garbage.csv",
        f"{source_id}/2016/03/20/warned.csv",
        f"{source_id}/2099/01/01/late.csv",
    ]


def test_upload_refuses_a_bad_date_or_an_api_url_as_bad_input(stack_dir, storage, source_id, capsys):
    from local.cli import main

    month_csv(stack_dir, "x.csv", 1)
    with pytest.raises(SystemExit) as refused:
        main(["upload", source_id, str(stack_dir / "x.csv"), "--date", "2016-13-01", "--state-dir", str(stack_dir)])
    assert refused.value.code == 2  # bad input: 2, as the README says
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --date: '2016-13-01' is not a date (yyyy-mm-dd)" in err
    with pytest.raises(SystemExit) as refused:
        main(["upload", source_id, str(stack_dir / "x.csv"), "--url", "http://127.0.0.1:7071"])
    assert refused.value.code == 2 and "upload takes no API URL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["upload", "--help"])
    assert "--url" not in capsys.readouterr().out  # not offered
    assert main(["upload", source_id, str(stack_dir / "nope.csv"), "--state-dir", str(stack_dir)]) == 2
    assert "nope.csv is not a file" in capsys.readouterr().err
    assert list(storage.list("raw", f"{source_id}/")) == []


def test_serve_status_and_upload_keep_to_MULTILINE_STATE_DIR(tmp_path, source_id):
    environment = {**os.environ, "MULTILINE_STATE_DIR": str(tmp_path)}
    state = tmp_path / "serve"
    month_csv(tmp_path, "x.csv", 1)

    def cli(*arguments):
        return subprocess.run(
            [sys.executable, "-m", "local.cli", *arguments],
            cwd=PROJECT_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    serve = start_serve(state, "--port", "0", env=environment)
    try:
        status = cli("status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "sources" in json.loads(status.stdout)
        upload = cli("upload", source_id, str(tmp_path / "x.csv"))
        assert upload.returncode == 0, upload.stdout + upload.stderr
        assert f"uploaded raw/{source_id}/2016/01/01/x.csv" in upload.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=90)
    gone = cli("status")
    assert gone.returncode == 1 and f"no running stack found ({state / 'stack.json'} is missing)" in gone.stderr


def test_serve_stops_and_says_so_when_its_azurite_dies(tmp_path):
    environment = {**os.environ, "MULTILINE_STATE_DIR": str(tmp_path)}
    stack_file = tmp_path / "serve" / "stack.json"
    serve = start_serve(stack_file.parent, "--port", "0", env=environment, stderr=subprocess.PIPE)
    try:
        azurite_pid = json.loads(stack_file.read_text())["azurite_pid"]
        os.kill(azurite_pid, signal.SIGKILL)
        _, stderr = serve.communicate(timeout=90)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert serve.returncode == 1
    assert f"Azurite (pid {azurite_pid}) exited" in stderr and "Start it again with `multiline serve`" in stderr
    assert not stack_file.exists()  # the next serve or CLI call finds no stale stack file
