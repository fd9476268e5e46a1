"""Step 1, filter: read the manifest's blobs, drop bad files (marked), keep rows in [start, end) and mark
those that pass the filters (the challenger trains on them; it is evaluated on all of the window's rows)."""

from __future__ import annotations

import pandas as pd

from shared.dataset import PASSES_FILTERS, apply_filters, parse_time
from shared.drift import OTHER
from shared.fleet_model import SOURCE_COLUMN
from shared.ports import Storage
from shared.source_data import load_frames
from shared.spec import ModelSpec, parse_spec
from training.preprocess import NotEnoughData


def filter_data(
    storage: Storage, raw_container: str, job: dict, spec: ModelSpec, known_categories: dict[str, set[str]] | None = None
) -> tuple[pd.DataFrame, list[dict]]:
    """The job's rows, and the blobs with problems (rejected, or used with warnings) as load_frames reports them.

    A fleet job reads every source's files with the data spec and adds the source column its model uses.
    """
    read_spec = parse_spec(job["data_spec"]) if job.get("data_spec") else spec
    frame, rejected = load_frames(storage, raw_container, job["manifest"]["blobs"], read_spec, known_categories=known_categories)
    if frame.empty:
        return frame, rejected
    if job.get("candidate") == "fleet":
        frame[SOURCE_COLUMN] = frame["_source_blob"].str.split("/").str[0]
    frame = apply_filters(frame, parse_time(job.get("start")), parse_time(job.get("end")), None)
    if job.get("filters") and not frame.empty:
        passing = apply_filters(frame, None, None, job["filters"])
        if passing.empty:  # say which condition left nothing, not just "no valid rows"
            span = f"{job.get('start') or 'the first row'} to {job.get('end') or 'the last'}"
            raise NotEnoughData(
                f"source {job['source_id']}: {len(frame)} row(s) from {span}, none passes the filters {job['filters']}"
            )
        frame = frame.assign(**{PASSES_FILTERS: frame.index.isin(passing.index)})
    return frame, rejected


def champion_categories(registry, source_id: str) -> dict[str, set[str]] | None:
    """The categorical values the source's champion trained on, when its profile lists all of them."""
    champion_version, _ = registry.champion(source_id)
    profile = registry.profile(source_id, champion_version) if champion_version is not None else None
    known = {}
    for column, entry in ((profile or {}).get("categorical") or {}).items():
        counts = entry.get("counts") or {}
        if counts and OTHER not in counts:  # a truncated list cannot tell new values from rare ones
            known[column] = set(counts)
    return known or None
