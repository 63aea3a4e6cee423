"""Run many per-record plans together: their requests go to the backend in one batch per step."""

from __future__ import annotations

import logging
from collections.abc import Callable

from synthtune.errors import SynthtuneError
from synthtune.generator.methods.base import Plan, RecordFailed
from synthtune.generator.shards import Outcome
from synthtune.llm.chat import ChatBackend, ChatRequest, ChatResult

log = logging.getLogger(__name__)


def run_plans(backend: ChatBackend | None, plans: dict[str, tuple[str, Plan]], outcomes: dict[str, Outcome],
              on_step: Callable[[int, int], None] | None = None,
              on_finished: Callable[[list[Outcome]], None] | None = None) -> None:
    """Drive ``plans`` (cache key -> (record id, plan)) to the end, filling ``outcomes`` as they finish.

    ``on_finished`` gets the outcomes that ended at each step, right then (so they can be saved
    before the next step's requests go out); ``on_step`` gets the step's number (from 1) and how many
    plans still wait on the teacher after it. A backend error that stops everything propagates, and
    ``outcomes`` keeps what finished before.
    """
    active: dict[str, tuple[Plan, list[ChatRequest]]] = {}
    tokens: dict[str, list[int]] = {key: [0, 0] for key in plans}

    def advance(key: str, plan: Plan, sent: list[ChatResult] | None) -> None:
        record_id = plans[key][0]
        try:
            asks = next(plan) if sent is None else plan.send(sent)
            while not asks:  # a step with nothing to ask gets an empty answer at once
                asks = plan.send([])
            active[key] = (plan, asks)
            return
        except StopIteration as stop:
            outcomes[key] = Outcome(key, record_id, "done", candidates=list(stop.value or []))
        except RecordFailed as exc:
            outcomes[key] = Outcome(key, record_id, "failed", error=str(exc))
        except SynthtuneError:
            raise
        except Exception as exc:  # a bug for one record must not sink the batch; it is reported as failed
            log.exception("generation plan for %s failed", record_id)
            outcomes[key] = Outcome(key, record_id, "failed", error=f"internal error: {type(exc).__name__}: {exc}")
        outcomes[key].prompt_tokens, outcomes[key].completion_tokens = tokens[key]
        active.pop(key, None)

    for key, (_, plan) in plans.items():
        advance(key, plan, None)
    step = 0
    while active:
        step += 1
        order = list(active)
        flat = [(key, request) for key in order for request in active[key][1]]
        if backend is None:
            raise RuntimeError("a method that uses no teacher asked it something")
        results = backend.complete([request for _, request in flat])
        if len(results) != len(flat):
            raise RuntimeError(f"backend returned {len(results)} results for {len(flat)} requests")
        by_key: dict[str, list[ChatResult]] = {key: [] for key in order}
        for (key, _), result in zip(flat, results, strict=True):
            by_key[key].append(result)
            tokens[key][0] += result.prompt_tokens
            tokens[key][1] += result.completion_tokens
        for key in order:
            advance(key, active[key][0], by_key[key])
        ended = [outcomes[key] for key in order if key not in active]
        if on_finished is not None and ended:
            on_finished(ended)
        if on_step is not None:
            on_step(step, len(active))
