"""Loading a source's data files from storage: valid files are concatenated, bad ones kept and marked."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from shared.dataset import DataFileError, read_table
from shared.ports import Storage
from shared.spec import ModelSpec

STATUS_KEY = "multiline_status"
ERROR_KEY = "multiline_error"


def metadata_safe(text: str, limit: int = 1000) -> str:
    """Blob metadata values must be single-line ASCII."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def mark_rejected(storage: Storage, container: str, name: str, message: str) -> None:
    storage.set_metadata(container, name, {STATUS_KEY: "rejected", ERROR_KEY: metadata_safe(message)})


def load_frames(
    storage: Storage, container: str, names: list[str], spec: ModelSpec, *, mark: bool = True
) -> tuple[pd.DataFrame, list[dict]]:
    """Read every blob; return the valid rows (with `_source_blob`) and the rejected blobs with reasons."""

    def read_one(name: str):
        try:
            payload, _ = storage.read(container, name)
            frame = read_table(payload, name, spec)
            frame["_source_blob"] = name
            return frame, None
        except DataFileError as exc:
            return None, {"blob": name, "error": str(exc)}

    frames, rejected = [], []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for frame, problem in pool.map(read_one, names):
            if problem:
                rejected.append(problem)
                if mark:
                    mark_rejected(storage, container, problem["blob"], problem["error"])
            else:
                frames.append(frame)
    if not frames:
        columns = [*spec.required_columns, "_timestamp", "_source_blob"]
        return pd.DataFrame(columns=columns), rejected
    return pd.concat(frames, ignore_index=True), rejected
