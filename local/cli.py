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

DEFAULT_SERVE_STATE = PROJECT_ROOT / ".multiline" / "serve"


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
    if args.url:
        return {"api": args.url.rstrip("/")}
    if not path.exists():
        raise SystemExit(f"no running stack found ({path} is missing): start one with `multiline serve`")
    info = _read_stack_file(path.parent)
    if info is None:
        raise SystemExit(f"{path} is not a stack file `multiline serve` wrote: start one with `multiline serve`")
    if "pid" in info and not _alive(info["pid"]):  # left behind by a serve that was killed
        raise SystemExit(
            f"the `multiline serve` that wrote {path} (pid {info['pid']}) is not running: start it again with "
            f"`multiline serve{'' if path.parent == DEFAULT_SERVE_STATE else f' --state-dir {path.parent}'}`"
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
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        mine = _read_stack_file(state_dir)
        if mine and mine.get("pid") == os.getpid():  # never remove another serve's file
            _stack_file(state_dir).unlink(missing_ok=True)
    return 0


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


def _first_day(path: Path, settings) -> date:
    """The day the file's data starts (its first valid timestamp), read with the spec.

    Raises _Unusable with the reason when a run could not use the file at all."""
    from shared.dataset import TIMESTAMP, DataFileError, read_table
    from shared.spec import load_spec

    size = path.stat().st_size
    if size > settings.max_blob_bytes:  # not read: a run rejects it unread too
        raise _Unusable(f"{path.name}: {size} bytes, more than MULTILINE_MAX_BLOB_BYTES ({settings.max_blob_bytes})")
    warnings: list[str] = []
    try:
        frame = read_table(path.read_bytes(), path.name, load_spec(settings.spec_path), warnings=warnings)
    except DataFileError as exc:
        raise _Unusable(str(exc)) from None
    day = frame[TIMESTAMP].min().date()  # read_table refuses a file without a usable timestamp
    print(f"{path.name}: its rows start on {day} (use --date to choose another day)")
    for warning in warnings:  # what a run will say about it too: it is used, minus what the warning drops
        print(f"{path.name}: warning: {warning}")
    return day


def cmd_upload(args) -> int:
    from shared.blob_storage import BlobStorage

    info = _stack_info(args)
    if "blob_connection_string" not in info:
        raise SystemExit("upload needs the stack file of `multiline serve` (not --url)")
    from shared.blob_layout import BlobPathError, parse_raw_blob_name
    from shared.settings import load_settings

    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"{path} is not a file")
    settings = load_settings()
    try:
        day = date.fromisoformat(args.date) if args.date else None
    except ValueError:
        raise SystemExit(f"--date {args.date!r} is not a date (yyyy-mm-dd): the day the file's data starts") from None
    try:  # the name first (its extension, the id): a file no run would list is not worth reading
        parse_raw_blob_name(
            f"{args.source}/{day or date.today():%Y/%m/%d}/{path.name}", settings.source_id_pattern, settings.source_id_max_length
        )
    except BlobPathError as exc:
        raise SystemExit(f"not uploaded: {exc}") from None
    if day is None:
        try:
            day = _first_day(path, settings)
        except _Unusable as exc:
            if not args.force:
                print(
                    f"not uploaded: {exc}; every run would reject it. "
                    "--force uploads it anyway (dated today, or --date), and the run keeps it marked as rejected",
                    file=sys.stderr,
                )
                return 1
            day = date.today()
            print(f"{exc}; uploaded anyway (--force), dated {day}")
    name = f"{args.source}/{day:%Y/%m/%d}/{path.name}"
    storage = BlobStorage.from_connection_string(info["blob_connection_string"], ["raw"])
    storage.write("raw", name, path.read_bytes())
    print(f"uploaded raw/{name}; the relay will post its BlobCreated event")
    return 0


def cmd_demo(args) -> int:
    from local.azurite import AzuriteMissing
    from local.demo import main_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    # The engine reports its own shutdown as a cancelled stream: not news for a demo.
    logging.getLogger("multiline.durabletask").setLevel(logging.ERROR)
    try:
        return main_demo(args)
    except AzuriteMissing as exc:
        print(f"demo cannot start: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    from local.demo import DEFAULT_DATA

    parser = argparse.ArgumentParser(prog="multiline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="replay edge uploads through the local stack and print the fleet")
    demo.add_argument("--data", default=str(DEFAULT_DATA), help="folder with one file or folder per source")
    demo.add_argument("--spec", help="model spec JSON (default: specs/air-quality.json)")
    demo.add_argument("--initial-months", type=int, default=36, help="months uploaded as history first")
    demo.add_argument("--rounds", type=int, default=3, help="further months uploaded one at a time")
    demo.add_argument("--max-sources", type=int, help="only the first N sources")
    demo.add_argument("--round-timeout", type=float, default=600.0, help="seconds a round may take")
    demo.add_argument("--report", help="where to write the JSON report (default .multiline/demo-report.json)")
    demo.add_argument("--state-dir", help="where the demo keeps its stack's state (default .multiline/)")
    demo.set_defaults(handler=cmd_demo)

    serve = commands.add_parser("serve", help="run the local stack until Ctrl-C")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--state-dir", default=str(DEFAULT_SERVE_STATE))
    serve.set_defaults(handler=cmd_serve)

    for name, handler, helptext in (
        ("status", cmd_status, "the fleet, or one source"),
        ("retrain", cmd_retrain, "ask for a retrain of one source over a date range"),
        ("upload", cmd_upload, "upload a data file for a source to the running stack"),
        ("rollback", cmd_rollback, "make an earlier champion of a source the champion again (and rebuild its image)"),
        ("ledger", cmd_ledger, "who was a source's champion from when to when, and why"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--state-dir", default=str(DEFAULT_SERVE_STATE))
        sub.add_argument("--url", help="API base URL (default: the running `multiline serve`)")
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
            sub.add_argument("version", type=int, help="a version that was champion before (see `multiline ledger`)")
        elif name == "ledger":
            sub.add_argument("source")
            sub.add_argument("--json", action="store_true")
        else:
            sub.add_argument("source")
            sub.add_argument("file")
            sub.add_argument(
                "--date", help="the day the file's data starts (yyyy-mm-dd; default: the first timestamp in the file)"
            )
            sub.add_argument("--force", action="store_true", help="upload a file that every run would reject")
    return parser


def main(argv: list[str] | None = None) -> int:
    load_local_settings()
    args = build_parser().parse_args(argv)
    if getattr(args, "source", None) is not None:  # before it goes into a URL or a blob name: refused with the reason
        from shared.blob_layout import BlobPathError, validate_source_id
        from shared.settings import load_settings

        settings = load_settings()
        try:
            validate_source_id(args.source, settings.source_id_pattern, settings.source_id_max_length)
        except BlobPathError as exc:
            print(f"multiline {args.command}: {exc}", file=sys.stderr)
            return 2
    try:
        return args.handler(args)
    except SystemExit as exc:
        if getattr(args, "json", False) and isinstance(exc.code, str):  # scripts read one JSON document
            print(json.dumps({"error": exc.code}, indent=1))
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
