"""`multiline`: run the demo, serve the local stack, look at the fleet, ask for a retrain or a rollback, upload a file."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

from shared.settings import PROJECT_ROOT


def default_serve_state() -> Path:
    """`serve`'s state directory unless --state-dir says another: `serve/` in MULTILINE_STATE_DIR (.multiline)."""
    from shared.settings import load_settings

    return load_settings().state_dir / "serve"


def load_local_settings(path: Path = PROJECT_ROOT / "local.settings.json") -> None:
    """Like the Functions host: `Values` of local.settings.json become settings, the environment wins."""
    if not path.exists():
        return
    try:
        values = json.loads(path.read_text()).get("Values", {})
    except (ValueError, AttributeError) as exc:
        raise SystemExit(f"{path} is not a settings file like local.settings.sample.json ({exc})") from None
    if not isinstance(values, dict):
        raise SystemExit(f"{path}: 'Values' must be an object of settings, like local.settings.sample.json's")
    for key, value in values.items():
        os.environ.setdefault(key, str(value))


def _stack_file(state_dir: Path) -> Path:
    return state_dir / "stack.json"


def _stack_info(args) -> dict:
    path = _stack_file(Path(args.state_dir))
    if getattr(args, "url", None):  # upload has no --url: it writes to the stack's Blob Storage
        return {"api": args.url.rstrip("/")}
    if not path.exists():
        raise SystemExit(f"no running stack found ({path} is missing): start one with `multiline serve`")
    info = _read_stack_file(path.parent)
    if info is None:
        raise SystemExit(f"{path} is not a stack file `multiline serve` wrote: start one with `multiline serve`")
    if "pid" in info and not _alive(info["pid"]):  # left behind by a serve that was killed
        raise SystemExit(
            f"the `multiline serve` that wrote {path} (pid {info['pid']}) is not running: start it again with "
            f"`multiline serve{'' if path.parent == default_serve_state() else f' --state-dir {path.parent}'}`"
        )
    return info


def _call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            code, data = response.status, response.read()
    except urllib.error.HTTPError as exc:
        code, data = exc.code, exc.read()
    except urllib.error.URLError as exc:
        raise SystemExit(f"the stack at {url} does not answer ({exc.reason}): is `multiline serve` running?") from exc
    except TimeoutError:
        raise SystemExit(f"the stack at {url} gave no answer within 30 s") from None
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SystemExit(
            f"{url} answered HTTP {code} with {data[:80]!r}, not a Multiline API answer: is --url the API's base URL?"
        )
    return code, body


def _read_stack_file(state_dir: Path) -> dict | None:
    try:
        return json.loads(_stack_file(state_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None


def running_serve(state_dir: Path) -> dict | None:
    """The stack file of a `multiline serve` that is alive on `state_dir`, if there is one."""
    info = _read_stack_file(state_dir)
    return info if info and _alive(info.get("pid")) else None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _require_free_port(port: int) -> None:
    from local.azurite import port_is_free

    # As the HTTP server binds (SO_REUSEADDR): a port whose last connections linger in TIME_WAIT after a stop
    # is free to serve again, and only a live listener counts as "in use".
    if not port_is_free(port):
        raise SystemExit(f"port {port} on 127.0.0.1 is in use: stop what uses it, or pass --port")


def cmd_serve(args) -> int:
    from local.azurite import AzuriteMissing
    from local.stack import LocalStack, StackOptions
    from shared.settings import load_settings
    from shared.spec import load_spec

    load_spec(load_settings().spec_path)  # a spec no run could use is refused before the stack starts (SpecError)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("azure", "multiline.durabletask"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    state_dir = Path(args.state_dir)
    previous = _read_stack_file(state_dir)
    if running_serve(state_dir):
        raise SystemExit(
            f"a `multiline serve` (pid {previous['pid']}) already runs on {state_dir} at {previous.get('api')}: "
            "stop it first, or give this one another --state-dir"
        )
    if previous and _alive(previous.get("azurite_pid")):
        os.kill(previous["azurite_pid"], signal.SIGTERM)  # left behind by a serve that was killed hard
        for _ in range(50):
            if not _alive(previous["azurite_pid"]):
                break
            time.sleep(0.1)
    _require_free_port(args.port)
    from local.azurite import port_is_free

    # Azurite on the port it had, if free: Blob clients set up from an earlier stack file keep working.
    port_file = state_dir / "azurite.port"
    try:
        azurite_port = int(port_file.read_text())
    except (FileNotFoundError, ValueError):
        azurite_port = None
    if azurite_port and not port_is_free(azurite_port):
        azurite_port = None
    try:
        stack = LocalStack(StackOptions(state_dir=state_dir, http_port=args.port, azurite_port=azurite_port)).start()
    except AzuriteMissing as exc:
        raise SystemExit(str(exc)) from None
    info = {
        "api": stack.base_url,
        "account_url": stack.account_url,
        "blob_connection_string": stack.azurite.connection_string,
        "pid": os.getpid(),
        "azurite_pid": stack.azurite.process.pid,
    }
    _stack_file(state_dir).write_text(json.dumps(info, indent=1))
    port_file.write_text(str(stack.azurite.port))
    print(
        f"Multiline local stack is up.\n  API and fleet page: {stack.base_url}/\n  Blob Storage (Azurite): {stack.account_url}"
        f"\n  Upload a file: multiline upload SOURCE FILE  (or any Blob client to container 'raw', "
        f"blob SOURCE/yyyy/mm/dd/NAME.csv)\n  Reconciled at start-up: {len(stack.reconciled)} source(s)\nCtrl-C stops it.",
        flush=True,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    exit_code = 0
    try:
        while not stopped.wait(1.0):
            # Without its Blob Storage the stack only hangs: every route and run waits on a dead port.
            azurite_code = stack.azurite.process.poll()
            if azurite_code is not None:
                print(
                    f"multiline serve: Azurite (pid {stack.azurite.process.pid}) exited with code {azurite_code}; "
                    "the stack cannot read or write blobs, so it stops (work in flight may take a minute or two to give up). "
                    "Start it again with `multiline serve` "
                    f"(its data stays in {state_dir}); Azurite's log: {stack.azurite.log_file}",
                    file=sys.stderr,
                    flush=True,
                )
                exit_code = 1
                break
    except KeyboardInterrupt:
        pass
    finally:
        # The stack file goes first: a stack that is stopping (work in flight may take a while to give up on a
        # dead Azurite) is no longer one for the other commands to address.
        mine = _read_stack_file(state_dir)
        if mine and mine.get("pid") == os.getpid():  # never remove another serve's file
            _stack_file(state_dir).unlink(missing_ok=True)
        stack.stop()
    return exit_code


def _refused(args, body: dict) -> int:
    """An API refusal: with --json the error document on stdout (for scripts), else its text on stderr."""
    if args.json:
        print(json.dumps(body, indent=1))
    else:
        print(body.get("error", body), file=sys.stderr)
    return 1


def cmd_status(args) -> int:
    from shared.fleet import format_table

    api = _stack_info(args)["api"]
    code, body = _call("GET", f"{api}/api/sources/{args.source}" if args.source else f"{api}/api/sources")
    if code != 200:
        return _refused(args, body)
    if args.json:
        print(json.dumps(body, indent=1))
        return 0
    print(format_table([body] if args.source else body["sources"]))
    if args.source:  # one source: what the table has no room for
        if body.get("reason"):
            print(f"reason: {body['reason']}")
        for item in body.get("problem_files") or []:
            print(f"{item['status']}: {item.get('error') or item.get('warning')}")
        if body.get("problem_files_not_listed"):
            print(body["problem_files_not_listed"])
    return 0


def _parse_filter(text: str) -> tuple[str, object]:
    column, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"filter {text!r} is not COLUMN=VALUE")
    try:
        return column, json.loads(value)
    except json.JSONDecodeError:
        return column, value


def cmd_retrain(args) -> int:
    api = _stack_info(args)["api"]
    body = {"start": args.start, "end": args.end, "filters": dict(args.filter or [])}
    code, answer = _call("POST", f"{api}/api/sources/{args.source}/retrain", body)
    print(json.dumps(answer, indent=1), file=sys.stdout if code == 202 else sys.stderr)
    return 0 if code == 202 else 1


def cmd_rollback(args) -> int:
    api = _stack_info(args)["api"]
    code, answer = _call("POST", f"{api}/api/sources/{args.source}/rollback", {"version": args.version})
    print(json.dumps(answer, indent=1), file=sys.stdout if code == 202 else sys.stderr)
    return 0 if code == 202 else 1


LEDGER_COLUMNS = [
    ("version", "version"),
    ("from", "from"),
    ("to", "to"),
    ("kind", "kind"),
    ("image", "image"),
    ("reason", "reason"),
]


def cmd_ledger(args) -> int:
    from shared.fleet import format_table

    api = _stack_info(args)["api"]
    code, body = _call("GET", f"{api}/api/sources/{args.source}/ledger")
    if code != 200:
        return _refused(args, body)
    if args.json:
        print(json.dumps(body, indent=1))
    elif not body["ledger"]:
        print(f"{args.source} has had no champion yet")
    else:
        rows = [{**entry, "image": (entry.get("image") or {}).get("image")} for entry in body["ledger"]]
        print(format_table(rows, LEDGER_COLUMNS))
    return 0


class _Unusable(Exception):
    """A file every run would reject: not uploaded unless --force."""


def _read_for_upload(path: Path, settings, spec) -> tuple[date, list[str]]:
    """The day the file's data starts (its first valid timestamp), read with the spec, and what a run will warn about.

    Raises _Unusable with the reason when a run could not use the file at all."""
    from shared.dataset import TIMESTAMP, DataFileError, read_table

    size = path.stat().st_size
    if size > settings.max_blob_bytes:  # not read: a run rejects it unread too
        raise _Unusable(f"{path.name}: {size} bytes, more than MULTILINE_MAX_BLOB_BYTES ({settings.max_blob_bytes})")
    warnings: list[str] = []
    try:
        frame = read_table(path.read_bytes(), path.name, spec, warnings=warnings)
    except DataFileError as exc:
        raise _Unusable(str(exc)) from None
    return frame[TIMESTAMP].min().date(), warnings  # read_table refuses a file without a usable timestamp


def _describe_blob(storage, container: str, name: str) -> str:
    """`N bytes, uploaded <when>[, marked <status> by a run]` of a blob, or '' when it is gone."""
    from shared.ports import NotFound
    from shared.source_data import STATUS_KEY

    try:
        info = storage.info(container, name)
    except NotFound:
        return ""
    when = info.created or info.last_modified
    text = f"{info.size} bytes, uploaded {when:%Y-%m-%d %H:%M:%S} UTC"
    if info.metadata.get(STATUS_KEY):
        text += f", marked {info.metadata[STATUS_KEY]} by a run"
    return text


def cmd_upload(args) -> int:
    from shared.blob_layout import BlobPathError, parse_raw_blob_name
    from shared.blob_storage import BlobStorage
    from shared.ports import PreconditionFailed
    from shared.settings import load_settings
    from shared.spec import load_spec

    path = Path(args.file)
    if not path.is_file():
        return _bad_input(args, f"{path} is not a file: give the path of a .csv, .csv.gz or .parquet file")
    settings = load_settings()
    try:  # the name first (its extension, the id): a file no run would list is not worth reading
        parse_raw_blob_name(
            f"{args.source}/{args.date or date.today():%Y/%m/%d}/{path.name}",
            settings.source_id_pattern,
            settings.source_id_max_length,
        )
    except BlobPathError as exc:
        return _bad_input(args, f"not uploaded: {exc}")
    spec = load_spec(settings.spec_path)  # SpecError: refused, as a bad setting
    info = _stack_info(args)
    if "blob_connection_string" not in info:
        raise SystemExit(
            f"{_stack_file(Path(args.state_dir))} has no Blob connection string, so it is no stack file of "
            "`multiline serve`: start the stack with `multiline serve` (upload writes to its Blob Storage)"
        )
    notes = []  # said once the file is uploaded
    try:  # with --date too: the date only chooses the folder, the file is checked all the same
        first_day, warnings = _read_for_upload(path, settings, spec)
    except _Unusable as exc:
        if not args.force:
            print(
                f"not uploaded: {exc}; every run would reject it. "
                "--force uploads it anyway (dated --date, or today), and the run keeps it marked as rejected",
                file=sys.stderr,
            )
            return 1
        day = args.date or date.today()
        notes.append(f"{exc}; uploaded anyway (--force), dated {day}")
    else:
        day = args.date or first_day
        if args.date:
            print(f"{path.name}: its rows start on {first_day}; dated {day} as --date says")
            if args.date > first_day:
                print(
                    f"{path.name}: warning: dated after its first rows: a retrain reads files by their folder date, "
                    f"so a range ending on or before {day} does not read this file's rows from {first_day} on"
                )
        else:
            print(f"{path.name}: its rows start on {first_day} (use --date to choose another day)")
        for warning in warnings:  # what a run will say about it too: it is used, minus what the warning drops
            print(f"{path.name}: warning: {warning}")
    name = f"{args.source}/{day:%Y/%m/%d}/{path.name}"
    data = path.read_bytes()
    storage = BlobStorage.from_connection_string(info["blob_connection_string"], ["raw"])
    try:  # create-only: an upload of the same name and day never replaces the earlier file unasked
        storage.write("raw", name, data, if_none_match="*")
    except PreconditionFailed:
        existing = _describe_blob(storage, "raw", name)
        if not args.overwrite:
            print(
                f"not uploaded: raw/{name} already exists{f' ({existing})' if existing else ''}. "
                "To keep both, rename the file (or upload it with another --date); "
                "to replace that blob and whatever a run marked on it, add --overwrite",
                file=sys.stderr,
            )
            return 1
        storage.write("raw", name, data)
        notes.append(f"replaced the earlier raw/{name}{f' ({existing})' if existing else ''} (--overwrite)")
    for note in notes:
        print(note)
    print(f"uploaded raw/{name}; the relay will post its BlobCreated event")
    return 0


class _DemoRunning(Exception):
    """Another `multiline demo` is alive on the same state directory."""


def _claim_demo(state_root: Path) -> Path:
    """`demo.pid` in the demo's state directory, holding this process's pid while it runs (as stack.json
    does for `serve`). Raises _DemoRunning while another demo that is alive holds it."""
    state_root.mkdir(parents=True, exist_ok=True)
    lock = state_root / "demo.pid"
    mine = state_root / f".demo.pid.{os.getpid()}"
    mine.write_text(json.dumps({"pid": os.getpid()}))
    try:
        for _ in range(3):
            try:
                os.link(mine, lock)  # atomic, and the file is whole before anyone can see it
                return lock
            except FileExistsError:
                try:
                    holder = json.loads(lock.read_text()).get("pid")
                except (FileNotFoundError, ValueError, AttributeError):
                    holder = None
                if _alive(holder):
                    raise _DemoRunning(
                        f"another `multiline demo` (pid {holder}) runs on {state_root / 'demo'}, which this one would "
                        "start afresh under it: wait for it to end, or give this one another --state-dir"
                    ) from None
                lock.unlink(missing_ok=True)  # left behind by a demo that was killed
        raise _DemoRunning(f"could not claim {lock}: another demo keeps starting there; try again")
    finally:
        mine.unlink(missing_ok=True)


def cmd_demo(args) -> int:
    from local.azurite import AzuriteMissing
    from local.demo import main_demo

    try:
        lock = _claim_demo(Path(args.state_dir))
    except _DemoRunning as exc:
        print(f"demo refused: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    # The engine reports its own shutdown as a cancelled stream: not news for a demo.
    logging.getLogger("multiline.durabletask").setLevel(logging.ERROR)
    try:
        return main_demo(args)
    except AzuriteMissing as exc:
        print(f"demo cannot start: {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            if json.loads(lock.read_text()).get("pid") == os.getpid():  # never remove another demo's file
                lock.unlink()
        except (FileNotFoundError, ValueError, AttributeError):
            pass


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: give 1-65535, or 0 for any free port") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is no TCP port: give 1-65535, or 0 for any free port")
    return port


def _version(text: str) -> int:
    try:
        version = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model version number: give one of the versions `multiline ledger SOURCE` lists"
        ) from None
    if version < 1:
        raise argparse.ArgumentTypeError(
            f"{version} is no model version (they count from 1): give one of the versions `multiline ledger SOURCE` lists"
        )
    return version


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (yyyy-mm-dd): the day the file's data starts") from None


def _no_url_for_upload(text: str):
    raise argparse.ArgumentTypeError(
        "upload takes no API URL: it writes to the Blob Storage of a `multiline serve`, which its stack file names "
        "(--state-dir picks the serve)"
    )


def _bad_input(args, message: str) -> int:
    """Input refused before anything was done (exit 2): with --json the error document on stdout, for scripts."""
    if getattr(args, "json", False):
        print(json.dumps({"error": message}, indent=1))
    else:
        print(f"multiline {args.command}: {message}", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """argparse, with a refused argument said in one line (exit 2) rather than the usage and then the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from local.demo import DEFAULT_DATA

    parser = _Parser(prog="multiline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="replay edge uploads through the local stack and print the fleet")
    demo.add_argument("--data", default=str(DEFAULT_DATA), help="folder with one file or folder per source")
    demo.add_argument("--spec", help="model spec JSON (default: specs/air-quality.json)")
    demo.add_argument("--initial-months", type=int, default=36, help="months uploaded as history first")
    demo.add_argument("--rounds", type=int, default=3, help="further months uploaded one at a time")
    demo.add_argument("--max-sources", type=int, help="only the first N sources")
    demo.add_argument("--round-timeout", type=float, default=600.0, help="seconds a round may take")
    demo.add_argument("--report", help="where to write the JSON report (default: demo-report.json in the state directory)")
    demo.add_argument(
        "--state-dir",
        help="where the demo keeps its stack's state, in demo/ (default: MULTILINE_STATE_DIR, .multiline/); "
        "one demo at a time per directory",
    )
    demo.set_defaults(handler=cmd_demo)

    serve = commands.add_parser("serve", help="run the local stack until Ctrl-C")
    serve.add_argument("--port", type=_port, default=7071, help="the API's port on 127.0.0.1 (default 7071; 0: any free one)")
    serve.add_argument("--state-dir", help="where the stack keeps its data (default: serve/ in MULTILINE_STATE_DIR, .multiline/)")
    serve.set_defaults(handler=cmd_serve)

    for name, handler, helptext in (
        ("status", cmd_status, "the fleet, or one source"),
        ("retrain", cmd_retrain, "ask for a retrain of one source over a date range"),
        ("upload", cmd_upload, "upload a data file for a source to the running stack"),
        ("rollback", cmd_rollback, "make an earlier champion of a source the champion again (and rebuild its image)"),
        ("ledger", cmd_ledger, "who was a source's champion from when to when, and why"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument(
            "--state-dir",
            help="the state directory of the `multiline serve` to address (default: serve/ in MULTILINE_STATE_DIR, .multiline/)",
        )
        if name != "upload":
            sub.add_argument("--url", help="API base URL (default: the running `multiline serve`)")
        else:  # not offered: upload writes to the stack's Blob Storage, which only its stack file names
            sub.add_argument("--url", type=_no_url_for_upload, help=argparse.SUPPRESS)
        sub.set_defaults(handler=handler)
        if name == "status":
            sub.add_argument("source", nargs="?")
            sub.add_argument("--json", action="store_true")
        elif name == "retrain":
            sub.add_argument("source")
            sub.add_argument("--start", required=True, help="ISO date, inclusive")
            sub.add_argument("--end", required=True, help="ISO date, exclusive")
            sub.add_argument("--filter", action="append", type=_parse_filter, help="COLUMN=VALUE (JSON value allowed)")
        elif name == "rollback":
            sub.add_argument("source")
            sub.add_argument("version", type=_version, help="a version that was champion before (see `multiline ledger`)")
        elif name == "ledger":
            sub.add_argument("source")
            sub.add_argument("--json", action="store_true")
        else:
            sub.add_argument("source")
            sub.add_argument("file")
            sub.add_argument(
                "--date",
                type=_day,
                help="the day of the folder the file goes to (yyyy-mm-dd; default: the day of its first timestamp); "
                "the file is checked either way",
            )
            sub.add_argument(
                "--force",
                action="store_true",
                help="upload a file that every run would reject (dated --date, or today; the run marks it rejected)",
            )
            sub.add_argument(
                "--overwrite",
                action="store_true",
                help="replace the blob of the same source, day and file name if there is one (else the upload is refused)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    load_local_settings()
    args = build_parser().parse_args(argv)
    from shared.settings import load_settings
    from shared.spec import SpecError

    try:
        settings = load_settings()
    except ValueError as exc:
        return _bad_input(args, f"{exc}: fix it in the environment or in local.settings.json")
    if args.state_dir is None:  # MULTILINE_STATE_DIR: the demo's stack goes in its demo/, serve's in its serve/
        args.state_dir = str(settings.state_dir if args.command == "demo" else settings.state_dir / "serve")
    if getattr(args, "source", None) is not None:  # before it goes into a URL or a blob name: refused with the reason
        from shared.blob_layout import BlobPathError, validate_source_id

        try:
            validate_source_id(args.source, settings.source_id_pattern, settings.source_id_max_length)
        except BlobPathError as exc:
            return _bad_input(args, str(exc))
    try:
        return args.handler(args)
    except SpecError as exc:
        where = "--spec" if args.command == "demo" else "MULTILINE_SPEC"
        return _bad_input(args, f"{exc}: fix the spec, or point {where} at one that works (specs/air-quality.json does)")
    except SystemExit as exc:
        if getattr(args, "json", False) and isinstance(exc.code, str):  # scripts read one JSON document
            print(json.dumps({"error": exc.code}, indent=1))
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
