"""Start-or-signal the per-source orchestration on durabletask (the local engine).

One instance per source (`retrain-<source_id>`): scheduling is atomic in the engine, so of many
concurrent signals for a source exactly one starts the instance (ALREADY_EXISTS for the others, which
raise an `upload` event to it instead). An event raised to an instance that has just ended is dropped
by the engine, so the signal checks the state afterwards and starts a new instance when it ended.
"""

from __future__ import annotations

from dataclasses import asdict

import grpc
from durabletask import client as dt_client
from durabletask.internal import orchestrator_service_pb2 as pb

from orchestrations.retrain import ORCHESTRATOR_NAME, UPLOAD_EVENT, RetrainRequest, instance_id_for
from shared.settings import Settings

TERMINAL = (
    dt_client.OrchestrationStatus.COMPLETED,
    dt_client.OrchestrationStatus.FAILED,
    dt_client.OrchestrationStatus.TERMINATED,
)
REPLACE_TERMINAL = pb.OrchestrationIdReusePolicy(
    replaceableStatus=[
        pb.ORCHESTRATION_STATUS_COMPLETED,
        pb.ORCHESTRATION_STATUS_FAILED,
        pb.ORCHESTRATION_STATUS_TERMINATED,
        pb.ORCHESTRATION_STATUS_CANCELED,
    ]
)


def new_request(settings: Settings, source_id: str, signal: dict) -> RetrainRequest:
    request = RetrainRequest(
        source_id=source_id,
        debounce_seconds=settings.debounce_seconds,
        poll_seconds=settings.poll_seconds,
        training_deadline_seconds=settings.training_deadline_seconds,
        build_deadline_seconds=settings.build_deadline_seconds,
        fleet_candidate=settings.fleet_enabled,
        trigger=signal.get("trigger", "upload"),
    )
    return request.absorb(signal)


class DurableTaskOrchestrations:
    def __init__(self, client: dt_client.TaskHubGrpcClient, settings: Settings):
        self.client = client
        self.settings = settings

    def signal(self, source_id: str, signal: dict) -> dict:
        """Start the source's orchestration, or hand the signal to the one already waiting or running."""
        instance_id = instance_id_for(source_id)
        for _ in range(5):
            try:
                self.client.schedule_new_orchestration(
                    ORCHESTRATOR_NAME,
                    input=asdict(new_request(self.settings, source_id, signal)),
                    instance_id=instance_id,
                    reuse_id_policy=REPLACE_TERMINAL,
                )
                return {"instance_id": instance_id, "action": "started"}
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
            try:
                self.client.raise_orchestration_event(instance_id, UPLOAD_EVENT, data=signal)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                continue  # it vanished between the two calls: start it again
            state = self.client.get_orchestration_state(instance_id, fetch_payloads=False)
            if state is not None and state.runtime_status not in TERMINAL:
                return {"instance_id": instance_id, "action": "signaled"}
            # It ended before it could see the signal (events to ended instances are dropped): start again.
        raise RuntimeError(f"could not start or signal the orchestration of source {source_id}")

    def status(self, instance_id: str) -> dict | None:
        state = self.client.get_orchestration_state(instance_id)
        if state is None:
            return None
        return {
            "instance_id": state.instance_id,
            "runtime_status": state.runtime_status.name.lower(),
            "created_at": state.created_at.isoformat() if state.created_at else None,
            "last_updated_at": state.last_updated_at.isoformat() if state.last_updated_at else None,
            "custom_status": state.get_custom_status(),
            "output": state.get_output(),
            "failure": str(state.failure_details.message) if state.failure_details else None,
        }
