"""Reading source data files into frames the model spec understands, and filtering them."""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from edge.features import timestamps
from shared.spec import ModelSpec

TIMESTAMP = "_timestamp"
# Set on a retrain's rows when it has filters: the rows a person's filters keep. Filters choose what a
# challenger trains on; it is evaluated, like the champion, on every recent row of the source.
PASSES_FILTERS = "_passes_filters"
MAX_ABS_VALUE = 1e12  # larger readings are treated as sensor garbage
UTF8_BOM = b"\xef\xbb\xbf"


class DataFileError(ValueError):
    """A data file that cannot be used; the message names the blob, the column and the problem."""


def describe(blob_name: str) -> str:
    """`source 'S', blob 'S/2016/01/01/a.csv'`: how every message about a file starts."""
    source_id = blob_name.split("/", 1)[0] if "/" in blob_name else None
    return f"source {source_id!r}, blob {blob_name!r}" if source_id else f"blob {blob_name!r}"


def read_table(
    payload: bytes,
    blob_name: str,
    spec: ModelSpec,
    *,
    warnings: list[str] | None = None,
    now: datetime | None = None,
    future_tolerance_hours: float = 24.0,
    known_categories: dict[str, set[str]] | None = None,
) -> pd.DataFrame:
    """Parse one CSV/Parquet file, check it against the spec and add the `_timestamp` column.

    Raises DataFileError when the file cannot be used at all; problems that only cost some rows (or
    that the model copes with) are appended to `warnings` and the usable rows are returned.
    """
    warnings = warnings if warnings is not None else []
    return conform(
        parse_file(payload, blob_name, spec, warnings),
        describe(blob_name),
        spec,
        warnings=warnings,
        now=now,
        future_tolerance_hours=future_tolerance_hours,
        known_categories=known_categories,
    )


def parse_file(payload: bytes, name: str, spec: ModelSpec, warnings: list[str]) -> pd.DataFrame:
    """The file's rows as they are (CSV, gzip-compressed CSV or Parquet, by `name`), or DataFileError with why not."""
    where = describe(name)
    if not payload:
        raise DataFileError(f"{where}: the file is empty (0 bytes); expected a header row and data rows")
    lower = name.lower()
    if lower.endswith(".parquet"):
        return _read_parquet(payload, where)
    if lower.endswith(".gz"):
        payload = _gunzip(payload, where)
    return _read_csv(payload, where, spec, warnings)


def _gunzip(payload: bytes, where: str) -> bytes:
    if payload[:2] != b"\x1f\x8b":
        raise DataFileError(f"{where}: expected gzip data (the name ends in .gz), found bytes {payload[:8]!r}")
    try:
        return gzip.decompress(payload)
    except EOFError as exc:
        raise DataFileError(f"{where}: the gzip data is truncated ({len(payload)} bytes): {exc}") from exc
    except (OSError, zlib.error) as exc:
        raise DataFileError(f"{where}: the gzip data is corrupt: {exc}") from exc


def _read_parquet(payload: bytes, where: str) -> pd.DataFrame:
    if len(payload) < 12 or payload[:4] != b"PAR1" or payload[-4:] != b"PAR1":
        raise DataFileError(
            f"{where}: not a complete Parquet file (expected the PAR1 marker at both ends, found "
            f"{payload[:4]!r}...{payload[-4:]!r} in {len(payload)} bytes): truncated or not Parquet"
        )
    try:
        return pd.read_parquet(io.BytesIO(payload))
    except Exception as exc:  # pyarrow raises many types for damaged files
        raise DataFileError(f"{where}: the Parquet file is corrupt: {type(exc).__name__}: {exc}") from exc


def _read_csv(payload: bytes, where: str, spec: ModelSpec, warnings: list[str]) -> pd.DataFrame:
    if payload[:2] == b"\x1f\x8b":
        raise DataFileError(f"{where}: the file is gzip-compressed; name it with .csv.gz (expected plain CSV by its name)")
    if payload[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataFileError(f"{where}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); expected UTF-8 text")
    if payload.startswith(UTF8_BOM):
        payload = payload[len(UTF8_BOM) :]
        warnings.append("the file starts with a UTF-8 byte-order mark; it was read without it")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = payload[: exc.start].count(b"\n") + 1
        raise DataFileError(
            f"{where}: the file is not UTF-8: byte 0x{payload[exc.start]:02x} at offset {exc.start} (line {line}) "
            "cannot be decoded; expected UTF-8 text (save it as UTF-8, not Latin-1 or Windows-1252)"
        ) from exc
    header = text.split("\n", 1)[0]
    names = next(csv.reader([header.rstrip("\r")]), [])
    repeated = sorted({name for name in names if names.count(name) > 1 and name in spec.required_columns})
    if repeated:
        # pandas would rename the second one (PM10.1) and silently use the first.
        counts = ", ".join(f"{name!r} {names.count(name)} times" for name in repeated)
        raise DataFileError(f"{where}: the header names {counts}; expected each column once, so it is clear which to use")
    if "," not in header:
        for delimiter, label in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
            if delimiter in header:
                raise DataFileError(f"{where}: columns are separated by {label}; expected ',' (header found: {header[:120]!r})")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            na_values=spec.na_values,
            keep_default_na=True,
            low_memory=False,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataFileError(f"{where}: the file has no header row; expected the columns {spec.required_columns}") from exc
    except Exception as exc:  # pandas raises many types for unreadable files
        raise DataFileError(f"{where}: cannot be read as CSV: {type(exc).__name__}: {exc}") from exc
    if not isinstance(frame.index, pd.RangeIndex):
        # The first data row has more fields than the header: pandas takes the extra leading fields as an
        # index and every column shifts by them (the year read from the row number, and so on).
        extra = frame.index.nlevels
        raise DataFileError(
            f"{where}: the first data row has {extra} field(s) more than the header's {len(frame.columns)}; "
            "expected as many fields in every row as the header names"
        )
    return frame


def conform(
    frame: pd.DataFrame,
    where: str,
    spec: ModelSpec,
    *,
    warnings: list[str] | None = None,
    now: datetime | None = None,
    future_tolerance_hours: float = 24.0,
    known_categories: dict[str, set[str]] | None = None,
) -> pd.DataFrame:
    warnings = warnings if warnings is not None else []
    missing = [column for column in spec.required_columns if column not in frame.columns]
    if missing:
        raise DataFileError(
            f"{where}: missing column(s) {missing}; expected the spec's columns {spec.required_columns}, "
            f"found {list(frame.columns)[:30]}"
        )
    if frame.empty:
        raise DataFileError(f"{where}: has a header but no rows; expected at least one data row")
    frame = frame.copy()
    target_values = int(frame[spec.target].notna().sum())
    for column in [*spec.numeric_features, spec.target]:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            converted = pd.to_numeric(frame[column], errors="coerce")
            bad = converted.isna() & frame[column].notna()
            if bad.any():
                example = frame.loc[bad, column].iloc[0]
                if bad.sum() == frame[column].notna().sum():  # not one number among the values there are
                    raise DataFileError(f"{where}: column {column!r} should be numeric, found values like {example!r}")
                warnings.append(
                    f"column {column!r}: {int(bad.sum())} value(s) are not numbers (expected numeric, found e.g. "
                    f"{example!r}); read as missing"
                )
            frame[column] = converted
        frame[column] = frame[column].astype("float64")
        # Infinities and absurd magnitudes would overflow the model's arithmetic: read them as missing.
        extreme = ~np.isfinite(frame[column]) & frame[column].notna() | (frame[column].abs() > MAX_ABS_VALUE)
        if extreme.any():
            example = float(frame.loc[extreme, column].iloc[0])
            warnings.append(
                f"column {column!r}: {int(extreme.sum())} value(s) are infinite or beyond +/-{MAX_ABS_VALUE:.0e} "
                f"(expected finite readings, found e.g. {example!r}); read as missing"
            )
            frame.loc[extreme, column] = np.nan
    if frame[spec.target].isna().all():
        if target_values:  # there were values, none of them usable: say why rather than "empty"
            why = "; ".join(warning for warning in warnings if warning.startswith(f"column {spec.target!r}:"))
            raise DataFileError(
                f"{where}: column {spec.target!r} (the target) has no usable value among its {target_values} "
                f"({why}); expected at least one labelled row"
            )
        raise DataFileError(
            f"{where}: column {spec.target!r} (the target) is empty in every row; expected at least one labelled row"
        )
    for column in spec.categorical_features:
        frame[column] = frame[column].astype("string").astype(object).where(frame[column].notna(), np.nan)
        known = (known_categories or {}).get(column)
        if known:
            unseen = sorted(set(frame[column].dropna().astype(str)) - known)
            if unseen:
                warnings.append(
                    f"column {column!r}: value(s) {unseen[:5]} never seen in the champion's training data "
                    f"(expected one of {sorted(known)[:10]}); the model treats them as unknown"
                )
    frame[TIMESTAMP] = build_timestamp(frame, where, spec)
    return drop_bad_times(frame, where, warnings, now, future_tolerance_hours)


def build_timestamp(frame: pd.DataFrame, where: str, spec: ModelSpec) -> pd.Series:
    stamps = timestamps(frame, spec.timestamp_spec)
    if stamps.isna().all():
        timestamp = spec.timestamp_spec
        columns = [timestamp["column"]] if timestamp.get("column") else list(timestamp["from_parts"].values())
        first = ", ".join(f"{column}={frame[column].iloc[0]}" for column in columns if column in frame.columns)
        raise DataFileError(
            f"{where}: no row has a valid timestamp (spec timestamp: {spec.raw.get('timestamp')}); the first row "
            f"has {first}: expected a real date and an hour 0-23, in the years {pd.Timestamp.min.year + 1}-"
            f"{pd.Timestamp.max.year - 1}"
        )
    return stamps


def drop_bad_times(
    frame: pd.DataFrame, where: str, warnings: list[str], now: datetime | None, future_tolerance_hours: float
) -> pd.DataFrame:
    """Rows without a usable timestamp, or stamped in the future, are dropped with a warning; all of them: an error."""
    stamps = frame[TIMESTAMP]
    missing = stamps.isna()
    if missing.any():
        warnings.append(f"{int(missing.sum())} row(s) have no valid timestamp; dropped")
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    future = stamps > pd.Timestamp(now) + pd.Timedelta(hours=future_tolerance_hours)
    if future.all():
        raise DataFileError(
            f"{where}: every row is stamped in the future (first {stamps.min()}); expected readings up to {now:%Y-%m-%d %H:%M}"
        )
    if (missing | future).all():
        raise DataFileError(
            f"{where}: no row has a usable timestamp: {int(missing.sum())} have no valid timestamp and "
            f"{int(future.sum())} are stamped in the future (after {now:%Y-%m-%d %H:%M})"
        )
    if future.any():
        warnings.append(f"{int(future.sum())} row(s) are stamped in the future (after {now:%Y-%m-%d %H:%M}); dropped")
    frame = frame.loc[~missing & ~future]
    # One device, one reading per moment: a repeated time is a re-sent row; the last one is the correction.
    repeated = frame[TIMESTAMP].duplicated(keep="last")
    if repeated.any():
        example = frame.loc[repeated, TIMESTAMP].iloc[0]
        warnings.append(
            f"{int(repeated.sum())} row(s) repeat the timestamp of a later row (e.g. {example}); kept the last of each"
        )
        frame = frame.loc[~repeated]
    return frame


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


# What a person may send as a moment (a retrain's start and end): ISO 8601 and nothing else. A day is
# always year-month-day, so "01/03/2015" or "16-01-01" cannot be read as some other day than was meant.
ISO_MOMENT_FORMS = "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.ffffff]], optionally ending in Z or an offset such as +08:00"
_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?", re.ASCII)


def parse_iso_time(value: str) -> tuple[datetime, bool]:
    """A moment a person sent, strictly ISO 8601 (`ISO_MOMENT_FORMS`): (naive UTC, whether it had a time zone).

    ValueError says what was expected and what was found. An aware moment is converted to UTC and made
    naive, as `parse_time` does, so both read the same moment the same way.
    """
    if not isinstance(value, str) or not _ISO_MOMENT.fullmatch(value):
        raise ValueError(f"expected an ISO 8601 date or datetime ({ISO_MOMENT_FORMS}), found {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:  # the form is right, the calendar is not: month 13, February 30, hour 24
        raise ValueError(f"expected an ISO 8601 date or datetime ({ISO_MOMENT_FORMS}), found {value!r}: {exc}") from None
    aware = moment.tzinfo is not None
    if aware:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment, aware


def parse_time(value: str | None) -> datetime | None:
    """A moment this code wrote itself (run requests, manifests, model records: `isoformat()` strings), naive UTC.

    Lenient, as pandas reads; never give it what a person typed: `parse_iso_time` reads those strictly.
    """
    if value in (None, ""):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not an ISO date or datetime") from exc
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()
