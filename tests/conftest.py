"""Fixtures on real components: Azurite from node_modules, the shipped air-quality data, a fast spec."""

from __future__ import annotations

import gzip
import io
import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from local.azurite import Azurite
from shared.blob_storage import BlobStorage
from shared.settings import PROJECT_ROOT, Containers
from shared.spec import parse_spec

DATA = PROJECT_ROOT / "data" / "air-quality"
STATIONS = ("Aotizhongxin", "Changping", "Dingling", "Dongsi", "Guanyuan", "Gucheng", "Huairou", "Nongzhanguan")


def station_file(station: str) -> Path:
    return DATA / f"PRSA_Data_{station}_20130301-20170228.csv.gz"


_frames: dict[str, pd.DataFrame] = {}


def station_frame(station: str) -> pd.DataFrame:
    if station not in _frames:
        _frames[station] = pd.read_csv(station_file(station), na_values=["NA"], keep_default_na=True)
    return _frames[station].copy()


def monthly_csv(station: str, months: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    frame = station_frame(station)
    return {
        (year, month): frame[(frame.year == year) & (frame.month == month)].to_csv(index=False).encode() for year, month in months
    }


def months_from(year: int, month: int, count: int) -> list[tuple[int, int]]:
    result = []
    for _ in range(count):
        result.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return result


def raw_name(source_id: str, year: int, month: int) -> str:
    return f"{source_id}/{year}/{month:02d}/01/{year}-{month:02d}.csv"


@pytest.fixture(scope="session")
def fast_spec_path(tmp_path_factory) -> Path:
    """The air-quality spec with fewer boosting iterations: same architecture, quicker tests."""
    raw = json.loads((PROJECT_ROOT / "specs" / "air-quality.json").read_text())
    raw["estimator"]["params"]["max_iter"] = 60
    path = tmp_path_factory.mktemp("spec") / "fast-spec.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="session")
def fast_spec(fast_spec_path):
    return parse_spec(json.loads(fast_spec_path.read_text()))


@pytest.fixture(scope="session")
def azurite():
    server = Azurite(location=None).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def storage(azurite) -> BlobStorage:
    return BlobStorage.from_connection_string(azurite.connection_string, Containers().all())


@pytest.fixture
def local_ports(azurite, tmp_path, monkeypatch):
    """The process's ports (what activities use) in local mode on the session's Azurite."""
    from shared.adapters import get_ports, reset_ports

    monkeypatch.setenv("MULTILINE_MODE", "local")
    monkeypatch.setenv("MULTILINE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("MULTILINE_STATE_DIR", str(tmp_path))
    reset_ports()
    yield get_ports()
    reset_ports()


@pytest.fixture
def source_id() -> str:
    """A fresh source id per test, so tests sharing one Azurite never see each other's blobs."""
    return f"src-{uuid.uuid4().hex[:10]}"


def gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as handle:
        handle.write(data)
    return buffer.getvalue()


def decision(**overrides):
    """shared.champion.decide on a typical comparison (champion v1 trained to January, window February)."""
    from shared.champion import decide

    arguments = dict(
        champion_version=1,
        champion_train_end="2016-01-31T23:00:00",
        champion_loss=20.0,
        challenger_version=2,
        challenger_loss=18.0,
        eval_start="2016-02-01T00:00:00",
        eval_end="2016-03-01T00:00:00",
        eval_rows=700,
        min_rows=200,
        margin=0.01,
        loss_name="rmse",
    )
    arguments.update(overrides)
    return decide(**arguments)
