"""Several base URLs for one endpoint: requests spread over the replicas and a failing one is skipped while it fails."""

from __future__ import annotations

from gen_port import free_port
from loopback_server import LoopbackOpenAI

from synthtune.llm.chat import ChatRequest
from synthtune.llm.endpoints import EndpointPool
from synthtune.llm.openai_backend import OpenAIBackend
from synthtune.spec.generate import ModelEndpointSpec


def _backend(urls: list[str]) -> OpenAIBackend:
    return OpenAIBackend(ModelEndpointSpec(backend="openai", model="m", base_url=urls[0], base_urls=urls[1:], concurrency=4,
                                           max_retries=3, backoff_s=0.01))


def _ask(backend: OpenAIBackend, n: int) -> list[str]:
    results = backend.complete([ChatRequest(messages=[{"role": "user", "content": f"q{i}"}]) for i in range(n)])
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    return [r.text for r in results]


def test_requests_spread_over_replicas_and_a_dead_one_is_skipped():
    with LoopbackOpenAI() as a, LoopbackOpenAI() as b:
        backend = _backend([f"http://127.0.0.1:{free_port()}/v1", a.base_url, b.base_url])  # nothing listens there
        try:
            texts = _ask(backend, 12)
        finally:
            backend.close()
    assert texts == [f"reply to: q{i}" for i in range(12)]
    assert len(a.served) >= 4 and len(b.served) >= 4 and len(a.served) + len(b.served) == 12


def test_a_replica_answering_503_rests_while_the_other_serves():
    with LoopbackOpenAI() as a, LoopbackOpenAI() as b:
        a.fault_for = lambda body: "503"  # a is up but failing
        backend = _backend([a.base_url, b.base_url])
        try:
            _ask(backend, 10)
        finally:
            backend.close()
    assert len(b.served) == 10 and not a.served
    assert len(a.requests) <= 2  # tried, then skipped while it rests


def test_pool_rests_a_failing_url_and_takes_it_back_after_it_recovers():
    now = [0.0]
    pool = EndpointPool(["http://a/v1", "http://b/v1"], clock=lambda: now[0])
    assert [pool.order()[0] for _ in range(4)] == ["http://a/v1", "http://b/v1", "http://a/v1", "http://b/v1"]
    pool.failed("http://a/v1")
    assert [pool.order()[0] for _ in range(2)] == ["http://b/v1", "http://b/v1"]
    assert pool.order() == ["http://b/v1", "http://a/v1"]  # still tried last, when every other one fails too
    now[0] = 6.0
    assert "http://a/v1" in [pool.order()[0] for _ in range(2)]
    pool.failed("http://a/v1")  # fails again: rests twice as long
    now[0] = 6.0 + 9.0
    assert all(pool.order()[0] == "http://b/v1" for _ in range(2))
    pool.succeeded("http://a/v1")
    assert "http://a/v1" in [pool.order()[0] for _ in range(2)]
