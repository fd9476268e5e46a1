"""What only the local training backend has: a concurrency limit with a queue, in real worker processes.

The behaviour both backends share (training, failures, retried submits, cancel) is in
tests/test_training_contract.py; the image builders' in tests/test_image_builder_contract.py.
"""

import os
import time

import pytest

from shared.local_training import LocalTrainingBackend
from tests.conftest import months_from
from tests.test_training_contract import job_for, upload_months, wait_for


@pytest.fixture
def backend(storage, azurite, tmp_path):
    env = {**os.environ, "MULTILINE_STORAGE_CONNECTION_STRING": azurite.connection_string, "MULTILINE_MODE": "local"}
    backend = LocalTrainingBackend(storage, "jobs", concurrency=2, env=env, log_dir=tmp_path)
    yield backend
    backend.close()


def test_concurrency_limit_queues_jobs_and_cancel_stops_one(storage, backend, fast_spec, source_id):
    names = upload_months(storage, source_id, "Dongsi", months_from(2015, 1, 3))
    jobs = [backend.submit(job_for(source_id, names, fast_spec)) for _ in range(3)]
    time.sleep(1.0)
    states = [backend.status(job)["state"] for job in jobs]
    assert states.count("queued") >= 1, states  # at most two run at once
    backend.cancel(jobs[2])
    assert wait_for(backend, jobs[2])["state"] == "canceled"
    assert [wait_for(backend, job)["state"] for job in jobs[:2]] == ["succeeded", "succeeded"]


def test_a_job_stops_when_the_stack_that_started_it_is_killed(tmp_path):
    """A stack killed hard cannot stop its jobs: each one notices its parent is gone and stops, instead of
    retrying the dead storage for minutes (here storage that never answers keeps the job waiting)."""
    import signal
    import socket
    import subprocess
    import sys

    from local.azurite import connection_string
    from shared.settings import PROJECT_ROOT

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # closed again: nothing listens there
    env = {**os.environ, "MULTILINE_STORAGE_CONNECTION_STRING": connection_string(dead_port), "MULTILINE_MODE": "local"}
    parent = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-m', 'training.pipeline', '--job-id', 'j1',"
        " '--parent-pid', str(os.getpid())])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    stack = subprocess.Popen([sys.executable, "-c", parent], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    job_pid = int(stack.stdout.readline())
    time.sleep(2)  # the job is up and retrying
    assert running(job_pid)
    stack.send_signal(signal.SIGKILL)
    stack.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not running(job_pid):
            break
        time.sleep(0.2)
    else:
        os.kill(job_pid, signal.SIGKILL)
        pytest.fail(f"the job (pid {job_pid}) still runs 15 s after its stack was killed")


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by init, which in a container may never happen)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:  # gone in between, or no procfs (not Linux), where kill(0) is all there is
        return not os.path.isdir("/proc/self")


def test_azurite_stops_when_the_stack_that_started_it_is_killed():
    import signal
    import subprocess
    import sys

    from shared.settings import PROJECT_ROOT

    if sys.platform != "linux":
        pytest.skip("the parent-death signal is Linux's")
    parent = (
        "import time\n"
        "from local.azurite import Azurite\n"
        "server = Azurite(location=None).start()\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    stack = subprocess.Popen([sys.executable, "-c", parent], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    azurite_pid = int(stack.stdout.readline())
    assert running(azurite_pid)
    stack.send_signal(signal.SIGKILL)
    stack.wait(timeout=10)
    deadline = time.monotonic() + 15
    while running(azurite_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if running(azurite_pid):
        os.kill(azurite_pid, signal.SIGKILL)
        pytest.fail(f"Azurite (pid {azurite_pid}) still runs 15 s after the stack that started it was killed")
