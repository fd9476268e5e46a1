"""Reference profiles stored with every model, drift of new data against them, and the retraining policy.

Profile (its size does not grow with the rows it summarises, about 1.5 KB per feature):
  numeric feature     decile bin edges and counts, the quantile function at `QUANTILE_LEVELS`, mean, std,
                      min, max, missing rate (NaN/None) and infinite rate (+-inf)
  categorical feature counts of the `TOP_CATEGORIES` most frequent categories plus a rest bucket, missing rate
  all columns         their kind (number, text, boolean, datetime, empty), row count and data range
The drift check reads only the profile, never the champion's training data.

Per feature, against the profile:
  psi, jensen_shannon  on the reference's decile bins (numeric) or categories (categorical). Jensen-Shannon is
                       the distance (square root of the divergence, natural log), between 0 and sqrt(ln 2).
  wasserstein          numeric only: Wasserstein-1 distance divided by the reference standard deviation.
                       W1 = integral over p in (0, 1) of |Q_ref(p) - Q_now(p)|, Q the quantile function. Q_now
                       is exact (the sorted new values); Q_ref is known exactly at the stored levels (every 1%,
                       down to 0.01% in the tails, where heavy tails such as RAIN's carry most of the error) and
                       interpolated linearly between them, i.e. values are taken as uniform inside each quantile
                       bin. Since Q_ref is monotone, the error on each bin is at most (bin probability) x (bin
                       width). Against scipy's exact distance on the raw rows it is below 0.006 reference standard
                       deviations on the air-quality columns, 0.011 on integer-valued `hour`, whose steps the
                       interpolation smooths (tests/test_drift.py checks 0.015). The integral is a midpoint sum on
                       `WASSERSTEIN_GRID` points of p.
  chi_square           categorical only: homogeneity test of the reference and new category counts (statistic,
                       degrees of freedom, p-value). Reported, not voted: with thousands of rows it rejects for
                       differences far too small to matter, which the distances above weigh instead.
  missing_rate_change, infinite_rate_change, new_categories; schema: missing, extra and retyped columns.
A feature is drifted when any of psi, jensen_shannon, wasserstein or a missing/infinite rate change passes its
threshold, or its column is gone or no longer holds its type. The source is drifted when the share of drifted
features reaches `DriftThresholds.share`.

Hard input has defined results: no new rows -> status no_new_data; a constant reference column gets a bin of
its own, so psi and jensen_shannon see any other value, and a normalised Wasserstein of 0 if unchanged, else
None (no scale to normalise by); all-missing columns are compared on their missing rate only; +-inf is counted apart and left out of the
distributions; categories are compared as text (1, 1.0 and "1" are one category); a profiled column absent
now is drifted with status "missing".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import chdtrc

from shared.dataset import TIMESTAMP
from shared.settings import RETRAIN_POLICIES
from shared.spec import ModelSpec

PROFILE_FORMAT = 2
BINS = 10
TAIL_LEVELS = (0.0001, 0.0005, 0.001, 0.002, 0.005)  # heavy tails (RAIN) carry most of the Wasserstein error
QUANTILE_LEVELS = (0.0, *TAIL_LEVELS, *(step / 100 for step in range(1, 100)), *(1 - p for p in reversed(TAIL_LEVELS)), 1.0)
TOP_CATEGORIES = 50
OTHER = "__other__"
PSI_FLOOR = 1e-4  # empty bins get this share so PSI stays finite
WASSERSTEIN_GRID = 2000


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.1
    jensen_shannon: float = 0.1
    wasserstein: float = 0.1
    missing_rate: float = 0.1  # absolute change of the missing (or infinite) share
    share: float = 0.5  # share of drifted features that makes the source drifted

    @classmethod
    def from_settings(cls, settings) -> DriftThresholds:
        return cls(
            psi=settings.drift_psi_threshold,
            jensen_shannon=settings.drift_js_threshold,
            wasserstein=settings.drift_wasserstein_threshold,
            missing_rate=settings.drift_missing_rate_threshold,
            share=settings.drift_share,
        )


# ---------------------------------------------------------------------------------------------- column values


def column_kind(series: pd.Series) -> str:
    """What a column holds, for schema changes: number, boolean, datetime, text, or empty (no value at all)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        kind = "boolean"
    elif pd.api.types.is_numeric_dtype(dtype):
        kind = "number"
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        kind = "datetime"
    else:  # object or string columns: what the values are (one pass in C; "empty" when all are missing)
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
            return "number"
        if inferred.startswith("datetime") or inferred == "date":
            return "datetime"
        return inferred if inferred in ("boolean", "empty") else "text"
    return kind if series.count() else "empty"


def _float_values(series: pd.Series) -> np.ndarray:
    """The column as float64; text that is not a number becomes NaN."""
    if series.dtype == np.float64:
        return series.to_numpy(copy=False)
    if not pd.api.types.is_numeric_dtype(series.dtype):
        series = pd.to_numeric(series, errors="coerce")
    return series.to_numpy(dtype="float64", na_value=np.nan)


@dataclass
class _NumericColumn:
    rows: int
    missing: int
    infinite: int
    finite: np.ndarray  # sorted

    @classmethod
    def of(cls, series: pd.Series) -> _NumericColumn:
        values = _float_values(series)
        finite = values[np.isfinite(values)]  # a copy: sorting it leaves the frame alone
        finite.sort()
        infinite = int(np.isinf(values).sum()) if len(finite) < len(values) else 0
        return cls(len(values), len(values) - len(finite) - infinite, infinite, finite)

    def rates(self) -> tuple[float | None, float | None]:
        if not self.rows:
            return None, None
        return self.missing / self.rows, self.infinite / self.rows

    def quantiles(self, levels) -> np.ndarray:
        """Linear-interpolated quantiles of the sorted finite values (numpy's default method)."""
        positions = np.asarray(levels) * (len(self.finite) - 1)
        low = np.floor(positions).astype(np.int64)
        high = np.minimum(low + 1, len(self.finite) - 1)
        return self.finite[low] + (self.finite[high] - self.finite[low]) * (positions - low)

    def bin_counts(self, edges) -> np.ndarray:
        """Counts in (-inf, e0), [e0, e1), ..., [e_last, inf)."""
        below = np.searchsorted(self.finite, np.asarray(edges, dtype="float64"), side="left")
        return np.diff(np.concatenate(([0], below, [len(self.finite)])))


def _category_text(value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 (an integer column with gaps, read as float) is the category "1"
    return str(value)


def _category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """Counts per category as text, most frequent first (ties by name), and the number of missing values."""
    counted = series.value_counts(dropna=False, sort=False)  # one hashing pass; missing values are a key too
    if not all(isinstance(value, str) or pd.isna(value) for value in counted.index):
        # mixed types: hashing merged 1 with 1.0 and True; count them as text instead, where 1, 1.0 and "1" are
        # one category and True another
        present = series.notna()
        counted = pd.concat([series[present].map(_category_text).value_counts(), pd.Series({None: int((~present).sum())})])
    counts: dict[str, int] = {}
    missing = 0
    for value, count in counted.items():
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            missing += int(count)
        else:
            key = value if isinstance(value, str) else _category_text(value)
            counts[key] = counts.get(key, 0) + int(count)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))), missing


# ---------------------------------------------------------------------------------------------------- profile


def _rounded(values: np.ndarray) -> list[float]:
    return [float(f"{value:.7g}") for value in values]


def _decile_edges(column: _NumericColumn) -> list[float]:
    """Unique decile values; a value holding a whole decile or more (a point mass) gets a bin of its own."""
    deciles = column.quantiles(np.linspace(0, 1, BINS + 1)[1:-1])
    edges, repeats = np.unique(deciles, return_counts=True)
    point_masses = [float(np.nextafter(edge, np.inf)) for edge, repeat in zip(edges, repeats) if repeat > 1]
    if len(edges) == 1 and not point_masses:  # one decile value only: still give it its own bin
        point_masses = [float(np.nextafter(edges[0], np.inf))]
    return sorted({float(edge) for edge in edges} | set(point_masses))


def numeric_profile(series: pd.Series) -> dict:
    column = _NumericColumn.of(series)
    missing_rate, infinite_rate = column.rates()
    entry: dict = {"missing_rate": missing_rate, "infinite_rate": infinite_rate}
    if len(column.finite):
        edges = _decile_edges(column)
        entry.update(
            edges=edges,
            counts=[int(count) for count in column.bin_counts(edges)],
            quantiles=_rounded(column.quantiles(QUANTILE_LEVELS)),
            mean=float(column.finite.mean()),
            std=float(column.finite.std()),
            min=float(column.finite[0]),
            max=float(column.finite[-1]),
        )
    return entry


def categorical_profile(series: pd.Series) -> dict:
    counts, missing = _category_counts(series)
    kept = dict(list(counts.items())[:TOP_CATEGORIES])
    rest = sum(counts.values()) - sum(kept.values())
    if rest:
        kept[OTHER] = rest
    rows = len(series)
    return {
        "missing_rate": missing / rows if rows else None,
        "distinct": len(counts),
        "counts": kept,
    }


def _data_range(frame: pd.DataFrame) -> dict | None:
    if TIMESTAMP not in frame.columns or not frame[TIMESTAMP].notna().any():
        return None
    return {"start": frame[TIMESTAMP].min().isoformat(), "end": frame[TIMESTAMP].max().isoformat()}


def _data_columns(frame: pd.DataFrame, spec: ModelSpec) -> list:
    """The columns the data itself brings: not the timestamp or the spec's derived features, which code adds."""
    added = {TIMESTAMP, *getattr(spec, "derived_features", [])}
    return [name for name in frame.columns if name not in added]


def build_profile(frame: pd.DataFrame, spec: ModelSpec) -> dict:
    """The reference profile of `frame` (a model's training rows) for the spec's features."""
    return {
        "format": PROFILE_FORMAT,
        "rows": int(len(frame)),
        "data_range": _data_range(frame),
        "columns": {str(name): column_kind(frame[name]) for name in _data_columns(frame, spec)},
        "quantile_levels": list(QUANTILE_LEVELS),
        "numeric": {column: numeric_profile(frame[column]) for column in spec.numeric_features if column in frame},
        "categorical": {column: categorical_profile(frame[column]) for column in spec.categorical_features if column in frame},
    }


# ---------------------------------------------------------------------------------------------------- metrics


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype("float64")


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    expected = np.clip(_shares(reference_counts), PSI_FLOOR, None)
    actual = np.clip(_shares(current_counts), PSI_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log), 0 for equal distributions, at most sqrt(ln 2)."""
    p, q = _shares(reference_counts), _shares(current_counts)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(math.sqrt(max((kl_p + kl_q) / 2, 0.0)))


def chi_square(reference_counts: np.ndarray, current_counts: np.ndarray) -> dict:
    """Chi-square test of homogeneity on the 2 x k table of counts."""
    table = np.vstack([reference_counts, current_counts]).astype("float64")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return {"statistic": 0.0, "dof": 0, "p_value": 1.0}
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return {"statistic": round(statistic, 3), "dof": dof, "p_value": float(chdtrc(dof, statistic))}


def wasserstein_from_quantiles(levels, reference_quantiles, current: np.ndarray) -> float:
    """W1 between a distribution known by its quantile function at `levels` and the sorted sample `current`."""
    grid = (np.arange(WASSERSTEIN_GRID) + 0.5) / WASSERSTEIN_GRID
    reference = np.interp(grid, levels, reference_quantiles)
    now = current[np.minimum((grid * len(current)).astype(np.int64), len(current) - 1)]
    return float(np.abs(reference - now).mean())


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _rate_changes(result: dict, reference: dict, missing_rate, infinite_rate, thresholds: DriftThresholds) -> list[str]:
    reasons = []
    for name, now in (("missing_rate", missing_rate), ("infinite_rate", infinite_rate)):
        before = reference.get(name) or 0.0
        change = (now or 0.0) - before
        result[f"{name}_change"] = _round(change)
        if abs(change) > thresholds.missing_rate:
            reasons.append(f"{name.replace('_', ' ')} {before:.3f} -> {now:.3f}")
    return reasons


def _numeric_drift(reference: dict, series: pd.Series, levels, thresholds: DriftThresholds) -> dict:
    column = _NumericColumn.of(series)
    missing_rate, infinite_rate = column.rates()
    result: dict = {"kind": "numeric", "missing_rate": _round(missing_rate)}
    reasons = _rate_changes(result, reference, missing_rate, infinite_rate, thresholds)
    if len(series) and column.missing + column.infinite == len(series) and column_kind(series) == "text":
        result.update(status="retyped", drifted=True, reasons=["no value is a number any more"])
        return result
    if "edges" not in reference or not len(column.finite):
        result["note"] = "no finite values to compare" + (" in the reference" if "edges" not in reference else "")
        result.update(drifted=bool(reasons), reasons=reasons)
        return result
    reference_counts = np.asarray(reference["counts"], dtype="float64")
    current_counts = column.bin_counts(reference["edges"]).astype("float64")
    result["psi"] = _round(psi(reference_counts, current_counts))
    result["jensen_shannon"] = _round(jensen_shannon(reference_counts, current_counts))
    result["mean"] = _round(float(column.finite.mean()))
    result["reference_mean"] = _round(reference.get("mean"))
    if "quantiles" in reference and levels:
        distance = wasserstein_from_quantiles(levels, reference["quantiles"], column.finite)
        scale = reference.get("std") or 0.0
        if scale > 0:
            result["wasserstein"] = _round(distance / scale)
        elif distance == 0:
            result["wasserstein"] = 0.0
        else:  # no scale to normalise by: the constant's own bin (see _decile_edges) lets psi and js decide
            result["wasserstein"] = None
            result["note"] = "the reference is constant; psi and jensen_shannon weigh the change"
    for name, threshold in (("psi", thresholds.psi), ("jensen_shannon", thresholds.jensen_shannon)):
        if result[name] > threshold:
            reasons.append(f"{name} {result[name]} > {threshold}")
    if (result.get("wasserstein") or 0.0) > thresholds.wasserstein:
        reasons.append(f"wasserstein {result['wasserstein']} > {thresholds.wasserstein}")
    result.update(drifted=bool(reasons), reasons=reasons)
    return result


def _categorical_drift(reference: dict, series: pd.Series, thresholds: DriftThresholds) -> dict:
    observed, missing = _category_counts(series)
    missing_rate = missing / len(series)
    result: dict = {"kind": "categorical", "missing_rate": _round(missing_rate)}
    reasons = _rate_changes(result, reference, missing_rate, 0.0, thresholds)
    result.pop("infinite_rate_change")
    known = reference.get("counts", {})
    named = [key for key in known if key != OTHER]
    new = [key for key in observed if key not in known]
    current_counts = [observed.get(key, 0) for key in named]
    reference_counts = [known[key] for key in named]
    rest_now = sum(observed.values()) - sum(current_counts)
    if rest_now or OTHER in known:
        current_counts.append(rest_now)
        reference_counts.append(known.get(OTHER, 0))
    result["new_categories"] = new[:10]
    result["new_category_share"] = _round(sum(observed[key] for key in new) / sum(observed.values())) if observed else 0.0
    if not observed or not sum(reference_counts):
        result["note"] = "no categories to compare" + ("" if observed else " in the new data")
        result.update(drifted=bool(reasons), reasons=reasons)
        return result
    reference_array = np.asarray(reference_counts, dtype="float64")
    current_array = np.asarray(current_counts, dtype="float64")
    result["psi"] = _round(psi(reference_array, current_array))
    result["jensen_shannon"] = _round(jensen_shannon(reference_array, current_array))
    result["chi_square"] = chi_square(reference_array, current_array)
    for name, threshold in (("psi", thresholds.psi), ("jensen_shannon", thresholds.jensen_shannon)):
        if result[name] > threshold:
            reasons.append(f"{name} {result[name]} > {threshold}")
    result.update(drifted=bool(reasons), reasons=reasons)
    return result


def _severity(result: dict, thresholds: DriftThresholds) -> float:
    """How far past its thresholds a feature is; a column gone or retyped ranks first."""
    if result.get("status") in ("missing", "retyped"):
        return math.inf
    ratios = [
        (result.get("psi") or 0.0) / thresholds.psi,
        (result.get("jensen_shannon") or 0.0) / thresholds.jensen_shannon,
        (result.get("wasserstein") or 0.0) / thresholds.wasserstein,
        abs(result.get("missing_rate_change") or 0.0) / thresholds.missing_rate,
        abs(result.get("infinite_rate_change") or 0.0) / thresholds.missing_rate,
    ]
    return max(ratios)


def _schema_changes(profile: dict, frame: pd.DataFrame, spec: ModelSpec) -> dict:
    before = profile.get("columns")
    if before is None:  # profiles of format 1 recorded features only
        before = {column: "number" for column in profile.get("numeric", {})}
        before.update({column: "text" for column in profile.get("categorical", {})})
    now = {str(name): column_kind(frame[name]) for name in _data_columns(frame, spec)}
    retyped = [
        {"column": name, "reference": kind, "now": now[name]}
        for name, kind in before.items()
        if name in now and "empty" not in (kind, now[name]) and kind != now[name]
    ]
    return {
        "missing": [name for name in before if name not in now],
        "extra": [name for name in now if name not in before] if "columns" in profile else [],
        "retyped": retyped,
    }


def _empty_report(status: str, rows: int) -> dict:
    return {"status": status, "rows": rows, "features": {}, "drifted": [], "drifted_share": 0.0}


def check_drift(profile: dict | None, frame: pd.DataFrame, spec: ModelSpec, thresholds: DriftThresholds | None = None) -> dict:
    """Per-feature drift of `frame` against the champion's `profile`; the full report (stored as JSON)."""
    thresholds = thresholds or DriftThresholds()
    if not profile:
        return _empty_report("no_reference", int(len(frame)))
    if frame.empty:
        return _empty_report("no_new_data", 0)
    levels = profile.get("quantile_levels")
    features: dict[str, dict] = {}
    for kind, references in (("numeric", profile.get("numeric", {})), ("categorical", profile.get("categorical", {}))):
        for column, reference in references.items():
            if column not in frame.columns:
                features[column] = {
                    "kind": kind,
                    "status": "missing",
                    "drifted": True,
                    "reasons": ["column missing from the new data"],
                }
            elif kind == "numeric":
                features[column] = _numeric_drift(reference, frame[column], levels, thresholds)
            else:
                features[column] = _categorical_drift(reference, frame[column], thresholds)
    for column in [*spec.numeric_features, *spec.categorical_features]:  # the data's features, not derived ones
        if column not in features:
            features[column] = {"status": "no_reference", "drifted": False, "reasons": []}
    for result in features.values():
        result["severity"] = _round(_severity(result, thresholds), 3) if result["drifted"] else 0.0
    # Features the spec excludes (a calendar column such as `month` differs between a one-month window and
    # years of history by construction) keep their numbers in the report but do not vote.
    for column in spec.drift_exclude:
        if column in features:
            features[column]["excluded"] = True
    voting = {name: result for name, result in features.items() if not result.get("excluded")}
    drifted = sorted((name for name, result in voting.items() if result["drifted"]), key=lambda n: -features[n]["severity"])
    compared = [name for name, result in voting.items() if result.get("status") != "no_reference"]
    share = len(drifted) / len(compared) if compared else 0.0
    return {
        "status": "drifted" if drifted and share >= thresholds.share else "stable",
        "rows": int(len(frame)),
        "reference_rows": profile.get("rows"),
        "reference_range": profile.get("data_range"),
        "data_range": _data_range(frame),
        "thresholds": asdict(thresholds),
        "drifted_share": round(share, 3),
        "drifted": drifted,
        "excluded": [name for name in features if features[name].get("excluded")],
        "schema": _schema_changes(profile, frame, spec),
        "features": features,
    }


# ------------------------------------------------------------------------------------------- summary, policy


def top_drifted(report: dict, limit: int = 5) -> list[dict]:
    """The most drifted features with the numbers that flagged them: small enough for a run record."""
    top = []
    for name in report.get("drifted", [])[:limit]:
        result = report["features"][name]
        entry = {"feature": name}
        for key in ("status", "psi", "jensen_shannon", "wasserstein", "missing_rate_change", "new_categories"):
            if result.get(key) not in (None, [], "ok"):
                entry[key] = result[key]
        top.append(entry)
    return top


def summarize(report: dict | None) -> str:
    if not report:
        return "-"
    status = report.get("status", "-")
    if status in ("no_reference", "no_new_data"):
        return status.replace("_", " ")
    compared = [
        result
        for result in report.get("features", {}).values()
        if result.get("status") != "no_reference" and not result.get("excluded")
    ]
    top = ", ".join(report.get("drifted", [])[:3])
    missing = (report.get("schema") or {}).get("missing") or []
    schema = f"; missing column(s): {', '.join(missing[:3])}" if missing else ""
    return f"{status} ({len(report.get('drifted', []))}/{len(compared)}{': ' + top if top else ''}){schema}"


@dataclass(frozen=True)
class RetrainDecision:
    train: bool
    reason: str


def retraining_decision(
    policy: str,
    *,
    manual: bool,
    champion_version: int | None,
    report: dict,
    champion_age_days: float | None = None,
    max_age_days: float | None = None,
) -> RetrainDecision:
    """Whether this run trains a challenger, and why; the reason is what the run record and fleet show."""
    if policy not in RETRAIN_POLICIES:
        raise ValueError(f"retrain policy must be one of {RETRAIN_POLICIES}, got {policy!r}")
    if manual:
        return RetrainDecision(True, "manual request: always trains")
    if champion_version is None:
        return RetrainDecision(True, "no champion yet")
    if policy == "always":
        return RetrainDecision(True, "policy always: trains on every run")
    if report.get("status") == "no_new_data":
        drift = "no new rows since the champion's data"
    else:
        share = report.get("thresholds", {}).get("share", "-")
        drift = f"{summarize(report)}, drifted share {report.get('drifted_share', 0.0)} (drifted at {share})"
    if report.get("status") == "drifted":
        return RetrainDecision(True, f"policy {policy}: {drift}")
    if policy == "on_drift_or_age":
        if champion_age_days is None:
            return RetrainDecision(True, f"policy {policy}: the age of champion v{champion_version} is unknown")
        age = f"champion v{champion_version} is {champion_age_days:.1f} days old (max {max_age_days:g})"
        if max_age_days is not None and champion_age_days > max_age_days:
            return RetrainDecision(True, f"policy {policy}: {age}")
        return RetrainDecision(False, f"policy {policy}: {drift}; {age}")
    return RetrainDecision(False, f"policy {policy}: {drift}")
