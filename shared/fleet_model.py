"""The fleet candidate: one model trained on every source's data, the source as a feature.

It is registered under the reserved owner `_fleet` (source ids cannot start with `_`). A fleet model is
trained with a cut-off date and used for a source's comparison only when its cut-off is at or before
the source's evaluation window, so it never saw the rows it is judged on. Sources whose windows start
within `MULTILINE_FLEET_MAX_AGE_DAYS` of the newest cut-off share that model; later windows train a new
one (cut-off: the day the window starts), once, however many sources ask.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

FLEET_SOURCE = "_fleet"
SOURCE_COLUMN = "_source"


def fleet_job_id(cutoff: datetime) -> str:
    return f"fleet-{cutoff:%Y%m%d}"


def cutoff_for(eval_start: str) -> datetime:
    return pd.Timestamp(eval_start).floor("D").to_pydatetime()


def usable_fleet_version(registry, eval_start: str, max_age_days: float) -> int | None:
    """The newest fleet model trained on rows before `eval_start` and no older than the allowed age."""
    best = None
    for record in registry.versions(FLEET_SOURCE):
        cutoff = pd.Timestamp(record.get("data_end") or record["train_end"])
        start = pd.Timestamp(eval_start)
        if pd.Timestamp(record["train_end"]) <= start and start - cutoff <= timedelta(days=max_age_days):
            if best is None or record["train_end"] > best["train_end"]:
                best = record
    return best["version"] if best else None
