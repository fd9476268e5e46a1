"""The embedded local stack: Azurite, durabletask's in-memory backend and worker, the HTTP host, the blob relay.

The same orchestrator and activities as in Azure; only the engine and the adapters differ.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from durabletask.client import TaskHubGrpcClient
from durabletask.testing import create_test_backend
from durabletask.worker import ConcurrencyOptions, TaskHubGrpcWorker

import activities
from local.azurite import ACCOUNT, Azurite, free_port
from local.http_host import make_server, serve_in_background
from local.relay import BlobRelay
from orchestrations.retrain import retrain_source
from shared import redact
from shared.adapters import get_ports, reset_ports
from shared.api import WEBHOOK_PATH, Api
from shared.orchestration_client import DurableTaskOrchestrations
from shared.reconcile import ReconcileTimer, reconcile

log = logging.getLogger("multiline.stack")


def as_durabletask_activity(function):
    """durabletask calls activities as (ctx, input); ours are plain (input) functions."""

    def activity(ctx, payload):
        return function(payload)

    activity.__name__ = function.__name__
    activity.__qualname__ = function.__name__
    return activity


@dataclass
class StackOptions:
    state_dir: Path
    http_port: int = 7071
    persist_storage: bool = True
    settings: dict | None = None  # extra MULTILINE_* settings for this stack
    # Seconds between the blob relay's looks at the raw container. None: it never looks on its own; the one
    # who uploads calls `LocalStack.deliver_events()` (the demo, which knows when it uploaded, does that).
    relay_interval: float | None = 0.5
    reconcile_on_start: bool = True
    azurite_port: int | None = None  # None: any free port


class _EngineNotices(logging.Filter):
    """Engine warnings that are the stack working, not news: the orchestrator cancels the debounce timer an
    upload beat (Durable Functions needs that) and the in-memory backend still fires it, which the worker
    says it ignores; an idle worker's stream times out and reconnects (every few minutes with nothing to do);
    and while the stack stops, the worker's work-item stream ends CANCELLED."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Ignoring unexpected timerFired event" in message or "Timed out waiting for work items" in message:
            return False
        return not (self.stopping and "CANCELLED" in message)


class LocalStack:
    def __init__(self, options: StackOptions):
        self.options = options
        self._engine_notices = _EngineNotices()
        self.azurite: Azurite | None = None
        self.backend = None
        self.worker = None
        self.client = None
        self.server = None
        self.relay = None
        self.ports = None
        self.orchestrations = None
        self.reconciled: list[dict] = []
        self.reconciler: ReconcileTimer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.azurite.port}/{ACCOUNT}"

    def start(self) -> LocalStack:
        options = self.options
        redact.install()  # the stack holds a connection string: no log record may carry its key
        options.state_dir.mkdir(parents=True, exist_ok=True)
        self.azurite = Azurite(
            options.state_dir / "azurite" if options.persist_storage else None,
            port=options.azurite_port,
            log_file=options.state_dir / "logs" / "azurite.log",
        ).start()
        try:
            return self._start_rest()
        except BaseException:
            self.stop()
            raise

    def _start_rest(self) -> LocalStack:
        options = self.options
        # The local host configures the process the way the Functions host would: through settings.
        os.environ.update(
            {
                "MULTILINE_MODE": "local",
                "MULTILINE_STORAGE_CONNECTION_STRING": self.azurite.connection_string,
                "MULTILINE_STATE_DIR": str(options.state_dir),
                **{key: str(value) for key, value in (options.settings or {}).items()},
            }
        )
        # Child processes (image smoke tests; training sets its own) score a few hundred rows each, several at
        # once: one OpenMP thread each, rather than every one spinning up a thread per core.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        reset_ports()
        self.ports = get_ports()
        durable_port = free_port()
        self.backend = create_test_backend(port=durable_port)
        address = f"localhost:{durable_port}"
        engine_log = logging.getLogger("multiline.durabletask")
        engine_log.addFilter(self._engine_notices)
        self.worker = TaskHubGrpcWorker(
            host_address=address,
            logger=engine_log,
            concurrency_options=ConcurrencyOptions(maximum_thread_pool_workers=8),
        )
        self.worker.add_orchestrator(retrain_source)
        for function in activities.ALL:
            self.worker.add_activity(as_durabletask_activity(function))
        self.worker.start()
        self.client = TaskHubGrpcClient(host_address=address, logger=engine_log)
        self.orchestrations = DurableTaskOrchestrations(self.client, self.ports.settings)
        self.api = Api(self.ports, self.orchestrations)
        self.server = make_server(self.api, options.http_port)
        self.api.base_url = self.base_url
        serve_in_background(self.server)
        self.relay = BlobRelay(
            self.ports.storage,
            self.ports.settings.containers.raw,
            self.account_url,
            f"{self.base_url}{WEBHOOK_PATH}?functionName=blob_created",
            interval=options.relay_interval,
        ).start()
        if options.reconcile_on_start:
            self.reconciled = reconcile(self.ports, self.orchestrations)
        # Events can be lost: every MULTILINE_RECONCILE_SECONDS, sources with unseen data get a run.
        self.reconciler = ReconcileTimer(self.ports, self.orchestrations, self.ports.settings.reconcile_seconds).start()
        return self

    def deliver_events(self) -> int:
        """Post the BlobCreated events of blobs written since the relay last looked, now rather than at its next
        poll (each look lists the whole raw container); returns how many were posted."""
        return self.relay.poll_once()

    def stop(self) -> None:
        self._engine_notices.stopping = True
        for stopper in (
            lambda: self.reconciler and self.reconciler.stop(),
            lambda: self.relay and self.relay.stop(),
            lambda: self.server and (self.server.shutdown(), self.server.server_close()),
            lambda: self.worker and self.worker.stop(),
            lambda: self.client and self.client.close(),
            lambda: self.backend and self.backend.stop(),
            reset_ports,
            lambda: self.azurite and self.azurite.stop(),
        ):
            try:
                stopper()
            except Exception as exc:  # stop everything we can
                log.warning("while stopping: %s", exc)
        logging.getLogger("multiline.durabletask").removeFilter(self._engine_notices)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
