"""A small OpenAI-compatible chat server on loopback with fault injection and a request log.

Used by the tests (in a thread) and by ``benchmarks/generate_concurrency.py`` (as a process:
``python loopback_server.py --latency 0.2``). Faults, consumed in order by the next requests
(or chosen per request by ``fault_for``): ``429[:retry_after]``, ``429ms:<retry-after-ms>``, ``500``, ``503``,
``timeout:<seconds>``, ``garbage`` (200, not JSON), ``no_choices`` (200, empty choices),
``empty`` (200, empty content), ``truncated`` (finish_reason length).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]


def echo_responder(body: dict[str, Any]) -> str:
    user = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return f"reply to: {str(user[-1]['content'])[:60]}" if user else "reply"


def user_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "user")


class AppThread:
    """An aiohttp application served on 127.0.0.1 from a background thread, with its own event loop."""

    def __init__(self, app: web.Application, port: int = 0, name: str = "loopback") -> None:
        self.app, self.port, self.name = app, port, name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen (port 0: any free one) and return the port once the server accepts connections."""
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name}: the server did not start listening within 10 s")
        return self.port

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
        self._loop = None


class LoopbackOpenAI:
    """Serve ``/v1/chat/completions`` and ``/v1/models`` on 127.0.0.1 from a background thread."""

    def __init__(self, responder: Responder = echo_responder, latency: float = 0.0, api_key: str | None = None,
                 port: int = 0, model: str | None = None) -> None:
        self.responder, self.latency, self.api_key, self.port = responder, latency, api_key, port
        self.model = model  # when set, other model names get 404 like a real server
        self.faults: list[str] = []
        self.fault_for: Callable[[dict[str, Any]], str | None] | None = None
        self.requests: list[dict[str, Any]] = []
        self.served: list[dict[str, Any]] = []  # bodies answered with 200 and a completion
        self.reject_params: set[str] = set()  # request keys answered with 400, as servers that lack them do
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self._thread: AppThread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "loopback", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}, status=401)
        body = await request.json()
        with self.lock:
            self.requests.append(body)
            fault = self.fault_for(body) if self.fault_for else None
            if fault is None and self.faults:
                fault = self.faults.pop(0)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(body, fault)
        finally:
            with self.lock:
                self.in_flight -= 1

    async def _answer(self, body: dict[str, Any], fault: str | None) -> web.StreamResponse:
        if self.model is not None and body.get("model") != self.model:
            return web.json_response({"error": {"message": f"The model {body.get('model')} does not exist"}}, status=404)
        for name in sorted(self.reject_params & set(body)):
            hint = " Use 'max_completion_tokens' instead." if name == "max_tokens" else ""
            return web.json_response({"error": {"message": f"Unsupported parameter: '{name}'.{hint}"}}, status=400)
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault:
            response = await self._fault(fault)
            if response is not None:
                return response
        reply = self.responder(body)
        if isinstance(reply, str):
            reply = {"content": reply}
        if fault == "empty":
            reply = {"content": ""}
        with self.lock:
            self.served.append(body)
        return web.json_response(self._completion(body, reply, "length" if fault == "truncated" else None))

    async def _fault(self, fault: str) -> web.Response | None:
        kind, _, arg = fault.partition(":")
        if kind in ("429", "429ms"):
            name = "retry-after-ms" if kind == "429ms" else "Retry-After"
            headers = {name: arg} if arg else {}
            return web.json_response({"error": {"message": "rate limited"}}, status=429, headers=headers)
        if kind in ("500", "502", "503"):
            return web.json_response({"error": {"message": "server error"}}, status=int(kind))
        if kind == "timeout":
            await asyncio.sleep(float(arg or 30))
            return None
        if kind == "garbage":
            return web.Response(text="<html>upstream exploded</html>", content_type="text/html")
        if kind == "no_choices":
            return web.json_response({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []})
        return None

    @staticmethod
    def _completion(body: dict[str, Any], reply: dict[str, Any], finish: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        calls = reply.get("tool_calls") or []
        if calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
                for i, c in enumerate(calls)
            ]
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        completion_tokens = len(str(reply.get("content") or "").split())
        return {
            "id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": finish or reply.get("finish_reason") or ("tool_calls" if calls else "stop")}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def start(self) -> LoopbackOpenAI:
        self._thread = AppThread(self.app(), self.port, "loopback-openai")
        self.port = self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def __enter__(self) -> LoopbackOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = LoopbackOpenAI(latency=args.latency, port=args.port).start()
    print(server.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
