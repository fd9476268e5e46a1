"""Step 1, filter: read the manifest's blobs, drop bad files (marked), keep rows in [start, end) that pass filters."""

from __future__ import annotations

import pandas as pd

from shared.dataset import apply_filters, parse_time
from shared.ports import Storage
from shared.source_data import load_frames
from shared.spec import ModelSpec


def filter_data(storage: Storage, raw_container: str, job: dict, spec: ModelSpec) -> tuple[pd.DataFrame, list[dict]]:
    frame, rejected = load_frames(storage, raw_container, job["manifest"]["blobs"], spec)
    if frame.empty:
        return frame, rejected
    frame = apply_filters(frame, parse_time(job.get("start")), parse_time(job.get("end")), job.get("filters"))
    return frame, rejected
