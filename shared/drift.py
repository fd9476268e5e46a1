"""Reference profiles stored with every model, and drift of new data against them (PSI per feature).

A profile's size does not grow with the rows it summarises: quantile bin edges and counts per numeric
feature, category frequencies (top categories plus a rest bucket) per categorical feature.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from shared.spec import ModelSpec

BINS = 10
TOP_CATEGORIES = 50
OTHER = "__other__"
MISSING = "__missing__"
EPSILON = 1e-4


def build_profile(frame: pd.DataFrame, spec: ModelSpec) -> dict:
    profile: dict = {"rows": int(len(frame)), "numeric": {}, "categorical": {}}
    for column in spec.numeric_features:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
        finite = values[np.isfinite(values)]
        entry = {"missing_rate": float(1 - len(finite) / len(values)) if len(values) else 1.0}
        if len(finite):
            edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1]))
            counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
            entry.update(
                edges=[float(edge) for edge in edges],
                counts=[int(count) for count in counts],
                mean=float(finite.mean()),
                std=float(finite.std()),
                min=float(finite.min()),
                max=float(finite.max()),
            )
        profile["numeric"][column] = entry
    for column in spec.categorical_features:
        series = frame[column]
        counts = series.dropna().astype(str).value_counts()
        top = counts.iloc[:TOP_CATEGORIES]
        frequencies = {str(key): int(value) for key, value in top.items()}
        rest = int(counts.iloc[TOP_CATEGORIES:].sum())
        if rest:
            frequencies[OTHER] = rest
        profile["categorical"][column] = {
            "missing_rate": float(series.isna().mean()) if len(series) else 1.0,
            "counts": frequencies,
        }
    return profile


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = expected / expected.sum() if expected.sum() else expected
    actual = actual / actual.sum() if actual.sum() else actual
    expected = np.clip(expected, EPSILON, None)
    actual = np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def check_drift(profile: dict | None, frame: pd.DataFrame, spec: ModelSpec, psi_threshold: float, drift_share: float) -> dict:
    """Per-feature PSI of `frame` against `profile`; a source is drifted when enough features drifted."""
    if profile is None:
        return {"status": "no_reference", "rows": int(len(frame)), "features": {}, "drifted": [], "drifted_share": 0.0}
    if frame.empty:
        return {"status": "no_new_data", "rows": 0, "features": {}, "drifted": [], "drifted_share": 0.0}
    features: dict[str, dict] = {}
    for column, reference in profile.get("numeric", {}).items():
        if column not in frame.columns:
            features[column] = {"psi": None, "drifted": True, "note": "column missing from the new data"}
            continue
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
        finite = values[np.isfinite(values)]
        if "edges" not in reference or not len(finite):
            features[column] = {"psi": None, "drifted": False, "note": "no finite values to compare"}
            continue
        edges = np.asarray(reference["edges"])
        actual = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
        psi = _psi(np.asarray(reference["counts"], dtype="float64"), actual.astype("float64"))
        features[column] = {"psi": round(psi, 4), "drifted": psi > psi_threshold}
    for column, reference in profile.get("categorical", {}).items():
        if column not in frame.columns:
            features[column] = {"psi": None, "drifted": True, "note": "column missing from the new data"}
            continue
        known = reference["counts"]
        observed = frame[column].dropna().astype(str).value_counts()
        keys = list(known)
        actual = [int(observed.get(key, 0)) for key in keys if key != OTHER]
        rest = int(observed[~observed.index.isin(keys)].sum())
        if OTHER in known:
            actual.append(rest)
        expected = [known[key] for key in keys if key != OTHER] + ([known[OTHER]] if OTHER in known else [])
        if OTHER not in known and rest:
            expected.append(0)
            actual.append(rest)
        psi = _psi(np.asarray(expected, dtype="float64"), np.asarray(actual, dtype="float64"))
        new_categories = sorted(set(observed.index) - set(keys))[:10]
        features[column] = {"psi": round(psi, 4), "drifted": psi > psi_threshold, "new_categories": new_categories}
    drifted = sorted(
        (name for name, result in features.items() if result["drifted"]), key=lambda name: -(features[name]["psi"] or math.inf)
    )
    share = len(drifted) / len(features) if features else 0.0
    return {
        "status": "drifted" if share >= drift_share and drifted else "stable",
        "rows": int(len(frame)),
        "reference_rows": profile.get("rows"),
        "psi_threshold": psi_threshold,
        "drifted_share": round(share, 3),
        "drifted": drifted,
        "features": features,
    }


def summarize(report: dict | None) -> str:
    if not report:
        return "-"
    status = report.get("status", "-")
    if status in ("no_reference", "no_new_data"):
        return status.replace("_", " ")
    top = ", ".join(report.get("drifted", [])[:3])
    return f"{status} ({len(report.get('drifted', []))}/{len(report.get('features', {}))}{': ' + top if top else ''})"
