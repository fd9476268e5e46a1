"""The edge image's scoring server: loads the baked-in model and answers predictions over HTTP.

Runs with the Python standard library plus the model's own libraries (scikit-learn, pandas) and
`features.py` (copied next to it); it imports nothing else of the Multiline app.

    python score_server.py --port 8080 [--prediction-log DIR]   serve POST /score and GET /health
    python score_server.py --self-test rows.parquet --expect-loss 21.3   the build's smoke test

POST /score takes `{"rows": [...]}` in time order, each with the raw input columns; lags and rolling
means look back over the rows of the request and the recent rows the server has already seen. With
--prediction-log, every prediction is appended to DIR/predictions-<yyyy-mm-dd>.csv
(`timestamp,model_version,prediction`), the file the device uploads so that the live loss can be
computed once targets arrive.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "model"
LOG_COLUMNS = ("timestamp", "model_version", "prediction")
CONTEXT = "_context"


def load_model(model_dir: Path = MODEL_DIR):
    import joblib

    card = json.loads((model_dir / "model.json").read_text())
    payload = (model_dir / "model.joblib").read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != card["sha256"]:
        raise SystemExit(f"model.joblib has sha256 {digest}, the model card says {card['sha256']}: refusing to load")
    return joblib.load(model_dir / "model.joblib"), card


class Scorer:
    """Derives the card's features over a short memory of recent rows, then predicts."""

    def __init__(self, model, card: dict, memory_rows: int | None = None):
        self.model = model
        self.card = card
        hours = max(
            [
                *card.get("derived", {}).get("lags", {}).get("hours", []),
                *card.get("derived", {}).get("rolling_means", {}).get("hours", []),
                0,
            ]
        )
        self.memory_rows = memory_rows if memory_rows is not None else hours + 1
        self.memory = None
        self.lock = threading.Lock()

    def frame(self, rows):
        import pandas as pd

        frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        for column, value in (self.card.get("constant_features") or {}).items():
            frame[column] = value
        missing = [column for column in self.card["raw_features"] if column not in frame.columns]
        if missing:
            raise ValueError(f"rows lack input column(s) {missing}")
        for column in self.card["numeric_features"]:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        return frame

    def predict(self, rows) -> tuple[list[float], list[str]]:
        import pandas as pd

        try:
            from features import derive, timestamps  # inside the image: copied next to this file
        except ImportError:
            from edge.features import derive, timestamps  # run from the repository

        frame = self.frame(rows)
        stamps = timestamps(frame, self.card["timestamp"])
        with self.lock:
            history = self.memory
            combined = frame if history is None else pd.concat([history, frame], ignore_index=True)
            combined_stamps = timestamps(combined, self.card["timestamp"])
            derived = derive(combined, combined_stamps, self.card.get("derived"))
            self.memory = combined.tail(self.memory_rows).reset_index(drop=True) if self.memory_rows else None
        own = derived.tail(len(frame))
        predictions = [float(value) for value in self.model.predict(own[self.card["features"]])]
        return predictions, [stamp.isoformat() if stamp == stamp else "" for stamp in stamps]


def loss(card: dict, targets, predictions) -> float:
    errors = [p - t for p, t in zip(predictions, targets, strict=True)]
    if card["loss"] == "rmse":
        return math.sqrt(sum(e * e for e in errors) / len(errors))
    return sum(abs(e) for e in errors) / len(errors)


def self_test(rows_path: Path, expected_loss: float, tolerance: float) -> int:
    """Score the evaluation rows (their look-back rows first, as a device would have) and check the loss."""
    import pandas as pd

    model, card = load_model()
    frame = pd.read_parquet(rows_path)
    scorer = Scorer(model, card, memory_rows=0)
    predictions, _ = scorer.predict(frame)
    keep = ~frame[CONTEXT].astype(bool) if CONTEXT in frame.columns else pd.Series(True, index=frame.index)
    kept = [p for p, flag in zip(predictions, keep.tolist(), strict=True) if flag]
    measured = loss(card, frame.loc[keep, card["target"]].tolist(), kept)
    ok = abs(measured - expected_loss) <= tolerance * max(1.0, abs(expected_loss))
    print(json.dumps({"rows": int(keep.sum()), "loss": measured, "expected": expected_loss, "ok": ok}))
    return 0 if ok else 1


_LOG_LOCK = threading.Lock()


def append_log(log_dir: Path, version, stamps: list[str], predictions: list[float]) -> None:
    with _LOG_LOCK:  # concurrent requests: one header per file, no interleaved rows
        _append_log(log_dir, version, stamps, predictions)


def _append_log(log_dir: Path, version, stamps: list[str], predictions: list[float]) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    by_day: dict[str, list] = {}
    for stamp, prediction in zip(stamps, predictions, strict=True):
        by_day.setdefault(stamp[:10] or "undated", []).append((stamp, version, prediction))
    for day, rows in by_day.items():
        path = log_dir / f"predictions-{day}.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(LOG_COLUMNS)
            writer.writerows(rows)


def serve(port: int, log_dir: Path | None) -> None:
    model, card = load_model()
    scorer = Scorer(model, card)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self._answer(200, {"status": "ok", "source_id": card["source_id"], "model_version": card["version"]})
            else:
                self._answer(404, {"error": f"no route {self.path}"})

        def do_POST(self):
            if self.path != "/score":
                self._answer(404, {"error": f"no route {self.path}"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                rows = body.get("rows") if isinstance(body, dict) else None
                if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
                    raise ValueError('the body must be {"rows": [{column: value, ...}, ...]} with at least one row')
                predictions, stamps = scorer.predict(rows)
            except (ValueError, KeyError, TypeError) as exc:
                self._answer(400, {"error": str(exc)})
                return
            if log_dir is not None:
                append_log(log_dir, card["version"], stamps, predictions)
            self._answer(200, {"model_version": card["version"], "predictions": predictions})

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # the stdlib's backlog of 5 resets bursts of sensors scoring at once

    Server(("0.0.0.0", port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--prediction-log", type=Path)
    parser.add_argument("--self-test", type=Path)
    parser.add_argument("--expect-loss", type=float)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test(args.self_test, args.expect_loss, args.tolerance)
    serve(args.port, args.prediction_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
