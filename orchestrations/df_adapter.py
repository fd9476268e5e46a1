"""Durable Functions 1.x under the durabletask-native orchestrators: the one module that knows both engines.

The orchestrators are written against durabletask: `(ctx, input)` generators that call
`ctx.call_activity(name, input=..., retry_policy=RetryPolicy(...))`, yield `durabletask.task.when_any`
over their own tasks, compare the winner by identity and read `.is_complete` / `.get_result()`.
azure-functions-durable 1.x instead passes a `DurableOrchestrationContext` whose tasks say
`.is_completed` / `.result` and whose race is `context.task_any`. This module bridges the two:

- `DurableFunctionsContext` offers the durabletask methods on top of the DF context and returns
  `DurableFunctionsTask`s, durabletask `Task`s that mirror one DF task (so `when_any` accepts them);
- `durable_functions_orchestrator(fn)` drives the durabletask generator inside the DF generator:
  each yielded task is translated to its DF counterpart, and what DF sends back is translated back
  (a `task_any` winner becomes the very wrapper the orchestrator holds, so `winner is quiet` works).

Every activity input travels in a small envelope carrying the orchestration instance id, because a
DF 1.x activity cannot see which instance called it and telemetry wants it on every span.

When azure-functions-durable 2.x (built on durabletask) is stable, this module is deleted.
"""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.durable_functions.models.RetryOptions import RetryOptions
from azure.durable_functions.models.Task import TaskState
from durabletask import task as dt

ENVELOPE_KEY = "multiline_activity"


def wrap_activity_input(instance_id: str, payload: Any) -> dict:
    return {ENVELOPE_KEY: 1, "instance_id": instance_id, "input": payload}


def unwrap_activity_input(envelope: Any) -> tuple[Any, str | None]:
    """The activity's own input and the calling instance id (None when called without the envelope)."""
    if isinstance(envelope, dict) and envelope.get(ENVELOPE_KEY) == 1:
        return envelope.get("input"), envelope.get("instance_id")
    return envelope, None


# The extension reads every millisecond field of `retryOptions` with Newtonsoft's `JToken.Value<int>()`.
INT32_MAX = 2**31 - 1


def _milliseconds(field: str, value: timedelta) -> int:
    milliseconds = round(value / timedelta(milliseconds=1))
    if not 1 <= milliseconds <= INT32_MAX:
        raise ValueError(f"retry policy {field} must be between 1 ms and {INT32_MAX} ms on Durable Functions, got {value}")
    return milliseconds


class DurableRetryOptions(RetryOptions):
    """A durabletask RetryPolicy as the Durable Functions extension reads `retryOptions` (docs/AZURE.md).

    The Python 1.x class serializes only the first interval and the attempts; the extension's
    `RetryOptionsConverter` also reads `backoffCoefficient` and `maxRetryIntervalInMilliseconds`, and the
    DTFx retry interceptor uses them for the delay of each retry timer, so they are sent too. The policy's
    `retry_timeout` is refused: the interceptor would stop retrying when it expires without creating the
    retry timer, while the Python SDK counts attempts only and keeps waiting for that timer (a stuck
    instance). A maximum interval of 0 is refused for the same reason (a zero delay also ends the retries).
    """

    def __init__(self, policy: dt.RetryPolicy):
        if policy.retry_timeout is not None:
            raise ValueError(
                "retry_timeout is not supported by azure-functions-durable 1.x: it counts attempts only and would "
                "wait forever for the retry timer the extension does not create once the timeout has passed"
            )
        # durabletask accepts a first interval of 0; the extension requires more than 0.
        first = max(timedelta(milliseconds=1), policy.first_retry_interval)
        super().__init__(
            first_retry_interval_in_milliseconds=_milliseconds("first_retry_interval", first),
            max_number_of_attempts=policy.max_number_of_attempts,
        )
        self.backoff_coefficient = None if policy.backoff_coefficient is None else float(policy.backoff_coefficient)
        self.max_retry_interval_in_milliseconds = (
            None if policy.max_retry_interval is None else _milliseconds("max_retry_interval", policy.max_retry_interval)
        )

    def to_json(self) -> dict:
        data: dict = super().to_json()
        if self.backoff_coefficient is not None:
            data["backoffCoefficient"] = self.backoff_coefficient
        if self.max_retry_interval_in_milliseconds is not None:
            data["maxRetryIntervalInMilliseconds"] = self.max_retry_interval_in_milliseconds
        return data


class DurableFunctionsTask(dt.Task):
    """A durabletask view of one Durable Functions task (its state always read from the DF task)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    @property
    def is_complete(self) -> bool:
        return self.inner.is_completed

    @property
    def is_failed(self) -> bool:
        return self.inner.state is TaskState.FAILED

    def cancel(self) -> bool:
        """Cancel a timer that has not fired (durabletask's `TimerTask.cancel`); False if it already has.

        DF 1.x marks the timer's action `isCanceled`, so the extension does not hold the instance open until
        the timer fires; its own `cancel` raises on a completed timer, durabletask's returns False.
        """
        if self.inner.is_completed or not hasattr(self.inner, "cancel"):
            return False
        self.inner.cancel()
        return True

    def get_result(self):
        if not self.inner.is_completed:
            raise ValueError("The task has not completed.")
        if self.inner.state is TaskState.FAILED:
            raise self.inner.result
        return self.inner.result


class DurableFunctionsContext:
    """The durabletask `OrchestrationContext` methods the orchestrators use, on a DF 1.x context."""

    def __init__(self, context):
        self._context = context

    @property
    def instance_id(self) -> str:
        return self._context.instance_id

    @property
    def current_utc_datetime(self) -> datetime:
        # Aware UTC here, naive UTC on durabletask: orchestrators normalise with `retrain.utc`.
        return self._context.current_utc_datetime

    @property
    def is_replaying(self) -> bool:
        return self._context.is_replaying

    def call_activity(self, activity, *, input: Any = None, retry_policy: dt.RetryPolicy | None = None) -> DurableFunctionsTask:
        name = activity if isinstance(activity, str) else activity.__name__
        payload = wrap_activity_input(self.instance_id, input)
        if retry_policy is None:
            return DurableFunctionsTask(self._context.call_activity(name, payload))
        return DurableFunctionsTask(self._context.call_activity_with_retry(name, DurableRetryOptions(retry_policy), payload))

    def create_timer(self, fire_at: datetime | timedelta) -> DurableFunctionsTask:
        if isinstance(fire_at, timedelta):
            fire_at = self.current_utc_datetime + fire_at
        if fire_at.tzinfo is None:
            fire_at = fire_at.replace(tzinfo=timezone.utc)
        return DurableFunctionsTask(self._context.create_timer(fire_at))

    def wait_for_external_event(self, name: str) -> DurableFunctionsTask:
        return DurableFunctionsTask(self._context.wait_for_external_event(name))

    def set_custom_status(self, status: Any) -> None:
        self._context.set_custom_status(status)

    def continue_as_new(self, new_input: Any, *, save_events: bool = False) -> None:
        # DF 1.x cannot carry unprocessed events into the new generation (save_events): the orchestrator
        # drains raised events before it continues, and the reconcile timer covers the remaining gap.
        self._context.continue_as_new(new_input)

    def when_any(self, tasks: list[DurableFunctionsTask]) -> dt.WhenAnyTask:
        return dt.when_any(tasks)

    def when_all(self, tasks: list[DurableFunctionsTask]) -> dt.WhenAllTask:
        return dt.when_all(tasks)

    # -- translation of what the orchestrator yields -----------------------------------------------

    def to_durable_functions(self, yielded):
        """The DF task to hand to the DF engine, and how to translate the value DF sends back."""
        if isinstance(yielded, DurableFunctionsTask):
            return yielded.inner, _same
        if isinstance(yielded, dt.WhenAnyTask):
            children = [_own(child) for child in yielded.get_tasks()]

            def winner_of(inner_winner):
                return next(child for child in children if child.inner is inner_winner)

            return self._context.task_any([child.inner for child in children]), winner_of
        if isinstance(yielded, dt.WhenAllTask):
            children = [_own(child) for child in yielded.get_tasks()]
            return self._context.task_all([child.inner for child in children]), _same
        raise TypeError(
            f"orchestrator yielded {type(yielded).__name__}; on Durable Functions only tasks from the context, "
            "when_any and when_all of them can be awaited"
        )


def _same(value):
    return value


def _own(task) -> DurableFunctionsTask:
    if not isinstance(task, DurableFunctionsTask):
        raise TypeError(f"when_any/when_all over {type(task).__name__}: only tasks created by the context can be combined")
    return task


def durable_functions_orchestrator(orchestrator):
    """A DF 1.x orchestrator function `(context)` running the durabletask-native `orchestrator(ctx, input)`."""

    def run(context):
        ctx = DurableFunctionsContext(context)
        outcome = orchestrator(ctx, context.get_input())
        if not inspect.isgenerator(outcome):
            return outcome
        to_send, to_throw = None, None
        while True:
            try:
                yielded = outcome.throw(to_throw) if to_throw is not None else outcome.send(to_send)
            except StopIteration as stop:
                return stop.value
            to_send, to_throw = None, None
            durable_task, translate = ctx.to_durable_functions(yielded)
            try:
                value = yield durable_task
            except Exception as exc:  # a failed activity: the orchestrator decides what it means
                to_throw = exc
            else:
                to_send = translate(value)

    run.__name__ = orchestrator.__name__
    run.__qualname__ = orchestrator.__name__
    run.__doc__ = orchestrator.__doc__
    return run
