"""A setting out of its range or a spec that cannot be used is refused when loaded, naming what was wrong."""

import json

import pytest

from local.cli import main
from shared.settings import PROJECT_ROOT, Settings, load_settings
from shared.spec import SpecError, load_spec, parse_spec, spec_of_model

SHIPPED = PROJECT_ROOT / "specs" / "air-quality.json"


def shipped_raw() -> dict:
    return json.loads(SHIPPED.read_text())


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MULTILINE_BOOTSTRAP_CONFIDENCE", "1.5", "> 0 and < 1"),
        ("MULTILINE_BOOTSTRAP_CONFIDENCE", "0", "> 0 and < 1"),
        ("MULTILINE_BOOTSTRAP_CONFIDENCE", "1", "> 0 and < 1"),
        ("MULTILINE_PROMOTION_MARGIN", "nan", ">= 0 and < 1"),
        ("MULTILINE_PROMOTION_MARGIN", "-1", ">= 0 and < 1"),
        ("MULTILINE_PROMOTION_MARGIN", "inf", ">= 0 and < 1"),
        ("MULTILINE_DRIFT_SHARE", "2", ">= 0 and <= 1"),
        ("MULTILINE_DRIFT_MISSING_RATE_THRESHOLD", "-0.1", ">= 0 and <= 1"),
        ("MULTILINE_DRIFT_PSI_THRESHOLD", "nan", ">= 0"),
        ("MULTILINE_DRIFT_JS_THRESHOLD", "-0.1", ">= 0"),
        ("MULTILINE_DRIFT_WASSERSTEIN_THRESHOLD", "-inf", ">= 0"),
        ("MULTILINE_BOOTSTRAP_RESAMPLES", "0", ">= 1"),
        ("MULTILINE_BOOTSTRAP_BLOCK_ROWS", "0", ">= 1"),
        ("MULTILINE_MAX_BLOB_BYTES", "0", ">= 1"),
        ("MULTILINE_MAX_RANGE_DAYS", "0", ">= 1"),
        ("MULTILINE_SOURCE_ID_MAX_LENGTH", "0", ">= 1"),
        ("MULTILINE_TRAINING_CONCURRENCY", "0", ">= 1"),
        ("MULTILINE_BLOB_DATE_SLACK_DAYS", "-1", ">= 0"),
        ("MULTILINE_DEBOUNCE_SECONDS", "-5", ">= 0"),
        ("MULTILINE_RECONCILE_SECONDS", "-1", ">= 0"),
        ("MULTILINE_POLL_SECONDS", "0", "> 0"),
        ("MULTILINE_POLL_SECONDS", "-1", "> 0"),
        ("MULTILINE_TRAINING_DEADLINE_SECONDS", "-1", "> 0"),
        ("MULTILINE_BUILD_DEADLINE_SECONDS", "inf", "> 0"),
        ("MULTILINE_FUTURE_TOLERANCE_HOURS", "-1", ">= 0"),
        ("MULTILINE_RETRAIN_MAX_AGE_DAYS", "-1", ">= 0"),
        ("MULTILINE_FLEET_MAX_AGE_DAYS", "nan", ">= 0"),
    ],
)
def test_a_setting_out_of_its_range_is_refused_naming_setting_value_and_range(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as refused:
        load_settings()
    message = str(refused.value)
    assert name in message and repr(value) in message and expected in message, message


@pytest.mark.parametrize("pattern", ["[", "(", "a{2,1}"])
def test_a_source_id_pattern_that_does_not_compile_is_refused(monkeypatch, pattern):
    monkeypatch.setenv("MULTILINE_SOURCE_ID_PATTERN", pattern)
    with pytest.raises(ValueError, match="MULTILINE_SOURCE_ID_PATTERN must be a valid regular expression") as refused:
        load_settings()
    assert repr(pattern) in str(refused.value)


def test_the_cli_turns_a_bad_setting_into_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("MULTILINE_BOOTSTRAP_CONFIDENCE", "1.5")
    assert main(["ledger", "some-source"]) == 2
    err = capsys.readouterr().err
    assert "MULTILINE_BOOTSTRAP_CONFIDENCE" in err and "Traceback" not in err


def test_the_cli_turns_a_bad_source_id_pattern_into_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("MULTILINE_SOURCE_ID_PATTERN", "[")
    assert main(["ledger", "some-source"]) == 2
    assert "MULTILINE_SOURCE_ID_PATTERN" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MULTILINE_BOOTSTRAP_CONFIDENCE", "0.99"),
        ("MULTILINE_PROMOTION_MARGIN", "0"),
        ("MULTILINE_DRIFT_SHARE", "1"),
        ("MULTILINE_DRIFT_SHARE", "0"),
        ("MULTILINE_RECONCILE_SECONDS", "0"),  # documented: 0 turns the reconcile timer off
        ("MULTILINE_DEBOUNCE_SECONDS", "0"),
        ("MULTILINE_BLOB_DATE_SLACK_DAYS", "0"),
        ("MULTILINE_POLL_SECONDS", "0.3"),
        ("MULTILINE_SOURCE_ID_PATTERN", r"[a-z]+"),
    ],
)
def test_values_at_the_edges_of_their_ranges_are_accepted(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    load_settings()


def test_the_defaults_are_unchanged_and_load():
    settings = load_settings()
    defaults = {field: getattr(settings, field) for field in Settings.__dataclass_fields__}
    assert defaults["bootstrap_confidence"] == 0.95 and defaults["promotion_margin"] == 0.01
    assert defaults["drift_share"] == 0.5 and defaults["bootstrap_resamples"] == 2000
    assert defaults["max_blob_bytes"] == 256 * 1024 * 1024 and defaults["source_id_pattern"] == r"[A-Za-z0-9][A-Za-z0-9_-]*"


def test_a_spec_path_that_is_a_directory_is_refused_naming_it(tmp_path):
    with pytest.raises(SpecError, match="is a directory") as refused:
        load_spec(tmp_path)
    assert str(tmp_path) in str(refused.value)


def test_a_spec_that_is_not_utf8_is_refused_naming_it(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps(shipped_raw()).replace("Beijing", "Bei\u00efjing").encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8") as refused:
        load_spec(path)
    assert str(path) in str(refused.value)


def test_a_missing_or_not_json_spec_is_refused_naming_it(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(SpecError, match="is not valid JSON") as refused:
        load_spec(broken)
    assert str(broken) in str(refused.value)


def test_the_cli_turns_a_directory_spec_into_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MULTILINE_SPEC", str(tmp_path))
    monkeypatch.setenv("MULTILINE_STATE_DIR", str(tmp_path / "state"))
    data = tmp_path / "2014-05.csv"
    data.write_text("year,month,day,hour,PM2.5\n2014,5,1,0,3\n")
    assert main(["upload", "some-source", str(data), "--date", "2014-05-01"]) == 2  # upload reads the spec first
    err = capsys.readouterr().err
    assert "is a directory" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"max_iter": "lots"}, "max_iter"),
        ({"max_iter": 0}, "max_iter"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"loss": "accuracy"}, "loss"),
    ],
)
def test_estimator_params_of_the_wrong_type_or_range_are_refused_when_the_spec_is_loaded(params, parameter):
    raw = shipped_raw()
    raw["estimator"]["params"] = params
    with pytest.raises(SpecError) as refused:
        parse_spec(raw)
    message = str(refused.value)
    assert "estimator.params" in message and f"'{parameter}' parameter" in message, message


def test_estimator_params_that_are_not_an_object_are_refused():
    raw = shipped_raw()
    raw["estimator"]["params"] = "max_iter=200"
    with pytest.raises(SpecError, match="estimator.params must be an object"):
        parse_spec(raw)


@pytest.mark.parametrize(
    ("evaluation", "field"),
    [
        ({"window_days": -5, "min_rows": 200}, "window_days"),
        ({"window_days": 0, "min_rows": 200}, "window_days"),
        ({"window_days": 30, "min_rows": 0}, "min_rows"),
        ({"window_days": "30", "min_rows": 200}, "window_days"),
        ({"window_days": 30.5, "min_rows": 200}, "window_days"),
        ({"window_days": True, "min_rows": 200}, "window_days"),
    ],
)
def test_evaluation_numbers_out_of_range_are_refused(evaluation, field):
    raw = shipped_raw()
    raw["evaluation"] = evaluation
    with pytest.raises(SpecError, match=f"evaluation.{field} must be a whole number of at least 1"):
        parse_spec(raw)


def test_an_evaluation_that_is_not_an_object_is_refused():
    with pytest.raises(SpecError, match="evaluation must be an object"):
        parse_spec({**shipped_raw(), "evaluation": [30, 200]})


def test_shipped_and_fast_specs_still_load(fast_spec_path):
    shipped = load_spec(SHIPPED)
    assert (shipped.eval_window_days, shipped.eval_min_rows) == (30, 200)
    fast = load_spec(fast_spec_path)
    assert fast.estimator_params["max_iter"] == 60
    assert fast.with_constant_feature("source").categorical_features[-1] == "source"


def test_a_spec_a_model_was_trained_with_is_still_read_as_before():
    """A record's spec loaded before these checks keeps being read: the model exists, it is only scored."""
    default = load_spec(SHIPPED)
    document = {**shipped_raw(), "evaluation": {"window_days": 30, "min_rows": 0}}
    document["estimator"] = {"class": "sklearn.cluster.KMeans", "params": {}}
    spec = spec_of_model({"version": 4, "spec_doc": document}, default)
    assert spec.eval_min_rows == 0 and spec.features == default.features
    assert spec_of_model({"version": 5, "spec_doc": shipped_raw()}, default) == default
