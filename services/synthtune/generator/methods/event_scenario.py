"""event_scenario: an event-log episode -> the situation as the controller sees it -> the next command.

The answer is a function call in OpenAI tools format with a one-sentence rationale. Variations
come from a brainstorm tree (fault type x machine state x timing); the first one is the episode
as logged, and its call must match the logged command.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from typing import Any

from synthtune.errors import InvalidInput
from synthtune.generator.methods import register
from synthtune.generator.methods.base import Candidate, Method, Plan, RecordFailed
from synthtune.llm.chat import ChatResult
from synthtune.llm.structured import Parsed, parse_json, parse_tool_calls, parse_with_repair
from synthtune.records import command_name, command_tool, field_text, logged_command


def render_events(record: dict[str, Any]) -> str:
    """The episode as the controller logged it: the prepared text, or the events without their commands."""
    if str(record.get("text") or "").strip():
        return str(record["text"])
    lines = [f"t={e.get('t')} {e.get('signal')}={e.get('value')}" for e in record.get("events") or [] if isinstance(e, dict)]
    return "\n".join(lines)


@register
class EventScenario(Method):
    name = "event_scenario"
    record_type = "episode"

    def read_options(self) -> None:
        self.extra_tools = [self._tool(c) for c in self.options.get("commands", [])]
        self.include_logged = bool(self.options.get("include_logged", True))
        tree = [self.options.get(k) or self.prompts.get(k) or [] for k in ("faults", "states", "timings")]
        self.tree = list(itertools.product(*tree))
        if not self.tree:
            raise InvalidInput("method event_scenario: options faults, states and timings must not be empty")

    @staticmethod
    def _tool(command: Any) -> dict[str, Any]:
        if isinstance(command, dict) and not command.get("name"):
            raise InvalidInput(f"method event_scenario: options.commands entry {command!r} has no name")
        return command_tool(command)  # the same rule evaluation offers the tuned model

    def tools_for(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        tools = {t["function"]["name"]: t for t in self.extra_tools}
        for event in record.get("events") or []:
            if isinstance(event, dict) and event.get("command") and command_name(event["command"]) not in tools:
                tools[command_name(event["command"])] = self._tool(event["command"])
        return list(tools.values())

    def missing(self, record: dict[str, Any]) -> list[str]:
        gaps = []
        if not record.get("events") and not str(record.get("text") or "").strip():
            gaps.append("events")
        if not self.tools_for(record):
            gaps.append("events[].command (or options.commands)")
        return gaps

    def variations(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        rng = random.Random(self.ctx.seed_for(record["id"], "tree"))
        picks = rng.sample(self.tree, k=min(len(self.tree), self.pairs))
        found = [{"fault": f, "state": s, "timing": t, "logged": False} for f, s, t in picks]
        if self.include_logged:
            found = [{"fault": "as logged", "state": "as logged", "timing": "as logged", "logged": True}, *found[: self.pairs - 1]]
        return found

    def plan(self, record: dict[str, Any]) -> Plan:
        tools = self.tools_for(record)
        names = [t["function"]["name"] for t in tools]
        logged = logged_command(record)
        machine = field_text(record, "machine")
        variations = self.variations(record)
        variants = [f"v{k}" for k in range(len(variations))]
        asks = [self.ask(record, f"{v}.s", self.prompts.render("situation", episode=render_events(record), machine=machine, **var))
                for v, var in zip(variants, variations, strict=True)]
        results = yield asks
        done: list[Candidate] = []
        todo = []
        for v, var, result, request in zip(variants, variations, results, asks, strict=True):
            situation, reason = self.reply(result, request)
            if reason:
                done.append(self.candidate(record, v, situation, "", reject=f"situation_{reason}", info=var))
            else:
                todo.append((v, var, situation))
        system = self.prompts.render("system")
        decisions = [self.ask(record, f"{v}.d", [{"role": "system", "content": system},
                                                 {"role": "user", "content": self.prompts.render("decision", situation=s, commands=names)}],
                              tools=tools) for v, _, s in todo]
        if not decisions:
            return done
        results = yield decisions
        repair = self.prompts.render("repair", commands=names)
        calls = yield from parse_with_repair(decisions, results, self._call, instruction=repair)
        for (v, var, situation), call in zip(todo, calls, strict=True):
            if call.repair is not None:
                self.note_sent(record, f"{v}.r", call.repair)
            done.append(self._example(record, v, var, situation, call, names, logged, system, tools))
        return sorted(done, key=lambda c: variants.index(c.variant["name"]))

    def _call(self, result: ChatResult) -> tuple[dict[str, Any], str] | None:
        """(tool call, rationale) from a reply's tool calls or its JSON text; None when there is none."""
        if not result.ok:
            raise RecordFailed(result.error or "request failed")
        calls = result.tool_calls or parse_tool_calls(result.text)
        if not calls:
            return None
        rationale = result.text.strip() if result.tool_calls else ""
        value = parse_json(result.text) if not result.tool_calls else None
        if isinstance(value, dict):
            rationale = str(value.get("rationale") or value.get("reason") or "")
        return calls[0], re.sub(r"\s+", " ", rationale).strip()

    def _example(self, record: dict[str, Any], v: str, var: dict[str, Any], situation: str,
                 call: Parsed[tuple[dict[str, Any], str]], names: list[str], logged: str | None, system: str,
                 tools: list[dict[str, Any]]) -> Candidate:
        c = self.candidate(record, v, situation, "", info=var)
        c.messages.insert(0, {"role": "system", "content": system})
        c.tools = tools
        if call.value is None:
            c.reject, c.detail = "no_tool_call", call.failure or ""
            return c
        tool_call, rationale = call.value
        name = tool_call["function"]["name"]
        arguments = parse_json(tool_call["function"]["arguments"] or "{}")
        tool_call = {"id": "call_" + hashlib.sha256(c.id.encode()).hexdigest()[:12], "type": "function",
                     "function": {"name": name, "arguments": json.dumps(arguments if isinstance(arguments, dict) else {})}}
        c.messages.append({"role": "assistant", "content": rationale, "tool_calls": [tool_call]})
        if name not in names:
            c.reject, c.detail = "unknown_command", f"{name!r} is not one of {', '.join(names)}"
        elif not isinstance(arguments, dict):
            c.reject, c.detail = "bad_arguments", "the call's arguments are not a JSON object"
        elif not rationale:
            c.reject = "no_rationale"
        elif var["logged"] and logged and name != logged:
            c.reject, c.detail = "disagrees_with_log", f"called {name}, the log shows {logged}"
        return c
