"""An SM2 key pair wrapped to an SM2 certificate: the GM/T 0009 §7.4 ``SM2EnvelopedKey``
(数字信封 of the dual-certificate system), and the SM2 public-key encryption under it.

::

    SM2EnvelopedKey ::= SEQUENCE {
        symAlgID                AlgorithmIdentifier,  -- SM4-ECB, 1.2.156.10197.1.104.1
        symEncryptedKey         SM2Cipher,            -- the SM4 key, SM2-encrypted
        sm2PublicKey            SM2PublicKey,         -- BIT STRING 04 || x || y
        sm2EncryptedPrivateKey  BIT STRING }          -- SM4-ECB(d), d as 32 bytes

    SM2Cipher ::= SEQUENCE {                          -- GM/T 0009 §7.2
        xCoordinate INTEGER, yCoordinate INTEGER,     -- C1
        hash        OCTET STRING (SIZE(32)),          -- C3 = SM3(x2 || M || y2)
        cipherText  OCTET STRING }                    -- C2

SM4-ECB without padding is what GM/T 0009 and the SKF/USB-key world (GM/T 0016
``ENVELOPEDKEYBLOB``) use: the private key is exactly two blocks, and the key
under it is fresh for every envelope. ECB carries no integrity, so whoever opens
an envelope checks that the private key it finds matches ``sm2PublicKey``
(:func:`open_enveloped_key` does).

The SM2 encryption itself (GM/T 0003.4) is Tongsuo's ``EVP_PKEY_encrypt``, reached
through tongsuopy's bindings: tongsuopy 1.0.1 signs and verifies with SM2 but has
no public ``encrypt``/``decrypt`` method. Tongsuo writes and reads the ASN.1
``SM2Cipher`` above, as OpenSSL 3.0's ``pkeyutl -encrypt`` does (the tests check
both ways). SM4 is tongsuopy's ``algorithms.SM4``.
"""

from __future__ import annotations

import os
from typing import Any

from asn1crypto import core
from tongsuopy.crypto import serialization as t_serialization
from tongsuopy.crypto.asymciphers import ec as t_ec
from tongsuopy.crypto.ciphers import Cipher, algorithms, modes

from pki.sm2 import SM2Error, SM2PrivateKey, SM2PublicKey

SM4_ECB_OID = "1.2.156.10197.1.104.1"  # GM/T 0006
SM4_KEY_BYTES = 16
SM2_SCALAR_BYTES = 32
MAX_PLAINTEXT = 1024  # envelopes carry keys; nothing larger goes through SM2 here


class _AlgorithmIdentifier(core.Sequence):
    _fields = [("algorithm", core.ObjectIdentifier),
               ("parameters", core.Any, {"optional": True})]


class SM2Cipher(core.Sequence):
    """GM/T 0009 §7.2 ``SM2Cipher`` (C1 as x and y, C3, C2)."""

    _fields = [("x", core.Integer), ("y", core.Integer), ("hash", core.OctetString),
               ("ciphertext", core.OctetString)]


class SM2EnvelopedKey(core.Sequence):
    """GM/T 0009 §7.4 ``SM2EnvelopedKey``."""

    _fields = [("sym_alg_id", _AlgorithmIdentifier), ("sym_encrypted_key", SM2Cipher),
               ("sm2_public_key", core.BitString),
               ("sm2_encrypted_private_key", core.BitString)]


def _evp_call(key: Any, encrypt: bool, data: bytes) -> bytes:
    """Tongsuo's EVP_PKEY_encrypt/decrypt on ``key`` (SM2 in, SM2Cipher DER out)."""
    backend = key._backend
    lib, ffi = backend._lib, backend._ffi
    ctx = lib.EVP_PKEY_CTX_new(key._evp_pkey, ffi.NULL)
    if ctx == ffi.NULL:
        backend._consume_errors()
        raise SM2Error("sm2_unavailable", "Tongsuo gave no EVP_PKEY_CTX for the SM2 key")
    ctx = ffi.gc(ctx, lib.EVP_PKEY_CTX_free)
    init, call = ((lib.EVP_PKEY_encrypt_init, lib.EVP_PKEY_encrypt) if encrypt
                  else (lib.EVP_PKEY_decrypt_init, lib.EVP_PKEY_decrypt))
    size = ffi.new("size_t *")
    if init(ctx) != 1 or call(ctx, ffi.NULL, size, data, len(data)) != 1:
        backend._consume_errors()
        raise SM2Error("bad_ciphertext" if not encrypt else "sm2_unavailable",
                       "SM2 " + ("encryption" if encrypt else "decryption") + " failed")
    out = ffi.new("unsigned char[]", size[0])
    if call(ctx, out, size, data, len(data)) != 1:
        backend._consume_errors()
        raise SM2Error("bad_ciphertext", "SM2 decryption failed: not for this key, or "
                       "damaged (the SM3 check C3 does not match)")
    return bytes(ffi.buffer(out, size[0]))


def _tongsuo_public(public_key: SM2PublicKey) -> t_ec.EllipticCurvePublicKey:
    key = t_serialization.load_der_public_key(public_key.spki)
    assert isinstance(key, t_ec.EllipticCurvePublicKey)
    return key


def encrypt(public_key: SM2PublicKey, plaintext: bytes) -> bytes:
    """``plaintext`` SM2-encrypted to ``public_key`` (GM/T 0003.4): DER ``SM2Cipher``."""
    if not 0 < len(plaintext) <= MAX_PLAINTEXT:
        raise SM2Error("bad_plaintext", f"SM2 encrypts 1..{MAX_PLAINTEXT} bytes here")
    return _evp_call(_tongsuo_public(public_key), True, plaintext)


def decrypt(private_key: SM2PrivateKey, ciphertext: bytes) -> bytes:
    """The plaintext of a DER ``SM2Cipher``; ``SM2Error`` if it is not for this key."""
    try:
        parsed = SM2Cipher.load(ciphertext, strict=True)
        if len(parsed["hash"].native) != 32:
            raise ValueError("C3 is not 32 bytes (SM3)")
        parsed.native  # noqa: B018 - parse every field now, not inside Tongsuo
    except (ValueError, TypeError) as exc:
        raise SM2Error("garbage", f"not an SM2Cipher: {exc}") from None
    return _evp_call(private_key, False, ciphertext)


def _sm4_ecb(key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.SM4(key), modes.ECB())
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return bytes(ctx.update(data) + ctx.finalize())


def enveloped_key(key: SM2PrivateKey, recipient: SM2PublicKey) -> bytes:
    """``key`` wrapped to ``recipient`` (an SM2 signing certificate's key): DER
    ``SM2EnvelopedKey``. Only the holder of the recipient's private key opens it."""
    public = SM2PublicKey.of(key.public_key())
    scalar = key.private_numbers().private_value.to_bytes(SM2_SCALAR_BYTES, "big")
    sm4_key = os.urandom(SM4_KEY_BYTES)
    sealed = SM2Cipher.load(encrypt(recipient, sm4_key))
    return SM2EnvelopedKey({
        # GM/T 0006 SM4-ECB takes no parameters: absent.
        "sym_alg_id": {"algorithm": SM4_ECB_OID},
        "sym_encrypted_key": sealed,
        "sm2_public_key": _bits(public.point),
        "sm2_encrypted_private_key": _bits(_sm4_ecb(sm4_key, scalar, encrypt=True)),
    }).dump()


def _bits(data: bytes) -> core.BitString:
    # A whole number of bytes: no unused bits (asn1crypto's OctetBitString form).
    return core.BitString.load(b"\x03" + _der_length(len(data) + 1) + b"\x00" + data)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _bit_bytes(value: core.BitString) -> bytes:
    contents = bytes(value.contents)
    if not contents or contents[0] != 0:
        raise ValueError("a BIT STRING with unused bits where bytes were expected")
    return contents[1:]


def open_enveloped_key(data: bytes, recipient_key: SM2PrivateKey) -> SM2PrivateKey:
    """The SM2 private key inside a DER ``SM2EnvelopedKey``, opened with the recipient's
    (signing) private key. ``SM2Error``: not an envelope, not for this key, or the
    private key inside does not match the public key beside it."""
    try:
        env = SM2EnvelopedKey.load(data, strict=True)
        algorithm = env["sym_alg_id"]["algorithm"].dotted
        point = _bit_bytes(env["sm2_public_key"])
        encrypted_scalar = _bit_bytes(env["sm2_encrypted_private_key"])
        sealed = env["sym_encrypted_key"].dump()
    except (ValueError, TypeError, KeyError) as exc:
        raise SM2Error("garbage", f"not an SM2EnvelopedKey: {exc}") from None
    if algorithm != SM4_ECB_OID:
        raise SM2Error("wrong_algorithm", f"symmetric algorithm {algorithm}, not SM4-ECB "
                       f"({SM4_ECB_OID})")
    if len(encrypted_scalar) != SM2_SCALAR_BYTES:
        raise SM2Error("garbage", "the encrypted private key is not 32 bytes")
    sm4_key = decrypt(recipient_key, sealed)
    if len(sm4_key) != SM4_KEY_BYTES:
        raise SM2Error("garbage", "the symmetric key is not an SM4 key")
    scalar = int.from_bytes(_sm4_ecb(sm4_key, encrypted_scalar, encrypt=False), "big")
    try:
        key = t_ec.derive_private_key(scalar, t_ec.SM2())
    except ValueError:
        raise SM2Error("garbage", "the private key is out of range") from None
    if SM2PublicKey.of(key.public_key()).point != point:
        raise SM2Error("key_mismatch", "the private key does not match sm2PublicKey")
    return key


def pkcs8(key: SM2PrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 DER: what the KMC seals under its KEK."""
    return bytes(key.private_bytes(t_serialization.Encoding.DER,
                                   t_serialization.PrivateFormat.PKCS8,
                                   t_serialization.NoEncryption()))


def load_pkcs8(data: bytes) -> SM2PrivateKey:
    """An SM2 key from :func:`pkcs8`'s form; ``SM2Error`` for any other key."""
    try:
        key = t_serialization.load_der_private_key(data, None)
    except (ValueError, TypeError) as exc:
        raise SM2Error("garbage", f"not a PKCS#8 key: {exc}") from None
    if not isinstance(key, t_ec.EllipticCurvePrivateKey) or key.curve.name != "SM2":
        raise SM2Error("not_sm2_curve", "not an SM2 key")
    return key
