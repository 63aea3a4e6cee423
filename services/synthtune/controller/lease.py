"""One active controller among replicas, through a coordination.k8s.io/v1 Lease.

The holder renews the Lease every ``renew_s``. Another replica takes it over once the
record has not changed for ``duration_s`` by its own clock (clocks of different nodes are
never compared). Writes carry the resourceVersion they read, so of two replicas racing for
an expired Lease exactly one wins (the other gets 409 Conflict).

A leader stops leading as soon as it sees another holder, and when it could not renew for
``renew_deadline_s`` (two thirds of ``duration_s``, at most ``duration_s - renew_s``): well
before anyone else may take over, so two replicas never lead at once (client-go's
renewDeadline < leaseDuration).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("synthtune.controller.lease")


class LeaseElector:
    def __init__(self, api_client: Any, name: str, namespace: str, identity: str, duration_s: float = 15.0,
                 renew_s: float = 5.0) -> None:
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.client = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self.duration_s, self.renew_s = duration_s, renew_s
        self._observed: tuple[Any, float] | None = None  # (the record as last read, when it changed, monotonic)
        self.holder: str | None = None  # the holder as last read

    @property
    def renew_deadline_s(self) -> float:
        """How long a leader goes on leading without a successful renewal."""
        if self.renew_s >= self.duration_s:
            return self.duration_s * 2 / 3
        return min(self.duration_s - self.renew_s, self.duration_s * 2 / 3)

    def _spec(self, now: dt.datetime, transitions: int, acquired: dt.datetime | None) -> Any:
        return self.client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=max(1, round(self.duration_s)),
                                       acquire_time=acquired or now, renew_time=now, lease_transitions=transitions)

    def try_acquire(self) -> bool:
        """Take or renew the Lease; False while another replica holds it (or won a race for it)."""
        from kubernetes.client.exceptions import ApiException

        now = dt.datetime.now(dt.UTC)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = self.client.V1Lease(metadata=self.client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                                       spec=self._spec(now, 0, None))
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            self.holder = self.identity
            return True
        spec = lease.spec or self.client.V1LeaseSpec()
        self.holder = spec.holder_identity or None
        record = (spec.holder_identity, spec.renew_time, lease.metadata.resource_version if lease.metadata else None)
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, time.monotonic())
        mine = spec.holder_identity == self.identity
        free = not spec.holder_identity
        expired = time.monotonic() - self._observed[1] > (spec.lease_duration_seconds or self.duration_s)
        if not (mine or free or expired):
            return False
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(now, transitions, spec.acquire_time if mine else None)
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self.holder = self.identity
        if not mine:
            log.info("took the lease %s/%s from %r", self.namespace, self.name, spec.holder_identity or "nobody")
        return True

    def release(self) -> None:
        """Give the Lease up (on a clean shutdown) so a standby takes over at once."""
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
                self.holder = None
        except ApiException as exc:
            log.warning("could not release the lease %s/%s: %s", self.namespace, self.name, exc.reason)

    def run(self, stop: threading.Event, on_started: Callable[[], None], on_lost: Callable[[], None]) -> None:
        """Campaign until ``stop``; call ``on_started`` on winning, ``on_lost`` on seeing another holder or
        when no renewal succeeded for ``renew_deadline_s``."""
        leading, renewed = False, 0.0
        while not stop.is_set():
            try:
                ok = self.try_acquire()
            except Exception as exc:  # noqa: BLE001 - the API server may be away for a moment; keep trying
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                ok = False
            if ok:
                renewed = time.monotonic()
                if not leading:
                    leading = True
                    log.info("leading as %s", self.identity)
                    try:
                        on_started()
                    except Exception:  # the campaign must go on renewing, whatever the callback did
                        log.exception("on_started failed")
            elif leading and (self.holder not in (None, self.identity) or time.monotonic() - renewed > self.renew_deadline_s):
                leading = False
                log.error("lost the lease %s/%s (held by %s)", self.namespace, self.name, self.holder or "nobody")
                on_lost()
            stop.wait(self.renew_s)
        if leading:
            self.release()
