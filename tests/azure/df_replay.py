"""A minimal Durable Functions 1.x replay host for tests: it plays the extension's part.

Each episode hands the real `df.Orchestrator.create(...)` handle the whole history as JSON (exactly
what the extension sends), reads the actions it returns, and answers them by appending the history
events the extension would write: TaskScheduled/TaskCompleted/TaskFailed for activities (with the
retry timers DF expects), TimerCreated/TimerFired for timers, EventRaised for external events.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import azure.durable_functions as df

from orchestrations.df_adapter import unwrap_activity_input

CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, CONTINUE_AS_NEW, CREATE_TIMER, WAIT_FOR_EVENT = 0, 1, 4, 5, 6
ORCHESTRATOR_STARTED, EXECUTION_STARTED, ORCHESTRATOR_COMPLETED = 12, 0, 13
TASK_SCHEDULED, TASK_COMPLETED, TASK_FAILED, TIMER_CREATED, TIMER_FIRED, EVENT_RAISED = 4, 5, 6, 10, 11, 15


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value):
    """Actions carry inputs as JSON text, as the extension receives them."""
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class ActivityCall:
    name: str
    payload: object
    instance_id: str | None
    retry: dict | None


@dataclass
class Replay:
    """Outcome of one orchestration generation driven to its end."""

    calls: list[ActivityCall] = field(default_factory=list)
    custom_statuses: list[dict] = field(default_factory=list)
    output: object = None
    continued_with: object = None
    episodes: int = 0
    history: list[dict] = field(default_factory=list)
    # Fire times of the timers the orchestrator canceled (the extension drops them) and of those neither fired
    # nor canceled when it finished (the extension keeps the instance Running until they fire).
    canceled_timers: list[datetime] = field(default_factory=list)
    open_timers: list[datetime] = field(default_factory=list)

    def names(self) -> list[str]:
        return [call.name for call in self.calls]

    def payload_of(self, name: str, index: int = -1):
        return [call.payload for call in self.calls if call.name == name][index]


class DurableFunctionsReplayHost:
    def __init__(self, orchestrator: Callable, activities: dict[str, Callable], instance_id: str = "retrain-A"):
        self.handle = df.Orchestrator.create(orchestrator)
        self.activities = activities
        self.instance_id = instance_id
        self.event_id = 0

    def _event(self, event_type: int, moment: datetime, event_id: int = -1, **fields) -> dict:
        return {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": _stamp(moment), **fields}

    def run(
        self,
        payload: dict,
        *,
        start: datetime | None = None,
        raised: list[tuple] | None = None,
        max_episodes: int = 200,
    ) -> Replay:
        """Run one generation. `raised` events, `(name, data)` or `(name, data, after_activity)`, are delivered
        in order, one per episode, while the orchestration waits (the latter only once `after_activity` was
        called: an event raised during a run, while the orchestrator waits on a poll timer)."""
        now = start or datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
        input_json = json.dumps(payload)
        history = [
            self._event(ORCHESTRATOR_STARTED, now),
            self._event(EXECUTION_STARTED, now, Name="retrain_source", Input=input_json, Version=""),
        ]
        to_raise = deque(raised or [])
        replay = Replay()
        processed = 0
        next_id = 0
        open_timers: list[tuple[int, datetime]] = []
        timer_of_action: dict[int, int] = {}  # index of a CreateTimer action -> its timer's event id
        for _ in range(max_episodes):
            replay.episodes += 1
            context = {
                "history": history,
                "instanceId": self.instance_id,
                "isReplaying": False,
                "parentInstanceId": None,
                "input": input_json,
                "upperSchemaVersion": 0,
            }
            state = json.loads(self.handle(json.dumps(context)))
            if state.get("customStatus") is not None:
                replay.custom_statuses.append(state["customStatus"])
            history.append(self._event(ORCHESTRATOR_COMPLETED, now))
            actions = [action for group in state.get("actions", []) for action in group]
            # A timer the orchestrator canceled comes back with `isCanceled` on its action: the extension drops it.
            canceled = {timer_of_action.get(index) for index, action in enumerate(actions) if action.get("isCanceled")}
            replay.canceled_timers += [fire_at for timer_id, fire_at in open_timers if timer_id in canceled]
            open_timers = [(timer_id, fire_at) for timer_id, fire_at in open_timers if timer_id not in canceled]
            new_actions, first_new, processed = actions[processed:], processed, len(actions)
            completions: list[dict] = []
            now = now + timedelta(seconds=1)
            for index, action in enumerate(new_actions, start=first_new):
                kind = action["actionType"]
                if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
                    task_id, next_id = next_id, next_id + 1
                    history.append(self._event(TASK_SCHEDULED, now, task_id, Name=action["functionName"]))
                    payload_in, instance_id = unwrap_activity_input(_json(action.get("input")))
                    call = ActivityCall(action["functionName"], payload_in, instance_id, action.get("retryOptions"))
                    max_attempts = (action.get("retryOptions") or {}).get("maxNumberOfAttempts", 1)
                    replay.calls.append(call)
                    for attempt in range(1, max_attempts + 1):
                        try:
                            result = self.activities[call.name](payload_in)
                        except Exception as exc:
                            completions.append(
                                self._event(
                                    TASK_FAILED, now, -1, TaskScheduledId=task_id, Reason=str(exc), Details=type(exc).__name__
                                )
                            )
                            if kind == CALL_ACTIVITY:
                                break
                            # DF 1.x waits for a retry timer after every failure, including the last one.
                            timer_id, next_id = next_id, next_id + 1
                            completions.append(self._event(TIMER_CREATED, now, timer_id, FireAt=_stamp(now)))
                            completions.append(self._event(TIMER_FIRED, now, -1, TimerId=timer_id, FireAt=_stamp(now)))
                            if attempt < max_attempts:
                                task_id, next_id = next_id, next_id + 1
                                completions.append(self._event(TASK_SCHEDULED, now, task_id, Name=call.name))
                                replay.calls.append(call)
                            continue
                        completions.append(
                            self._event(TASK_COMPLETED, now, -1, TaskScheduledId=task_id, Result=json.dumps(result))
                        )
                        break
                elif kind == CREATE_TIMER:
                    timer_id, next_id = next_id, next_id + 1
                    fire_at = datetime.fromisoformat(action["fireAt"].replace("Z", "+00:00"))
                    history.append(self._event(TIMER_CREATED, now, timer_id, FireAt=action["fireAt"]))
                    timer_of_action[index] = timer_id
                    if not action.get("isCanceled"):
                        open_timers.append((timer_id, fire_at))
                elif kind == CONTINUE_AS_NEW:
                    replay.continued_with = _json(action.get("input"))
                elif kind == WAIT_FOR_EVENT:
                    pass
            if state.get("isDone"):
                replay.output = state.get("output")
                replay.history = history
                replay.open_timers = sorted(fire_at for _, fire_at in open_timers)
                return replay
            if completions:
                history.append(self._event(ORCHESTRATOR_STARTED, now))
                history.extend(completions)
                continue
            if to_raise and (len(to_raise[0]) < 3 or to_raise[0][2] in replay.names()):
                name, data = to_raise.popleft()[:2]
                history.append(self._event(ORCHESTRATOR_STARTED, now))
                history.append(self._event(EVENT_RAISED, now, -1, Name=name, Input=json.dumps(data)))
                continue
            if open_timers:
                open_timers.sort(key=lambda item: item[1])
                timer_id, fire_at = open_timers.pop(0)
                now = max(now, fire_at)
                history.append(self._event(ORCHESTRATOR_STARTED, now))
                history.append(self._event(TIMER_FIRED, now, -1, TimerId=timer_id, FireAt=_stamp(fire_at)))
                continue
            raise AssertionError(f"orchestration is stuck: no pending work after episode {replay.episodes}")
        raise AssertionError(f"orchestration did not finish in {max_episodes} episodes")
