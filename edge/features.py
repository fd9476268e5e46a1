"""Input features derived from the raw columns: the timestamp, calendar features, lags and rolling means.

Lags and means are on an hourly grid: the lag of h hours is the reading at exactly t - h hours, the mean
over h hours is the mean of the readings at t, t-1h, ..., t-(h-1)h that exist.

Shared by training and the edge image (this module is copied into the image), so a model sees the same
features in both places. Lags and rolling means are of INPUT columns only, by wall-clock hours (a gap in
the readings gives a missing value, not a neighbour's value): the target reaches the edge late, so a model
that needed its past values could not run there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CALENDAR = ("hour", "day_of_week", "day_of_year", "month")


def timestamps(frame: pd.DataFrame, timestamp_spec: dict) -> pd.Series:
    """The rows' timestamps (naive UTC or local as given), NaT where they cannot be built."""
    if timestamp_spec.get("column"):
        stamps = pd.to_datetime(frame[timestamp_spec["column"]], errors="coerce", utc=True).dt.tz_localize(None)
    else:
        # As floats: a nullable integer column's NA cannot go through to_datetime, NaN can (and is NaT).
        parts = {
            part: pd.to_numeric(frame[column], errors="coerce").astype("float64")
            for part, column in timestamp_spec["from_parts"].items()
        }
        hour = parts.setdefault("hour", pd.Series(0.0, index=frame.index))
        stamps = pd.to_datetime(pd.DataFrame(parts, index=frame.index), errors="coerce")
        # pandas adds the hour as a duration (hour 25 is 01:00 the next day, 1.5 is 01:30): not a time of day.
        stamps = stamps.where(hour.between(0, 23) & (hour % 1 == 0))
    return in_nanoseconds(stamps)


def in_nanoseconds(stamps: pd.Series) -> pd.Series:
    """Naive time stamps as datetime64[ns]; years pandas can hold but nanoseconds cannot (1500, a typo like
    20160) are NaT, like any other time that is not one (the cast would raise for the whole column)."""
    return stamps.where((stamps >= pd.Timestamp.min) & (stamps <= pd.Timestamp.max)).astype("datetime64[ns]")


def derived_names(derived: dict | None) -> list[str]:
    derived = derived or {}
    names = [f"cal_{name}" for name in derived.get("calendar", [])]
    lags = derived.get("lags", {})
    names += [f"{column}_lag{hours}h" for column in lags.get("columns", []) for hours in lags.get("hours", [])]
    means = derived.get("rolling_means", {})
    names += [f"{column}_mean{hours}h" for column in means.get("columns", []) for hours in means.get("hours", [])]
    return names


def lookback_hours(derived: dict | None) -> int:
    derived = derived or {}
    hours = [*derived.get("lags", {}).get("hours", []), *derived.get("rolling_means", {}).get("hours", [])]
    return max(hours, default=0)


def _one_series(frame: pd.DataFrame, stamp: pd.Series, derived: dict) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    lags, means = derived.get("lags", {}), derived.get("rolling_means", {})
    columns = sorted(set(lags.get("columns", [])) | set(means.get("columns", [])))
    valid = stamp.notna()
    if not columns or not valid.any():
        return out
    # Lay the readings on an hourly grid (the last reading of each hour wins); rows off the grid get nothing.
    hour = pd.Timedelta(hours=1)
    reach = max([*lags.get("hours", []), *means.get("hours", []), 1])
    origin = stamp[valid].min()
    offsets = (stamp - origin) / hour
    on_grid = valid & (offsets == offsets.round())
    positions = offsets[on_grid].round().astype("int64").to_numpy() + reach
    size = int(positions.max()) + 1 if len(positions) else reach + 1
    for column in columns:
        grid = np.full(size, np.nan)
        grid[positions] = pd.to_numeric(frame.loc[on_grid, column], errors="coerce").to_numpy(dtype="float64")
        for hours in lags.get("hours", []) if column in lags.get("columns", []) else []:
            values = np.full(len(frame), np.nan)
            values[on_grid.to_numpy()] = grid[positions - hours]
            out[f"{column}_lag{hours}h"] = values
        if column in means.get("columns", []):
            for hours in means.get("hours", []):
                # Each window is summed on its own, in the same order, so a row's mean does not depend on how
                # much history was at hand (a running sum would differ in the last bits between training and edge).
                windows = np.lib.stride_tricks.sliding_window_view(grid, hours)[positions - hours + 1]
                counts = np.sum(~np.isnan(windows), axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.where(counts > 0, np.nansum(windows, axis=1) / np.maximum(counts, 1), np.nan)
                values = np.full(len(frame), np.nan)
                values[on_grid.to_numpy()] = mean
                out[f"{column}_mean{hours}h"] = values
    return out


def derive(frame: pd.DataFrame, stamp: pd.Series, derived: dict | None, group_column: str | None = None) -> pd.DataFrame:
    """`frame` with the derived columns added; lags and means are computed within each group (source)."""
    derived = derived or {}
    result = frame.copy()
    for name in derived.get("calendar", []):
        if name == "hour":
            result["cal_hour"] = stamp.dt.hour
        elif name == "day_of_week":
            result["cal_day_of_week"] = stamp.dt.day_of_week
        elif name == "day_of_year":
            result["cal_day_of_year"] = stamp.dt.day_of_year
        elif name == "month":
            result["cal_month"] = stamp.dt.month
        else:
            raise ValueError(f"unknown calendar feature {name!r}; known: {', '.join(CALENDAR)}")
    if derived.get("lags") or derived.get("rolling_means"):
        if group_column and group_column in frame.columns:
            parts = [_one_series(part, stamp.loc[part.index], derived) for _, part in frame.groupby(group_column, sort=False)]
            extra = pd.concat(parts).reindex(frame.index)
        else:
            extra = _one_series(frame, stamp, derived)
        for column in extra.columns:
            result[column] = extra[column].astype("float64")
    return result
