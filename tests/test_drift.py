"""Drift on real air-quality slices: compact profiles, per-feature metrics, hard input, the retraining policy."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from shared import adapters, codec
from shared.blob_registry import BlobModelRegistry
from shared.dataset import read_table
from shared.drift import (
    OTHER,
    QUANTILE_LEVELS,
    DriftThresholds,
    build_profile,
    check_drift,
    numeric_profile,
    retraining_decision,
    summarize,
    top_drifted,
    wasserstein_from_quantiles,
)
from shared.settings import PROJECT_ROOT, load_settings
from shared.spec import load_spec
from tests.conftest import monthly_csv, raw_name, station_frame

SPEC = load_spec(PROJECT_ROOT / "specs" / "air-quality.json")


@pytest.fixture(scope="module")
def months():
    payloads = monthly_csv("Changping", [(2014, 1), (2015, 1), (2014, 7)])
    return {key: read_table(payload, f"{key}.csv", SPEC) for key, payload in payloads.items()}


@pytest.fixture(scope="module")
def january_profile(months):
    return build_profile(months[(2014, 1)], SPEC)


def test_profile_is_compact_and_does_not_grow_with_rows(months):
    four_years = read_table(station_frame("Dongsi").to_csv(index=False).encode(), "all.csv", SPEC)
    small, large = build_profile(months[(2014, 1)], SPEC), build_profile(four_years, SPEC)
    assert large["rows"] == 35_064 and small["rows"] == 744
    assert large["data_range"] == {"start": "2013-03-01T00:00:00", "end": "2017-02-28T23:00:00"}
    assert set(large["numeric"]) == set(SPEC.numeric_features) and set(large["categorical"]) == {"wd"}
    for feature, entry in [*large["numeric"].items(), *large["categorical"].items()]:
        assert len(json.dumps(entry)) < 2_500, feature  # a few KB per feature at most
    assert len(json.dumps(large)) < 1.2 * len(json.dumps(small)) + 2_000
    temp = large["numeric"]["TEMP"]
    assert sum(temp["counts"]) == four_years["TEMP"].notna().sum()
    assert temp["min"] < temp["mean"] < temp["max"] and temp["std"] > 0
    assert 0 < temp["missing_rate"] < 0.01
    assert sum(large["categorical"]["wd"]["counts"].values()) == four_years["wd"].notna().sum()
    assert large["columns"]["wd"] == "text" and large["columns"]["TEMP"] == "number"


def test_stable_within_a_season_and_drifted_across_seasons(months, january_profile):
    same = check_drift(january_profile, months[(2014, 1)], SPEC)
    assert same["status"] == "stable" and same["drifted"] == []
    assert all(result.get("psi", 0) < 1e-9 for result in same["features"].values())
    summer = check_drift(january_profile, months[(2014, 7)], SPEC, DriftThresholds(psi=0.25))
    assert summer["status"] == "drifted"
    temp = summer["features"]["TEMP"]
    assert temp["psi"] > 1.0 and temp["wasserstein"] > 1.0 and 0.5 < temp["jensen_shannon"] <= np.sqrt(np.log(2))
    assert {"TEMP", "DEWP"} <= set(summer["drifted"])
    assert summer["features"]["wd"]["chi_square"]["p_value"] < 1e-6
    # `month` differs by construction between two months: the spec excludes it from the verdict, not the report.
    assert summer["features"]["month"]["drifted"] and summer["features"]["month"]["excluded"]
    assert "month" not in summer["drifted"] and summer["excluded"] == ["month"]
    assert summarize(summer).startswith(f"drifted ({len(summer['drifted'])}/12: ")
    assert check_drift(None, months[(2014, 7)], SPEC)["status"] == "no_reference"


def test_thresholds_decide_the_verdict_and_the_share_the_status(months, january_profile):
    lenient = check_drift(january_profile, months[(2015, 1)], SPEC, DriftThresholds(psi=10, jensen_shannon=1, wasserstein=10))
    assert lenient["drifted"] == [] and lenient["status"] == "stable"
    strict = check_drift(january_profile, months[(2015, 1)], SPEC, DriftThresholds(share=1.0))
    assert strict["drifted"] and strict["status"] == "stable"  # some features drifted, not all of them


@pytest.mark.parametrize("feature", SPEC.numeric_features)
def test_wasserstein_from_the_profile_matches_the_exact_distance_on_raw_rows(feature):
    frame = station_frame("Dongsi")
    reference, current = frame[feature].iloc[:17_520], frame[feature].iloc[17_520:]
    profile = numeric_profile(reference)
    approximate = wasserstein_from_quantiles(QUANTILE_LEVELS, profile["quantiles"], np.sort(current.dropna().to_numpy()))
    exact = wasserstein_distance(reference.dropna(), current.dropna())
    assert abs(approximate - exact) / profile["std"] < 0.015


# ------------------------------------------------------------------------------------------------ hard input


def test_empty_window_is_no_new_data(january_profile, months):
    report = check_drift(january_profile, months[(2015, 1)].iloc[:0], SPEC)
    assert report["status"] == "no_new_data" and report["rows"] == 0 and report["drifted"] == []
    assert summarize(report) == "no new data"


def test_constant_columns(months):
    reference = months[(2014, 1)].assign(RAIN=0.0)  # no rain all month: a point mass gets its own bin
    profile = build_profile(reference, SPEC)
    assert profile["numeric"]["RAIN"]["std"] == 0 and len(profile["numeric"]["RAIN"]["counts"]) == 3
    unchanged = check_drift(profile, months[(2015, 1)].assign(RAIN=0.0), SPEC)["features"]["RAIN"]
    assert unchanged["drifted"] is False and unchanged["psi"] == 0 and unchanged["wasserstein"] == 0
    rained = check_drift(profile, months[(2015, 1)].assign(RAIN=2.5), SPEC)["features"]["RAIN"]
    assert rained["drifted"] is True and rained["psi"] > 1 and rained["wasserstein"] is None
    assert "constant" in rained["note"]
    some_rain = months[(2015, 1)].assign(RAIN=[1.0 if index % 100 == 0 else 0.0 for index in range(744)])
    assert check_drift(profile, some_rain, SPEC)["features"]["RAIN"]["drifted"] is False  # 1% rainy hours


def test_all_missing_columns(months, january_profile):
    current = months[(2015, 1)].assign(CO=np.nan, wd=None)
    report = check_drift(january_profile, current, SPEC)
    co, wd = report["features"]["CO"], report["features"]["wd"]
    assert co["drifted"] and co["missing_rate"] == 1.0 and co["missing_rate_change"] > 0.9 and "psi" not in co
    assert wd["drifted"] and wd["missing_rate"] == 1.0 and "psi" not in wd
    assert report["schema"]["retyped"] == []  # an empty column has no type to change
    profile = build_profile(months[(2014, 1)].assign(CO=np.nan), SPEC)
    assert profile["numeric"]["CO"] == {"missing_rate": 1.0, "infinite_rate": 0.0}
    both = check_drift(profile, current, SPEC)["features"]["CO"]
    assert both["drifted"] is False and both["note"].startswith("no finite values")
    back = check_drift(profile, months[(2015, 1)], SPEC)["features"]["CO"]
    assert back["drifted"] is True and "in the reference" in back["note"]


def test_infinite_values_are_counted_apart_and_left_out_of_distributions(months, january_profile):
    current = months[(2015, 1)].copy()
    current.loc[current.index[:300], "TEMP"] = np.inf
    current.loc[current.index[300:310], "PRES"] = -np.inf
    report = check_drift(january_profile, current, SPEC)
    temp, pres = report["features"]["TEMP"], report["features"]["PRES"]
    assert temp["drifted"] and temp["infinite_rate_change"] == pytest.approx(300 / 744, abs=1e-3)
    assert np.isfinite(temp["psi"]) and np.isfinite(temp["wasserstein"])
    assert pres["infinite_rate_change"] == pytest.approx(10 / 744, abs=1e-3)
    profile = build_profile(current, SPEC)
    assert profile["numeric"]["TEMP"]["infinite_rate"] == pytest.approx(300 / 744)
    assert np.isfinite(profile["numeric"]["TEMP"]["max"])
    codec.to_bytes(report)  # strict JSON


def test_categories_of_mixed_types_are_compared_as_text(months):
    reference = months[(2014, 1)].copy()
    reference["wd"] = ["N", 1, 1.0, "1", 2, None] * 124
    profile = build_profile(reference, SPEC)
    assert profile["categorical"]["wd"]["counts"] == {"1": 372, "2": 124, "N": 124}
    assert profile["categorical"]["wd"]["missing_rate"] == pytest.approx(1 / 6)
    current = months[(2015, 1)].copy()
    current["wd"] = [True, "N", 2.0, "x", np.nan, 1] * 124
    wd = check_drift(profile, current, SPEC)["features"]["wd"]
    assert wd["new_categories"] == ["True", "x"] and wd["new_category_share"] == pytest.approx(0.4)
    assert wd["drifted"] and wd["jensen_shannon"] > 0.1


def test_many_categories_keep_a_rest_bucket(months):
    reference = months[(2014, 1)].assign(wd=[f"c{index % 80}" for index in range(744)])
    counts = build_profile(reference, SPEC)["categorical"]["wd"]["counts"]
    assert len(counts) == 51 and counts[OTHER] == 744 - sum(value for key, value in counts.items() if key != OTHER)


def test_a_profiled_column_absent_now_and_other_schema_changes(months, january_profile):
    current = months[(2015, 1)].drop(columns=["O3"]).assign(PM10="high", extra=1.0)
    report = check_drift(january_profile, current, SPEC)
    assert report["features"]["O3"] == {
        "kind": "numeric",
        "status": "missing",
        "drifted": True,
        "reasons": ["column missing from the new data"],
        "severity": float("inf"),
    }
    assert report["features"]["PM10"]["status"] == "retyped" and report["features"]["PM10"]["drifted"]
    assert report["schema"]["missing"] == ["O3"] and report["schema"]["extra"] == ["extra"]
    assert report["schema"]["retyped"] == [{"column": "PM10", "reference": "number", "now": "text"}]
    assert report["drifted"][:2] == ["PM10", "O3"] or report["drifted"][:2] == ["O3", "PM10"]
    assert "missing column(s): O3" in summarize(report)
    assert json.loads(codec.to_bytes(report))["features"]["O3"]["severity"] is None


def test_profiles_of_the_first_format_still_work(months):
    old = {
        "rows": 744,
        "numeric": {"TEMP": {"missing_rate": 0.0, "edges": [-5.0, 0.0, 5.0], "counts": [200, 300, 200, 44]}},
        "categorical": {"wd": {"missing_rate": 0.0, "counts": {"N": 400, "S": 344}}},
    }
    report = check_drift(old, months[(2014, 7)], SPEC)
    assert report["features"]["TEMP"]["drifted"] and report["features"]["TEMP"].get("wasserstein") is None
    assert report["features"]["PM10"]["status"] == "no_reference"


# ---------------------------------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("policy", "manual", "champion", "status", "age", "train", "reason"),
    [
        ("on_drift", True, 3, "stable", 1.0, True, "manual request"),
        ("on_drift", False, None, "no_reference", None, True, "no champion yet"),
        ("always", False, 3, "stable", 1.0, True, "policy always"),
        ("on_drift", False, 3, "drifted", 1.0, True, "policy on_drift: drifted"),
        ("on_drift", False, 3, "stable", 100.0, False, "policy on_drift: stable"),
        ("on_drift", False, 3, "no_new_data", 1.0, False, "no new rows"),
        ("on_drift_or_age", False, 3, "stable", 45.0, True, "champion v3 is 45.0 days old (max 30)"),
        ("on_drift_or_age", False, 3, "stable", 2.0, False, "champion v3 is 2.0 days old (max 30)"),
        ("on_drift_or_age", False, 3, "stable", None, True, "age of champion v3 is unknown"),
    ],
)
def test_retraining_policy(policy, manual, champion, status, age, train, reason):
    report = {"status": status, "drifted": [], "drifted_share": 0.1, "features": {}, "thresholds": {"share": 0.5}}
    decision = retraining_decision(
        policy, manual=manual, champion_version=champion, report=report, champion_age_days=age, max_age_days=30
    )
    assert decision.train is train and reason in decision.reason


def test_drift_settings_come_from_the_environment(monkeypatch):
    settings = load_settings()
    assert (settings.retrain_policy, settings.drift_js_threshold, settings.drift_wasserstein_threshold) == ("always", 0.1, 0.1)
    monkeypatch.setenv("MULTILINE_DRIFT_WASSERSTEIN_THRESHOLD", "0.2")
    monkeypatch.setenv("MULTILINE_DRIFT_JS_THRESHOLD", "0.15")
    monkeypatch.setenv("MULTILINE_RETRAIN_POLICY", "on_drift_or_age")
    monkeypatch.setenv("MULTILINE_RETRAIN_MAX_AGE_DAYS", "7")
    settings = load_settings()
    assert DriftThresholds.from_settings(settings) == DriftThresholds(jensen_shannon=0.15, wasserstein=0.2)
    assert (settings.retrain_policy, settings.retrain_max_age_days) == ("on_drift_or_age", 7.0)
    monkeypatch.setenv("MULTILINE_RETRAIN_POLICY", "sometimes")
    with pytest.raises(ValueError, match="MULTILINE_RETRAIN_POLICY must be one of"):
        load_settings()


def test_the_activity_stores_the_report_and_returns_a_small_verdict(storage, monkeypatch):
    """check_drift on Azurite with the on_drift policy: stable data skips training, drifted data trains."""
    from activities.check_drift import check_drift as check_drift_activity

    monkeypatch.setenv("MULTILINE_RETRAIN_POLICY", "on_drift")
    registry = BlobModelRegistry(storage, "models")
    ports = adapters.Ports(settings=load_settings(), spec=SPEC, storage=storage, registry=registry, training=None, images=None)
    monkeypatch.setattr(adapters, "_ports", ports)
    payloads = monthly_csv("Dingling", [(2014, 7), (2015, 1)])
    source_id = "drift-" + uuid.uuid4().hex[:8]
    storage.write("raw", raw_name(source_id, 2015, 1), payloads[(2015, 1)])
    manifest = {"blobs": [raw_name(source_id, 2015, 1)], "start": None, "end": None, "filters": {}}
    storage.write("runs", f"{source_id}/manifests/m.json", codec.to_bytes(manifest))
    january = read_table(payloads[(2015, 1)], "jan.csv", SPEC)
    july = read_table(payloads[(2014, 7)], "jul.csv", SPEC)
    tags = {"train_end": "2014-12-31T23:00:00", "eval_end": "2014-12-31T23:00:00"}

    def run(reference: pd.DataFrame, manual: bool = False) -> dict:
        version = registry.register(source_id, b"model", tags, profile=build_profile(reference, SPEC))
        _, etag = registry.champion(source_id)
        registry.set_champion(source_id, version, etag, "test")
        request = {"source_id": source_id, "run_id": f"r{version}", "manifest_uri": f"runs/{source_id}/manifests/m.json"}
        return check_drift_activity({**request, "manual": manual})

    stable = run(january)
    assert stable["train"] is False and stable["status"] == "stable" and stable["rows"] == 744
    assert stable["policy_reason"].startswith("policy on_drift: stable (0/12)")
    report = codec.loads(storage.read("runs", f"{source_id}/drift/r1.json")[0])
    assert report["policy"]["train"] is False and len(report["features"]) == 13
    drifted = run(july)
    assert drifted["train"] is True and drifted["status"] == "drifted"
    assert drifted["top"][0]["feature"] in drifted["drifted"] and len(drifted["top"]) == 5
    assert len(json.dumps(drifted)) < 2_000  # the summary travels through orchestration history, not the report
    assert run(january, manual=True)["policy_reason"] == "manual request: always trains"
    assert top_drifted(report) == []


def test_drift_exclusions_must_name_features_of_the_spec():
    from shared.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="drift.exclude must list features of the spec"):
        parse_spec({**SPEC.raw, "drift": {"exclude": ["PM2.5"]}})
    assert parse_spec({**SPEC.raw, "drift": {"exclude": []}}).drift_exclude == []
