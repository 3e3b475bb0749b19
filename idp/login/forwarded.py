"""Requests that reach us through a reverse proxy: whom to believe, and about what.

One trust rule decides both things a proxy tells us: the real client's address in
``X-Forwarded-For`` (used for login throttling and the audit log) and the client
certificate in a header (nginx ``$ssl_client_escaped_cert`` when it terminates TLS
with ``ssl_verify_client optional_no_ca``). A peer is trusted when its address is in
:class:`TrustedProxies`, parsed once from ``[idp] trusted_proxies`` (addresses or CIDR
ranges, IPv4 and IPv6); anything else a peer sends in these headers is ignored.

``X-Forwarded-For`` is read as MDN and RFC 7239 section 5.2 advise for the de-facto
header: each proxy appends the address it saw, so only the hops at the right end,
appended by proxies we trust, are facts; everything to the left of the first
untrusted hop is whatever the client chose to send.

Framework-free: plain strings in, plain values out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from idp.login.certsettings import DEFAULT_HEADER
from idp.login.refusals import Refusal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Only this much of the end of X-Forwarded-For is read: the hops we can believe are
# appended at the right by our own proxies, so a longer header's left part is the
# client's own padding, and reading it would only cost time.
MAX_FORWARDED_FOR = 1024


class InvalidProxyEntry(ValueError):
    """A ``trusted_proxies`` entry that is neither an IP address nor a CIDR range."""

    def __init__(self, index: int, entry: str) -> None:
        self.index = index
        self.entry = entry
        super().__init__(f"item {index}: {entry!r} is not an IP address or CIDR range")


def parse_address(text: str) -> IPAddress | None:
    """An IP address, or None; an IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, what
    a dual-stack socket reports for an IPv4 peer) is read as its IPv4 address."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True)
class TrustedProxies:
    """The proxies whose headers we believe, parsed once from the configuration."""

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedProxies:
        """Addresses (``10.0.0.7``, ``::1``) and ranges (``10.0.0.0/8``, ``fd00::/8``).

        A malformed entry raises :class:`InvalidProxyEntry` rather than being
        skipped: a typo must not silently turn a proxy's users into one address.
        """
        networks: list[IPNetwork] = []
        for index, entry in enumerate(entries):
            try:
                # strict=False: "10.0.0.1/8" means the range 10.0.0.0/8, as nginx reads it.
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except (ValueError, TypeError, AttributeError):
                raise InvalidProxyEntry(index, str(entry)) from None
        return cls(tuple(networks))

    def trusts(self, address: str | IPAddress) -> bool:
        addr = parse_address(address) if isinstance(address, str) else address
        return addr is not None and any(addr in net for net in self.networks)


def client_address(remote_addr: str, forwarded_for: str | None,
                   trusted: TrustedProxies) -> str:
    """The address of the client that made this request.

    The peer (``remote_addr``) when it is not a trusted proxy. Otherwise
    ``forwarded_for`` is walked from the right, skipping trusted proxies; the first
    untrusted hop is the client. A malformed hop ends the walk at the last trusted
    address (what came before it cannot be believed either). Only the last
    :data:`MAX_FORWARDED_FOR` characters of the header are read.
    """
    current = parse_address(remote_addr)
    if current is None:
        return remote_addr  # not an IP peer (a Unix socket): nothing to resolve
    if not forwarded_for or not trusted.trusts(current):
        return str(current)
    tail = forwarded_for[-MAX_FORWARDED_FOR:]
    hops = tail.split(",")
    if len(tail) < len(forwarded_for):
        hops = hops[1:]  # the first piece was cut in the middle
    for hop in reversed(hops):
        addr = parse_address(hop)
        if addr is None:
            break
        if not trusted.trusts(addr):
            return str(addr)
        current = addr
    return str(current)


# -- the certificate header ----------------------------------------------------------
@dataclass(frozen=True)
class PresentedCertificate:
    """What reached us: the certificate (if any), where from, and a header we ignored."""

    data: bytes | None
    source: str  # "tls", "proxy" or "none"
    ignored: Refusal | None = None  # UNTRUSTED_PROXY: audit it
    remote_addr: str = ""


def header_value(headers: Mapping[str, str] | Iterable[tuple[str, str]],
                 name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive), or None."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    wanted = name.lower()
    for key, value in items:
        if str(key).lower() == wanted:
            return str(value)
    return None


def forwarded_certificate(remote_addr: str,
                          headers: Mapping[str, str] | Iterable[tuple[str, str]],
                          trusted: TrustedProxies, *, header: str = DEFAULT_HEADER,
                          tls_certificate: bytes | None = None) -> PresentedCertificate:
    """The client certificate of this request.

    From ``header`` (nginx ``$ssl_client_escaped_cert``: URL-encoded PEM) only when
    the connection comes from a trusted proxy; otherwise the header is ignored and
    ``ignored`` says so, and the TLS layer's own certificate (if any) is used.
    """
    raw = header_value(headers, header)
    present = raw is not None and raw.strip() not in ("", "(null)", "-")
    if present and raw is not None and trusted.trusts(remote_addr):
        return PresentedCertificate(unquote(raw.strip()).encode("ascii", "replace"), "proxy",
                                    remote_addr=remote_addr)
    ignored = Refusal.UNTRUSTED_PROXY if present else None
    if tls_certificate:
        return PresentedCertificate(tls_certificate, "tls", ignored, remote_addr)
    return PresentedCertificate(None, "none", ignored, remote_addr)
