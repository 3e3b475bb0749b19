"""CA keys in a PKCS#11 token (python-pkcs11; SoftHSM2 in tests, an HSM in production).

Keys are generated inside the token as persistent (``store=True``), sensitive and
non-extractable private keys labelled per CA. SoftHSM 2.6 offers raw
``CKM_ECDSA`` only, so ECDSA hashes here and signs the digest, and the token's
r‖s is DER-encoded as X9.62 ECDSA-Sig-Value (RFC 5480 §2.2 / RFC 5758 §3.2).
RSA uses ``CKM_SHA256_RSA_PKCS``. Ed25519 is not offered through this store.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import (
    encode_ec_public_key,
    encode_ecdsa_signature,
    encode_named_curve_parameters,
)
from pkcs11.util.rsa import encode_rsa_public_key

from pki.errors import KeyStoreError
from pki.keys import KeyAlgorithm, Signer, check_label

_CURVES = {KeyAlgorithm.EC_P256: "secp256r1", KeyAlgorithm.EC_P384: "secp384r1"}
_RSA_BITS = {KeyAlgorithm.RSA_3072: 3072, KeyAlgorithm.RSA_4096: 4096}
_PRIVATE_TEMPLATE = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SIGN: True,
}


@dataclass(frozen=True)
class Pkcs11Signer:
    label: str
    algorithm: KeyAlgorithm
    _public: CertificatePublicKeyTypes
    _store: Pkcs11KeyStore

    def public_key(self) -> CertificatePublicKeyTypes:
        return self._public

    def sign(self, data: bytes) -> bytes:
        return self._store.sign(self.label, self.algorithm, data)


class Pkcs11KeyStore:
    """A :class:`pki.keys.KeyStore` over one token; one session, serialized.

    The token is opened on first use, not at construction, and the session is
    dropped after a token error and opened again on the next call: a process
    started while the token is out (module missing, token removed, wrong PIN)
    still starts, refuses only what needs a key with :class:`KeyStoreError`, and
    works again once the token is back, without a restart.
    """

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self._module = module
        self._token_label = token_label
        self._pin = pin
        self._session: Any = None
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}

    def _open(self) -> Any:
        # Called with the lock held.
        if self._session is not None:
            return self._session
        try:
            lib = pkcs11.lib(self._module)
        except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
            # A missing file, or a module that cannot initialise (SoftHSM2 without
            # its token folder) look alike from here.
            raise KeyStoreError("*", f"the PKCS#11 module {self._module} cannot be loaded "
                                f"or initialised ({type(exc).__name__})") from None
        try:
            token = lib.get_token(token_label=self._token_label)
            try:
                self._session = token.open(user_pin=self._pin, rw=True)
            except pkcs11.UserAlreadyLoggedIn:
                # PKCS#11 login is per application: another session already did it.
                self._session = token.open(rw=True)
        except pkcs11.NoSuchToken:
            raise KeyStoreError("*", f"no token labelled {self._token_label!r} in "
                                f"{self._module} (removed?)") from None
        except (pkcs11.PinIncorrect, pkcs11.PinLenRange, pkcs11.PinInvalid):
            raise KeyStoreError("*", f"the PIN of token {self._token_label!r} is wrong") \
                from None
        except pkcs11.PinLocked:
            raise KeyStoreError("*", f"token {self._token_label!r} is locked (too many "
                                "wrong PINs)") from None
        except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
            raise KeyStoreError("*", f"cannot open token {self._token_label!r} via "
                                f"{self._module}: {type(exc).__name__}") from None
        return self._session

    def _drop(self) -> None:
        # After a token error the session (and handles found in it) may be dead.
        session, self._session = self._session, None
        self._keys.clear()
        if session is not None:
            try:
                session.close()
            except (pkcs11.PKCS11Error, RuntimeError):
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _find(self, label: str, cls: ObjectClass) -> Any:
        session = self._open()
        try:
            return session.get_key(object_class=cls, label=label)
        except pkcs11.NoSuchKey:
            return None
        except pkcs11.MultipleObjectsReturned:
            raise KeyStoreError(label, "several keys carry this label") from None
        except (pkcs11.PKCS11Error, RuntimeError) as exc:
            self._drop()
            raise KeyStoreError(label, f"token unavailable: {type(exc).__name__}") from None

    def exists(self, label: str) -> bool:
        with self._lock:
            return self._find(check_label(label), ObjectClass.PRIVATE_KEY) is not None

    def create(self, label: str, algorithm: KeyAlgorithm) -> Signer:
        check_label(label)
        with self._lock:
            if self._find(label, ObjectClass.PRIVATE_KEY) is not None:
                raise KeyStoreError(label, "a key with this label already exists in the token")
            try:
                if algorithm in _CURVES:
                    params = self._open().create_domain_parameters(
                        KeyType.EC,
                        {Attribute.EC_PARAMS: encode_named_curve_parameters(_CURVES[algorithm])},
                        local=True)
                    params.generate_keypair(store=True, label=label,
                                            private_template=_PRIVATE_TEMPLATE)
                elif algorithm in _RSA_BITS:
                    self._open().generate_keypair(KeyType.RSA, _RSA_BITS[algorithm],
                                                   store=True, label=label,
                                                   private_template=_PRIVATE_TEMPLATE)
                else:
                    raise KeyStoreError(label, f"{algorithm} keys are not supported in PKCS#11")
            except pkcs11.PKCS11Error as exc:
                raise KeyStoreError(label, f"key generation failed: {type(exc).__name__}") \
                    from None
        return self.get(label)

    def get(self, label: str) -> Signer:
        check_label(label)
        with self._lock:
            pub = self._find(label, ObjectClass.PUBLIC_KEY)
            priv = self._find(label, ObjectClass.PRIVATE_KEY)
            if pub is None or priv is None:
                raise KeyStoreError(label, "no such key pair in the token")
            try:
                if pub.key_type == KeyType.EC:
                    public = load_der_public_key(encode_ec_public_key(pub))
                elif pub.key_type == KeyType.RSA:
                    public = load_der_public_key(encode_rsa_public_key(pub))
                else:
                    raise KeyStoreError(label, f"unsupported key type {pub.key_type}")
            except pkcs11.PKCS11Error as exc:
                self._drop()
                raise KeyStoreError(label, f"token unavailable: {type(exc).__name__}") \
                    from None
            self._keys[label] = priv
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise KeyStoreError(label, "unsupported public key")
        return Pkcs11Signer(label, KeyAlgorithm.of(public), public, self)

    def sign(self, label: str, algorithm: KeyAlgorithm, data: bytes) -> bytes:
        with self._lock:
            priv = self._keys.get(label) or self._find(label, ObjectClass.PRIVATE_KEY)
            if priv is None:
                raise KeyStoreError(label, "no such key in the token")
            try:
                if algorithm in _CURVES:
                    fn = hashlib.sha384 if algorithm is KeyAlgorithm.EC_P384 else hashlib.sha256
                    raw = priv.sign(fn(data).digest(), mechanism=Mechanism.ECDSA)
                    return bytes(encode_ecdsa_signature(raw))
                return bytes(priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))
            except pkcs11.PKCS11Error as exc:
                self._drop()
                raise KeyStoreError(label, f"signing failed: {type(exc).__name__}") from None
