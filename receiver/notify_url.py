"""Which URLs the receiver may POST a notification to: checked when a job names one (POST /jobs, 400
with the reason), at start-up for RECEIVER_NOTIFY_URL, and again before every send (DNS can change
between the two; a refused send is a failed attempt with the reason), whose connection then goes to
the address checked (`pinned`), never to a second DNS answer.

An absolute http(s) URL with a host and no userinfo (credentials in a URL end up in logs); its host
must not be, nor resolve to, a loopback, link-local, private, unspecified, multicast or reserved
address (the checks of the client's download guard, `openrouter_video._urlguard`), unless the admin
setting RECEIVER_NOTIFY_ALLOW_PRIVATE=true allows them (an app on the same host or network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from openrouter_video._urlguard import is_loopback_name, non_public_kind

MAX_URL_CHARS = 2048
_PRIVATE_HINT = "set RECEIVER_NOTIFY_ALLOW_PRIVATE=true to allow apps on private networks"


class RefusedUrl(ValueError):
    """A notify URL the receiver will not POST to; the message is one line, naming why."""


def check_notify_url(url: object, *, allow_private: bool) -> str:
    """`url` as given, once it is one the receiver may POST to (by its text alone); RefusedUrl."""
    if not isinstance(url, str) or not url:
        raise RefusedUrl("notify_url must be an absolute http(s) URL")
    if len(url) > MAX_URL_CHARS:
        raise RefusedUrl(f"notify_url is longer than {MAX_URL_CHARS} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise RefusedUrl("notify_url must be ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise RefusedUrl(f"notify_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise RefusedUrl(f"notify_url must be an absolute http(s) URL, got {url[:100]!r}")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("notify_url must not hold credentials (user:password@): they would be logged")
    if allow_private:
        return url
    if is_loopback_name(host):
        raise RefusedUrl(f"notify_url points at a loopback host ({host}); {_PRIVATE_HINT}")
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return url  # a name: resolved and checked by `check_resolved`
    _check_address(host, address)
    return url


async def check_resolved(url: str, *, allow_private: bool) -> str | None:
    """Resolve the URL's host and refuse it if any answer is a non-public address (RefusedUrl). The
    checked address to connect to (see `pinned`), or None: connect by the URL as it is (a literal
    address, checked by its text; or private addresses allowed, nothing to pin)."""
    if allow_private:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host.split("%")[0])
        return None  # a literal address: checked by its text
    except ValueError:
        pass
    try:
        answers = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedUrl(f"notify_url's host {host!r} does not resolve ({exc})") from None
    if not answers:
        raise RefusedUrl(f"notify_url's host {host!r} does not resolve")
    addresses = [ipaddress.ip_address(str(sockaddr[0]).split("%")[0]) for *_rest, sockaddr in answers]
    for address in addresses:
        _check_address(host, address)
    return str(addresses[0])


def pinned(url: str, address: str | None) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """(URL, headers, request extensions) that connect to the checked `address` itself, so a DNS
    answer that changes between the check and the connection (rebinding) cannot redirect the POST:
    the Host header and, for https, the TLS server name (SNI and certificate check) stay the host's."""
    target = httpx.URL(url)
    if address is None:
        return target, {}, {}
    host_header = target.netloc.decode("ascii")
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return target.copy_with(host=address), {"Host": host_header}, extensions


def _check_address(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    kind = non_public_kind(address)
    if kind is not None:
        where = f"{host} is" if host.strip("[]") == str(address) else f"{host} resolves to"
        raise RefusedUrl(f"notify_url {where} a {kind} address ({address}); {_PRIVATE_HINT}")
