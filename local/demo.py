"""`multiline demo`: replay edge uploads of a folder of source files through the real local stack.

Each source's data is cut into monthly CSV files. The first `initial_months` months are uploaded at
once (the history), then each further month is uploaded one round at a time, each upload triggering
the source's orchestration through the blob relay, as Event Grid would.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from local.devices import log_live_predictions
from local.stack import LocalStack, StackOptions
from shared import codec
from shared.dataset import DataFileError, build_timestamp, parse_file
from shared.fleet import COLUMNS, fleet_view, format_table
from shared.run_store import latest_run
from shared.settings import PROJECT_ROOT
from shared.spec import ModelSpec, load_spec

DEFAULT_DATA = PROJECT_ROOT / "data" / "air-quality"
DATA_PATTERNS = ("*.csv", "*.csv.gz", "*.parquet")
FINAL = ("completed", "failed", "terminated")


class DemoError(RuntimeError):
    pass


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


SEPARATORS = ("_", "-", ".", " ")


def _common_affixes(names: list[str]) -> tuple[str, str]:
    if len(names) < 2:
        return "", ""
    prefix = os.path.commonprefix(names)
    suffix = os.path.commonprefix([name[::-1] for name in names])[::-1]
    # Only whole words: `station_north`, `station_south` -> `north`, `south` (not `nor`, `sou`).
    prefix = prefix[: max(prefix.rfind(sep) for sep in SEPARATORS) + 1]
    starts = [suffix.find(sep) for sep in SEPARATORS if sep in suffix]
    suffix = suffix[min(starts) :] if starts else ""
    # Never strip into the distinguishing part of the shortest name.
    if any(len(name) <= len(prefix) + len(suffix) for name in names):
        return "", ""
    return prefix, suffix


def source_id_from(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")
    return cleaned[:63] or "source"


def discover_sources(data_dir: Path) -> dict[str, list[Path]]:
    """One file per source directly in the folder, or one sub-folder of files per source."""
    if not data_dir.is_dir():
        raise DemoError(f"data folder {data_dir} does not exist")
    entries: dict[str, list[Path]] = {}
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        files = sorted(f for pattern in DATA_PATTERNS for f in folder.glob(pattern))
        if files:
            entries[folder.name] = files
    files = sorted(f for pattern in DATA_PATTERNS for f in data_dir.glob(pattern))
    stems = [_stem(f) for f in files]
    prefix, suffix = _common_affixes(stems)
    for path, stem in zip(files, stems):
        entries[stem[len(prefix) : len(stem) - len(suffix)] if suffix else stem[len(prefix) :]] = [path]
    if not entries:
        raise DemoError(f"no data files ({', '.join(DATA_PATTERNS)}) in {data_dir} or its sub-folders")
    sources: dict[str, list[Path]] = {}
    for name, paths in entries.items():
        source_id = source_id_from(name)
        if source_id in sources:
            raise DemoError(
                f"{sources[source_id][0].name} and {paths[0].name} in {data_dir} map to the same source id "
                f"{source_id!r}: rename one (a source id keeps letters, digits, '_' and '-')"
            )
        sources[source_id] = paths
    return sources


def read_source(paths: list[Path], spec: ModelSpec) -> pd.DataFrame:
    frames = []
    for path in paths:
        try:  # the parser runs use, so that a file they would refuse is named with the same reason
            frames.append(parse_file(path.read_bytes(), path.name, spec, []))
        except DataFileError as exc:
            raise DemoError(f"{path}: {exc}; the demo replays files as they are: fix or remove it") from None
    frame = pd.concat(frames, ignore_index=True)
    missing = [column for column in spec.required_columns if column not in frame.columns]
    if missing:
        raise DemoError(f"{paths[0]}: missing column(s) {missing} that the spec {spec.name!r} needs")
    return frame


def monthly_uploads(frame: pd.DataFrame, spec: ModelSpec, source_id: str) -> dict[str, tuple[str, bytes]]:
    """month (yyyy-mm) -> (blob name, CSV bytes) of the source's original rows in that month."""
    try:
        stamps = build_timestamp(frame, source_id, spec)
    except DataFileError as exc:
        raise DemoError(str(exc)) from None
    uploads = {}
    for month, part in frame.groupby(stamps.dt.strftime("%Y-%m")):
        year, mm = month.split("-")
        uploads[month] = (f"{source_id}/{year}/{mm}/01/{month}.csv", part.to_csv(index=False).encode())
    return uploads


@dataclass
class DemoPlan:
    sources: dict[str, dict[str, tuple[str, bytes]]]
    initial: list[str]
    rounds: list[str]
    notes: list[str] = field(default_factory=list)


def plan(data_dir: Path, spec: ModelSpec, initial_months: int, rounds: int, max_sources: int | None) -> DemoPlan:
    discovered = discover_sources(data_dir)
    if max_sources:
        discovered = dict(list(discovered.items())[:max_sources])
    sources = {source_id: monthly_uploads(read_source(paths, spec), spec, source_id) for source_id, paths in discovered.items()}
    months = sorted({month for uploads in sources.values() for month in uploads})
    notes = []
    if len(months) < 2:
        raise DemoError(f"the data in {data_dir} spans {len(months)} month(s); the demo needs at least 2")
    if initial_months + rounds > len(months):
        initial_months = max(1, len(months) - rounds)
        rounds = len(months) - initial_months
        notes.append(f"data spans {len(months)} months: using {initial_months} initial months and {rounds} rounds")
    return DemoPlan(sources, months[:initial_months], months[initial_months : initial_months + rounds], notes)


def _say(message: str) -> None:
    print(message, flush=True)


def upload_months(storage, container: str, plan_: DemoPlan, months: list[str]) -> dict[str, set[str]]:
    jobs = [(source_id, *uploads[month]) for source_id, uploads in plan_.sources.items() for month in months if month in uploads]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda job: storage.write(container, job[1], job[2]), jobs))
    expected: dict[str, set[str]] = {}
    for source_id, name, _ in jobs:
        expected.setdefault(source_id, set()).add(name)
    return expected


def deliver_events(stack: LocalStack, attempts: int = 5) -> int:
    """The blob relay's BlobCreated events for what was just uploaded, posted to the webhook now."""
    for attempt in range(attempts):
        try:
            return stack.deliver_events()
        except Exception as exc:  # the relay keeps what it could not post and posts it on the next try
            if attempt == attempts - 1:
                raise DemoError(f"the blob relay could not post the upload events: {exc}") from exc
            time.sleep(1 + attempt)
    return 0


def wait_for_round(stack: LocalStack, uploaded: dict[str, set[str]], label: str, timeout: float) -> dict[str, dict]:
    """Wait until every source's orchestration has finished a run that saw all of its uploaded blobs."""
    ports = stack.ports
    runs_container = ports.settings.containers.runs
    done: dict[str, dict] = {}
    started = time.monotonic()
    last_print = 0.0
    while len(done) < len(uploaded):
        for source_id, names in uploaded.items():
            if source_id in done:
                continue
            state = stack.orchestrations.status(f"retrain-{source_id}")
            if not state or state["runtime_status"] not in FINAL:
                continue
            run = latest_run(ports.storage, runs_container, source_id)
            manifest_uri = ((run or {}).get("manifest") or {}).get("manifest_uri")
            if not manifest_uri:
                if run and run.get("outcome") == "failed":
                    done[source_id] = run
                continue
            container, _, name = manifest_uri.partition("/")
            manifest = codec.loads(ports.storage.read(container, name)[0])
            seen = set(manifest["blobs"]) | {item["blob"] for item in manifest.get("skipped", [])}
            if names <= seen:
                done[source_id] = run
        elapsed = time.monotonic() - started
        if elapsed - last_print >= 5 or len(done) == len(uploaded):
            busy = []
            for source_id in uploaded:
                if source_id not in done:
                    state = stack.orchestrations.status(f"retrain-{source_id}") or {}
                    busy.append(f"{source_id}:{(state.get('custom_status') or {}).get('step', 'waiting')}")
            _say(
                f"  [{label}] {elapsed:5.0f}s  {len(done)}/{len(uploaded)} sources done"
                + (f"; working: {', '.join(busy)}" if busy else "")
            )
            last_print = elapsed
        if len(done) < len(uploaded):
            if elapsed > timeout:
                raise DemoError(
                    f"round {label}: sources {sorted(set(uploaded) - set(done))} did not finish within {timeout:.0f} s"
                )
            time.sleep(0.5)
    return done


def run_demo(
    data_dir: Path = DEFAULT_DATA,
    spec_path: Path | None = None,
    initial_months: int = 36,
    rounds: int = 3,
    state_dir: Path | None = None,
    report_path: Path | None = None,
    max_sources: int | None = None,
    round_timeout: float = 600.0,
    settings: dict | None = None,
) -> int:
    wall = time.monotonic()
    state_root = state_dir or PROJECT_ROOT / ".multiline"
    demo_state = state_root / "demo"
    report_path = report_path or state_root / "demo-report.json"
    spec_path = Path(spec_path) if spec_path else PROJECT_ROOT / "specs" / "air-quality.json"
    spec = load_spec(spec_path)
    _say(f"multiline demo: data {data_dir}, spec {spec_path} ({spec.name})")
    demo_plan = plan(Path(data_dir), spec, initial_months, rounds, max_sources)
    for note in demo_plan.notes:
        _say(f"  note: {note}")
    _say(f"  {len(demo_plan.sources)} sources: {', '.join(demo_plan.sources)}")
    _say(
        f"  history: {demo_plan.initial[0]}..{demo_plan.initial[-1]} ({len(demo_plan.initial)} monthly files per source); "
        f"then {len(demo_plan.rounds)} round(s): {', '.join(demo_plan.rounds)}"
    )
    if demo_state.exists():
        from local.cli import running_serve

        running = running_serve(demo_state)
        if running:
            raise DemoError(
                f"a `multiline serve` (pid {running['pid']}) runs on {demo_state}, which the demo starts afresh: "
                "stop it first, or give the demo another --state-dir"
            )
        shutil.rmtree(demo_state)  # a demo starts from an empty storage account
    stack_settings = {
        "MULTILINE_SPEC": str(spec_path),
        "MULTILINE_DEBOUNCE_SECONDS": 2,
        # A poll is an activity plus a durable timer, and durabletask replays a run's whole history at each one:
        # at 0.5 s, eight runs waiting a minute for the fleet model cost more CPU than the comparisons. A job's
        # end is seen at most this late.
        "MULTILINE_POLL_SECONDS": 2,
        **(settings or {}),
    }
    history: dict[str, list[dict]] = {source_id: [] for source_id in demo_plan.sources}
    # The demo is the only uploader and knows when it uploaded: the relay posts each round's events right after
    # the uploads (all of a round in one delivery) instead of listing the raw container every half second.
    options = StackOptions(state_dir=demo_state, http_port=0, settings=stack_settings, relay_interval=None)
    with LocalStack(options) as stack:
        _say(f"  stack up: API {stack.base_url}, Azurite {stack.account_url}")
        container = stack.ports.settings.containers.raw
        uploaded: dict[str, set[str]] = {}
        phases = [("history", demo_plan.initial)] + [(month, [month]) for month in demo_plan.rounds]
        for index, (label, months) in enumerate(phases):
            _say(f"round {index}/{len(phases) - 1}: uploading {label} ({len(months)} file(s) x {len(demo_plan.sources)} sources)")
            if index > 0:  # the devices ran their champions on this month before uploading it
                for source_id, uploads in demo_plan.sources.items():
                    if label in uploads:
                        previous = [m for m in uploads if m < label]
                        log_live_predictions(
                            stack.ports, source_id, label, uploads[label][1], uploads[previous[-1]][1] if previous else None
                        )
            for source_id, names in upload_months(stack.ports.storage, container, demo_plan, months).items():
                uploaded.setdefault(source_id, set()).update(names)
            deliver_events(stack)
            runs = wait_for_round(stack, uploaded, label, round_timeout)
            for source_id, run in runs.items():
                comparison = run.get("comparison") or {}
                history[source_id].append(
                    {
                        "round": index,
                        "upload": label,
                        "run_id": run.get("run_id"),
                        "outcome": run.get("outcome"),
                        "champion_version": run.get("champion_version"),
                        "challenger_version": comparison.get("challenger_version"),
                        "champion_loss": comparison.get("champion_loss"),
                        "challenger_loss": comparison.get("challenger_loss"),
                        "eval_rows": comparison.get("eval_rows"),
                        "reason": comparison.get("reason") or run.get("error"),
                        "seconds": run.get("duration_seconds"),
                        "candidate": comparison.get("challenger_candidate"),
                        "live": comparison.get("live"),
                    }
                )
                _say(f"    {source_id}: {run.get('outcome')} - {comparison.get('reason') or run.get('error') or ''}")
        rows = fleet_view(stack.ports, stack.orchestrations)
    for row in rows:
        row["history"] = history.get(row["source_id"], [])
        row["decisions"] = " ".join((item["outcome"] or "?")[0].upper() for item in row["history"])
    after_first = [item["outcome"] for row in rows for item in row["history"] if item["round"] > 0]
    failed = [
        row["source_id"]
        for row in rows
        if row["champion_version"] is None or row["decision"] not in ("promoted", "kept", "skipped")
    ]
    report = {
        "data": str(data_dir),
        "spec": str(spec_path),
        "loss": spec.loss,
        "initial_months": demo_plan.initial,
        "rounds": demo_plan.rounds,
        "sources": rows,
        "totals": {
            "sources": len(rows),
            "failed": failed,
            "promoted_after_first_round": after_first.count("promoted"),
            "kept_after_first_round": after_first.count("kept"),
        },
        "duration_seconds": round(time.monotonic() - wall, 1),
    }
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(codec.dumps(report, indent=1))
    _say("")
    _say(format_table(rows, COLUMNS + [("decisions", "decisions")]))
    _say("")
    _say(
        f"decisions after the first round: {report['totals']['promoted_after_first_round']} promoted, "
        f"{report['totals']['kept_after_first_round']} kept (P promoted, K kept, per round)"
    )
    _say(f"report: {report_path}  ({report['duration_seconds']} s)")
    if failed:
        _say(f"FAILED sources: {', '.join(failed)}")
        return 1
    return 0


def main_demo(args) -> int:
    try:
        return run_demo(
            data_dir=Path(args.data),
            spec_path=Path(args.spec) if args.spec else None,
            initial_months=args.initial_months,
            rounds=args.rounds,
            max_sources=args.max_sources,
            round_timeout=args.round_timeout,
            report_path=Path(args.report) if args.report else None,
            state_dir=Path(args.state_dir) if args.state_dir else None,
        )
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 2
