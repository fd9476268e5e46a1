"""resolve_data: the manifest of the source's data blobs for [start, end), stored as a blob."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from shared import codec
from shared.adapters import get_ports
from shared.blob_layout import BlobPathError, parse_raw_blob_name
from shared.dataset import TIMESTAMP, apply_filters, parse_time, read_table
from shared.modeling import labelled
from shared.run_store import manifest_name
from shared.source_data import REJECTED, STATUS_KEY, mark_rejected


def resolve_data(request: dict) -> dict:
    ports = get_ports()
    settings = ports.settings
    source_id = request["source_id"]
    start, end = parse_time(request.get("start")), parse_time(request.get("end"))
    slack = timedelta(days=settings.blob_date_slack_days)
    blobs, skipped, newest = [], [], None
    older: list[tuple[datetime, str]] = []  # dated too long before `start` to be read
    later: list[tuple[datetime, str]] = []  # dated on or after `end`: their rows start after the range
    for blob in ports.storage.list(settings.containers.raw, f"{source_id}/"):
        if newest is None or blob.last_modified > newest:
            newest = blob.last_modified
        try:
            path = parse_raw_blob_name(blob.name, settings.source_id_pattern, settings.source_id_max_length)
        except BlobPathError as exc:
            skipped.append({"blob": blob.name, "reason": str(exc)})
            continue
        # A file rejected earlier is read again: what rejected it (a size limit, the spec, rows in the future
        # of a device's clock) may have changed; the training step marks it again or clears the verdict.
        # Only an empty file cannot change without an upload, which clears its metadata.
        if blob.size == 0:
            reason = f"source {source_id!r}, blob {blob.name!r}: the file is empty (0 bytes); expected CSV or Parquet rows"
            if blob.metadata.get(STATUS_KEY) != REJECTED:
                mark_rejected(ports.storage, settings.containers.raw, blob.name, reason)
            skipped.append({"blob": blob.name, "reason": reason})
            continue
        day = datetime(path.day.year, path.day.month, path.day.day)
        # The path date is when the file's data starts: a file may reach past it, never before it.
        if end is not None and day >= end:
            later.append((day, blob.name))
            continue
        if start is not None and day < start - slack:
            older.append((day, blob.name))
            continue
        blobs.append((day, blob.name))
    blobs = [name for _, name in sorted(blobs)]
    not_read = _not_read_before(older, start, slack, settings.blob_date_slack_days)
    if not blobs:
        not_read = _nothing_in_range(not_read, older, later, end)
    manifest = {
        "source_id": source_id,
        "start": request.get("start"),
        "end": request.get("end"),
        "filters": request.get("filters") or {},
        "blobs": blobs,
        "skipped": skipped,
        "newest_modified": newest.isoformat() if newest else None,
        "listed_at": datetime.now(timezone.utc).isoformat(),
        **not_read,
    }
    name = manifest_name(source_id, request["run_id"])
    ports.storage.write(settings.containers.runs, name, codec.to_bytes(manifest))
    return {
        "manifest_uri": f"{settings.containers.runs}/{name}",
        "blob_count": len(blobs),
        "skipped": skipped[:25],
        "skipped_count": len(skipped),
        "newest_modified": manifest["newest_modified"],
        "eval_start_estimate": _eval_start_estimate(ports, blobs, start, end),
        **not_read,
    }


def _not_read_before(older: list[tuple[datetime, str]], start, slack: timedelta, slack_days: int) -> dict:
    """Files left out because their folder date lies more than the slack before `start`: not an error (the
    folder date is when a file's rows start), but a multi-month file dated so is easy to miss, so say so."""
    if not older:
        return {}
    day, name = max(older)
    return {
        "not_read_before_start": {"count": len(older), "newest": name, "cutoff": (start - slack).date().isoformat()},
        "not_read_hint": (
            f"{len(older)} file(s) of this source are dated before {(start - slack).date()} and were not read, "
            f"the newest {name}: a file's folder date is the day its rows start, and files dated up to "
            f"MULTILINE_BLOB_DATE_SLACK_DAYS={slack_days} days before start are read; upload a long file under "
            "the day its rows start, or split it by month"
        ),
    }


def _nothing_in_range(not_read: dict, older: list, later: list, end) -> dict:
    """When the range holds no file, say where the source's files are: all before it, or some after its end."""
    if later:
        day, name = min(later)
        after = (
            f"{len(later)} file(s) of this source are dated on or after the range's end {end.date()}, the earliest "
            f"{name}: a file's folder date is the day its rows start, so they hold no row of the range"
        )
        hint = f"{not_read['not_read_hint']}; {after}" if not_read else after
        return {**not_read, "not_read_after_end": {"count": len(later), "earliest": name}, "not_read_hint": hint}
    if older:  # every file lies before the range
        return {**not_read, "not_read_hint": f"the range starts after all of this source's files: {not_read['not_read_hint']}"}
    return not_read


def _eval_start_estimate(ports, blobs: list[str], start, end) -> str | None:
    """Where the training's evaluation window will most likely start, from the newest file alone, so a
    fleet model for it can train while the source's own challenger does. A wrong guess costs only time:
    the comparison checks the fleet model's cut-off against the real window."""
    spec = ports.spec
    for name in reversed(blobs[-2:]):
        try:
            frame = read_table(ports.storage.read(ports.settings.containers.raw, name)[0], name, spec)
        except Exception:  # the training step reports bad files; an estimate just gives up
            continue
        rows = labelled(apply_filters(frame, start, end, None), spec)
        if not rows.empty:
            return (rows[TIMESTAMP].max() - pd.Timedelta(days=spec.eval_window_days)).isoformat()
    return None
