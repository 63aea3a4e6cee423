"""Leader election over a coordination.k8s.io/v1 Lease, through the official client against the API double."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from synthtune.controller.lease import LeaseElector

from .kubeapi import LEASES, KubeAPI

pytestmark = pytest.mark.integration
NAME = "synthtune-controller"


@pytest.fixture
def kube():
    with KubeAPI() as k:
        yield k


def elector(kube: KubeAPI, identity: str, duration: float = 1.0, renew: float = 0.1) -> LeaseElector:
    return LeaseElector(kube.api_client(), NAME, "default", identity, duration, renew)


def spec(kube: KubeAPI) -> dict[str, Any]:
    lease = kube.get(LEASES, NAME)
    assert lease is not None
    return dict(lease["spec"])


def test_one_of_two_wins_and_keeps_it_by_renewing(kube):
    a, b = elector(kube, "a"), elector(kube, "b")
    assert a.try_acquire()
    assert not b.try_acquire()
    first = spec(kube)
    assert first["holderIdentity"] == "a" and first["leaseDurationSeconds"] == 1 and first["leaseTransitions"] == 0
    time.sleep(0.01)
    assert a.try_acquire()  # a renewal
    renewed = spec(kube)
    assert renewed["holderIdentity"] == "a" and renewed["renewTime"] > first["renewTime"]
    assert renewed["acquireTime"] == first["acquireTime"] and renewed["leaseTransitions"] == 0


def test_of_two_creating_at_once_one_gets_409(kube):
    a, b = elector(kube, "a"), elector(kube, "b")
    read = b.api.read_namespaced_lease

    def read_then_lose(*args: Any, **kwargs: Any) -> Any:
        try:
            return read(*args, **kwargs)  # 404: there is no Lease yet
        finally:
            assert a.try_acquire()  # a creates it before b does

    b.api.read_namespaced_lease = read_then_lose
    assert not b.try_acquire()
    assert [c.status for c in kube.called("POST", "*/leases")] == [201, 409]
    assert spec(kube)["holderIdentity"] == "a"


def test_takeover_only_after_the_holder_stops_renewing_for_the_duration(kube):
    a, b = elector(kube, "a"), elector(kube, "b")
    assert a.try_acquire()
    end = time.monotonic() + 1.6  # longer than the duration, but a renews all along
    while time.monotonic() < end:
        assert a.try_acquire()
        assert not b.try_acquire()
        time.sleep(0.1)
    stopped = time.monotonic()  # a stops renewing now
    while not b.try_acquire():
        assert time.monotonic() - stopped < 3, "b never took over"
        time.sleep(0.05)
    waited = time.monotonic() - stopped
    assert 0.8 <= waited < 2.0, waited  # the 1 s duration, measured by b's own clock from a's last change
    taken = spec(kube)
    assert taken["holderIdentity"] == "b" and taken["leaseTransitions"] == 1
    assert not a.try_acquire()  # the old holder cannot take it back while b renews


def test_a_stale_resource_version_loses_the_race_for_an_expired_lease(kube):
    gone, a, b = elector(kube, "gone"), elector(kube, "a"), elector(kube, "b")
    assert gone.try_acquire()
    assert not a.try_acquire() and not b.try_acquire()  # both see the record...
    time.sleep(1.15)  # ...unchanged for longer than its duration: both may take it
    read = b.api.read_namespaced_lease

    def read_then_race(*args: Any, **kwargs: Any) -> Any:
        lease = read(*args, **kwargs)
        assert a.try_acquire()  # a writes between b's read and b's write
        return lease

    b.api.read_namespaced_lease = read_then_race
    assert not b.try_acquire()
    puts = kube.called("PUT", f"*/leases/{NAME}")
    assert [c.status for c in puts] == [200, 409] and [c.body["spec"]["holderIdentity"] for c in puts] == ["a", "b"]
    assert spec(kube)["holderIdentity"] == "a"


def test_release_hands_over_at_once(kube):
    a, b = elector(kube, "a", duration=30), elector(kube, "b", duration=30)
    assert a.try_acquire() and not b.try_acquire()
    b.release()  # not the holder: changes nothing
    assert spec(kube)["holderIdentity"] == "a"
    a.release()
    assert "holderIdentity" not in spec(kube)
    assert b.try_acquire()  # no 30 s wait
    assert spec(kube)["holderIdentity"] == "b"


class Campaign:
    def __init__(self, el: LeaseElector) -> None:
        self.el, self.stop = el, threading.Event()
        self.started: list[float] = []
        self.lost: list[float] = []
        self.thread = threading.Thread(target=el.run, args=(self.stop, lambda: self.started.append(time.monotonic()),
                                                            lambda: self.lost.append(time.monotonic())), daemon=True)
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


def test_a_cut_off_leader_steps_down_before_another_takes_over(kube):
    a = Campaign(elector(kube, "a", duration=2.0, renew=0.1))
    kube.wait_for(lambda: a.started, what="a to lead")
    b = Campaign(elector(kube, "b", duration=2.0, renew=0.1))
    time.sleep(0.3)
    assert not b.started
    cut = time.monotonic()
    a.el.api.api_client.configuration.host = "http://127.0.0.1:9"  # a can no longer reach the API server
    kube.wait_for(lambda: b.started, timeout=6, what="b to lead")
    assert a.lost and a.lost[0] < b.started[0]  # never two leaders
    assert a.lost[0] - cut < 2.0  # within the renew deadline, not the whole duration
    assert b.started[0] - cut >= 1.8
    a.end()
    b.end()
    assert "holderIdentity" not in spec(kube)  # b released it when its campaign ended


def test_a_leader_that_sees_another_holder_steps_down_at_once(kube):
    a = Campaign(elector(kube, "a", duration=5.0, renew=0.1))
    kube.wait_for(lambda: a.started, what="a to lead")
    lease = kube.get(LEASES, NAME)
    assert lease is not None
    lease["spec"]["holderIdentity"] = "intruder"  # e.g. a replica whose clock ran ahead
    kube.replace(LEASES, "default", NAME, lease)
    kube.wait_for(lambda: a.lost, timeout=1.5, what="a to step down")
    a.end()
    assert spec(kube)["holderIdentity"] == "intruder"  # a does not release what it no longer holds
