"""One OpenAI-compatible endpoint served at several base URLs (replicas): requests spread round-robin,
and a replica that fails is skipped while it fails.

The spreading happens in the HTTP transport, under the OpenAI client, so the backend's own retry
policy stays what it is: a request that cannot connect moves on to the next replica at once (it
never reached a server); a 5xx or 429 is handed back for the backend to retry, and the replica
rests for a while, so the retry lands elsewhere.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from typing import Any

import openai

# The HTTP library the installed OpenAI client is built on (httpx, or its fork httpx2 in newer releases):
# the transport must be of its kind.
httpx: Any = importlib.import_module(next(c.__module__ for c in openai.DefaultAsyncHttpxClient.__mro__
                                          if c.__name__ == "AsyncClient").split(".")[0])

FIRST_REST_S = 5.0
MAX_REST_S = 120.0


class EndpointPool:
    """Round-robin over base URLs; a failing URL rests (5 s, doubling to 120 s) before it is tried again."""

    def __init__(self, urls: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.urls = list(dict.fromkeys(u.rstrip("/") for u in urls))
        self._clock = clock
        self._next = 0
        self._resting: dict[str, tuple[float, float]] = {}  # url -> (until, last rest)
        self._lock = threading.Lock()

    def order(self) -> list[str]:
        """URLs to try for one request: the rested ones from the round-robin cursor, then resting ones, soonest back first."""
        with self._lock:
            now = self._clock()
            start, self._next = self._next, (self._next + 1) % len(self.urls)
            turn = self.urls[start:] + self.urls[:start]
            ready = [u for u in turn if self._resting.get(u, (0.0, 0.0))[0] <= now]
            resting = sorted((u for u in turn if u not in ready), key=lambda u: self._resting[u][0])
            return ready + resting

    def failed(self, url: str) -> None:
        with self._lock:
            _, last = self._resting.get(url, (0.0, 0.0))
            rest = min(MAX_REST_S, last * 2 if last else FIRST_REST_S)
            self._resting[url] = (self._clock() + rest, rest)

    def succeeded(self, url: str) -> None:
        with self._lock:
            self._resting.pop(url, None)


class SpreadTransport(httpx.AsyncBaseTransport):
    """Sends each request to the next healthy base URL; the client is built with the first one as its base_url."""

    def __init__(self, urls: list[str], inner: Any = None) -> None:
        self.pool = EndpointPool(urls)
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: Any) -> Any:
        first = self.pool.urls[0]
        url = str(request.url)
        suffix = url[len(first):] if url.startswith(first) else None
        if suffix is None:  # an absolute URL elsewhere: not ours to spread
            return await self._inner.handle_async_request(request)
        error: Exception | None = None
        for base in self.pool.order():
            request.url = httpx.URL(base + suffix)
            request.headers["host"] = request.url.netloc.decode("ascii")
            try:
                response = await self._inner.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                self.pool.failed(base)  # never reached a server: safe to send to the next one now
                error = exc
                continue
            except httpx.TransportError:
                self.pool.failed(base)  # may have reached it: the backend's retry decides
                raise
            if response.status_code >= 500 or response.status_code == 429:
                self.pool.failed(base)
            else:
                self.pool.succeeded(base)
            return response
        assert error is not None
        raise error

    async def aclose(self) -> None:
        await self._inner.aclose()


def endpoint_urls(base_url: str | None, base_urls: list[str]) -> list[str]:
    """base_url and its replicas, each once, in order."""
    return list(dict.fromkeys(u.rstrip("/") for u in [*([base_url] if base_url else []), *base_urls]))
