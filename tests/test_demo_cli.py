"""`multiline demo --data DIR --spec FILE` on another folder of station files, as a user runs it."""

import json
import os
import subprocess
import sys
import time
from datetime import date

from shared.image_context import image_name
from shared.settings import PROJECT_ROOT
from tests.conftest import station_frame
from tests.stack_helpers import start_serve


def test_demo_on_another_folder_of_files(tmp_path, fast_spec_path):
    data = tmp_path / "stations"
    data.mkdir()
    for station in ("Gucheng", "Huairou"):
        frame = station_frame(station)
        frame = frame[(frame.year == 2015) & (frame.month <= 4)]
        frame.to_csv(data / f"site_{station}_2015.csv", index=False)
    before = sorted((path.name, path.stat().st_mtime_ns) for path in data.iterdir())
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "local.cli",
            "demo",
            "--data",
            str(data),
            "--spec",
            str(fast_spec_path),
            "--initial-months",
            "3",
            "--rounds",
            "1",
            "--state-dir",
            str(tmp_path / "state"),
            "--report",
            str(report_path),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "round 1/1: uploading 2015-04" in completed.stdout
    report = json.loads(report_path.read_text())
    rows = {row["source_id"]: row for row in report["sources"]}
    assert set(rows) == {"Gucheng", "Huairou"}  # common prefix and suffix of the file names dropped
    for row in rows.values():
        assert row["champion_version"] >= 1 and row["champion_loss"] > 0
        assert [item["round"] for item in row["history"]] == [0, 1]
        assert row["history"][0]["outcome"] == "promoted"
        assert all(item["outcome"] in ("promoted", "kept") for item in row["history"])
        assert row["image"] == image_name(row["source_id"], row["champion_version"])
    assert report["totals"]["failed"] == []
    assert sorted((path.name, path.stat().st_mtime_ns) for path in data.iterdir()) == before  # never written into


def test_demo_says_what_is_wrong_with_a_bad_folder(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "local.cli", "demo", "--data", str(tmp_path / "nope"), "--state-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2 and "does not exist" in completed.stderr


def test_upload_dates_a_file_by_its_first_row_unless_told(tmp_path, azurite, storage, source_id, capsys):
    from local.cli import _stack_file, main

    _stack_file(tmp_path).write_text(json.dumps({"blob_connection_string": azurite.connection_string}))
    old = tmp_path / "march.csv"
    frame = station_frame("Dongsi")
    frame[(frame.year == 2016) & (frame.month == 3)].to_csv(old, index=False)
    assert main(["upload", source_id, str(old), "--state-dir", str(tmp_path)]) == 0
    assert "its rows start on 2016-03-01" in capsys.readouterr().out
    assert main(["upload", source_id, str(old), "--date", "2016-02-20", "--state-dir", str(tmp_path)]) == 0

    warned = tmp_path / "warned.csv"
    april = frame[(frame.year == 2016) & (frame.month == 4)].reset_index(drop=True)
    april.loc[april.index[1::100], "hour"] = 25  # 8 rows with an hour that is none
    april.to_csv(warned, index=False)
    assert main(["upload", source_id, str(warned), "--state-dir", str(tmp_path)]) == 0
    assert "warned.csv: warning: 8 row(s) have no valid timestamp; dropped" in capsys.readouterr().out
    (tmp_path / "notes.txt").write_text("not data")
    assert main(["upload", source_id, str(tmp_path / "notes.txt"), "--state-dir", str(tmp_path)]) == 2  # before it is read
    assert "not uploaded: " in capsys.readouterr().err
    broken = tmp_path / "broken.csv"
    broken.write_text("year,month\n2016,3\n")
    assert main(["upload", source_id, str(broken), "--state-dir", str(tmp_path)]) == 1  # a run would reject it
    refusal = capsys.readouterr().err
    assert "not uploaded: blob 'broken.csv': missing column(s)" in refusal and "--force" in refusal
    assert main(["upload", source_id, str(broken), "--force", "--state-dir", str(tmp_path)]) == 0
    assert "uploaded anyway (--force)" in capsys.readouterr().out
    today = date.today()
    assert sorted(info.name for info in storage.list("raw", f"{source_id}/")) == sorted(
        [
            f"{source_id}/2016/03/01/march.csv",
            f"{source_id}/2016/02/20/march.csv",
            f"{source_id}/2016/04/01/warned.csv",
            f"{source_id}/{today:%Y/%m/%d}/broken.csv",
        ]
    )


def test_upload_refuses_a_file_without_a_usable_time_stamp_or_too_big_to_read_unless_forced(
    tmp_path, azurite, storage, source_id, capsys, monkeypatch
):
    from local.cli import _stack_file, main

    _stack_file(tmp_path).write_text(json.dumps({"blob_connection_string": azurite.connection_string}))
    frame = station_frame("Dongsi")
    future = frame[(frame.year == 2016) & (frame.month == 2)].assign(year=2030)  # 29 Feb 2030 is no day; the rest is future
    future.to_csv(tmp_path / "future.csv", index=False)
    frame.head(50).to_csv(tmp_path / "big.csv", index=False)
    assert main(["upload", source_id, str(tmp_path / "future.csv"), "--state-dir", str(tmp_path)]) == 1
    assert "'future.csv': no row has a usable timestamp: 24 have no valid timestamp and 672 are" in capsys.readouterr().err
    monkeypatch.setenv("MULTILINE_MAX_BLOB_BYTES", "1000")
    assert main(["upload", source_id, str(tmp_path / "big.csv"), "--state-dir", str(tmp_path)]) == 1
    assert "more than MULTILINE_MAX_BLOB_BYTES (1000)" in capsys.readouterr().err
    assert list(storage.list("raw", f"{source_id}/")) == []
    for name in ("future.csv", "big.csv"):  # forced: uploaded (for the run to mark), dated today
        assert main(["upload", source_id, str(tmp_path / name), "--force", "--state-dir", str(tmp_path)]) == 0
        assert "uploaded anyway (--force)" in capsys.readouterr().out
    today = date.today()
    assert sorted(info.name for info in storage.list("raw", f"{source_id}/")) == sorted(
        [f"{source_id}/{today:%Y/%m/%d}/future.csv", f"{source_id}/{today:%Y/%m/%d}/big.csv"]
    )


def test_demo_names_sources_by_whole_words_of_their_file_names(tmp_path):
    import pytest

    from local.demo import DATA_PATTERNS, DemoError, discover_sources

    assert "*.csv" in DATA_PATTERNS
    cases = {
        ("station_north.csv", "station_south.csv"): {"north", "south"},
        ("meter_10.csv", "meter_20.csv"): {"10", "20"},
        ("PRSA_Data_Dongsi_2013-2017.csv", "PRSA_Data_Gucheng_2013-2017.csv"): {"Dongsi", "Gucheng"},
    }
    for names, expected in cases.items():
        folder = tmp_path / names[0]
        folder.mkdir()
        for name in names:
            (folder / name).write_text("year\n")
        assert set(discover_sources(folder)) == expected
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "a b.csv").write_text("year\n")
    (clash / "a-b.csv").write_text("year\n")
    with pytest.raises(DemoError, match=r"a b.csv and a-b.csv .* same source id 'a-b'"):
        discover_sources(clash)


def test_the_cli_refuses_a_source_id_it_could_not_put_in_a_url(capsys):
    from local.cli import main

    for source_id in ("Dong si", "ü", "a?b", "Dongsi/ledger"):
        for command in (["status", source_id], ["ledger", source_id], ["rollback", source_id, "1"]):
            assert main([*command, "--url", "http://127.0.0.1:9"]) == 2
            assert "outside the allowed pattern" in capsys.readouterr().err
    assert main(["upload", "", "README.md"]) == 2 and "source id is empty" in capsys.readouterr().err


def test_a_broken_local_settings_file_is_named(tmp_path):
    import pytest

    from local.cli import load_local_settings

    for text in ("{not json", '{"Values": ["a"]}', "[1]"):
        (tmp_path / "local.settings.json").write_text(text)
        with pytest.raises(SystemExit, match="local.settings.json"):
            load_local_settings(tmp_path / "local.settings.json")


def test_the_demo_does_not_wipe_a_serve_running_on_its_state(tmp_path):
    (tmp_path / "demo").mkdir()
    keeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "demo" / "stack.json").write_text(json.dumps({"pid": keeper.pid, "api": "http://127.0.0.1:7072"}))
        completed = subprocess.run(
            [sys.executable, "-m", "local.cli", "demo", "--max-sources", "1", "--rounds", "0", "--state-dir", str(tmp_path)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        keeper.kill()
    assert completed.returncode == 2 and f"runs on {tmp_path / 'demo'}" in completed.stderr
    assert (tmp_path / "demo" / "stack.json").exists()


def test_the_cli_says_when_its_stack_is_gone_or_the_url_is_no_multiline_api(tmp_path, capsys):
    import http.server
    import threading

    import pytest

    from local.cli import _stack_file, main

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _stack_file(tmp_path).write_text(json.dumps({"pid": int(gone.stdout), "api": "http://127.0.0.1:9"}))
    for command in (["status"], ["retrain", "Dongsi", "--start", "2016-01-01", "--end", "2016-02-01"]):
        with pytest.raises(SystemExit, match=r"\(pid \d+\) is not running: start it again with `multiline serve --state-dir"):
            main([*command, "--state-dir", str(tmp_path)])
    assert main(["status", "--json", "--state-dir", str(tmp_path)]) == 1  # for scripts: still one JSON document
    assert "is not running" in json.loads(capsys.readouterr().out)["error"]

    class Page(http.server.BaseHTTPRequestHandler):  # some other web server on the port
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for command in (["status"], ["ledger", "Dongsi"], ["retrain", "Dongsi", "--start", "2016-01-01", "--end", "2016-02-01"]):
            with pytest.raises(SystemExit, match=r"answered HTTP 200 with b'<html>hello</html>', not a Multiline API"):
                main([*command, "--url", url])
    finally:
        server.shutdown()
        server.server_close()


def test_the_demo_names_a_station_file_it_cannot_replay(tmp_path):
    import pytest

    from local.demo import DemoError, plan
    from shared.spec import load_spec

    spec = load_spec(PROJECT_ROOT / "specs" / "air-quality.json")
    frame = station_frame("Dongsi")
    month = frame[(frame.year == 2015) & (frame.month <= 2)]
    text = month.to_csv(index=False)
    broken = {
        "latin1": (text.replace("NW", "N\u00c9", 1).encode("latin-1"), "not UTF-8"),
        "ragged": (text.replace("\n", ",x,y\n", 2).replace(",x,y\n", "\n", 1).encode(), r"field\(s\) more than the header"),
        "undated": (month.assign(year="soon").to_csv(index=False).encode(), "no row has a valid timestamp"),
    }
    for name, (payload, reason) in broken.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"station_{name}.csv").write_bytes(payload)
        (folder / "station_fine.csv").write_text(text)
        with pytest.raises(DemoError, match=reason):
            plan(folder, spec, initial_months=1, rounds=1, max_sources=None)


def test_serve_keeps_its_azurite_port_across_restarts(tmp_path):
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "serve"
    accounts = []
    for _ in range(2):
        serve = start_serve(state, "--port", str(port), "--state-dir", str(state))
        try:
            accounts.append(json.loads((state / "stack.json").read_text())["account_url"])
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=90)
        assert not (state / "stack.json").exists()
    assert accounts[0] == accounts[1]  # Blob clients set up from the first stack file still reach it


def test_a_bad_spec_setting_or_port_is_said_in_one_line(tmp_path):
    (tmp_path / "bad.json").write_text('{"target": 1')
    (tmp_path / "x.csv").write_text("year,month,day,hour\n2016,1,1,0\n")
    bad_spec = {"MULTILINE_SPEC": str(tmp_path / "bad.json")}
    cases = [
        (["upload", "Dongsi", str(tmp_path / "x.csv"), "--state-dir", str(tmp_path)], bad_spec, "is not valid JSON"),
        (["serve", "--port", "0", "--state-dir", str(tmp_path / "serve")], bad_spec, "MULTILINE_SPEC"),
        (["demo", "--spec", str(tmp_path / "bad.json"), "--state-dir", str(tmp_path)], {}, "point --spec at one"),
        (["upload", "Dongsi", str(tmp_path / "x.csv")], {"MULTILINE_MAX_BLOB_BYTES": "abc"}, "MULTILINE_MAX_BLOB_BYTES must be"),
        (["status", "--json"], {"MULTILINE_RECONCILE_SECONDS": "often"}, "MULTILINE_RECONCILE_SECONDS must be"),
        (["serve", "--port", "99999", "--state-dir", str(tmp_path / "serve")], {}, "99999 is no TCP port"),
        (["serve", "--port", "http", "--state-dir", str(tmp_path / "serve")], {}, "'http' is not a port number"),
    ]
    for arguments, settings, expected in cases:
        completed = subprocess.run(
            [sys.executable, "-m", "local.cli", *arguments],
            cwd=PROJECT_ROOT,
            env={**os.environ, **settings},
            capture_output=True,
            text=True,
            timeout=120,
        )
        said = completed.stdout if "--json" in arguments else completed.stderr
        assert completed.returncode == 2 and expected in said and "Traceback" not in said, (arguments, completed)
        if "--json" in arguments:  # for scripts: still one JSON document
            assert expected in json.loads(completed.stdout)["error"]
        else:
            assert said.count("\n") == 1 and said.startswith(f"multiline {arguments[0]}: "), said
    assert not (tmp_path / "serve").exists()  # refused before the stack started


def test_the_cli_refuses_a_version_below_one_and_says_a_refused_id_as_json(capsys):
    import pytest

    from local.cli import main

    for version, expected in (("0", "0 is no model version (they count from 1)"), ("v2", "'v2' is not a model version")):
        with pytest.raises(SystemExit) as refused:
            main(["rollback", "Dongsi", version, "--url", "http://127.0.0.1:9"])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and expected in err and "multiline ledger SOURCE" in err
    assert main(["status", "a/b", "--json", "--url", "http://127.0.0.1:9"]) == 2
    out, err = capsys.readouterr()
    assert "outside the allowed pattern" in json.loads(out)["error"] and err == ""


def test_a_second_demo_on_the_same_state_is_refused_while_the_first_runs(tmp_path, fast_spec_path):
    import queue
    import threading

    data = tmp_path / "stations"
    data.mkdir()
    frame = station_frame("Gucheng")
    frame[(frame.year == 2015) & (frame.month <= 4)].to_csv(data / "Gucheng.csv", index=False)
    state = tmp_path / "state"
    demo = [sys.executable, "-m", "local.cli", "demo", "--data", str(data), "--spec", str(fast_spec_path)]
    demo += ["--initial-months", "3", "--rounds", "1", "--round-timeout", "240", "--state-dir", str(state)]
    first = subprocess.Popen(demo, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in first.stdout], daemon=True).start()
    said = []
    try:
        while not said or "stack up" not in said[-1]:  # the first demo's stack runs on state/demo
            said.append(lines.get(timeout=120))
        second = subprocess.run(demo, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"another `multiline demo` (pid {first.pid}) runs on {state / 'demo'}" in second.stderr
        first.wait(timeout=400)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    time.sleep(0.5)  # the reader has the last lines
    said += list(lines.queue)
    assert first.returncode == 0, "".join(said)[-4000:]  # not wiped under it
    assert any("round 1/1: uploading 2015-04" in line for line in said)
    assert not (state / "demo.pid").exists()  # the next demo may run
