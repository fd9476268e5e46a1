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
