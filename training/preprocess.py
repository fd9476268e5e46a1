"""Step 2, preprocess: drop rows without a target, order by time, hold out the evaluation window.

One-hot encoding and missing-value filling are fitted in step 3 as part of the model pipeline, so that
the edge image applies exactly the same preprocessing as training did.
"""

from __future__ import annotations

import pandas as pd

from shared.modeling import Split, split_for_evaluation
from shared.spec import ModelSpec


class NotEnoughData(ValueError):
    pass


def preprocess(frame: pd.DataFrame, spec: ModelSpec, source_id: str) -> Split:
    if frame.empty:
        raise NotEnoughData(f"source {source_id}: no valid rows in the requested range")
    try:
        split = split_for_evaluation(frame, spec)
    except ValueError as exc:
        raise NotEnoughData(f"source {source_id}: {exc}") from exc
    if len(split.train) < spec.eval_min_rows:
        raise NotEnoughData(
            f"source {source_id}: {len(split.train)} labelled training rows before the evaluation window "
            f"(after {split.eval_start:%Y-%m-%d %H:%M}); at least {spec.eval_min_rows} are needed"
        )
    if len(split.evaluation) < spec.eval_min_rows:
        raise NotEnoughData(
            f"source {source_id}: {len(split.evaluation)} labelled rows in the {spec.eval_window_days}-day evaluation "
            f"window; at least {spec.eval_min_rows} are needed"
        )
    return split
