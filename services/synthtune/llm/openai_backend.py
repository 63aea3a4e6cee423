"""Any OpenAI-compatible endpoint: async requests under a concurrency limit, backoff honouring Retry-After."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
from typing import Any

from synthtune.errors import InvalidInput, PermanentError, RetryableError
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.progress import Progress
from synthtune.spec.generate import ModelEndpointSpec

log = logging.getLogger("synthtune.llm")


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAIBackend:
    def __init__(self, spec: ModelEndpointSpec) -> None:
        import openai

        self.spec = spec
        self.model = spec.model
        key = "not-needed"
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env, "")
            if not key:
                raise InvalidInput(f"teacher: environment variable {spec.api_key_env} (api_key_env) is not set")
        elif os.environ.get("OPENAI_API_KEY"):
            key = os.environ["OPENAI_API_KEY"]
        self._openai = openai
        self._client_args = {"api_key": key, "base_url": spec.base_url, "timeout": spec.timeout_s, "max_retries": 0}
        self._fatal: BaseException | None = None

    async def _one(self, client: Any, sem: asyncio.Semaphore, req: ChatRequest) -> ChatResult:
        openai = self._openai
        spec = self.spec
        body: dict[str, Any] = {
            "model": spec.model,
            "messages": req.messages,
            "temperature": spec.temperature if req.temperature is None else req.temperature,
            "top_p": spec.top_p,
            "max_tokens": req.max_tokens or spec.max_tokens,
        }
        seed = req.seed if req.seed is not None else spec.seed
        if seed is not None:
            body["seed"] = seed
        if req.tools:
            body["tools"] = req.tools
        if req.json_schema:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": req.json_schema}}
        last = ""
        for attempt in range(spec.max_retries + 1):
            if self._fatal is not None:
                return ChatResult(finish_reason="error", error=str(self._fatal), key=req.key)
            async with sem:
                try:
                    resp = await client.chat.completions.create(**body)
                except openai.AuthenticationError as exc:
                    self._fatal = PermanentError(f"teacher at {spec.base_url or 'api.openai.com'} refused the API key ({exc.status_code}); check {spec.api_key_env or 'OPENAI_API_KEY'}")
                    return ChatResult(finish_reason="error", error=str(self._fatal), key=req.key)
                except openai.BadRequestError as exc:
                    if req.json_schema and "response_format" in body:
                        body.pop("response_format")  # the endpoint lacks structured output: parse leniently
                        continue
                    return ChatResult(finish_reason="error", error=f"rejected by the endpoint: {exc.message}", key=req.key)
                except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError) as exc:
                    last = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
                    delay = _retry_after(exc)
                    if delay is None:
                        delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
                    if attempt < spec.max_retries:
                        await asyncio.sleep(delay)
                    continue
                except openai.APIStatusError as exc:
                    return ChatResult(finish_reason="error", error=f"HTTP {exc.status_code}: {exc.message}", key=req.key)
            return self._result(resp, req)
        return ChatResult(finish_reason="error", error=f"gave up after {spec.max_retries + 1} attempts: {last}", key=req.key)

    def _result(self, resp: Any, req: ChatRequest) -> ChatResult:
        try:
            choice = resp.choices[0]
            msg = choice.message
        except (AttributeError, IndexError, TypeError):
            return ChatResult(finish_reason="error", error="malformed response: no choices", key=req.key)
        calls = []
        for call in getattr(msg, "tool_calls", None) or []:
            calls.append({"type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}})
        usage = getattr(resp, "usage", None)
        return ChatResult(
            text=(msg.content or "").strip(),
            tool_calls=calls,
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            key=req.key,
        )

    async def _all(self, requests: list[ChatRequest], progress: Progress | None) -> list[ChatResult]:
        client = self._openai.AsyncOpenAI(**self._client_args)
        sem = asyncio.Semaphore(self.spec.concurrency)

        async def tracked(req: ChatRequest) -> ChatResult:
            if progress is not None and progress.cancelled:
                return ChatResult(finish_reason="error", error="cancelled", key=req.key)
            result = await self._one(client, sem, req)
            if progress is not None:
                progress.advance(1)
            return result

        try:
            return list(await asyncio.gather(*(tracked(r) for r in requests)))
        finally:
            await client.close()

    def complete(self, requests: list[ChatRequest], progress: Progress | None = None) -> list[ChatResult]:
        results: list[ChatResult] = []

        def runner() -> None:  # own loop, so callers inside a running loop (servers) work too
            results.extend(asyncio.run(self._all(requests, progress)))

        thread = threading.Thread(target=runner, name="synthtune-openai")
        thread.start()
        thread.join()
        if self._fatal is not None:
            raise self._fatal
        if requests and all(r.error and ("APIConnectionError" in r.error or "APITimeoutError" in r.error) for r in results):
            raise RetryableError(f"teacher at {self.spec.base_url or 'api.openai.com'} is unreachable: {results[0].error}")
        return results

    def close(self) -> None:
        pass


def parse_json_loose(text: str) -> Any:
    """The first JSON object or array in ``text`` (models wrap JSON in prose or code fences)."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text.split("\n", 1)[1] if "\n" in text else text
    for opener, closer in (("{", "}"), ("[", "]")):
        start = text.find(opener)
        end = text.rfind(closer)
        if start != -1 and end > start:
            try:
                return json.loads(text[start:end + 1])
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object found")
