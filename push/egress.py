"""Where the push worker may send a request whose URL a client chose (a webhook's
``push_token``, a Web Push subscription's ``endpoint``): the guard against server-side
request forgery.

Rule: the URL is ``https`` (``http`` only with ``CHAT_PUSH_ALLOW_HTTP=true``), carries no user
info, and every address its host resolves to is public (globally routable unicast), unless it
lies in an operator's ``CHAT_PUSH_ALLOW_CIDRS``. Checked in two places:

- at registration (``EgressPolicy.check_url``): the scheme, user info, and a host that is an
  address literal in any spelling ``getaddrinfo`` accepts (``2130706433``, ``0x7f.1``, ``[::1]``)
  or a name that is always loopback (``localhost``, ``*.localhost``). This refuses the plain
  cases early with a clear message; it cannot know where a name will resolve.
- at send time (``EgressTransport``), the real guard: the worker resolves the host itself,
  refuses when any address is not allowed, connects to a vetted address (TLS still sends the
  host name as SNI and checks the certificate against it), and checks the connected socket's
  peer address again before a byte is written. A name that resolves to a public address once
  and to ``127.0.0.1`` the next time (DNS rebinding) is judged on the address it is connected
  to. Redirects are not followed and proxies from the environment are not used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable
from urllib.parse import SplitResult, urlsplit

import httpcore
import httpx

from push.providers import PushError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefused(PushError):
    """A client-chosen URL that the push worker will not contact (never retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def literal_ip(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form the resolver would read as one (dotted quad,
    one 32-bit number, octal or hex parts, IPv6 with or without a zone), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches (mapped, 6to4, Teredo), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip.teredo[1] if ip.teredo is not None else None


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast, judged on the IPv4 address an IPv6 one embeds."""
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return False
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified


@dataclass(frozen=True)
class EgressPolicy:
    allow_http: bool = False
    allow_nets: tuple[IPNetwork, ...] = ()

    @staticmethod
    @lru_cache(maxsize=8)
    def from_settings(settings: Any) -> "EgressPolicy":
        return EgressPolicy(settings.push_allow_http, tuple(settings.push_allow_networks))

    def allows(self, address: str | IPAddress) -> bool:
        """Whether a connection to ``address`` may be made: public, or inside the allow-list."""
        ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
        if ip.is_unspecified or ip.is_multicast:
            return False
        candidates = [ip] + ([embedded_ipv4(ip)] if embedded_ipv4(ip) is not None else [])
        if any(c in net for c in candidates for net in self.allow_nets if c.version == net.version):
            return True
        return is_public(ip)

    def check_url(self, url: str) -> SplitResult:
        """The parts of ``url`` if it may be registered; ``EgressRefused`` saying why not."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
        except ValueError as exc:
            raise EgressRefused(f"not a URL: {exc}") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            raise EgressRefused("the URL must be https" + (" or http" if self.allow_http else ""))
        if "@" in parts.netloc:
            raise EgressRefused("the URL must not carry a user name or password")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise EgressRefused("the URL has no host")
        ip = literal_ip(host)
        if ip is None and (host == "localhost" or host.endswith(".localhost")):
            ip = ipaddress.ip_address("127.0.0.1")
        if ip is not None and not self.allows(ip):
            raise EgressRefused(f"the URL's host {host} is not a public address")
        return parts


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for TCP, as the system resolver answers."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the policy allows."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)  # looked up at call time: tests replace it
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        refused = [a for a in addresses if not self.policy.allows(a)]
        if refused or not addresses:
            raise EgressRefused(f"{host} resolves to {', '.join(refused) or 'nothing'}: not a public address")
        error: Exception = httpcore.ConnectError(f"no address of {host} answered")
        for address in addresses:
            try:
                stream = await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
                continue
            peer = stream.get_extra_info("server_addr")
            if peer is None or not self.policy.allows(peer[0]):
                await stream.aclose()
                raise EgressRefused(f"{host} connected to {peer}: not a public address")
            return stream
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("push requests never go to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class EgressTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guarded backend: HTTP/1.1 and HTTP/2, no proxy, no redirect.

    Workaround: httpx (0.27 to 0.29) has no parameter for httpcore's ``network_backend``, so
    the transport's connection pool (its private ``_pool``) is replaced by one built with ours.
    If an httpx upgrade breaks this, ``tests/integration/test_push_egress.py`` (rebinding) fails;
    remove it when httpx takes a network backend."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(trust_env=False, http2=True)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), http1=True, http2=True,
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0,
            network_backend=GuardedBackend(policy))


def egress_client(policy: EgressPolicy, timeout_s: float) -> httpx.AsyncClient:
    """The client for requests to client-chosen URLs."""
    return httpx.AsyncClient(transport=EgressTransport(policy), timeout=timeout_s, trust_env=False,
                             follow_redirects=False)
