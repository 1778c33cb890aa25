"""Which download URLs may be fetched: an event's `urls` come from a signed webhook, but the
signature only proves who sent them, not that they are safe to request from inside our network.

Allowed: the configured API origin (scheme, host and port); otherwise `https` to global addresses only
(no loopback, link-local, private, multicast or reserved ones) unless private URLs are allowed.
The host is resolved and every answer checked; the connected peer is checked again afterwards,
so a DNS answer that changes between the check and the connection (rebinding) is caught too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import httpx

from ._exceptions import DownloadError

Resolved = Sequence[tuple[Any, Any, int, str, tuple[Any, ...]]]  # socket.getaddrinfo's answer


class UrlGuard:
    def __init__(self, api_base: httpx.URL, *, allow_private: bool = False) -> None:
        self.api_origin = _origin(api_base)
        self.allow_private = allow_private

    def trusted(self, url: httpx.URL) -> bool:
        """The API origin itself: always allowed (that is where the key goes anyway). Another port
        on the same host is another service, so the port counts."""
        return _origin(url) == self.api_origin

    def check_url(self, url: httpx.URL, *, job_id: str | None = None) -> bool:
        """Raise unless `url` may be fetched; True when its host still needs resolving and checking."""
        if self.trusted(url):
            return False
        if url.scheme != "https" and not (self.allow_private and url.scheme == "http"):
            raise _refused(url, f"scheme {url.scheme!r} (only https)", job_id)
        if self.allow_private:
            return False
        host = url.host.strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if is_loopback_name(host):
                raise _refused(url, "a loopback host", job_id) from None
            return True
        self._check_address(url, address, job_id)
        return False

    def check_resolved(self, url: httpx.URL, answers: Resolved, *, job_id: str | None = None) -> None:
        if not answers:
            raise _refused(url, "a host that does not resolve", job_id)
        for *_rest, sockaddr in answers:
            self._check_address(url, ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), job_id)

    def check_peer(self, url: httpx.URL, response: httpx.Response, *, job_id: str | None = None) -> None:
        """The address actually connected to (when the transport tells it) must pass too."""
        if self.allow_private or self.trusted(url):
            return
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        if peer:
            self._check_address(url, ipaddress.ip_address(str(peer[0]).split("%")[0]), job_id)

    def _check_address(
        self, url: httpx.URL, address: ipaddress.IPv4Address | ipaddress.IPv6Address, job_id: str | None
    ) -> None:
        if non_public_kind(address) is not None:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            raise _refused(url, f"a non-public address {address}", job_id)


def non_public_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What makes `address` one never to connect to from inside our network (None: a global unicast
    address): loopback, link-local, private, unspecified, multicast, reserved or otherwise not global.
    Shared with the receiver's notify URLs (receiver/notify_url.py)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-global"


def is_loopback_name(host: str) -> bool:
    """`localhost` and its subdomains: loopback by name, whatever a resolver answers."""
    return host.lower() == "localhost" or host.lower().endswith(".localhost")


def resolve(url: httpx.URL) -> Resolved:
    """Blocking DNS lookup of the URL's host (the async client runs it in the loop's resolver)."""
    try:
        return socket.getaddrinfo(url.host, url.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return (url.scheme, url.host.lower(), url.port or {"http": 80, "https": 443}.get(url.scheme, 0))


def _refused(url: httpx.URL, why: str, job_id: str | None) -> DownloadError:
    return DownloadError(f"refusing to download from {url.copy_with(query=None)}: {why}", job_id=job_id)
