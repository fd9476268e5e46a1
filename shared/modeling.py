"""The shared model architecture: one-hot encoding and imputation in front of the spec's estimator."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import ThreadpoolController

from edge.features import derive, lookback_hours
from shared.dataset import TIMESTAMP
from shared.spec import ModelSpec


def build_pipeline(spec: ModelSpec) -> Pipeline:
    transformers = []
    if spec.numeric_inputs:
        transformers.append(
            ("numeric", SimpleImputer(strategy=spec.numeric_impute, keep_empty_features=True), spec.numeric_inputs)
        )
    if spec.categorical_features:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy=spec.categorical_impute, fill_value="missing", keep_empty_features=True)),
                ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, spec.categorical_features))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), ("model", spec.build_estimator())])


def features_of(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    return frame[spec.features]


def prepare(frame: pd.DataFrame, spec: ModelSpec, group_column: str | None = None) -> pd.DataFrame:
    """Add the spec's derived input features (calendar, lags, rolling means), per group when pooled."""
    if not spec.derived:
        return frame
    return derive(frame, frame[TIMESTAMP], spec.derived, group_column)


def labelled(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Rows with a target and a timestamp: missing targets are never trained on nor scored."""
    return frame.loc[frame[spec.target].notna() & frame[TIMESTAMP].notna()]


def per_row_loss(y_true: np.ndarray, y_pred: np.ndarray, spec: ModelSpec) -> np.ndarray:
    errors = np.asarray(y_pred, dtype="float64") - np.asarray(y_true, dtype="float64")
    return errors**2 if spec.loss == "rmse" else np.abs(errors)


def aggregate_loss(per_row: np.ndarray, spec: ModelSpec) -> float:
    if len(per_row) == 0:
        return float("nan")
    mean = float(np.mean(per_row))
    return float(np.sqrt(mean)) if spec.loss == "rmse" else mean


_threadpools: ThreadpoolController | None = None
_threadpools_lock = threading.Lock()


def one_openmp_thread():
    """A context in which OpenMP (scikit-learn's tree ensembles) runs on the calling thread only; other threads
    keep their own setting. For scoring in a process that scores from several threads at once (the local host's
    activities): a few hundred rows on every core cost far more in thread wake-ups and spin-waiting than they
    save. Measured on 2 busy cores: one comparison's scoring 1.1 CPU-s on OpenMP's threads, 0.11 s on one.
    Predictions are the same either way (rows are scored independently)."""
    global _threadpools
    with _threadpools_lock:
        if _threadpools is None:  # first use comes after a model is loaded, so its OpenMP runtime is listed
            _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1, user_api="openmp")


def predict_one_thread(model, features: pd.DataFrame) -> np.ndarray:
    with one_openmp_thread():
        return model.predict(features)


def score(model, frame: pd.DataFrame, spec: ModelSpec) -> float:
    predictions = predict_one_thread(model, features_of(frame, spec))
    return aggregate_loss(per_row_loss(frame[spec.target].to_numpy(), predictions, spec), spec)


CONTEXT = "_context"


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    evaluation: pd.DataFrame
    eval_start: pd.Timestamp
    eval_end: pd.Timestamp
    context: pd.DataFrame | None = None  # every row from the look-back before the window to its end

    def evaluation_with_context(self, columns: list[str]) -> pd.DataFrame:
        """The evaluation rows with the rows their derived features look back on (the hours before the window
        and unlabelled rows inside it), those flagged `_context`: any model's features can be rebuilt from it."""
        if self.context is None:
            return self.evaluation[columns].assign(**{CONTEXT: False})
        scored = self.context.index.isin(self.evaluation.index)
        return self.context[columns].assign(**{CONTEXT: ~scored}).reset_index(drop=True)


def split_for_evaluation(frame: pd.DataFrame, spec: ModelSpec) -> Split:
    """Hold out the most recent `eval_window_days` of labelled rows; train on everything before them.

    eval_start is exclusive and eval_end inclusive: evaluation rows have eval_start < t <= eval_end.
    """
    rows = labelled(frame, spec).sort_values(TIMESTAMP)
    if rows.empty:
        raise ValueError("no labelled rows: every row lacks the target or a timestamp")
    eval_end = rows[TIMESTAMP].max()
    eval_start = eval_end - timedelta(days=spec.eval_window_days)
    in_window = rows[TIMESTAMP] > eval_start
    lookback = timedelta(hours=lookback_hours(spec.derived) + 1)
    stamps = frame[TIMESTAMP]
    context = frame.loc[stamps > eval_start - lookback].sort_values(TIMESTAMP)
    return Split(
        train=rows.loc[~in_window],
        evaluation=rows.loc[in_window],
        eval_start=eval_start,
        eval_end=eval_end,
        context=context,
    )


def add_constants(frame: pd.DataFrame, constants: dict | None) -> pd.DataFrame:
    """Inputs a model takes as constants for one source (the fleet model's source column)."""
    if not constants:
        return frame
    return frame.assign(**constants)


def score_rows(model, rows: pd.DataFrame, spec: ModelSpec, constants: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row losses of `model` on the non-context rows of `rows` (evaluation rows with their look-back),
    deriving the model's own features first; also returns the rows' timestamps."""
    prepared = prepare(add_constants(rows, constants), spec, group_column=None)
    if CONTEXT in prepared.columns:
        prepared = prepared.loc[~prepared[CONTEXT].astype(bool)]
    predictions = predict_one_thread(model, features_of(prepared, spec))
    return per_row_loss(prepared[spec.target].to_numpy(), predictions, spec), prepared[TIMESTAMP].to_numpy()
