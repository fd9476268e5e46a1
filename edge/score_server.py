"""The edge image's scoring server: loads the baked-in model and answers predictions over HTTP.

Runs with only the Python standard library plus the model's own libraries (scikit-learn, pandas);
it imports nothing of the Multiline app.

    python score_server.py --port 8080                         serve POST /score and GET /health
    python score_server.py --self-test rows.parquet --expect-loss 21.3   the build's smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "model"


def load_model(model_dir: Path = MODEL_DIR):
    import joblib

    card = json.loads((model_dir / "model.json").read_text())
    payload = (model_dir / "model.joblib").read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != card["sha256"]:
        raise SystemExit(f"model.joblib has sha256 {digest}, the model card says {card['sha256']}: refusing to load")
    return joblib.load(model_dir / "model.joblib"), card


def predict(model, card: dict, rows: list[dict]) -> list[float]:
    import pandas as pd

    frame = pd.DataFrame(rows)
    missing = [column for column in card["features"] if column not in frame.columns]
    if missing:
        raise ValueError(f"rows lack feature column(s) {missing}")
    for column in card["numeric_features"]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return [float(value) for value in model.predict(frame[card["features"]])]


def loss(card: dict, targets, predictions) -> float:
    errors = [p - t for p, t in zip(predictions, targets)]
    if card["loss"] == "rmse":
        return math.sqrt(sum(e * e for e in errors) / len(errors))
    return sum(abs(e) for e in errors) / len(errors)


def self_test(rows_path: Path, expected_loss: float, tolerance: float) -> int:
    import pandas as pd

    model, card = load_model()
    frame = pd.read_parquet(rows_path)
    predictions = predict(model, card, frame.to_dict(orient="records"))
    measured = loss(card, frame[card["target"]].tolist(), predictions)
    ok = abs(measured - expected_loss) <= tolerance * max(1.0, abs(expected_loss))
    print(json.dumps({"rows": len(frame), "loss": measured, "expected": expected_loss, "ok": ok}))
    return 0 if ok else 1


def serve(port: int) -> None:
    model, card = load_model()

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
                predictions = predict(model, card, body["rows"])
            except (ValueError, KeyError, TypeError) as exc:
                self._answer(400, {"error": str(exc)})
                return
            self._answer(200, {"model_version": card["version"], "predictions": predictions})

    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--self-test", type=Path)
    parser.add_argument("--expect-loss", type=float)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test(args.self_test, args.expect_loss, args.tolerance)
    serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
