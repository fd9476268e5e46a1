"""Reading source data files into frames the model spec understands, and filtering them."""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pandas as pd

from shared.spec import ModelSpec

TIMESTAMP = "_timestamp"


class DataFileError(ValueError):
    """A data file that cannot be used; the message names the blob, the column and the problem."""


def read_table(payload: bytes, blob_name: str, spec: ModelSpec) -> pd.DataFrame:
    """Parse one CSV/Parquet file, check it against the spec and add the `_timestamp` column."""
    if not payload:
        raise DataFileError(f"blob {blob_name!r} is empty")
    lower = blob_name.lower()
    try:
        if lower.endswith(".parquet"):
            frame = pd.read_parquet(io.BytesIO(payload))
        else:
            compression = "gzip" if lower.endswith(".gz") else None
            frame = pd.read_csv(
                io.BytesIO(payload),
                na_values=spec.na_values,
                keep_default_na=True,
                compression=compression,
                low_memory=False,
            )
    except Exception as exc:  # pandas raises many types for unreadable files
        raise DataFileError(
            f"blob {blob_name!r} cannot be read as {'Parquet' if lower.endswith('.parquet') else 'CSV'}: {exc}"
        ) from exc
    return conform(frame, blob_name, spec)


def conform(frame: pd.DataFrame, where: str, spec: ModelSpec) -> pd.DataFrame:
    missing = [column for column in spec.required_columns if column not in frame.columns]
    if missing:
        raise DataFileError(
            f"{where}: missing column(s) {missing}; the spec needs {spec.required_columns}, the file has {list(frame.columns)[:30]}"
        )
    if frame.empty:
        raise DataFileError(f"{where}: has a header but no rows")
    frame = frame.copy()
    for column in [*spec.numeric_features, spec.target]:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            converted = pd.to_numeric(frame[column], errors="coerce")
            bad = converted.isna() & frame[column].notna()
            if bad.all() and frame[column].notna().any():
                example = frame.loc[bad, column].iloc[0]
                raise DataFileError(f"{where}: column {column!r} should be numeric, found values like {example!r}")
            frame[column] = converted
        frame[column] = frame[column].astype("float64")
    for column in spec.categorical_features:
        frame[column] = frame[column].astype("string").astype(object).where(frame[column].notna(), np.nan)
    frame[TIMESTAMP] = build_timestamp(frame, where, spec)
    return frame


def build_timestamp(frame: pd.DataFrame, where: str, spec: ModelSpec) -> pd.Series:
    if spec.timestamp_column:
        stamps = pd.to_datetime(frame[spec.timestamp_column], errors="coerce", utc=True).dt.tz_localize(None)
    else:
        parts = {part: pd.to_numeric(frame[column], errors="coerce") for part, column in spec.timestamp_parts.items()}
        parts.setdefault("hour", 0)
        stamps = pd.to_datetime(pd.DataFrame(parts), errors="coerce")
    if stamps.isna().all():
        raise DataFileError(f"{where}: no row has a valid timestamp (spec timestamp: {spec.raw.get('timestamp')})")
    return stamps.astype("datetime64[ns]")


def apply_filters(frame: pd.DataFrame, start: datetime | None, end: datetime | None, filters: dict | None) -> pd.DataFrame:
    """Rows with a valid timestamp in [start, end) that pass every filter.

    A filter is `{column: value}`, `{column: [values]}` or `{column: {"min": a, "max": b}}`.
    """
    mask = frame[TIMESTAMP].notna()
    if start is not None:
        mask &= frame[TIMESTAMP] >= pd.Timestamp(start)
    if end is not None:
        mask &= frame[TIMESTAMP] < pd.Timestamp(end)
    for column, condition in (filters or {}).items():
        if column not in frame.columns:
            raise DataFileError(f"filter on column {column!r}, which the data does not have")
        values = frame[column]
        if isinstance(condition, dict):
            unknown = set(condition) - {"min", "max"}
            if unknown:
                raise DataFileError(f"filter on {column!r}: only 'min' and 'max' are allowed, got {sorted(unknown)}")
            if "min" in condition:
                mask &= values >= condition["min"]
            if "max" in condition:
                mask &= values <= condition["max"]
        elif isinstance(condition, list):
            mask &= values.isin(condition)
        else:
            mask &= values == condition
    return frame.loc[mask]


def parse_time(value: str | None) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not an ISO date or datetime") from exc
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()
