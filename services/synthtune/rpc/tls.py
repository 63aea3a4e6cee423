"""TLS for synthtune's gRPC servers and clients: certificates from PEM files, optional mutual TLS, and
errors that say what went wrong with which server instead of a handshake trace.

A client takes its CA (``--tls-ca`` or $SYNTHTUNE_TLS_CA) and, for mutual TLS, its own certificate
and key ($SYNTHTUNE_TLS_CERT, $SYNTHTUNE_TLS_KEY). A server takes ``--tls-cert``/``--tls-key`` and,
to require client certificates, ``--tls-client-ca``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass

import grpc

from synthtune.errors import InvalidInput

log = logging.getLogger("synthtune.rpc")
CA_ENV, CERT_ENV, KEY_ENV = "SYNTHTUNE_TLS_CA", "SYNTHTUNE_TLS_CERT", "SYNTHTUNE_TLS_KEY"


@dataclass(frozen=True)
class ClientTLS:
    """The CA that signs the server's certificate and, for mutual TLS, the client's own certificate and key."""

    ca: str
    cert: str | None = None
    key: str | None = None

    @classmethod
    def resolve(cls, ca: str | None = None, cert: str | None = None, key: str | None = None) -> ClientTLS | None:
        """From the arguments, else the environment; None for plaintext (no CA anywhere)."""
        ca = ca or os.environ.get(CA_ENV) or None
        cert = cert or os.environ.get(CERT_ENV) or None
        key = key or os.environ.get(KEY_ENV) or None
        if not ca:
            if cert or key:
                raise InvalidInput(f"a client certificate needs the server's CA too: set --tls-ca or {CA_ENV}")
            return None
        if bool(cert) != bool(key):
            raise InvalidInput(f"mutual TLS needs both the client certificate and its key ({CERT_ENV} and {KEY_ENV})")
        return cls(ca, cert, key)

    def credentials(self) -> grpc.ChannelCredentials:
        chain = _read(self.cert, "client certificate") if self.cert else None
        key = _read(self.key, "client key") if self.key else None
        return grpc.ssl_channel_credentials(_read(self.ca, "CA"), key, chain)


def _read(path: str | None, what: str) -> bytes:
    try:
        with open(str(path), "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise InvalidInput(f"the TLS {what} {path} is not a PEM file")
    return data


def server_credentials(cert: str | None, key: str | None, client_ca: str | None = None) -> grpc.ServerCredentials | None:
    """Server credentials from PEM files, requiring client certificates signed by ``client_ca`` when given; None for plaintext."""
    if not cert and not key:
        if client_ca:
            raise InvalidInput("--tls-client-ca (mutual TLS) needs the server's own --tls-cert and --tls-key")
        return None
    if not (cert and key):
        raise InvalidInput("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
    pair = [(_read(key, "key"), _read(cert, "certificate"))]
    if client_ca:
        return grpc.ssl_server_credentials(pair, root_certificates=_read(client_ca, "client CA"), require_client_auth=True)
    return grpc.ssl_server_credentials(pair)


def is_loopback(target: str) -> bool:
    """True for localhost / 127.x / ::1 targets (a token in clear text never leaves the machine)."""
    host = target.split("///")[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_token_in_clear(target: str, side: str) -> None:
    """Log once per call site that a bearer token crosses the network unencrypted."""
    if not is_loopback(target):
        log.warning("the bearer token is %s %s WITHOUT TLS: anyone on the network path can read it; "
                    "use --tls-cert/--tls-key on the server and --tls-ca (or %s) on clients", side, target, CA_ENV)


def tls_failure(details: str, peer: str, tls: ClientTLS | None = None) -> str | None:
    """A plain-language message for a failed TLS handshake with ``peer``, or None when the failure was something else.

    ``tls``: what the client used; under TLS 1.3 a server refusing the client's certificate just closes the socket."""
    text = details.lower()
    if tls is not None and "socket closed" in text:
        if tls.cert:
            return (f"TLS with {peer} failed: the server closed the connection during the handshake; it may not trust the "
                    f"client certificate {tls.cert} (mutual TLS: it must be signed by the server's client CA)")
        return (f"TLS with {peer} failed: the server closed the connection during the handshake; it probably requires a client "
                f"certificate (mutual TLS): set --tls-cert/--tls-key or {CERT_ENV} and {KEY_ENV}")
    if "certificate_verify_failed" in text or "certificate verify failed" in text:
        reason = "its certificate has expired" if "expired" in text else \
            "its certificate is not signed by the CA given (--tls-ca / $SYNTHTUNE_TLS_CA), has expired, or names another host"
        return f"TLS with {peer} failed: {reason}"
    if "wrong_version_number" in text or "packet_length_too_long" in text or "http_request" in text:
        return f"TLS with {peer} failed: the server does not speak TLS there (drop --tls-ca, or give the server --tls-cert/--tls-key)"
    if "certificate_required" in text or "peer did not return a certificate" in text or "handshake_failure" in text:
        return (f"TLS with {peer} failed: the server requires a client certificate (mutual TLS) that it accepts: set "
                f"{CERT_ENV} and {KEY_ENV} to one signed by its client CA")
    if "ssl" in text and "handshake" in text:
        return f"TLS with {peer} failed during the handshake: {details.strip()[:300]}"
    return None
