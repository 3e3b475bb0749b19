"""The OCSP responder (RFC 6960), with RFC 8954 nonce limits and RFC 5019 caching.

Framework-free: :meth:`OCSPResponder.respond` takes the request bytes and returns
the DER response; ``pki.http`` only moves bytes. Responses are signed by the
delegated responder certificate (RFC 6960 §4.2.2.2), which is included in each
response. A response without a nonce is pre-signed and reused per serial until
the certificate's status changes, the responder certificate is renewed, or it
nears its nextUpdate; a request with a nonce is signed fresh so the nonce can
be echoed (RFC 6960 §4.4.1).

With a status generation (a counter the store moves in the same transaction as
every status change, ``pki.store``), a request already answered is one dictionary
look-up: its exact bytes to the response bytes, checked against the generation
read now, so a revocation committed by any process or node is seen by the next
request. The statuses read are kept the same way, so a request with a nonce
costs its parse and one signature, no status read. Without a generation source
every request reads its status, as it always did.

What is kept lives in least-recently-used caches of ``cache_size`` entries each
(answers by request, pre-signed responses by serial, statuses by serial), and
only for serials this CA issued: anyone may ask about any serial, so caching the
"unknown" answers would let a client grow the process without limit.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from asn1crypto import ocsp as a_ocsp
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp as x509_ocsp

from pki import der
from pki.errors import KeyStoreError, OCSPRequestError
from pki.keys import Signer
from pki.model import CertStatus, RevocationReason

REQUEST_CONTENT_TYPE = "application/ocsp-request"
RESPONSE_CONTENT_TYPE = "application/ocsp-response"
MAX_REQUEST_BYTES = 8 * 1024
MAX_REQUESTS = 16
NONCE_MAX = 32  # RFC 8954 §2.1: 1..32 octets
OID_PKIX_OCSP_BASIC = "1.3.6.1.5.5.7.48.1.1"
OID_NONCE = "1.3.6.1.5.5.7.48.1.2"
# About 1 KB of response each (with the responder certificate): ~10 MB a worker.
DEFAULT_CACHE_SIZE = 10_000

_HASH_OIDS = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1",
              "sha384": "2.16.840.1.101.3.4.2.2", "sha512": "2.16.840.1.101.3.4.2.3"}
# Constant parts of every request and response, encoded once.
_HASH_ALGORITHM_DER = {name: der.sequence(der.oid(dotted), b"\x05\x00")
                       for name, dotted in _HASH_OIDS.items()}
_BASIC_OID_DER = der.oid(OID_PKIX_OCSP_BASIC)
_NONCE_OID_DER = der.oid(OID_NONCE)
_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
           "sha512": hashlib.sha512}


@dataclass(frozen=True)
class StatusInfo:
    """A certificate's status as the store knows it."""

    status: CertStatus
    revoked_at: datetime | None = None
    reason: RevocationReason | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.status.value, self.revoked_at.isoformat() if self.revoked_at else "",
                self.reason.value if self.reason else "")


@dataclass(frozen=True)
class CertRef:
    """One CertID of a request (RFC 6960 §4.1.1), with its DER to echo back."""

    der: bytes
    algorithm: str  # "sha1", "sha256", ...
    name_hash: bytes
    key_hash: bytes
    serial: int


@dataclass(frozen=True)
class ParsedRequest:
    cert_ids: tuple[CertRef, ...]
    nonce: bytes | None


StatusLookup = Callable[[int], StatusInfo | None]
Credentials = Callable[[], tuple[x509.Certificate, Signer]]
Generation = Callable[[], int]


@dataclass(frozen=True)
class _Presigned:
    key: tuple[str, ...]  # what the response depends on besides the time
    refresh_at: datetime
    response: bytes


@dataclass(frozen=True)
class _Answer:
    """A pre-signed response to one exact request, and what it was built on."""

    generation: int
    responder_serial: int
    refresh_at: datetime
    response: bytes


@dataclass(frozen=True)
class _Known:
    """A status as read at one status generation."""

    generation: int
    info: StatusInfo


K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """At most ``size`` entries; the least recently used go first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: K, entry: V) -> None:
        if self._size == 0:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def error_response(status: str) -> bytes:
    """An unsigned response carrying only an error status (RFC 6960 §4.2.1)."""
    return bytes(a_ocsp.OCSPResponse({"response_status": status}).dump())


def parse_request(data: bytes, max_bytes: int = MAX_REQUEST_BYTES) -> ParsedRequest:
    if len(data) > max_bytes:
        raise OCSPRequestError("malformed_request", f"request of {len(data)} bytes is too large")
    fast = _parse_single(data)
    if fast is not None:
        return fast
    try:
        req = a_ocsp.OCSPRequest.load(data, strict=True)
        tbs = req["tbs_request"]
        cert_ids = []
        for item in tbs["request_list"]:
            cid = item["req_cert"]
            algorithm = str(cid["hash_algorithm"]["algorithm"].native)
            cert_ids.append(CertRef(bytes(cid.dump()), algorithm,
                                    bytes(cid["issuer_name_hash"].native),
                                    bytes(cid["issuer_key_hash"].native),
                                    int(cid["serial_number"].native)))
        nonce = None
        for ext in tbs["request_extensions"] or []:
            name = ext["extn_id"].native
            if name == "nonce":
                nonce = bytes(ext["extn_value"].parsed.native)
            elif ext["critical"].native:
                raise OCSPRequestError("malformed_request", f"unsupported critical {name}")
    except OCSPRequestError:
        raise
    except Exception as exc:  # asn1crypto raises ValueError/TypeError/KeyError variously
        raise OCSPRequestError("malformed_request", f"not an OCSP request: {exc}") from None
    if not cert_ids or len(cert_ids) > MAX_REQUESTS:
        raise OCSPRequestError("malformed_request", f"{len(cert_ids)} certificates asked about")
    _check_nonce(nonce)
    return ParsedRequest(tuple(cert_ids), nonce)


def _check_nonce(nonce: bytes | None) -> None:
    if nonce is not None and not 1 <= len(nonce) <= NONCE_MAX:
        # RFC 8954 §2.1: a responder SHOULD reject nonces outside 1..32 octets.
        raise OCSPRequestError("malformed_request", f"nonce of {len(nonce)} octets")


def _parse_single(data: bytes) -> ParsedRequest | None:
    """The common one-certificate request, parsed by pyca/cryptography (fast).

    None when it cannot say (several requests, say): the general parser decides.
    """
    try:
        req = x509_ocsp.load_der_ocsp_request(data)
        algorithm = req.hash_algorithm.name
        name_hash, key_hash, serial = req.issuer_name_hash, req.issuer_key_hash, \
            req.serial_number
        extensions = list(req.extensions)
    except Exception:  # noqa: BLE001 - anything unusual goes the long way
        return None
    nonce = None
    for ext in extensions:
        if isinstance(ext.value, x509.OCSPNonce):
            nonce = ext.value.nonce
        elif ext.critical:
            return None
    if algorithm not in _HASHES:
        return None
    _check_nonce(nonce)
    cid = der.sequence(_HASH_ALGORITHM_DER[algorithm], der.octet_string(name_hash),
                       der.octet_string(key_hash), der.integer(serial))
    return ParsedRequest((CertRef(cid, algorithm, name_hash, key_hash, serial),), nonce)


class OCSPResponder:
    """Answers for one issuing CA, signing with its delegated responder."""

    def __init__(self, issuer: x509.Certificate, status_of: StatusLookup,
                 credentials: Credentials, *, lifetime: timedelta = timedelta(hours=4),
                 cache_size: int = DEFAULT_CACHE_SIZE,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 generation: Generation | None = None) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int):
            raise TypeError(f"cache_size must be an int, not {type(cache_size).__name__}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be 0 or more, not {cache_size}")
        self._issuer = issuer
        self._status_of = status_of
        self._credentials = credentials
        self._lifetime = lifetime
        self._clock = clock
        name_der = issuer.subject.public_bytes(serialization.Encoding.DER)
        spki = a_x509.Certificate.load(issuer.public_bytes(serialization.Encoding.DER))
        key_bits = bytes(spki.public_key["public_key"].contents[1:])  # skip unused-bits octet
        self._issuer_hashes = {
            name: (fn(name_der).digest(), fn(key_bits).digest()) for name, fn in _HASHES.items()
        }
        self._generation = generation
        self._cache: _LRU[int, _Presigned] = _LRU(cache_size)
        self._answers: _LRU[bytes, _Answer] = _LRU(cache_size)
        self._statuses: _LRU[int, _Known] = _LRU(cache_size)
        self._responder: tuple[int, bytes, bytes] | None = None
        self._time_parts: tuple[datetime, bytes, bytes] | None = None
        self._lock = threading.Lock()

    @property
    def cached_responses(self) -> int:
        """How many pre-signed responses are held now (at most ``cache_size``)."""
        return len(self._cache)

    @property
    def cached_answers(self) -> int:
        """How many answers are kept by their exact request (at most ``cache_size``)."""
        return len(self._answers)

    @property
    def cached_statuses(self) -> int:
        """How many statuses are kept by serial (at most ``cache_size``)."""
        return len(self._statuses)

    # -- RFC 6960 §4.1.1 / §2.3 ---------------------------------------------
    def _check_issuer(self, cid: CertRef) -> None:
        alg = cid.algorithm
        expected = self._issuer_hashes.get(alg)
        if expected is None:
            raise OCSPRequestError("malformed_request", f"unsupported CertID hash {alg}")
        if cid.name_hash != expected[0] or cid.key_hash != expected[1]:
            # RFC 6960 §2.3: not a CA this responder can answer for.
            raise OCSPRequestError("unauthorized", "request for a certificate of another issuer")

    def respond(self, data: bytes) -> bytes:
        """The DER response to ``data``; never raises on bad input.

        Errors of the status store (the database away) do propagate: the web edge
        answers them with tryLater and Retry-After.
        """
        try:
            kept = self._kept(data)
        except KeyStoreError:
            return error_response("try_later")
        if kept is not None:
            return kept
        try:
            request = parse_request(data)
            for cid in request.cert_ids:
                self._check_issuer(cid)
        except OCSPRequestError as exc:
            return error_response(exc.status)
        now = self._clock().replace(microsecond=0)
        # Read before any status: what is read afterwards is at least this current.
        generation = self._generation() if self._generation is not None else None
        try:
            if request.nonce is None and len(request.cert_ids) == 1:
                presigned = self._cached(request.cert_ids[0], now, generation)
                if isinstance(presigned, bytes):
                    return presigned
                if generation is not None:
                    responder_serial = int(presigned.key[-2], 16)  # see _cached's key
                    self._answers.put(data, _Answer(generation, responder_serial,
                                                    presigned.refresh_at, presigned.response))
                return presigned.response
            statuses = [self._status(c.serial, generation) for c in request.cert_ids]
            return self._sign(list(zip(request.cert_ids, statuses, strict=True)), now,
                              request.nonce)
        except KeyStoreError:
            # The responder's key cannot be reached (token removed, module missing):
            # RFC 6960 §4.2.1 tryLater, nothing signed; pre-signed answers still go out.
            return error_response("try_later")

    def _kept(self, data: bytes) -> bytes | None:
        """The answer kept for these exact request bytes, if still current."""
        if self._generation is None:
            return None
        kept = self._answers.get(data)
        if kept is None:
            return None
        # The generation is read now, after the request arrived: a revocation
        # committed before it has moved the generation, so the kept answer is not used.
        if self._clock() < kept.refresh_at and kept.generation == self._generation() \
                and kept.responder_serial == self._credentials()[0].serial_number:
            return kept.response
        return None

    def _status(self, serial: int, generation: int | None) -> StatusInfo | None:
        """``serial``'s status, read again only when the generation has moved."""
        if generation is not None:
            known = self._statuses.get(serial)
            if known is not None and known.generation == generation:
                return known.info
        info = self._status_of(serial)
        if info is not None and generation is not None:
            self._statuses.put(serial, _Known(generation, info))
        return info

    def _cached(self, cid: CertRef, now: datetime, generation: int | None
                ) -> _Presigned | bytes:
        """The pre-signed response for ``cid``, or the bytes of one not to keep."""
        serial = cid.serial
        info = self._status(serial, generation)
        if info is None:
            # Never issued here: signed fresh and not kept (see the module docstring).
            return self._sign([(cid, None)], now, None)
        cert, _ = self._credentials()
        # The response echoes the request's CertID bytes, so they are part of the key.
        key = (*info.key, format(cert.serial_number, "x"), cid.der.hex())
        hit = self._cache.get(serial)
        # Refresh once half the validity has passed (RFC 5019 §6: a fresh answer
        # well before nextUpdate).
        if hit is not None and hit.key == key and now < hit.refresh_at:
            return hit
        try:
            response = self._sign([(cid, info)], now, None)
        except KeyStoreError:
            # Without the key, the pre-signed answer still holds until its nextUpdate.
            if hit is not None and hit.key == key and now < hit.refresh_at + self._lifetime / 2:
                return hit.response
            raise
        entry = _Presigned(key, now + self._lifetime / 2, response)
        self._cache.put(serial, entry)
        return entry

    def _responder_parts(self, cert: x509.Certificate) -> tuple[bytes, bytes]:
        """The responder's parts of every response, encoded once per certificate:
        its ResponderID byKey ([2], RFC 6960 §4.2.2.3: the SHA-1 of its key bits) and
        the ``certs [0]`` field holding its certificate (§4.2.1)."""
        with self._lock:
            if self._responder is None or self._responder[0] != cert.serial_number:
                cert_der = cert.public_bytes(serialization.Encoding.DER)
                key_hash = bytes(a_x509.Certificate.load(cert_der).public_key.sha1)
                self._responder = (cert.serial_number,
                                   der.explicit(2, der.octet_string(key_hash)),
                                   der.explicit(0, der.sequence(cert_der)))
            return self._responder[1], self._responder[2]

    def _times(self, now: datetime) -> tuple[bytes, bytes]:
        """(GeneralizedTime of ``now``, of ``now`` + lifetime), kept for the second."""
        held = self._time_parts
        if held is None or held[0] != now:
            held = (now, der.generalized_time(now),
                    der.explicit(0, der.generalized_time(now + self._lifetime)))
            self._time_parts = held
        return held[1], held[2]

    def _sign(self, items: list[tuple[CertRef, StatusInfo | None]], now: datetime,
              nonce: bytes | None) -> bytes:
        cert, signer = self._credentials()
        responder_id, certs = self._responder_parts(cert)
        produced, next_update = self._times(now)
        # RFC 6960 §4.2.1 ResponseData, DER-encoded directly (version v1 is DEFAULT).
        singles = b"".join(der.sequence(cid.der, _cert_status(info), produced, next_update)
                           for cid, info in items)
        extensions = b""
        if nonce is not None:
            # RFC 8954 §2.1: the extnValue holds the nonce as an OCTET STRING.
            extensions = der.tlv(0xA1, der.sequence(der.sequence(
                _NONCE_OID_DER, der.octet_string(der.octet_string(nonce)))))
        tbs = der.sequence(responder_id, produced, der.tlv(0x30, singles), extensions)
        # RFC 6960 §4.2.1: BasicOCSPResponse and OCSPResponse assembled as DER
        # directly; the responder certificate goes in as it is (re-encoding it
        # through asn1crypto on every response costs more than the signature).
        basic = der.sequence(tbs, signer.algorithm.signature_algorithm_der,
                             der.bit_string(signer.sign(tbs)), certs)
        return der.sequence(
            b"\x0a\x01\x00",  # responseStatus ENUMERATED successful (0)
            der.explicit(0, der.sequence(_BASIC_OID_DER, der.octet_string(basic))))


def _cert_status(info: StatusInfo | None) -> bytes:
    """CertStatus (RFC 6960 §4.2.1): good [0], revoked [1], unknown [2], IMPLICIT."""
    if info is None:
        return b"\x82\x00"
    if info.status is CertStatus.VALID:
        return b"\x80\x00"
    at = (info.revoked_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    reason = RevocationReason.CERTIFICATE_HOLD if info.status is CertStatus.HOLD else info.reason
    body = der.generalized_time(at)
    if reason is not None:
        body += der.explicit(0, der.enumerated(reason.code))
    return der.tlv(0xA1, body)
