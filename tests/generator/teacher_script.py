"""A scripted teacher: deterministic replies to synthtune's prompt templates, for tests.

It reads the facts out of each prompt the way a real teacher would and answers from them, so
every method's output can be checked. ``ScriptedBackend`` serves it in-process; the loopback
OpenAI server serves it over HTTP.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

from synthtune.llm.chat import ChatRequest, ChatResult

COMMAND_RULES = [("jam", "STOP_CONVEYOR"), ("temperature", "REDUCE_SPEED"), ("pressure", "SWITCH_TO_BACKUP_PUMP"),
                 ("pump", "SWITCH_TO_BACKUP_PUMP"), ("tool_wear", "REQUEST_TOOL_CHANGE"), ("roughness", "REQUEST_TOOL_CHANGE")]
EVOL_SUFFIX = {
    "depth of the inquiry": "Why does this happen, and how can I tell the possible causes apart?",
    "constraint": "I must finish within one shift and there is no spare part on site.",
    "specific ones": "It happens under full load, right after start-up, on the main assembly.",
}


def _line(text: str, label: str) -> str:
    match = re.search(rf"^{label}:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else ""


def _excerpt(text: str) -> str:
    match = re.search(r"--- excerpt ---\n(.*?)\n--- end of excerpt ---", text, re.S)
    return match.group(1).strip() if match else ""


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def script(body: dict[str, Any]) -> str | dict[str, Any]:
    """The scripted reply to one chat request body (OpenAI shape)."""
    messages = body.get("messages", [])
    system = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    u = users[-1] if users else ""
    first = users[0] if users else ""
    if "professional translator" in system:
        return "Übersetzung: " + u
    if "grade one example" in u:
        answer = u.split("Answer:", 1)[-1]
        score = 3 if "POOR" in answer else 8
        return json.dumps({"score": score, "reason": "specific and correct" if score > 5 else "vague"})
    if "Reply with only one JSON object" in u:  # event_scenario repair
        return _decision(first, as_text=True)
    if body.get("tools"):
        return _decision(u)
    if "Play a technician" in u:
        angle = re.search(r"describing what they observe \((.+?)\)", u)
        extra = f" ({angle.group(1)})" if angle else ""
        return f"The {_line(u, 'Machine')} has a problem: {_line(u, 'Problem').lower()}. What should I check and fix{extra}?"
    if "act as a question rewriter" in u:
        question = u.split("Given question:", 1)[-1].strip()
        suffix = next((s for k, s in EVOL_SUFFIX.items() if k in u), "Please be specific.")
        return f"{question} {suffix}"
    if u.startswith("Write the question that"):
        persona = re.match(r"Write the question that (.+?) \(", u)
        who = persona.group(1) if persona else "someone"
        if "written in German" in u:
            return f"Ich bin {who} und bei der Maschine gibt es ein Problem: {_line(u, 'Problem').lower()}. Was soll ich jetzt tun?"
        return f"Speaking as {who}: {_line(u, 'Problem').lower()} on the {_line(u, 'Machine')}. What do I do now?"
    if "You are an experienced maintenance expert" in u:
        cause, solution, hours = _line(u, "Cause"), _line(u, "Solution"), _line(u, "Time needed")
        if "written in German" in u:
            return (f"Die wahrscheinliche Ursache ist {cause or 'Verschleiß'}.\n1. Die Maschine anhalten und gegen "
                    f"Wiedereinschalten sichern.\n2. Die Maßnahme durchführen: {solution}.\n3. Danach einen Probelauf "
                    "machen und die Maschine erst dann wieder freigeben.")
        steps = f"Most likely cause: {cause or 'wear of the part'}.\n1. Stop the machine and lock it out.\n2. {solution}.\n" \
                "3. Run a test cycle and check that the fault is gone before handing the machine back."
        return steps + (f"\nThe job should take about {hours} hours." if hours else "")
    if "fully answers" in u:
        sentences = _sentences(_excerpt(u))
        angle = next((k for k, a in enumerate(["procedure", "safety", "value", "troubleshooting"]) if f"about a {a}" in u), 0)
        words = sentences[angle % len(sentences)].rstrip(".").split() if sentences else ["this"]
        return f"What does the manual say about this: {' '.join(words[:10]).lower()}?"
    if "using only the manual excerpt" in u:
        excerpt = _excerpt(u)
        if "UNSUPPORTED" in excerpt:
            return "Call the manufacturer's hotline and order a complete replacement gearbox from the central warehouse."
        question = _line(u, "Question").lower()
        sentences = _sentences(excerpt)
        best = max(sentences, key=lambda s: len(set(s.lower().split()) & set(question.split()))) if sentences else ""
        return best
    if "Below is an episode from the event log" in u:
        events = re.findall(r"^t=\S+ (\w+)=(.+)$", u, re.M)
        report = "; ".join(f"{s} is {v}" for s, v in events)
        variation = re.search(r"fault type: (.+?); machine state: (.+?); timing: (.+?)\.", u)
        extra = f" Conditions: {variation.group(1)}, {variation.group(2)}, {variation.group(3)}." if variation else ""
        return f"Line controller report: {report}.{extra} A decision is needed now."
    return "reply"


def _decision(u: str, as_text: bool = False) -> str | dict[str, Any]:
    lower = re.split(r"available commands", u, flags=re.I)[0].lower()  # the situation, not the command list
    listed = re.search(r"(?:available commands|one of):? ([A-Z_, ]+)", u, re.I)
    available = {c.strip() for c in listed.group(1).split(",")} if listed else {c for _, c in COMMAND_RULES}
    command = next((c for key, c in COMMAND_RULES if key in lower and c in available), sorted(available)[0])
    rationale = f"The reported signals call for {command.lower().replace('_', ' ')} to protect the equipment."
    if as_text:
        return json.dumps({"name": command, "arguments": {"target": "line"}, "rationale": rationale})
    return {"content": rationale, "tool_calls": [{"name": command, "arguments": {"target": "line"}}]}


class ScriptedBackend:
    """``ChatBackend`` answering in-process with ``responder``; keeps every request and each key's reply."""

    def __init__(self, responder: Callable[[dict[str, Any]], str | dict[str, Any]] = script, model: str = "scripted") -> None:
        self.responder, self.model, self.name = responder, model, f"scripted:{model}"
        self.requests: list[ChatRequest] = []
        self.replies: dict[str, ChatResult] = {}  # request key -> what the teacher answered (the last time)
        self.lock = threading.Lock()
        self.closed = False

    def complete(self, requests: list[ChatRequest], progress: Any = None) -> list[ChatResult]:
        results = []
        for request in requests:
            with self.lock:
                self.requests.append(request)
            reply = self.responder({"messages": request.messages, "tools": request.tools, "seed": request.seed})
            if isinstance(reply, str):
                reply = {"content": reply}
            if reply.get("error"):
                results.append(ChatResult(finish_reason="error", error=reply["error"], key=request.key))
                continue
            calls = [{"id": f"call_{i}", "type": "function",
                      "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
                     for i, c in enumerate(reply.get("tool_calls") or [])]
            text = reply.get("content") or ""
            results.append(ChatResult(text=text, tool_calls=calls, finish_reason=reply.get("finish_reason") or "stop",
                                      prompt_tokens=sum(len(str(m.get("content") or "").split()) for m in request.messages),
                                      completion_tokens=len(text.split()), key=request.key))
            with self.lock:
                self.replies[str(request.key)] = results[-1]
        return results

    def close(self) -> None:
        self.closed = True
