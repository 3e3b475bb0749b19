"""SM2 keys and SM3withSM2 signatures (GM/T 0003, GM/T 0009, GM/T 0015), via tongsuopy.

pyca/cryptography parses SM2 certificates but cannot load their keys or sign with
them, so the SM2 hierarchy signs through tongsuopy (a pyca/cryptography fork on
Tongsuo): an SM2 key, SM3 as the digest, and the default distinguishing ID
``1234567812345678`` of GM/T 0009 §10 folded into the digest (Z_A). OpenSSL 3.0
leaves the ID empty unless told (``-sigopt distid:...``); GmSSL and every Chinese
verifier assume the default, so a signature made without it is worthless.

Certificates are still built by pyca/cryptography's builder (one set of profiles
for both hierarchies): the builder takes :class:`SM2PublicKey`, a stand-in that
gives it the SM2 SubjectPublicKeyInfo, and its TBSCertificate gets the
SM3withSM2 AlgorithmIdentifier before tongsuopy signs it (RFC 5280 §4.1.1.2,
GM/T 0015 §6.2). CSRs are checked here with asn1crypto (RFC 2986) because
pyca/cryptography cannot verify their signatures. Never the pure-Python
``gmssl`` package: it draws signature nonces from ``random``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import TYPE_CHECKING, Any, NoReturn

from asn1crypto import algos as a_algos
from asn1crypto import csr as a_csr
from asn1crypto import keys as a_keys
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.utils import Buffer
from tongsuopy.crypto import exceptions as t_exceptions
from tongsuopy.crypto import hashes as t_hashes
from tongsuopy.crypto import serialization as t_serialization
from tongsuopy.crypto.asymciphers import ec as t_ec

from pki import der

SM2_CURVE_OID = "1.2.156.10197.1.301"  # sm2p256v1 (GM/T 0006)
SM3_WITH_SM2_OID = "1.2.156.10197.1.501"  # SM3withSM2 (GM/T 0006)
EC_PUBLIC_KEY_OID = "1.2.840.10045.2.1"  # id-ecPublicKey (RFC 5480 §2.1.1)
DEFAULT_ID = b"1234567812345678"  # GM/T 0009 §10: the ID when none is agreed
# GM/T 0015 §6.2 / RFC 5758 §3.2 style: the parameters are absent.
SIGNATURE_ALGORITHM_DER = der.sequence(der.oid(SM3_WITH_SM2_OID))
ECDSA_OIDS = {"1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"}

if TYPE_CHECKING:
    from typing import TypeAlias

    SM2PrivateKey: TypeAlias = t_ec.EllipticCurvePrivateKey
else:
    SM2PrivateKey = t_ec.EllipticCurvePrivateKey

# asn1crypto names these OIDs once registered (it would otherwise show dotted
# strings and refuse to size SM2 private keys).
if SM2_CURVE_OID not in a_keys.NamedCurve._map:
    a_keys.NamedCurve.register("sm2p256v1", SM2_CURVE_OID, 32)
if SM3_WITH_SM2_OID not in a_algos.SignedDigestAlgorithmId._map:
    a_algos.SignedDigestAlgorithmId._map[SM3_WITH_SM2_OID] = "sm3_sm2"
    if a_algos.SignedDigestAlgorithmId._reverse_map is not None:
        a_algos.SignedDigestAlgorithmId._reverse_map["sm3_sm2"] = SM3_WITH_SM2_OID


class SM2Error(ValueError):
    """Not an SM2 key, request or signature; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class SM2Curve(ec.EllipticCurve):
    """The curve sm2p256v1, named for pyca/cryptography's benefit only."""

    @property
    def name(self) -> str:
        return "sm2"

    @property
    def key_size(self) -> int:
        return 256

    @property
    def group_order(self) -> int:
        return 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123


def _spki_of(key: t_ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(t_serialization.Encoding.DER,
                            t_serialization.PublicFormat.SubjectPublicKeyInfo)


class SM2PublicKey(ec.EllipticCurvePublicKey):
    """An SM2 public key, as pyca/cryptography's certificate builder sees it.

    It offers the builder its SubjectPublicKeyInfo and verifies SM3withSM2
    signatures with the default ID; anything else it refuses.
    """

    def __init__(self, spki_der: bytes) -> None:
        spki = parse_spki(spki_der)
        self._spki = spki
        try:
            key = t_serialization.load_der_public_key(spki)
        except (ValueError, t_exceptions.UnsupportedAlgorithm):
            # The point is not on sm2p256v1 (a key of another curve under the SM2 OID).
            raise SM2Error("not_sm2_curve", "the public key is not a point of sm2p256v1") \
                from None
        if not isinstance(key, t_ec.EllipticCurvePublicKey) or key.curve.name != "SM2":
            raise SM2Error("not_sm2_curve", "the public key is not an SM2 key")
        self._key = key

    @classmethod
    def of(cls, key: t_ec.EllipticCurvePublicKey) -> SM2PublicKey:
        return cls(_spki_of(key))

    @property
    def spki(self) -> bytes:
        return self._spki

    @property
    def curve(self) -> ec.EllipticCurve:
        return SM2Curve()

    @property
    def key_size(self) -> int:
        return 256

    def public_bytes(self, encoding: serialization.Encoding,
                     format: serialization.PublicFormat) -> bytes:
        if format is serialization.PublicFormat.SubjectPublicKeyInfo:
            if encoding is serialization.Encoding.DER:
                return self._spki
            if encoding is serialization.Encoding.PEM:
                return self._key.public_bytes(t_serialization.Encoding.PEM,
                                              t_serialization.PublicFormat.SubjectPublicKeyInfo)
        if (format is serialization.PublicFormat.UncompressedPoint
                and encoding is serialization.Encoding.X962):
            return self.point
        raise ValueError(f"SM2 public keys are written as SubjectPublicKeyInfo, not {format}")

    @property
    def point(self) -> bytes:
        """The uncompressed point ``04 || x || y`` (the BIT STRING's content)."""
        return bytes(a_keys.PublicKeyInfo.load(self._spki)["public_key"].contents[1:])

    def public_numbers(self) -> NoReturn:
        raise ValueError("SM2 public numbers are not offered to pyca/cryptography")

    def verify(self, signature: Buffer, data: Buffer,
               signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> None:
        """SM3withSM2 with the default ID; raises ``InvalidSignature`` otherwise."""
        if not verify(self, bytes(signature), bytes(data)):
            raise InvalidSignature()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and other._spki == self._spki

    def __hash__(self) -> int:
        return hash(self._spki)

    def __copy__(self) -> SM2PublicKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> SM2PublicKey:
        return self


def parse_spki(spki_der: bytes) -> bytes:
    """``spki_der`` if it names id-ecPublicKey on sm2p256v1 (GM/T 0015 §6.2.2)."""
    try:
        info = a_keys.PublicKeyInfo.load(spki_der, strict=True)
        algorithm = info["algorithm"]["algorithm"].dotted
        curve = None
        if algorithm == EC_PUBLIC_KEY_OID:
            params = info["algorithm"]["parameters"]
            curve = params.chosen.dotted if params.name == "named" else None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SM2Error("garbage", f"not a SubjectPublicKeyInfo: {exc}") from None
    if algorithm != EC_PUBLIC_KEY_OID or curve != SM2_CURVE_OID:
        raise SM2Error("not_sm2_curve", f"key {algorithm} on {curve}, not SM2")
    return spki_der


def is_sm2_spki(spki_der: bytes) -> bool:
    try:
        parse_spki(spki_der)
    except SM2Error:
        return False
    return True


def generate_private_key() -> SM2PrivateKey:
    return t_ec.generate_private_key(t_ec.SM2())


PBKDF2_ROUNDS = 200_000


def private_key_pem(key: SM2PrivateKey, passphrase: bytes) -> bytes:
    """PKCS#8 encrypted as the file key store keeps every key (RFC 8018 PBES2 with
    PBKDF2-HMAC-SHA256 and AES-256-CBC).

    tongsuopy's own ``BestAvailableEncryption`` picks SM4-CBC, which neither
    pyca/cryptography nor older OpenSSL builds read; the other CA keys use AES.
    """
    plain = key.private_bytes(t_serialization.Encoding.DER, t_serialization.PrivateFormat.PKCS8,
                              t_serialization.NoEncryption())
    salt, iv = os.urandom(16), os.urandom(16)
    kek = hashlib.pbkdf2_hmac("sha256", passphrase, salt, PBKDF2_ROUNDS, 32)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    body = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    info = a_keys.EncryptedPrivateKeyInfo({
        "encryption_algorithm": {"algorithm": "pbes2", "parameters": {
            "key_derivation_func": {"algorithm": "pbkdf2", "parameters": {
                "salt": a_algos.Pbkdf2Salt(name="specified", value=salt),
                "iteration_count": PBKDF2_ROUNDS, "key_length": 32,
                "prf": {"algorithm": "sha256"}}},
            "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv}}},
        "encrypted_data": body})
    b64 = base64.encodebytes(info.dump()).decode().replace("\n", "")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + "\n".join(lines)
            + "\n-----END ENCRYPTED PRIVATE KEY-----\n").encode()


def load_private_key_pem(data: bytes, passphrase: bytes) -> SM2PrivateKey:
    """An SM2 key from :func:`private_key_pem`'s format; ``ValueError`` for anything else."""
    try:
        text = data.decode("ascii")
        body = text.split("-----BEGIN ENCRYPTED PRIVATE KEY-----", 1)[1]
        body = body.split("-----END ENCRYPTED PRIVATE KEY-----", 1)[0]
        info = a_keys.EncryptedPrivateKeyInfo.load(base64.b64decode(body), strict=True)
        scheme = info["encryption_algorithm"]
        if scheme["algorithm"].native != "pbes2":
            raise ValueError("not PBES2")
        params = scheme["parameters"]
        kdf = params["key_derivation_func"]["parameters"]
        if (params["key_derivation_func"]["algorithm"].native != "pbkdf2"
                or kdf["prf"]["algorithm"].native != "sha256"
                or params["encryption_scheme"]["algorithm"].native != "aes256_cbc"):
            raise ValueError("not PBKDF2-HMAC-SHA256 with AES-256-CBC")
        kek = hashlib.pbkdf2_hmac("sha256", passphrase, bytes(kdf["salt"].chosen.native),
                                  int(kdf["iteration_count"].native), 32)
        iv = bytes(params["encryption_scheme"]["parameters"].native)
        decryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).decryptor()
        padded = decryptor.update(bytes(info["encrypted_data"].native)) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
        key = t_serialization.load_der_private_key(plain, None)
    except (IndexError, UnicodeDecodeError, binascii.Error, TypeError, KeyError,
            t_exceptions.UnsupportedAlgorithm) as exc:
        raise ValueError(f"not an encrypted SM2 key: {exc}") from None
    if not isinstance(key, t_ec.EllipticCurvePrivateKey) or key.curve.name != "SM2":
        raise ValueError("not an SM2 key")
    return key


def sign(key: SM2PrivateKey, data: bytes) -> bytes:
    """DER ``SM2Signature`` (GM/T 0009 §7.2) over SM3(Z_A || data), default ID."""
    return key.sign(data, t_ec.ECDSA(t_hashes.SM3()))


def verify(public_key: SM2PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key._key.verify(signature, data, t_ec.ECDSA(t_hashes.SM3()))
    except (t_exceptions.InvalidSignature, ValueError):
        return False
    return True


def certificate_public_key(cert_der: bytes) -> SM2PublicKey:
    """The SM2 key of a certificate (pyca/cryptography cannot load it)."""
    tbs = a_x509.Certificate.load(cert_der)["tbs_certificate"]
    return SM2PublicKey(tbs["subject_public_key_info"].dump())


def certificate_key_id(public_key: SM2PublicKey) -> bytes:
    """RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits."""
    return hashlib.sha1(public_key.point).digest()  # noqa: S324 - RFC 5280 key id


def _tlv_end(data: bytes, at: int) -> tuple[int, int]:
    """(start of content, end of element) of the DER element at ``at``."""
    first = data[at + 1]
    if first < 0x80:
        return at + 2, at + 2 + first
    n = first & 0x7F
    size = int.from_bytes(data[at + 2:at + 2 + n], "big")
    return at + 2 + n, at + 2 + n + size


def with_signature_algorithm(tbs: bytes, algorithm_der: bytes) -> bytes:
    """``tbs`` (a TBSCertificate) with its ``signature`` field replaced.

    RFC 5280 §4.1: version [0], serialNumber, signature, ...; the rest of the
    bytes stay exactly as the builder encoded them.
    """
    if tbs[0] != 0x30:
        raise ValueError("not a TBSCertificate")
    start, end = _tlv_end(tbs, 0)
    at = start
    if tbs[at] == 0xA0:  # version
        at = _tlv_end(tbs, at)[1]
    at = _tlv_end(tbs, at)[1]  # serialNumber
    old_end = _tlv_end(tbs, at)[1]
    return der.sequence(tbs[start:at], algorithm_der, tbs[old_end:end])


class _TBSOnly(ec.EllipticCurvePrivateKey):
    """Lets the builder encode a TBSCertificate; its signature is thrown away.

    pyca cannot hold an SM2 key, so the SM3withSM2 signature is made separately
    (tongsuopy) over these TBS bytes. This object is no key: every operation but
    the builder's one ``sign`` call is refused with a ``TypeError``."""

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
             ) -> bytes:
        # A syntactically valid ECDSA-Sig-Value; never leaves this module.
        return der.sequence(der.integer(1), der.integer(1))

    def public_key(self) -> NoReturn:
        raise TypeError("a TBS-encoding stand-in, not a key")

    @property
    def curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        return 256

    def exchange(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a TBS-encoding stand-in, not a key")

    def private_numbers(self) -> NoReturn:
        raise TypeError("a TBS-encoding stand-in, not a key")

    def private_bytes(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a TBS-encoding stand-in, not a key")

    def __copy__(self) -> _TBSOnly:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _TBSOnly:
        return self


def tbs_certificate(builder: x509.CertificateBuilder) -> bytes:
    """The builder's TBSCertificate with the SM3withSM2 AlgorithmIdentifier."""
    draft = builder.sign(_TBSOnly(), hashes.SHA256())
    return with_signature_algorithm(draft.tbs_certificate_bytes, SIGNATURE_ALGORITHM_DER)


# -- certificate requests (RFC 2986) -------------------------------------------------
def request_is_sm2(csr_der: bytes) -> bool:
    """True if the request is signed with SM3withSM2 or carries an SM2 key."""
    try:
        req = a_csr.CertificationRequest.load(csr_der)
        if req["signature_algorithm"]["algorithm"].dotted == SM3_WITH_SM2_OID:
            return True
        spki = req["certification_request_info"]["subject_pk_info"]
        return is_sm2_spki(spki.dump())
    except (ValueError, TypeError, KeyError):
        return False


def check_request(csr_der: bytes) -> SM2PublicKey:
    """The SM2 key of a request whose SM3withSM2 signature verifies with the default ID.

    Refused (``SM2Error``): another signature algorithm, a key that is not on
    sm2p256v1, a signature made without the ID or with another.
    """
    try:
        req = a_csr.CertificationRequest.load(csr_der, strict=True)
        algorithm = req["signature_algorithm"]["algorithm"].dotted
        info = req["certification_request_info"]
        spki_der = info["subject_pk_info"].dump()
        info_der = info.dump()
        signature = bytes(req["signature"].native)
    except (ValueError, TypeError, KeyError) as exc:
        raise SM2Error("garbage", f"not a PKCS#10 request: {exc}") from None
    if algorithm != SM3_WITH_SM2_OID:
        raise SM2Error("wrong_algorithm", f"signed with {algorithm}, not SM3withSM2 "
                       f"({SM3_WITH_SM2_OID})")
    key = SM2PublicKey(spki_der)
    if not verify(key, signature, info_der):
        raise SM2Error("bad_signature", "the SM3withSM2 signature does not verify with the "
                       f"default ID {DEFAULT_ID.decode()} (GM/T 0009): made without an ID "
                       "(OpenSSL's default) or with another")
    return key
