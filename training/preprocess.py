"""Step 2, preprocess: derive the spec's input features, drop rows without a target, hold out the window.

One-hot encoding and missing-value filling are fitted in step 3 as part of the model pipeline, so that
the edge image applies exactly the same preprocessing as training did.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from shared.dataset import PASSES_FILTERS, TIMESTAMP
from shared.fleet_model import SOURCE_COLUMN
from shared.modeling import Split, labelled, prepare, split_for_evaluation
from shared.source_data import REJECTED
from shared.spec import ModelSpec


class NotEnoughData(ValueError):
    pass


def preprocess(
    frame: pd.DataFrame, spec: ModelSpec, source_id: str, hold_out: bool = True, rejected: list[dict] | None = None
) -> Split:
    """The training rows and the held-out evaluation window (or, for the fleet model, which is evaluated on
    each source's own window later, every labelled row for training).

    Not enough data raises NotEnoughData; when the filter step rejected files (`rejected`, its problem
    list), the message says how many and the first one's reason, which is often why rows are missing."""
    try:
        return _split(frame, spec, source_id, hold_out)
    except NotEnoughData as exc:
        files = [problem for problem in rejected or [] if problem.get("status") == REJECTED]
        if not files:
            raise
        raise NotEnoughData(f"{exc}; {len(files)} file(s) rejected, e.g. {files[0]['error']}") from None


def _split(frame: pd.DataFrame, spec: ModelSpec, source_id: str, hold_out: bool) -> Split:
    if frame.empty:
        raise NotEnoughData(f"source {source_id}: no valid rows in the requested range")
    frame = prepare(frame, spec, group_column=SOURCE_COLUMN if SOURCE_COLUMN in frame.columns else None)
    if not hold_out:
        rows = labelled(frame, spec).sort_values(TIMESTAMP)
        if PASSES_FILTERS in rows.columns:
            rows = rows.loc[rows[PASSES_FILTERS]].drop(columns=PASSES_FILTERS)
        if len(rows) < spec.eval_min_rows:
            raise NotEnoughData(f"{source_id}: {len(rows)} labelled rows; at least {spec.eval_min_rows} are needed")
        end = rows[TIMESTAMP].max()
        return Split(train=rows, evaluation=rows.iloc[0:0], eval_start=end, eval_end=end)
    try:
        split = split_for_evaluation(frame, spec)
    except ValueError as exc:
        raise NotEnoughData(f"source {source_id}: {exc}") from exc
    if PASSES_FILTERS in frame.columns:
        # A person's filters choose the training rows only: the champion and the challenger are then scored
        # on the same rows, every recent labelled row of the source, as the edge will meet them.
        split = replace(
            split,
            train=split.train.loc[split.train[PASSES_FILTERS]].drop(columns=PASSES_FILTERS),
            evaluation=split.evaluation.drop(columns=PASSES_FILTERS),
            context=None if split.context is None else split.context.drop(columns=PASSES_FILTERS),
        )
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
