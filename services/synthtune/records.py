"""The prepared-record shape shared by every stage, and the prompt/reference built from it.

A prepared record (one line of ``train/validation/test.jsonl``)::

    {"id": "work_orders.csv:12",           # stable, traceable to file and row/page
     "type": "record" | "chunk" | "episode",
     "fields": {"problem": ..., "machine": ..., "cause": ..., "solution": ..., "hours": ..., <extras>},
     "text": "...",                        # chunk text, or the rendered episode; "" for records
     "events": [...],                      # episodes only: {"t", "signal", "value", "command"}
     "source": {"file": "work_orders.csv", "row": 12} | {"file": "manual.pdf", "page": 3}}

Evaluation asks every model the same question built from a held-out record, and scores its
answer against a reference the question does not contain (``evaluation_item`` states the rule:
tickets against their resolution, episodes by the next command as a tool call, document chunks
skipped), so the prompt/reference rules live here, once.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KNOWN_FIELDS = ("problem", "machine", "cause", "solution", "hours")


def repetition_loop(text: str, n: int = 4, share: float = 0.5) -> bool:
    """True when the text loops: most of it one n-gram sequence repeated, or one sentence said three times or more.

    Generation rejects such replies as ``repetitive`` and evaluation counts them in ``loop_rate``, by this one rule."""
    words = text.lower().split()
    if len(words) < 3 * n:
        return False
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if 1 - len(set(grams)) / len(grams) > share:
        return True
    sentences = [" ".join(s.split()) for s in re.split(r"[.!?\n]+", text.lower())]
    said: dict[str, int] = {}
    for s in sentences:
        if len(s.split()) >= n:
            said[s] = said.get(s, 0) + 1
    return any(count >= 3 for count in said.values())


def field_text(record: dict[str, Any], name: str) -> str:
    value = (record.get("fields") or {}).get(name)
    return "" if value is None else str(value).strip()


def question_for_record(record: dict[str, Any]) -> str:
    """The technician's question for a record (the seed question generation methods start from)."""
    if record.get("type") == "chunk":
        return f"Using the manual excerpt below, summarise the key maintenance instructions.\n\n{record.get('text', '')}"
    if record.get("type") == "episode":
        return f"The line controller reports the following events. What should happen next?\n\n{record.get('text', '')}"
    machine = field_text(record, "machine")
    problem = field_text(record, "problem")
    if machine:
        return f"On the {machine}: {problem}. What is the likely cause and how do I fix it?"
    return f"{problem}. What is the likely cause and how do I fix it?"


def reference_for_record(record: dict[str, Any]) -> str:
    """The record's own answer: what the generator's judge checks examples against.

    Evaluation scores against ``evaluation_item`` instead, which refuses references the question
    already contains.
    """
    if record.get("type") in ("chunk", "episode"):
        return str(record.get("reference") or record.get("text") or "")
    parts = []
    cause = field_text(record, "cause")
    solution = field_text(record, "solution")
    hours = field_text(record, "hours")
    if cause:
        parts.append(f"Cause: {cause}.")
    if solution:
        parts.append(f"Fix: {solution}.")
    if hours:
        parts.append(f"Expected time: {hours} h.")
    return " ".join(parts)


def combined_length(record: dict[str, Any]) -> int:
    """Characters of prompt plus answer: what the split stratifies on."""
    if record.get("type") in ("chunk", "episode"):
        return len(record.get("text") or "")
    return sum(len(field_text(record, f)) for f in KNOWN_FIELDS)


# --- event-log episodes: the next command as a function call --------------------------------
#
# The event_scenario generator teaches: given the situation just before the logged command,
# call that command as an OpenAI tool call (``tool_calls[0].function.{name, arguments}``, the
# arguments a JSON object). These helpers derive the same things from a held-out episode, so
# evaluation asks and scores what training taught. The generator applies the same rules
# (generator/methods/event_scenario.py: command_name, logged_command, _tool).

_COMMAND_CHARS = re.compile(r"[^A-Za-z0-9_-]")

EPISODE_SYSTEM = ("You are the decision assistant of a production line controller. Given the current situation, "
                  "call exactly one of the available commands and state your reason in one sentence.")


def command_name(value: Any) -> str:
    """A logged command as a function name (OpenAI's name rule: letters, digits, _ and -, at most 64)."""
    return _COMMAND_CHARS.sub("_", str(value).strip())[:64]


def _command_events(record: dict[str, Any]) -> list[int]:
    return [i for i, e in enumerate(record.get("events") or []) if isinstance(e, dict) and e.get("command")]


def logged_command(record: dict[str, Any]) -> str | None:
    """The last command the episode's log shows: the call the model should make."""
    found = _command_events(record)
    return command_name(record["events"][found[-1]]["command"]) if found else None


def command_tool(command: Any) -> dict[str, Any]:
    """One command as an OpenAI tool (a name, or ``{name, description, parameters}``)."""
    spec = command if isinstance(command, dict) else {"name": command}
    name = command_name(spec["name"])
    return {"type": "function", "function": {
        "name": name,
        "description": spec.get("description") or f"Send {name} to the line controller.",
        "parameters": spec.get("parameters") or {
            "type": "object",
            "properties": {"target": {"type": "string", "description": "Machine, station or conveyor the command applies to."}},
        },
    }}


def episode_tools(record: dict[str, Any], extra_commands: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The tools offered for an episode: the method's configured commands, then every command in the log."""
    tools = {t["function"]["name"]: t for t in (command_tool(c) for c in extra_commands if c)}
    for event in record.get("events") or []:
        if isinstance(event, dict) and event.get("command") and command_name(event["command"]) not in tools:
            tools[command_name(event["command"])] = command_tool(event["command"])
    return list(tools.values())


def _seconds(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def episode_situation(record: dict[str, Any]) -> str:
    """The episode up to the moment the logged command was due, with that command (and what follows) hidden.

    Earlier commands stay visible: they are history the controller knows.
    """
    events = [e for e in record.get("events") or [] if isinstance(e, dict)]
    found = [i for i, e in enumerate(events) if e.get("command")]
    shown = events[: found[-1] + 1] if found else events
    machine = field_text(record, "machine")
    times = [_seconds(e.get("t")) for e in shown]
    t0 = times[0] if times else None
    lines = [f"Line or machine: {machine}" if machine else "", "Events logged so far:"]
    for i, (e, t) in enumerate(zip(shown, times, strict=True)):
        when = f"+{t - t0:.1f}s" if t is not None and t0 is not None else str(e.get("t"))
        line = f"{when} {e.get('signal')} = {'' if e.get('value') is None else e.get('value')}"
        if e.get("command") and not (found and i == found[-1]):
            line += f" [command: {e['command']}]"
        lines.append(line)
    return "\n".join(x for x in lines if x)


def episode_question(record: dict[str, Any], extra_commands: Sequence[Any] = ()) -> str:
    """The decision request, worded like the generator's ``decision`` prompt."""
    names = [t["function"]["name"] for t in episode_tools(record, extra_commands)]
    return (f"{episode_situation(record)}\n\nAvailable commands: {', '.join(names)}.\n"
            "Call the one command that should be executed next, and give a one-sentence rationale.")


def expected_call(record: dict[str, Any]) -> dict[str, Any] | None:
    """``{name, arguments}`` the model should call for an episode; None when the log shows no command.

    ``arguments`` is the logged event's ``arguments`` (a JSON object or its JSON text) when the log
    has them, else None: logs record only the command, and the generator accepts any JSON object
    as its arguments, so evaluation does too.
    """
    found = _command_events(record)
    if not found:
        return None
    event = record["events"][found[-1]]
    arguments = event.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = None
    return {"name": command_name(event["command"]), "arguments": arguments if isinstance(arguments, dict) else None}


# --- the evaluation set -----------------------------------------------------------------------


@dataclass
class EvalItem:
    """One held-out record as evaluation asks and scores it."""

    id: str
    kind: str  # "reference": scored by ROUGE/BLEU/METEOR/...; "function_call": by the call it makes
    system: str
    question: str
    reference: str  # the reference answer, or the expected command's name
    tools: list[dict[str, Any]] | None = None
    expected_call: dict[str, Any] | None = None


SKIP_REASONS = {
    "empty_reference": "a ticket without a solution: nothing to score against",
    "reference_in_prompt": "a document chunk: its only reference is its own text, which the question shows",
    "no_logged_command": "an episode whose log shows no command: no call to expect",
    "function_call_not_measured": "an episode, scored only by function-call accuracy, which evaluate.metrics leaves out",
}


def evaluation_item(record: dict[str, Any], system: str, function_call: bool = True,
                    extra_commands: Sequence[Any] = ()) -> tuple[EvalItem | None, str | None]:
    """``(item, None)`` for a record evaluation scores, ``(None, reason)`` for one it skips.

    The rule: a reference must not be in the prompt, or echoing the prompt would score well.

    - tickets (``record``): the question names machine and problem; the reference is the
      resolution (``Cause: ... Fix: ... Expected time: ...``). No solution: skipped, ``empty_reference``.
    - document chunks: the question shows the chunk, and the chunk is the only reference, so they
      are skipped (``reference_in_prompt``) unless the record carries its own ``reference`` field.
    - event-log episodes: the question is the log up to the moment the last logged command was due,
      with that command hidden; the reference is that command, expected as a tool call
      (``kind == "function_call"``, scored by function-call accuracy, not ROUGE). Skipped when the
      log has no command, or when ``function_call`` is not among the metrics.
    """
    rid = str(record.get("id"))
    kind = record.get("type")
    if kind == "episode":
        expected = expected_call(record)
        if expected is None:
            return None, "no_logged_command"
        if not function_call:
            return None, "function_call_not_measured"
        tools = episode_tools(record, extra_commands)
        return EvalItem(rid, "function_call", EPISODE_SYSTEM, episode_question(record, extra_commands), expected["name"],
                        tools, expected), None
    if kind == "chunk":
        reference = str(record.get("reference") or "").strip()
        if not reference:
            return None, "reference_in_prompt"
        return EvalItem(rid, "reference", system, question_for_record(record), reference), None
    reference = reference_for_record(record) if field_text(record, "solution") else ""
    if not reference:
        return None, "empty_reference"
    return EvalItem(rid, "reference", system, question_for_record(record), reference), None
