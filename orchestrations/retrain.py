"""The per-source retraining orchestration: one instance per source, the steps of the product in order.

Runs unchanged on durabletask locally and, through `orchestrations.df_adapter`, on Durable Functions.
Instance id: `retrain-<source_id>` (see `instance_id_for`), so a source never has two runs at once.
Uploads that arrive while a run waits or works are raised as `upload` events and coalesced into the
next run (continue-as-new), never lost and never run twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone

from durabletask.task import RetryPolicy, when_any

UPLOAD_EVENT = "upload"
ORCHESTRATOR_NAME = "retrain_source"

# Storage hiccups are retried; a step that keeps failing ends the run with its reason recorded.
STEP_RETRY = RetryPolicy(first_retry_interval=timedelta(seconds=2), max_number_of_attempts=3, backoff_coefficient=2.0)


def instance_id_for(source_id: str) -> str:
    return f"retrain-{source_id}"


@dataclass
class RetrainRequest:
    source_id: str
    start: str | None = None
    end: str | None = None
    filters: dict = field(default_factory=dict)
    manual: bool = False
    trigger: str = "upload"
    uploads: int = 0
    debounce_seconds: float = 30.0
    poll_seconds: float = 15.0
    training_deadline_seconds: float = 4 * 3600.0
    build_deadline_seconds: float = 3600.0
    fleet_candidate: bool = False
    rollback_to: int | None = None

    @classmethod
    def from_dict(cls, payload: dict) -> RetrainRequest:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in payload.items() if key in known})

    def absorb(self, signal: dict | None) -> RetrainRequest:
        """Fold one more upload or manual request into the run that will happen next."""
        signal = signal or {}
        # The last request wins whole: a retrain after a queued rollback is a retrain, and the reverse.
        if signal.get("rollback_to") is not None:
            return replace(
                self, manual=True, trigger="rollback", rollback_to=int(signal["rollback_to"]), start=None, end=None, filters={}
            )
        if signal.get("manual"):
            return replace(
                self,
                manual=True,
                trigger="manual",
                start=signal.get("start"),
                end=signal.get("end"),
                filters=signal.get("filters") or {},
                uploads=self.uploads,
                rollback_to=None,
            )
        return replace(self, uploads=self.uploads + 1)

    @property
    def partial_history(self) -> bool:
        """A rollback, or a retrain over a range or with filters: it may not read every upload."""
        return self.rollback_to is not None or bool(self.start or self.end or self.filters)

    def next_run(self) -> RetrainRequest:
        """The follow-up run's request: uploads since the run started, over the whole history."""
        return replace(self, start=None, end=None, filters={}, manual=False, trigger="follow-up", uploads=0, rollback_to=None)


def utc(moment: datetime) -> datetime:
    """durabletask gives naive UTC, Durable Functions aware UTC: records always carry aware UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def retrain_source(ctx, payload: dict):
    request = RetrainRequest.from_dict(payload)
    status = {"source_id": request.source_id, "step": "debouncing", "uploads": request.uploads}
    ctx.set_custom_status(status)

    signals = Signals(ctx)
    if not request.manual:
        request = yield from wait_until_quiet(ctx, signals, request)
        status["uploads"] = request.uploads

    started = utc(ctx.current_utc_datetime)
    run_id = f"{request.source_id}-{started:%Y%m%dT%H%M%S%f}"
    record: dict = {
        "source_id": request.source_id,
        "run_id": run_id,
        "instance_id": ctx.instance_id,
        "trigger": request.trigger,
        "uploads": request.uploads,
        "start": request.start,
        "end": request.end,
        "filters": request.filters,
        "rollback_to": request.rollback_to,
        "started_at": started.isoformat(),
        "outcome": None,
    }

    timings: dict[str, float] = {}
    record["step_seconds"] = timings
    clock = {"step": None, "since": started}

    def step(name: str, **extra) -> None:
        # Seconds per step, by the orchestration's own clock (replay-safe), for the run record.
        now = utc(ctx.current_utc_datetime)
        if clock["step"] is not None:
            timings[clock["step"]] = round(timings.get(clock["step"], 0.0) + (now - clock["since"]).total_seconds(), 3)
        clock.update(step=name, since=now)
        status.update(step=name, run_id=run_id, **extra)
        ctx.set_custom_status(status)

    # Written before any work: a host killed mid-run (the local engine forgets it) leaves this behind, and
    # reconcile records the attempt as interrupted instead of letting it vanish.
    step("starting")
    yield ctx.call_activity("record_run", input={**record, "outcome": "running"}, retry_policy=STEP_RETRY)
    try:
        if request.rollback_to is not None:
            yield from roll_back(ctx, request, record, step)
        else:
            yield from run_steps(ctx, request, record, step)
    except Exception as exc:  # a failed step ends the run with its reason; the champion is untouched
        record["outcome"] = "failed"
        record["error"] = f"step {status['step']} failed: {exc}"

    ended = utc(ctx.current_utc_datetime)
    record["ended_at"] = ended.isoformat()
    record["duration_seconds"] = round((ended - started).total_seconds(), 3)
    step("record_run", outcome=record["outcome"])
    yield ctx.call_activity("record_run", input=record, retry_policy=STEP_RETRY)

    # Anything that arrived during the run gets exactly one follow-up run.
    follow_up = request.next_run()
    waiting = yield from drain_signals(ctx, signals, follow_up)
    pending = {"pending": 0}
    if "manifest" in record:
        pending = yield ctx.call_activity(
            "pending_uploads",
            input={
                "source_id": request.source_id,
                "manifest_uri": record["manifest"]["manifest_uri"],
            },
            retry_policy=STEP_RETRY,
        )
    # Uploads folded into a run that did not train on the whole history (a rollback, or a retrain over a
    # range or with filters) may not have been read: they get their follow-up run as well.
    if request.uploads and request.partial_history:
        waiting = replace(waiting, uploads=max(waiting.uploads, request.uploads))
    if waiting.uploads or waiting.manual or pending["pending"]:
        step("continuing", outcome=record["outcome"], pending=pending["pending"] + waiting.uploads)
        ctx.continue_as_new(asdict(waiting), save_events=True)
        return None
    step("done", outcome=record["outcome"])
    output = {key: record.get(key) for key in ("source_id", "run_id", "outcome", "champion_version", "error")}
    if record.get("image"):  # what a deployment pipeline waits for: the champion's edge image
        output["image"] = {key: record["image"].get(key) for key in ("state", "image", "digest", "error")}
    return output


def run_steps(ctx, request: RetrainRequest, record: dict, step):
    """The product's steps in order. A step that ends the run sets the outcome and returns early."""
    source_id, run_id = request.source_id, record["run_id"]

    step("resolve_data")
    manifest = yield ctx.call_activity(
        "resolve_data",
        input={
            "source_id": source_id,
            "run_id": run_id,
            "start": request.start,
            "end": request.end,
            "filters": request.filters,
        },
        retry_policy=STEP_RETRY,
    )
    record["manifest"] = manifest
    if manifest["blob_count"] == 0:
        error = "no data blobs for this source in the requested range"
        record.update(
            outcome="no_data", error=f"{error}; {manifest['not_read_hint']}" if manifest.get("not_read_hint") else error
        )
        return

    step("check_drift")
    drift = yield ctx.call_activity(
        "check_drift",
        input={
            "source_id": source_id,
            "run_id": run_id,
            "manifest_uri": manifest["manifest_uri"],
            "manual": request.manual,
        },
        retry_policy=STEP_RETRY,
    )
    record["drift"] = drift
    if not drift.get("train", True):  # the retraining policy says this data needs no new model, and why
        record.update(outcome="skipped", reason=drift.get("policy_reason"), champion_version=drift.get("champion_version"))
        if drift.get("champion_version") is not None:  # a build that failed earlier is retried (no-op if it exists)
            yield from build_champion_image(ctx, request, record, step, drift["champion_version"])
        return

    # Until a comparison says otherwise, the champion the drift check found is the one this run leaves in place
    # (a failed or canceled training reports it too).
    record["champion_version"] = drift.get("champion_version")
    step("submit_training")
    if request.fleet_candidate and manifest.get("eval_start_estimate"):
        # Ask for the fleet model for this window first, so it trains while the source's own challenger does:
        # it is the longest job of a round and every source's comparison waits for it, so it should hold a
        # training slot from the start rather than queue behind the first sources' own challengers.
        yield ctx.call_activity(
            "ensure_fleet_model",
            input={
                "source_id": source_id,
                "eval_start": manifest["eval_start_estimate"],
                "instance_id": ctx.instance_id,
            },
            retry_policy=STEP_RETRY,
        )
    job = yield ctx.call_activity(
        "submit_training",
        input={
            "source_id": source_id,
            "run_id": run_id,
            "instance_id": ctx.instance_id,
            "manifest_uri": manifest["manifest_uri"],
            "drift_summary": drift["summary"],
        },
        retry_policy=STEP_RETRY,
    )
    step("training", job_id=job["job_id"])
    training = yield from poll_until_terminal(
        ctx, "get_training_status", {"job_id": job["job_id"]}, request.poll_seconds, request.training_deadline_seconds
    )
    if training["state"] == "timed_out":
        yield ctx.call_activity("cancel_training", input={"job_id": job["job_id"]}, retry_policy=STEP_RETRY)
    record["training"] = {"job_id": job["job_id"], **training}
    if training["state"] != "succeeded":
        error = training.get("error")
        if training["state"] == "failed" and manifest.get("not_read_hint"):  # perhaps the rows it lacked
            error = f"{error}; {manifest['not_read_hint']}"
        record.update(outcome="training_" + training["state"], error=error)
        return

    challenger_version = training["result"]["model_version"]
    fleet_version = None
    if request.fleet_candidate:
        step("fleet_candidate")
        fleet = yield from poll_until_terminal(
            ctx,
            "ensure_fleet_model",
            {"source_id": source_id, "eval_start": training["result"]["eval_start"], "instance_id": ctx.instance_id},
            request.poll_seconds,
            request.training_deadline_seconds,
        )
        record["fleet"] = fleet  # a fleet model that could not be had leaves the source's own challenger
        fleet_version = fleet.get("fleet_version") if fleet["state"] == "succeeded" else None

    step("compare_champion", challenger_version=challenger_version)
    comparison = yield ctx.call_activity(
        "compare_champion",
        input={
            "source_id": source_id,
            "challenger_version": challenger_version,
            "fleet_version": fleet_version,
        },
        retry_policy=STEP_RETRY,
    )
    record["comparison"] = comparison
    champion_version = comparison["champion_version"]
    record["outcome"] = "kept"
    if comparison["decision"] == "promote":
        step("promote")
        promotion = yield ctx.call_activity(
            "promote",
            input={
                "source_id": source_id,
                "version": comparison["challenger_version"],
                "candidate": comparison["challenger_candidate"],
                "source_challenger_version": challenger_version,
                "challenger_loss": comparison["challenger_loss"],
                "expected_etag": comparison["champion_etag"],
                "reason": comparison["reason"],
            },
            retry_policy=STEP_RETRY,
        )
        record["promotion"] = promotion
        champion_version = promotion["champion_version"]
        record["outcome"] = "promoted" if promotion["promoted"] else "kept"
    record["champion_version"] = champion_version
    if champion_version is None:
        return

    yield from build_champion_image(ctx, request, record, step, champion_version)


def build_champion_image(ctx, request: RetrainRequest, record: dict, step, champion_version: int):
    step("build_image", champion_version=champion_version)
    build = yield ctx.call_activity(
        "build_image",
        input={
            "source_id": request.source_id,
            "version": champion_version,
        },
        retry_policy=STEP_RETRY,
    )
    image = yield from poll_until_terminal(
        ctx,
        "get_build_status",
        {"build_id": build["build_id"], "source_id": request.source_id, "version": champion_version},
        request.poll_seconds,
        request.build_deadline_seconds,
    )
    record["image"] = image
    if image["state"] != "succeeded":
        record["error"] = f"image build {image['state']}: {image.get('error')}"


def roll_back(ctx, request: RetrainRequest, record: dict, step):
    """Re-point the champion to an earlier version (recorded in the ledger) and rebuild its image."""
    step("promote", rollback_to=request.rollback_to)
    promotion = yield ctx.call_activity(
        "promote",
        input={
            "source_id": request.source_id,
            "version": request.rollback_to,
            "kind": "rollback",
            "reason": f"rollback to v{request.rollback_to} requested",
            "expected_etag": "current",
        },
        retry_policy=STEP_RETRY,
    )
    record["promotion"] = promotion
    record["outcome"] = "rolled_back" if promotion["promoted"] else "failed"
    record["champion_version"] = promotion["champion_version"]
    if not promotion["promoted"]:
        record["error"] = promotion["reason"]
        return
    yield from build_champion_image(ctx, request, record, step, promotion["champion_version"])


class Signals:
    """The one pending wait for `upload` events. Reusing it matters: an event goes to the oldest waiter,
    so a fresh waiter per loop would leave events stranded on abandoned ones. The waiter is replaced only
    once its event was taken: a wait that lost a race (the debounce timer fired first) stays open through
    the run, and a signal raised meanwhile (a retrain or rollback request) completes it unseen; dropping a
    completed waiter there would drop that request."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.waiter = None

    def next(self):
        if self.waiter is None:
            self.waiter = self.ctx.wait_for_external_event(UPLOAD_EVENT)
        return self.waiter

    def take(self):
        """The signal of the waiter that won; the next wait is a new one."""
        signal, self.waiter = self.waiter.get_result(), None
        return signal


def wait_until_quiet(ctx, signals: Signals, request: RetrainRequest):
    """Debounce: wait until no upload arrived for `debounce_seconds`; a manual request starts at once."""
    while True:
        quiet = ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=request.debounce_seconds))
        upload = signals.next()
        winner = yield when_any([upload, quiet])
        if winner is quiet:
            return request
        # Durable Functions keeps an instance running until its open timers fire: cancel the one that lost.
        quiet.cancel()
        request = request.absorb(signals.take())
        if request.manual:
            return request


def drain_signals(ctx, signals: Signals, request: RetrainRequest):
    """Take every signal already waiting (raised during the run) without waiting for new ones."""
    while True:
        now = ctx.create_timer(ctx.current_utc_datetime)
        upload = signals.next()
        winner = yield when_any([upload, now])
        if winner is now:
            return request
        now.cancel()
        request = request.absorb(signals.take())


def poll_until_terminal(ctx, activity: str, payload: dict, poll_seconds: float, deadline_seconds: float):
    """Poll a long-running job with durable timers until it ends or the deadline passes."""
    deadline = ctx.current_utc_datetime + timedelta(seconds=deadline_seconds)
    while True:
        state = yield ctx.call_activity(activity, input=payload, retry_policy=STEP_RETRY)
        if state["state"] in ("succeeded", "failed", "canceled"):
            return state
        if ctx.current_utc_datetime >= deadline:
            return {**state, "state": "timed_out", "error": f"not finished after {deadline_seconds:.0f} s"}
        yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=poll_seconds))
