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


def metadata_safe(text: str, limit: int = 1000) -> str:
    """Blob metadata values must be single-line ASCII."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def mark_rejected(storage: Storage, container: str, name: str, message: str) -> None:
    storage.set_metadata(container, name, {STATUS_KEY: REJECTED, ERROR_KEY: metadata_safe(message)})


def _mark(storage: Storage, container: str, name: str, current: dict, status: str, key: str, message: str) -> None:
    """Record the verdict on the blob (its content is never touched); skip it when already recorded."""
    wanted = {STATUS_KEY: status, key: metadata_safe(message)}
    if all(current.get(field) == value for field, value in wanted.items()):
        return
    storage.set_metadata(container, name, wanted)


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
            problem = {"blob": name, "status": WITH_WARNINGS, "warning": f"{where}: " + "; ".join(warnings)} if warnings else None
            return frame, problem, info.metadata
        except DataFileError as exc:
            return None, {"blob": name, "status": REJECTED, "error": str(exc)}, info.metadata
        except NotFound:  # deleted since the manifest was listed: nothing to read, nothing to mark
            return None, None, {}

    frames, problems = [], []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for frame, problem, metadata in pool.map(read_one, names):
            if frame is not None:
                frames.append(frame)
            if problem:
                problems.append(problem)
                if mark and problem["status"] == REJECTED:
                    _mark(storage, container, problem["blob"], metadata, REJECTED, ERROR_KEY, problem["error"])
                elif mark:
                    _mark(storage, container, problem["blob"], metadata, WITH_WARNINGS, WARNING_KEY, problem["warning"])
    problems.sort(key=lambda problem: problem["status"] != REJECTED)
    if not frames:
        columns = [*spec.required_columns, "_timestamp", "_source_blob"]
        return pd.DataFrame(columns=columns), problems
    return pd.concat(frames, ignore_index=True), problems


def rejected_only(problems: list[dict]) -> list[dict]:
    return [problem for problem in problems if problem.get("status", REJECTED) == REJECTED]
