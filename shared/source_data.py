"""Loading a source's data files from storage: valid files are concatenated, bad ones kept and marked."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from shared.dataset import DataFileError, describe, read_table
from shared.ports import NotFound, Storage
from shared.settings import load_settings
from shared.spec import ModelSpec

STATUS_KEY = "multiline_status"
ERROR_KEY = "multiline_error"
WARNING_KEY = "multiline_warning"
REJECTED = "rejected"
WITH_WARNINGS = "accepted_with_warnings"
# A file an earlier run rejected or warned about that reads cleanly now (a setting, the spec or the clock
# changed): the verdict stays a verdict, so reconcile still knows a run has read it.
ACCEPTED = "accepted"
VERDICT_TEXT_KEYS = (ERROR_KEY, WARNING_KEY)


def metadata_safe(text: str, limit: int = 1000) -> str:
    """Blob metadata values must be single-line ASCII."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def mark_rejected(storage: Storage, container: str, name: str, message: str) -> None:
    storage.set_metadata(container, name, {STATUS_KEY: REJECTED, ERROR_KEY: metadata_safe(message)}, drop=(WARNING_KEY,))


def _mark(storage: Storage, container: str, name: str, current: dict, status: str, key: str | None, message: str = "") -> None:
    """Record this run's verdict on the blob (its content is never touched), replacing an earlier one's text;
    skip it when already recorded."""
    wanted = {STATUS_KEY: status, **({key: metadata_safe(message)} if key else {})}
    stale = [field for field in VERDICT_TEXT_KEYS if field != key and field in current]
    if not stale and all(current.get(field) == value for field, value in wanted.items()):
        return
    storage.set_metadata(container, name, wanted, drop=stale)


def load_frames(
    storage: Storage,
    container: str,
    names: list[str],
    spec: ModelSpec,
    *,
    mark: bool = True,
    max_bytes: int | None = None,
    known_categories: dict[str, set[str]] | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Read every blob; return the valid rows (with `_source_blob`) and the blobs with problems.

    A problem is `{"blob", "status": "rejected", "error"}` (the file is not used) or
    `{"blob", "status": "accepted_with_warnings", "warning"}` (its usable rows are); rejected first.
    With `mark`, the verdict is also written to the blob's metadata; the file itself is kept as it is.
    """
    settings = load_settings()
    max_bytes = settings.max_blob_bytes if max_bytes is None else max_bytes

    def read_one(name: str):
        where = describe(name)
        try:
            info = storage.info(container, name)
            if info.size > max_bytes:
                raise DataFileError(
                    f"{where}: the file is {info.size} bytes; expected at most {max_bytes} (MULTILINE_MAX_BLOB_BYTES)"
                )
            payload, _ = storage.read(container, name)
            warnings: list[str] = []
            frame = read_table(
                payload,
                name,
                spec,
                warnings=warnings,
                future_tolerance_hours=settings.future_tolerance_hours,
                known_categories=known_categories,
            )
            frame["_source_blob"] = name
            return frame, warnings, info
        except DataFileError as exc:
            return None, str(exc), info
        except NotFound:  # deleted since the manifest was listed: nothing to read, nothing to mark
            return None, None, None

    read, problems = [], []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for name, (frame, outcome, info) in zip(names, pool.map(read_one, names)):
            if info is None:
                continue
            if frame is None:
                problems.append({"blob": name, "status": REJECTED, "error": outcome})
                if mark:
                    _mark(storage, container, name, info.metadata, REJECTED, ERROR_KEY, outcome)
                continue
            read.append((frame, outcome, info))
    # Oldest upload first: where files repeat a reading, the later upload (a re-send or correction) wins.
    read.sort(key=lambda item: (item[2].created or item[2].last_modified, item[2].name))
    frames = [frame for frame, _, _ in read]
    combined = pd.concat(frames, ignore_index=True) if frames else None
    if combined is not None:
        combined, repeats = _latest_reading_wins(combined)
        for _, warnings, info in read:
            if info.name in repeats:
                warnings.append(repeats[info.name])
    for _, warnings, info in read:
        if warnings:
            problem = {"blob": info.name, "status": WITH_WARNINGS, "warning": f"{describe(info.name)}: " + "; ".join(warnings)}
            problems.append(problem)
            if mark:
                _mark(storage, container, info.name, info.metadata, WITH_WARNINGS, WARNING_KEY, problem["warning"])
        elif mark and STATUS_KEY in info.metadata:  # an earlier verdict no longer holds
            _mark(storage, container, info.name, info.metadata, ACCEPTED, None)
    problems.sort(key=lambda problem: problem["status"] != REJECTED)
    if combined is None:
        columns = [*spec.required_columns, "_timestamp", "_source_blob"]
        return pd.DataFrame(columns=columns), problems
    return combined, problems


def _latest_reading_wins(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """One reading per source and moment across all files (rows are in upload order): the last upload's row
    is kept. Returns the rows and, per file whose rows replaced earlier ones, a warning saying so. (A fleet
    job reads every source's files at once: the source is the blob's first path segment.)"""
    keys = pd.DataFrame({"source": frame["_source_blob"].str.split("/", n=1).str[0], "time": frame["_timestamp"]})
    repeated = keys.duplicated(keep="last")
    if not repeated.any():
        return frame, {}
    kept = keys.loc[~repeated].assign(blob=frame.loc[~repeated, "_source_blob"])
    winners = kept.set_index(["source", "time"])["blob"]
    replaced = keys.loc[repeated].assign(
        blob=frame.loc[repeated, "_source_blob"],
        winner=winners.reindex(pd.MultiIndex.from_frame(keys.loc[repeated])).to_numpy(),
    )
    notes = {}
    for winner, rows in replaced.groupby("winner", sort=True):
        older = sorted(set(rows["blob"]))
        # This file's readings, once each: a moment several older files held is one repeated row here.
        notes[winner] = (
            f"{rows['time'].nunique()} row(s) repeat readings already uploaded in {', '.join(older[:3])}"
            f"{' and others' if len(older) > 3 else ''} (e.g. {rows['time'].iloc[0]}); this later upload's values are used"
        )
    return frame.loc[~repeated].reset_index(drop=True), notes


def rejected_only(problems: list[dict]) -> list[dict]:
    return [problem for problem in problems if problem.get("status", REJECTED) == REJECTED]
