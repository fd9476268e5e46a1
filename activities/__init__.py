"""The orchestration's steps: each activity is a plain function `(input: dict) -> dict` over the ports.

Both engines register the functions in ALL under their own names (durabletask locally, Durable
Functions in Azure); the orchestrator calls them by those names.
"""

from activities.build_image import build_image, get_build_status
from activities.check_drift import check_drift
from activities.compare_champion import compare_champion
from activities.fleet import ensure_fleet_model
from activities.pending_uploads import pending_uploads
from activities.promote import promote
from activities.record_run import record_run
from activities.resolve_data import resolve_data
from activities.training import cancel_training, get_training_status, submit_training

ALL = [
    resolve_data,
    check_drift,
    submit_training,
    get_training_status,
    cancel_training,
    ensure_fleet_model,
    compare_champion,
    promote,
    build_image,
    get_build_status,
    record_run,
    pending_uploads,
]
