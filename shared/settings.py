"""The one settings loader: every setting the code reads comes from an environment variable.

In Azure these are app settings; locally `multiline` fills them from `local.settings.json`
(Values) or its own defaults. Nothing else in the code reads `os.environ`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = PROJECT_ROOT / "specs" / "air-quality.json"
RETRAIN_POLICIES = ("always", "on_drift", "on_drift_or_age")


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(bounds)


def _in_range(
    name: str,
    raw: str,
    value: float,
    kind: str,
    low: float | None,
    high: float | None,
    low_open: bool,
    high_open: bool,
) -> None:
    """ValueError naming the setting, the value found and the range expected, unless `value` lies in it."""
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        expected = " ".join(part for part in (f"a finite {kind}", _range_text(low, high, low_open, high_open)) if part)
        raise ValueError(f"setting {name} must be {expected}, got {raw!r}")


def _int(
    name: str,
    default: int,
    low: int | None = None,
    high: int | None = None,
) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from exc
    _in_range(name, raw, value, "integer", low, high, False, False)
    return value


def _float(
    name: str,
    default: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number in [low, high] (an open end with `low_open`/`high_open`); nan and inf are never valid."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be a number, got {raw!r}") from exc
    _in_range(name, raw, value, "number", low, high, low_open, high_open)
    return value


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _str(name, default)
    if value not in allowed:
        raise ValueError(f"setting {name} must be one of {allowed}, got {value!r}")
    return value


def _str(name: str, default: str, *, regex: bool = False) -> str:
    """The raw text; with `regex`, one that compiles (one that does not would fail every later match)."""
    raw = os.environ.get(name)
    value = default if raw in (None, "") else raw
    if regex:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"setting {name} must be a valid regular expression, got {value!r} ({exc})") from exc
    return value


def _project_path(raw: str) -> Path:
    """Relative paths in settings are relative to the project, as in local.settings.json."""
    path = Path(raw)
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass(frozen=True)
class Containers:
    raw: str = "raw"
    models: str = "models"
    runs: str = "runs"
    jobs: str = "jobs"
    artifacts: str = "artifacts"
    images: str = "images"
    predictions: str = "predictions"

    def all(self) -> list[str]:
        return [self.raw, self.models, self.runs, self.jobs, self.artifacts, self.images, self.predictions]


@dataclass(frozen=True)
class Settings:
    mode: str
    storage_connection_string: str
    storage_account_url: str
    spec_path: Path
    containers: Containers
    debounce_seconds: float
    poll_seconds: float
    training_deadline_seconds: float
    build_deadline_seconds: float
    training_concurrency: int
    promotion_margin: float
    drift_psi_threshold: float
    drift_share: float
    source_id_pattern: str
    source_id_max_length: int
    blob_date_slack_days: int
    state_dir: Path
    drift_js_threshold: float = 0.1
    drift_wasserstein_threshold: float = 0.1
    drift_missing_rate_threshold: float = 0.1
    retrain_policy: str = "always"
    retrain_max_age_days: float = 30.0
    extra: dict = field(default_factory=dict)
    reconcile_seconds: float = 300.0  # the local stack's reconcile timer; 0 turns it off
    max_blob_bytes: int = 256 * 1024 * 1024  # a data file larger than this is rejected unread
    future_tolerance_hours: float = 24.0  # rows stamped later than now + this are dropped
    max_range_days: int = 3660  # the widest [start, end) a manual retrain may ask for
    candidates: str = "per_source+fleet"  # or "per_source": which candidates face each champion
    fleet_max_age_days: float = 7.0  # a fleet model whose cut-off is older than this is retrained
    bootstrap_block_rows: int = 24
    bootstrap_resamples: int = 2000
    bootstrap_confidence: float = 0.95

    @property
    def fleet_enabled(self) -> bool:
        return self.candidates == "per_source+fleet"

    @property
    def is_local(self) -> bool:
        return self.mode == "local"


def load_settings() -> Settings:
    mode = _str("MULTILINE_MODE", "local")
    if mode not in ("local", "azure"):
        raise ValueError(f"setting MULTILINE_MODE must be 'local' or 'azure', got {mode!r}")
    retrain_policy = _str("MULTILINE_RETRAIN_POLICY", "always")
    if retrain_policy not in RETRAIN_POLICIES:
        raise ValueError(f"setting MULTILINE_RETRAIN_POLICY must be one of {RETRAIN_POLICIES}, got {retrain_policy!r}")
    return Settings(
        mode=mode,
        storage_connection_string=_str("MULTILINE_STORAGE_CONNECTION_STRING", ""),
        storage_account_url=_str("MULTILINE_STORAGE_ACCOUNT_URL", ""),
        spec_path=_project_path(_str("MULTILINE_SPEC", str(DEFAULT_SPEC))),
        containers=Containers(
            raw=_str("MULTILINE_RAW_CONTAINER", "raw"),
        ),
        debounce_seconds=_float("MULTILINE_DEBOUNCE_SECONDS", 30.0, 0),
        poll_seconds=_float("MULTILINE_POLL_SECONDS", 15.0, 0, low_open=True),
        training_deadline_seconds=_float("MULTILINE_TRAINING_DEADLINE_SECONDS", 4 * 3600.0, 0, low_open=True),
        build_deadline_seconds=_float("MULTILINE_BUILD_DEADLINE_SECONDS", 3600.0, 0, low_open=True),
        training_concurrency=_int("MULTILINE_TRAINING_CONCURRENCY", os.cpu_count() or 1, 1),
        promotion_margin=_float("MULTILINE_PROMOTION_MARGIN", 0.01, 0, 1, high_open=True),
        drift_psi_threshold=_float("MULTILINE_DRIFT_PSI_THRESHOLD", 0.1, 0),
        drift_share=_float("MULTILINE_DRIFT_SHARE", 0.5, 0, 1),
        source_id_pattern=_str("MULTILINE_SOURCE_ID_PATTERN", r"[A-Za-z0-9][A-Za-z0-9_-]*", regex=True),
        source_id_max_length=_int("MULTILINE_SOURCE_ID_MAX_LENGTH", 63, 1),
        blob_date_slack_days=_int("MULTILINE_BLOB_DATE_SLACK_DAYS", 31, 0),
        state_dir=_project_path(_str("MULTILINE_STATE_DIR", ".multiline")),
        drift_js_threshold=_float("MULTILINE_DRIFT_JS_THRESHOLD", 0.1, 0),
        drift_wasserstein_threshold=_float("MULTILINE_DRIFT_WASSERSTEIN_THRESHOLD", 0.1, 0),
        drift_missing_rate_threshold=_float("MULTILINE_DRIFT_MISSING_RATE_THRESHOLD", 0.1, 0, 1),
        retrain_policy=retrain_policy,
        retrain_max_age_days=_float("MULTILINE_RETRAIN_MAX_AGE_DAYS", 30.0, 0),
        reconcile_seconds=_float("MULTILINE_RECONCILE_SECONDS", 300.0, 0),
        max_blob_bytes=_int("MULTILINE_MAX_BLOB_BYTES", 256 * 1024 * 1024, 1),
        future_tolerance_hours=_float("MULTILINE_FUTURE_TOLERANCE_HOURS", 24.0, 0),
        max_range_days=_int("MULTILINE_MAX_RANGE_DAYS", 3660, 1),
        candidates=_choice("MULTILINE_CANDIDATES", "per_source+fleet", ("per_source", "per_source+fleet")),
        fleet_max_age_days=_float("MULTILINE_FLEET_MAX_AGE_DAYS", 7.0, 0),
        bootstrap_block_rows=_int("MULTILINE_BOOTSTRAP_BLOCK_ROWS", 24, 1),
        bootstrap_resamples=_int("MULTILINE_BOOTSTRAP_RESAMPLES", 2000, 1),
        bootstrap_confidence=_float("MULTILINE_BOOTSTRAP_CONFIDENCE", 0.95, 0, 1, low_open=True, high_open=True),
    )
