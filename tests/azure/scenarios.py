"""Scripted activity results for driving the retrain orchestrator on both engines with the same story."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict

from orchestrations.retrain import RetrainRequest

DECISION_KEYS = ("outcome", "champion_version", "error")


def request(**overrides) -> dict:
    base = RetrainRequest(
        source_id="A", debounce_seconds=0.0, poll_seconds=0.0, training_deadline_seconds=3600, build_deadline_seconds=3600
    )
    return {**asdict(base), **overrides}


class Story:
    """Activity fakes for one run; records every call so both engines can be compared."""

    def __init__(self, *, training: list[dict], comparison: dict | None = None, promotion: dict | None = None):
        self.training = list(training)
        self.comparison = comparison
        self.promotion = promotion
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def _record(self, name: str, payload: dict) -> None:
        with self.lock:
            self.calls.append((name, payload))

    def activities(self) -> dict[str, Callable[[dict], dict]]:
        def resolve_data(payload):
            return {
                "manifest_uri": f"runs/A/manifests/{payload['run_id']}.json",
                "blob_count": 3,
                "skipped": [],
                "skipped_count": 0,
            }

        def check_drift(payload):
            return {
                "status": "drifted",
                "summary": "2/5 features drifted",
                "drifted": ["TEMP"],
                "drifted_share": 0.4,
                "rows": 100,
                "champion_version": 1,
            }

        def submit_training(payload):
            return {"job_id": f"{payload['run_id']}"}

        def get_training_status(payload):
            with self.lock:
                return self.training.pop(0) if len(self.training) > 1 else self.training[0]

        def cancel_training(payload):
            return {"job_id": payload["job_id"], "state": "canceled"}

        def compare_champion(payload):
            return self.comparison

        def promote(payload):
            return self.promotion

        def build_image(payload):
            return {"build_id": f"A/{payload['version']:06d}", "existing": False}

        def get_build_status(payload):
            return {"build_id": payload["build_id"], "state": "succeeded", "image": "edge-a:2", "digest": "sha256:ab"}

        def record_run(payload):
            return {"run_uri": f"runs/A/runs/{payload['run_id']}.json"}

        def pending_uploads(payload):
            return {"pending": 0, "examples": []}

        functions = [
            resolve_data,
            check_drift,
            submit_training,
            get_training_status,
            cancel_training,
            compare_champion,
            promote,
            build_image,
            get_build_status,
            record_run,
            pending_uploads,
        ]

        def recorded(function):
            def activity(payload):
                self._record(function.__name__, payload)
                return function(payload)

            activity.__name__ = function.__name__
            return activity

        return {function.__name__: recorded(function) for function in functions}


SUCCEEDED = {
    "state": "succeeded",
    "error": None,
    "result": {
        "model_version": 2,
        "eval_uri": "artifacts/A/evaluation/j.parquet",
        "eval_start": "2016-12-01T00:00:00",
        "eval_end": "2017-01-01T00:00:00",
        "metrics": {"rmse": 10.0},
    },
}


def happy_story() -> Story:
    return Story(
        training=[{"state": "queued"}, {"state": "running"}, SUCCEEDED],
        comparison={
            "decision": "promote",
            "champion_version": 1,
            "challenger_version": 2,
            "challenger_candidate": "A-candidate-2",
            "champion_loss": 12.0,
            "challenger_loss": 10.0,
            "champion_etag": '"0x1"',
            "reason": "challenger rmse 10.000 beats champion 12.000 by more than 1%",
        },
        promotion={"promoted": True, "champion_version": 2, "reason": "better"},
    )


def failed_training_story() -> Story:
    return Story(training=[{"state": "running"}, {"state": "failed", "error": "Failed: step train exited with code 1"}])


def losing_challenger_story() -> Story:
    return Story(
        training=[SUCCEEDED],
        comparison={
            "decision": "keep",
            "champion_version": 1,
            "challenger_version": 2,
            "challenger_candidate": "A-candidate-2",
            "champion_loss": 9.0,
            "challenger_loss": 10.0,
            "champion_etag": '"0x1"',
            "reason": "challenger rmse 10.000 does not beat champion 9.000",
        },
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_on_durabletask(story: Story, payload: dict, timeout: float = 30.0):
    """The same orchestrator on durabletask's in-memory backend (the local engine)."""
    from durabletask.client import TaskHubGrpcClient
    from durabletask.testing import create_test_backend
    from durabletask.worker import TaskHubGrpcWorker

    from orchestrations.retrain import retrain_source

    port = free_port()
    backend = create_test_backend(port=port)
    worker = TaskHubGrpcWorker(host_address=f"localhost:{port}")
    client = TaskHubGrpcClient(host_address=f"localhost:{port}")
    try:
        worker.add_orchestrator(retrain_source)
        for name, function in story.activities().items():

            def activity(ctx, data, function=function):
                return function(data)

            activity.__name__ = name
            worker.add_activity(activity)
        worker.start()
        instance_id = client.schedule_new_orchestration(retrain_source, input=payload, instance_id="retrain-A")
        state = client.wait_for_orchestration_completion(instance_id, timeout=timeout)
        time.sleep(0)  # let the worker settle before stopping it
        return state
    finally:
        worker.stop()
        client.close()
        backend.stop()
