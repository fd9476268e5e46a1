"""The model spec: one JSON file, shared by every source, describing data and model."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.features import CALENDAR, derived_names

LOSSES = ("rmse", "mae")
IMPUTE_NUMERIC = ("median", "mean", "constant")
IMPUTE_CATEGORICAL = ("most_frequent", "constant")
TIMESTAMP_PARTS = ("year", "month", "day", "hour")


class SpecError(ValueError):
    """A model spec that cannot be used; the message names the field and what was wrong."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str
    numeric_features: list[str]
    categorical_features: list[str]
    timestamp_column: str | None
    timestamp_parts: dict[str, str]
    na_values: list[str]
    numeric_impute: str
    categorical_impute: str
    estimator_class: str
    estimator_params: dict[str, Any]
    loss: str
    eval_window_days: int
    eval_min_rows: int
    derived: dict = field(default_factory=dict)
    drift_exclude: list[str] = field(default_factory=list)  # reported, never counted toward the verdict
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def derived_features(self) -> list[str]:
        return derived_names(self.derived)

    @property
    def numeric_inputs(self) -> list[str]:
        """What the model's numeric branch sees: raw numeric columns and the derived ones."""
        return [*self.numeric_features, *self.derived_features]

    @property
    def features(self) -> list[str]:
        return [*self.numeric_inputs, *self.categorical_features]

    @property
    def raw_features(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    @property
    def required_columns(self) -> list[str]:
        time_columns = [self.timestamp_column] if self.timestamp_column else list(self.timestamp_parts.values())
        return list(dict.fromkeys([*time_columns, self.target, *self.raw_features]))

    @property
    def timestamp_spec(self) -> dict:
        return {"column": self.timestamp_column} if self.timestamp_column else {"from_parts": self.timestamp_parts}

    def with_constant_feature(self, column: str) -> ModelSpec:
        """The same spec with one more categorical input (the fleet model's source column)."""
        raw = {**self.raw, "categorical_features": [*self.categorical_features, column]}
        return parse_spec(raw, where=f"model spec {self.name} + {column}")

    def to_dict(self) -> dict:
        return self.raw

    def build_estimator(self):
        module_name, _, class_name = self.estimator_class.rpartition(".")
        module = importlib.import_module(module_name)
        return getattr(module, class_name)(**self.estimator_params)


def _require(raw: dict, key: str, kind: type, where: str) -> Any:
    if key not in raw:
        raise SpecError(f"{where}: field {key!r} is missing")
    value = raw[key]
    if not isinstance(value, kind):
        raise SpecError(f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def parse_spec(raw: dict, where: str = "model spec", *, for_training: bool = True) -> ModelSpec:
    """The spec in `raw`, or SpecError naming the field. `for_training=False` only for a spec a model was already
    trained with (`spec_of_model`): such a model is still scored and can be replaced by a regressor, so what only
    matters for training a new model (a regressor, valid estimator params, the evaluation's numbers) is not
    checked again."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a JSON object")
    target = _require(raw, "target", str, where)
    numeric = _require(raw, "numeric_features", list, where)
    categorical = raw.get("categorical_features", [])
    if not numeric and not categorical:
        raise SpecError(f"{where}: declare at least one feature")
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise SpecError(f"{where}: columns {sorted(overlap)} are both numeric and categorical")
    if target in numeric or target in categorical:
        raise SpecError(f"{where}: the target {target!r} cannot also be a feature")

    timestamp = _require(raw, "timestamp", dict, where)
    timestamp_column = timestamp.get("column")
    parts = timestamp.get("from_parts", {})
    if bool(timestamp_column) == bool(parts):
        raise SpecError(f"{where}: timestamp needs exactly one of 'column' or 'from_parts'")
    unknown_parts = set(parts) - set(TIMESTAMP_PARTS)
    if unknown_parts or (parts and not {"year", "month", "day"} <= set(parts)):
        raise SpecError(f"{where}: timestamp.from_parts needs year, month, day (hour optional), got {sorted(parts)}")

    missing = raw.get("missing", {})
    numeric_impute = missing.get("numeric", "median")
    categorical_impute = missing.get("categorical", "most_frequent")
    if numeric_impute not in IMPUTE_NUMERIC:
        raise SpecError(f"{where}: missing.numeric must be one of {IMPUTE_NUMERIC}, got {numeric_impute!r}")
    if categorical_impute not in IMPUTE_CATEGORICAL:
        raise SpecError(f"{where}: missing.categorical must be one of {IMPUTE_CATEGORICAL}, got {categorical_impute!r}")
    if missing.get("target", "drop") != "drop":
        raise SpecError(f"{where}: missing.target can only be 'drop' (rows without a target are never trained on)")

    estimator = _require(raw, "estimator", dict, where)
    estimator_class = _require(estimator, "class", str, f"{where}: estimator")
    params = estimator.get("params", {})
    if for_training and not isinstance(params, dict):
        raise SpecError(f"{where}: estimator.params must be an object of the estimator's parameters, got {params!r}")
    if not estimator_class.startswith("sklearn."):
        raise SpecError(f"{where}: estimator.class must be a scikit-learn class (sklearn.*), got {estimator_class!r}")
    loss = raw.get("loss", "rmse")
    if loss not in LOSSES:
        raise SpecError(f"{where}: loss must be one of {LOSSES}, got {loss!r}")
    evaluation = raw.get("evaluation", {})
    if not isinstance(evaluation, dict):
        raise SpecError(f"{where}: evaluation must be an object with window_days and min_rows, got {evaluation!r}")
    window_days = _evaluation_number(evaluation, "window_days", 30, where, strict=for_training)
    min_rows = _evaluation_number(evaluation, "min_rows", 100, where, strict=for_training)
    derived = _parse_derived(raw.get("derived_features", {}), target, list(numeric), where)
    drift = raw.get("drift", {})
    exclude = drift.get("exclude", []) if isinstance(drift, dict) else None
    if not isinstance(exclude, list) or not set(exclude) <= {*numeric, *categorical}:
        raise SpecError(f"{where}: drift.exclude must list features of the spec (numeric or categorical), got {exclude!r}")
    spec = ModelSpec(
        name=raw.get("name", "model"),
        target=target,
        numeric_features=list(numeric),
        categorical_features=list(categorical),
        timestamp_column=timestamp_column,
        timestamp_parts=dict(parts),
        na_values=list(raw.get("na_values", ["NA", ""])),
        numeric_impute=numeric_impute,
        categorical_impute=categorical_impute,
        estimator_class=estimator_class,
        estimator_params=dict(params),
        loss=loss,
        eval_window_days=window_days,
        eval_min_rows=min_rows,
        derived=derived,
        drift_exclude=list(exclude),
        raw=raw,
    )
    try:
        estimator = spec.build_estimator()
    except (ImportError, AttributeError, TypeError) as exc:
        raise SpecError(f"{where}: estimator {estimator_class} cannot be built: {exc}") from exc
    if for_training:
        _validate_params(estimator, estimator_class, where)
    if for_training and not _is_regressor(estimator):
        # Every spec predicts a number (the target) and scores it with rmse or mae: a clusterer, classifier
        # or transformer would still "train", lose by far and, as a source's first model, be shipped.
        raise SpecError(
            f"{where}: estimator.class {estimator_class!r} is not a regressor ({_estimator_kind(estimator)}); the spec "
            f"predicts the number {target!r} scored by loss {loss!r}, so expected a scikit-learn regressor "
            "(sklearn.base.is_regressor), e.g. sklearn.ensemble.HistGradientBoostingRegressor"
        )
    return spec


def _evaluation_number(evaluation: dict, key: str, default: int, where: str, *, strict: bool) -> int:
    """evaluation.window_days or .min_rows: a whole number of at least 1 (a spec a model was trained with is only
    read as a number, as it was when that model was trained)."""
    value = evaluation.get(key, default)
    if not strict:
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{where}: evaluation.{key} must be a whole number, got {value!r}") from exc
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{where}: evaluation.{key} must be a whole number of at least 1, got {value!r}")
    return value


def _validate_params(estimator: Any, estimator_class: str, where: str) -> None:
    """The estimator's own parameter checks, run now rather than when every training run calls fit.

    scikit-learn (>= 1.2) checks the type and range of each parameter in `_validate_params`, the first thing
    `fit` does; an estimator without it is left to its own fit."""
    validate = getattr(estimator, "_validate_params", None)
    if not callable(validate):
        return
    try:
        validate()
    except (ValueError, TypeError) as exc:  # sklearn's InvalidParameterError is both
        raise SpecError(f"{where}: estimator.params are not valid for {estimator_class}: {exc}") from exc


def _is_regressor(estimator: Any) -> bool:
    from sklearn.base import is_regressor

    try:
        return bool(is_regressor(estimator))
    except (AttributeError, TypeError):  # not a scikit-learn estimator at all (no tags)
        return False


def _estimator_kind(estimator: Any) -> str:
    from sklearn.utils import get_tags

    try:
        kind = get_tags(estimator).estimator_type
    except (AttributeError, TypeError):
        return f"it is not a scikit-learn estimator: it builds a {type(estimator).__name__}"
    if not kind:
        return "it has no prediction task: a transformer or the like"
    return f"it is {'an outlier detector' if kind == 'outlier_detector' else f'a {kind}'}"


def _parse_derived(derived: dict, target: str, numeric: list[str], where: str) -> dict:
    if not isinstance(derived, dict):
        raise SpecError(f"{where}: derived_features must be an object")
    unknown = set(derived) - {"calendar", "lags", "rolling_means"}
    if unknown:
        raise SpecError(f"{where}: derived_features has unknown keys {sorted(unknown)}")
    unknown_calendar = set(derived.get("calendar", [])) - set(CALENDAR)
    if unknown_calendar:
        raise SpecError(f"{where}: derived_features.calendar: unknown {sorted(unknown_calendar)}; known {list(CALENDAR)}")
    for kind in ("lags", "rolling_means"):
        block = derived.get(kind)
        if not block:
            continue
        columns, hours = block.get("columns", []), block.get("hours", [])
        if target in columns:
            raise SpecError(
                f"{where}: derived_features.{kind} uses the target {target!r}: targets reach the edge late, "
                "so a model may only use past values of its inputs"
            )
        not_numeric = [column for column in columns if column not in numeric]
        if not_numeric:
            raise SpecError(f"{where}: derived_features.{kind}: {not_numeric} are not numeric features")
        if not hours or not all(isinstance(hour, int) and 0 < hour <= 24 * 31 for hour in hours):
            raise SpecError(f"{where}: derived_features.{kind}.hours must be whole hours between 1 and 744")
    return derived


def load_spec(path: str | Path) -> ModelSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(f"model spec {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise SpecError(f"model spec {path} is a directory, not a JSON file") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"model spec {path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:  # permissions, a special file, an I/O error
        raise SpecError(f"model spec {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"model spec {path} is not valid JSON: {exc}") from exc
    return parse_spec(raw, where=f"model spec {path}")


def spec_of_model(record: dict, default: ModelSpec) -> ModelSpec:
    """The spec a registered model was trained with (its features), or the current one for older records."""
    document = record.get("spec_doc")
    if not document:
        return default
    # A model registered before regressors were required is still read, so a regressor can replace it.
    return parse_spec(document, where=f"spec of model v{record.get('version')}", for_training=False)
