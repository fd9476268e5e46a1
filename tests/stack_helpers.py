"""Helpers for tests that drive the real local stack: a stack per module, HTTP calls, waits, an invariant watch."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

from local.stack import LocalStack, StackOptions
from shared.run_store import runs_of


def fast_settings(spec_path, **extra) -> dict:
    return {
        "MULTILINE_SPEC": spec_path,
        "MULTILINE_DEBOUNCE_SECONDS": 1.0,
        "MULTILINE_POLL_SECONDS": 0.3,
        "MULTILINE_RECONCILE_SECONDS": 2.0,
        **extra,
    }


@contextmanager
def running_stack(state_dir, settings: dict, persist_storage: bool = False):
    """A stack whose settings do not leak into later tests' environment."""
    saved = dict(os.environ)
    options = StackOptions(
        state_dir=state_dir, http_port=0, persist_storage=persist_storage, relay_interval=0.3, settings=settings
    )
    try:
        with LocalStack(options) as stack:
            yield stack
    finally:
        os.environ.clear()
        os.environ.update(saved)


def call(stack, method, path, body=None, headers=None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(stack.base_url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def orchestration_state(stack, source_id) -> dict:
    return stack.orchestrations.status(f"retrain-{source_id}") or {}


def wait_for(condition, what: str, timeout: float = 240):
    """Poll until `condition()` is truthy (the stack runs on wall-clock timers); fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def wait_for_runs(stack, source_id, count, timeout=240) -> list[dict]:
    def done():
        runs = runs_of(stack.ports.storage, "runs", source_id)
        if len(runs) >= count and orchestration_state(stack, source_id).get("runtime_status") == "completed":
            return runs
        return None

    return wait_for(done, f"{count} completed run(s) of {source_id}", timeout)


def wait_for_step(stack, source_id, step, timeout=240) -> dict:
    return wait_for(
        lambda: (orchestration_state(stack, source_id).get("custom_status") or {}).get("step") == step,
        f"{source_id} to reach step {step}",
        timeout,
    )


class ChampionWatch:
    """Samples the champion pointer of some sources all along a test: there is exactly one champion per
    source at every moment (a readable pointer to one registered version, never gone once set)."""

    def __init__(self, registry, sources):
        self.registry = registry
        self.sources = list(sources)
        self.seen: dict[str, list] = {source: [] for source in self.sources}
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChampionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        assert not self.problems, self.problems

    def _sample(self) -> None:
        for source in self.sources:
            try:
                version, _ = self.registry.champion(source)
            except Exception as exc:  # an unreadable pointer is a broken invariant
                self.problems.append(f"{source}: champion pointer unreadable: {exc}")
                continue
            history = self.seen[source]
            if version is None and any(item is not None for item in history):
                self.problems.append(f"{source}: the champion disappeared")
            if version is not None:
                self.registry.get(source, version)  # the pointer names a registered version
            if not history or history[-1] != version:
                history.append(version)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def versions(self, source) -> list:
        return [version for version in self.seen[source] if version is not None]


def start_serve(state_dir, *arguments, env=None, stderr=None):
    """`multiline serve` as a subprocess, returned once its stack file (in `state_dir`) is written whole."""
    import subprocess
    import sys

    from shared.settings import PROJECT_ROOT

    serve = subprocess.Popen(
        [sys.executable, "-m", "local.cli", "serve", *arguments],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 90
    while not (state_dir / "stack.json").exists():
        if serve.poll() is not None or time.monotonic() > deadline:
            serve.kill()
            raise AssertionError("serve did not come up")
        time.sleep(0.2)
    time.sleep(0.5)  # written whole
    return serve
