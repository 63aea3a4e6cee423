"""Any OpenAI-compatible endpoint through the official client: async requests under a concurrency limit.

The client's own retries are off: we retry 429/5xx/timeouts/garbage ourselves, honouring
Retry-After, so one policy (``max_retries``, ``backoff_s``) holds for every server. A bad key or
an unknown model stops the whole backend (``PermanentError``); an endpoint that stays
unreachable raises ``TeacherUnavailable``; every other failure is one result with ``error`` set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import math
import os
import random
import re
import threading
import time
from typing import Any

from synthtune.errors import InvalidInput, PermanentError
from synthtune.llm.backends import TeacherUnavailable, describe, sampling
from synthtune.llm.chat import ChatRequest, ChatResult
from synthtune.progress import Progress
from synthtune.spec.generate import RESERVED_KEY_PREFIXES, ModelEndpointSpec

MAX_RETRY_AFTER_S = 120.0  # a server asking for longer is treated as down for this attempt
MAX_BACKOFF_S = 60.0


KEY_ENVS_ENV = "SYNTHTUNE_KEY_ENVS"  # comma-separated key variables a spec may name; unset: any but AWS_*/SYNTHTUNE_*
ENDPOINTS_ENV = "SYNTHTUNE_ALLOWED_ENDPOINTS"  # comma-separated base_url prefixes a spec may use; unset: any


def _listed(variable: str) -> list[str]:
    return [item.strip() for item in os.environ.get(variable, "").split(",") if item.strip()]


def check_endpoint_policy(spec: ModelEndpointSpec) -> None:
    """Refuse key variables and endpoints the operator did not allow (InvalidInput naming the setting)."""
    if spec.api_key_env:
        if spec.api_key_env.upper().startswith(RESERVED_KEY_PREFIXES):
            raise InvalidInput(f"teacher {describe(spec)}: api_key_env {spec.api_key_env} names a store or service secret")
        allowed = _listed(KEY_ENVS_ENV)
        if allowed and spec.api_key_env not in allowed:
            raise InvalidInput(f"teacher {describe(spec)}: api_key_env {spec.api_key_env} is not one of {KEY_ENVS_ENV} ({', '.join(allowed)})")
    endpoints = _listed(ENDPOINTS_ENV)
    for url in [(spec.base_url or "https://api.openai.com/v1").rstrip("/"), *(u.rstrip("/") for u in spec.base_urls)]:
        if endpoints and not any(url == e.rstrip("/") or url.startswith(e.rstrip("/") + "/") for e in endpoints):
            raise InvalidInput(f"teacher {describe(spec)}: base_url {url} is not allowed here ({ENDPOINTS_ENV}: {', '.join(endpoints)})")


def api_key(spec: ModelEndpointSpec) -> str:
    """The key from the variable the spec names; local servers without one get a placeholder."""
    check_endpoint_policy(spec)
    if spec.api_key_env:
        value = os.environ.get(spec.api_key_env, "")
        if not value:
            raise InvalidInput(f"teacher {describe(spec)}: environment variable {spec.api_key_env} (named by api_key_env) is not set")
        return value
    if spec.base_url:
        return "not-needed"  # vLLM, llama.cpp and `transformers serve` accept any key by default
    value = os.environ.get("OPENAI_API_KEY", "")
    if not value:
        raise InvalidInput("teacher backend openai without base_url needs api_key_env (or OPENAI_API_KEY) to be set")
    return value


def _seconds(text: str, scale: float = 1.0) -> float | None:
    """A finite, non-negative number of seconds from a header value, or None when it is not one."""
    try:
        value = float(text.strip()) * scale
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def _http_date_delay(text: str) -> float | None:
    """Seconds until an HTTP date, or None when the text is not a date email.utils can read."""
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # a date without a zone is taken as UTC, as HTTP dates are
        parsed = parsed.replace(tzinfo=dt.UTC)
    return max(0.0, parsed.timestamp() - time.time())


def retry_after_s(exc: Exception) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or date), if it said so readably.

    Malformed values (``120s``, ``nan``, a broken date) are ignored so the caller falls back to its
    own backoff; negative values count as 0; the result is never NaN or infinite.
    """
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) and (delay := _seconds(str(ms), 0.001)) is not None:
        return delay
    value = str(headers.get("retry-after") or "").strip()
    if not value:
        return None
    delay = _seconds(value)
    return delay if delay is not None else _http_date_delay(value)


def _short(exc: Exception) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text[:300]


def cannot_connect(exc: BaseException) -> bool:
    """True when the request never reached a server (refused, DNS, no route), whatever the transport called it."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        # aiohttp's transport maps a refused connection to ConnectTimeout, so look at the causes.
        if isinstance(seen, ConnectionError | OSError) and not isinstance(seen, TimeoutError):
            return True
        if type(seen).__name__ in ("ConnectError", "ClientConnectorError"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _Garbage(Exception):
    """A 200 reply that is not a chat completion."""


class OpenAIBackend:
    """Chat completions against ``spec.base_url`` (or OpenAI) with ``spec.concurrency`` in flight."""

    def __init__(self, spec: ModelEndpointSpec) -> None:
        import openai

        self.spec, self.model = spec, spec.model
        self.name = describe(spec)
        self._openai = openai
        self._structured = True  # cleared when the server refuses response_format
        self._max_tokens_param = "max_tokens"  # newer OpenAI models want max_completion_tokens
        key = api_key(spec)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True)
        self._thread.start()
        self._client = asyncio.run_coroutine_threadsafe(self._make_client(key), self._loop).result()

    async def _make_client(self, key: str) -> Any:
        """The client, built on the backend's loop; aiohttp's transport costs about half the CPU of httpx's.
        Several base URLs (``base_urls``): httpx with a transport spreading requests over them."""
        from synthtune.llm.endpoints import SpreadTransport, endpoint_urls

        urls = endpoint_urls(self.spec.base_url, self.spec.base_urls)
        try:
            http_client = (self._openai.DefaultAsyncHttpxClient(transport=SpreadTransport(urls), timeout=self.spec.timeout_s)
                           if len(urls) > 1 else self._openai.DefaultAioHttpClient(timeout=self.spec.timeout_s))
        except RuntimeError:  # the aiohttp extra is missing: the default transport works too
            http_client = None
        return self._openai.AsyncOpenAI(api_key=key, base_url=self.spec.base_url, max_retries=0,
                                        timeout=self.spec.timeout_s, http_client=http_client)

    # public -----------------------------------------------------------------------------
    def complete(self, requests: list[ChatRequest], progress: Progress | None = None) -> list[ChatResult]:
        if not requests:
            return []
        future = asyncio.run_coroutine_threadsafe(self._complete_all(requests, progress), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # internals ----------------------------------------------------------------------------
    async def _complete_all(self, requests: list[ChatRequest], progress: Progress | None) -> list[ChatResult]:
        gate = asyncio.Semaphore(self.spec.concurrency)

        async def one(request: ChatRequest) -> ChatResult:
            async with gate:
                result = await self._one(request)
            if progress is not None:
                progress.advance(1)
            return result

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        s = sampling(self.spec, request)
        params: dict[str, Any] = {
            "model": self.spec.model,
            "messages": request.messages,
            "temperature": s["temperature"],
            "top_p": s["top_p"],
            self._max_tokens_param: s["max_tokens"],
        }
        if s["seed"] is not None:
            params["seed"] = s["seed"]
        if request.json_schema is not None and self._structured:
            name = re.sub(r"[^A-Za-z0-9_-]", "_", str(request.json_schema.get("title") or "reply"))[:64]
            params["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": request.json_schema}}
        if request.tools:
            params["tools"] = request.tools
        return params

    async def _one(self, request: ChatRequest) -> ChatResult:
        o = self._openai
        params = self._params(request)
        attempt = 0
        while True:
            try:
                # The generic post skips the typed create()'s per-request transform of the messages
                # (our params are already wire format) and returns the JSON as a dict: less CPU per record.
                response = await self._client.post("/chat/completions", body=params, cast_to=object)
                return self._result(response, request)
            except (o.AuthenticationError, o.PermissionDeniedError) as exc:
                raise PermanentError(
                    f"teacher {self.name} refused the API key (HTTP {exc.status_code}); "
                    f"check the key in {self.spec.api_key_env or 'the environment'}"
                ) from None
            except o.NotFoundError:
                raise PermanentError(
                    f"teacher {self.name}: HTTP 404 — no model {self.spec.model!r} there, or base_url is wrong (it usually ends in /v1)"
                ) from None
            except o.BadRequestError as exc:
                message = _short(exc)
                if "max_completion_tokens" in message and "max_tokens" in params:
                    self._max_tokens_param = "max_completion_tokens"
                    params["max_completion_tokens"] = params.pop("max_tokens")
                    continue
                if "response_format" in params:
                    # The server does not do structured output: callers fall back to tolerant parsing.
                    self._structured = False
                    params.pop("response_format")
                    continue
                return ChatResult(finish_reason="error", error=f"HTTP 400: {message}", key=request.key)
            except (o.APITimeoutError, o.APIConnectionError, o.RateLimitError, o.InternalServerError, o.APIStatusError,
                    o.APIResponseValidationError, _Garbage, json.JSONDecodeError) as exc:
                status = getattr(exc, "status_code", None)
                if isinstance(exc, o.APIStatusError) and status is not None and status < 500 and status not in (408, 409, 429):
                    return ChatResult(finish_reason="error", error=f"HTTP {status}: {_short(exc)}", key=request.key)
                attempt += 1
                if attempt > self.spec.max_retries:
                    return self._give_up(exc, request)
                await asyncio.sleep(self._delay(exc, attempt))

    def _delay(self, exc: Exception, attempt: int) -> float:
        asked = retry_after_s(exc)
        if asked is not None:
            return min(asked, MAX_RETRY_AFTER_S)
        return float(min(self.spec.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S) * random.uniform(0.5, 1.0))

    def _give_up(self, exc: Exception, request: ChatRequest) -> ChatResult:
        o = self._openai
        if isinstance(exc, o.APIConnectionError) and (not isinstance(exc, o.APITimeoutError) or cannot_connect(exc)):
            raise TeacherUnavailable(
                f"teacher {self.name} is unreachable after {self.spec.max_retries} retries ({_short(exc)}); finished work is saved, run again to resume"
            ) from None
        if isinstance(exc, o.APITimeoutError):
            reason = f"timed out after {self.spec.timeout_s:g} s"
        elif isinstance(exc, o.APIStatusError):
            reason = f"HTTP {exc.status_code}: {_short(exc)}"
        else:
            reason = f"unreadable reply: {_short(exc)}"
        return ChatResult(finish_reason="error", error=f"{reason} (after {self.spec.max_retries} retries)", key=request.key)

    def _result(self, response: Any, request: ChatRequest) -> ChatResult:
        choices = response.get("choices") if isinstance(response, dict) else None
        if not isinstance(choices, list):
            raise _Garbage(f"not a chat completion: {str(response)[:120]!r}")
        if not choices:
            return ChatResult(finish_reason="error", error="the reply has no choices", key=request.key)
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        tool_calls = [
            {"id": call.get("id") or f"call_{i}", "type": "function",
             "function": {"name": call["function"].get("name"), "arguments": call["function"].get("arguments") or "{}"}}
            for i, call in enumerate(message.get("tool_calls") or [])
            if isinstance(call, dict) and isinstance(call.get("function"), dict)
        ]
        usage = response.get("usage") or {}
        return ChatResult(
            text=message.get("content") or "",
            tool_calls=tool_calls,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            key=request.key,
        )
