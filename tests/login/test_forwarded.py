"""The trusted-proxy rule: which peer's headers are believed, the real client's
address from X-Forwarded-For, and the certificate a proxy forwards. Table-driven,
one named case per input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from idp.login.certificate import CertificateValidator
from idp.login.forwarded import (
    MAX_FORWARDED_FOR,
    InvalidProxyEntry,
    TrustedProxies,
    client_address,
    forwarded_certificate,
)
from idp.login.refusals import Refusal
from pki.model import CASettings
from tests.fixtures.pki import CAEnv, build_env, make_csr, make_person

PROXIES = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8", "fd00:1::/64"])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[CAEnv]:
    e = build_env(tmp_path, f"sqlite:///{tmp_path / 'govtrust.db'}", settings=CASettings())
    yield e
    e.engine.dispose()


def issue(env: CAEnv, uid: str = "zhangwei") -> x509.Certificate:
    csr, _ = make_csr()
    return env.ca.issue_from_csr(make_person(uid), "user-auth", csr, actor="test").certificate


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- the real client's address ----------------------------------------------------------
CASES = {
    # id: (remote, X-Forwarded-For, expected)
    "no_proxy_no_header": ("203.0.113.9", None, "203.0.113.9"),
    "exact_proxy_address": ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
    "cidr_v4_proxy": ("10.20.30.40", "198.51.100.7", "198.51.100.7"),
    "cidr_v6_proxy": ("fd00:1::5", "2001:db8::7", "2001:db8::7"),
    "v4_mapped_v6_peer_in_v4_range": ("::ffff:10.1.1.1", "198.51.100.7", "198.51.100.7"),
    "spoofed_xff_from_untrusted_remote_ignored": ("203.0.113.9", "198.51.100.7",
                                                  "203.0.113.9"),
    "client_supplied_left_part_ignored": ("10.0.0.1", "1.1.1.1, 198.51.100.7",
                                          "198.51.100.7"),
    "several_trusted_hops_skipped": ("127.0.0.1", "198.51.100.7, 10.9.9.9, 10.0.0.2",
                                     "198.51.100.7"),
    "every_hop_trusted_gives_the_leftmost": ("127.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),
    "garbage_hop_stops_at_the_remote": ("10.0.0.1", "198.51.100.7, not-an-ip", "10.0.0.1"),
    "garbage_behind_a_trusted_hop_stops_there": ("10.0.0.1", "junk, 10.0.0.2", "10.0.0.2"),
    "garbage_left_of_the_client_is_never_read": ("10.0.0.1", "junk, 198.51.100.7",
                                                 "198.51.100.7"),
    "hop_with_a_port_is_malformed": ("10.0.0.1", "198.51.100.7:5555", "10.0.0.1"),
    "empty_hop_is_malformed": ("10.0.0.1", "198.51.100.7, ", "10.0.0.1"),
    "empty_header": ("10.0.0.1", "", "10.0.0.1"),
    "unix_socket_peer_left_as_is": ("", "198.51.100.7", ""),
    "normalised_output": ("10.0.0.1", "2001:DB8:0:0::7", "2001:db8::7"),
    "oversized_header_reads_only_its_end": (
        "10.0.0.1", "9.9.9.9, " * 10_000 + "198.51.100.7", "198.51.100.7"),
    "oversized_header_of_one_long_hop": ("10.0.0.1", "x" * 100_000, "10.0.0.1"),
}


@pytest.mark.parametrize(("remote", "xff", "expected"), list(CASES.values()), ids=list(CASES))
def test_client_address(remote: str, xff: str | None, expected: str) -> None:
    assert client_address(remote, xff, PROXIES) == expected


def test_oversized_header_cut_inside_a_hop_does_not_read_half_an_address() -> None:
    # 1,010 characters of trusted hops, and the cut leaves "11.111.111.111" of the
    # client's "211.111.111.111": a valid address, but not one anybody sent.
    trusted_hops = ", 10.0.0.2" * 101
    xff = "211.111.111.111" + trusted_hops
    assert MAX_FORWARDED_FOR == 1024 and xff[-MAX_FORWARDED_FOR:].startswith("11.111.111.111,")
    assert client_address("10.0.0.1", xff, PROXIES) == "10.0.0.2"


@pytest.mark.parametrize(("addr", "entries", "ok"), [
    ("127.0.0.1", ["127.0.0.1"], True), ("10.0.0.5", ["10.0.0.0/8"], True),
    ("::1", ["::1"], True), ("2001:db8::1", ["2001:db8::/32"], True),
    ("10.0.0.5", ["127.0.0.1"], False), ("bogus", ["0.0.0.0/0"], False),
    ("10.0.0.5", [], False), ("::ffff:127.0.0.1", ["127.0.0.1"], True),
])
def test_trusted_proxy_addresses(addr: str, entries: list[str], ok: bool) -> None:
    assert TrustedProxies.parse(entries).trusts(addr) is ok


@pytest.mark.parametrize("entry", ["not-an-address", "10.0.0.0/33", "", "10.0.0.0/8/8",
                                   "fe80::/129", "localhost"])
def test_malformed_proxy_entry_is_refused(entry: str) -> None:
    with pytest.raises(InvalidProxyEntry) as info:
        TrustedProxies.parse(["127.0.0.1", entry])
    assert info.value.index == 1 and info.value.entry == entry


# -- the certificate header ----------------------------------------------------------------
LOCAL = TrustedProxies.parse(["127.0.0.1"])


def test_header_from_an_untrusted_address_is_ignored(env: CAEnv) -> None:
    header = quote(pem(issue(env)).decode())
    got = forwarded_certificate("203.0.113.9", {"X-SSL-Client-Cert": header}, LOCAL)
    assert got.data is None and got.source == "none"
    assert got.ignored is Refusal.UNTRUSTED_PROXY


def test_header_from_an_untrusted_address_falls_back_to_tls(env: CAEnv) -> None:
    tls = pem(issue(env, uid="lisi"))
    got = forwarded_certificate("203.0.113.9", [("x-ssl-client-cert", "forged")], LOCAL,
                                tls_certificate=tls)
    assert got.data == tls and got.source == "tls" and got.ignored is Refusal.UNTRUSTED_PROXY


def test_header_from_a_trusted_proxy_range_is_believed_and_validated(env: CAEnv) -> None:
    cert = issue(env)
    got = forwarded_certificate("10.1.2.3", {"x-ssl-client-cert": quote(pem(cert).decode())},
                                TrustedProxies.parse(["10.1.0.0/16"]))
    assert got.source == "proxy" and got.ignored is None and got.data is not None
    assert CertificateValidator(env.ca).validate(got.data).owner.uid == "zhangwei"


@pytest.mark.parametrize("value", ["", "(null)", "-"])
def test_empty_header_from_a_proxy_is_no_certificate(value: str) -> None:
    got = forwarded_certificate("127.0.0.1", {"X-SSL-Client-Cert": value}, LOCAL)
    assert got.data is None and got.ignored is None
