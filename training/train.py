"""Step 3, train: fit the shared architecture (imputation, one-hot encoding, estimator) on the training rows."""

from __future__ import annotations

import io

import joblib
import pandas as pd
from sklearn.pipeline import Pipeline

from shared.modeling import build_pipeline, features_of, score
from shared.spec import ModelSpec


def train(train_rows: pd.DataFrame, eval_rows: pd.DataFrame, spec: ModelSpec) -> tuple[Pipeline, dict]:
    model = build_pipeline(spec)
    model.fit(features_of(train_rows, spec), train_rows[spec.target])
    metrics = {f"train_{spec.loss}": score(model, train_rows, spec)}
    if not eval_rows.empty:
        metrics[spec.loss] = score(model, eval_rows, spec)
    return model, metrics


def serialize(model: Pipeline) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()
