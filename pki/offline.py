"""The offline root: the root CA's key on a removable medium, never in the home.

As at every public CA (CA/Browser Forum Baseline Requirements §6.2.7 and
§5.2.2: root keys offline, used in a witnessed ceremony), a production home can
hold only the issuing CA's and OCSP responder's keys. ``govtrust init
--offline-root MEDIUM`` writes the root key once, as the same encrypted PKCS#8
the file key store writes, under a passphrase of its own, to ``MEDIUM``; the
root ceremony (``govtrust ca ceremony ...``) reads it back from there to sign a
new issuing CA or the root's CRL.

Framework-free: it takes paths and bytes and returns signers or raises
:class:`pki.errors.RootKeyError`.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from cryptography import x509

from pki.errors import KeyStoreError, RootKeyError, RootKeyProblem
from pki.hierarchy import certificate_key
from pki.keys import FileKeyStore, Signer, load_key_file, verify_signature

# What the key is checked with against the root certificate: any message will do,
# the point is that the certificate's public key verifies the medium key's signature.
_MATCH_PROBE = b"govtrust root ceremony: is this the root key?"


def key_file(medium: Path, label: str) -> Path:
    """Where ``init --offline-root`` writes the key of root ``label`` on ``medium``."""
    return medium / f"{label}.key.pem"


def medium_store(medium: Path, passphrase: bytes, home_passphrase: bytes,
                 labels: list[str]) -> FileKeyStore:
    """The key store ``init --offline-root`` writes the root key(s) into.

    Refused before anything is written: a medium folder that does not exist (an
    unmounted medium, a typo), a medium already holding a root key (one is never
    overwritten, nor another CA's reused), and a passphrase equal to the home's
    (whoever holds the home would hold the root too).
    """
    if not medium.is_dir():
        raise RootKeyError(RootKeyProblem.NO_MEDIUM, f"{medium} is not a folder (mount the "
                           "medium first)")
    for label in labels:
        if key_file(medium, label).exists():
            raise RootKeyError(RootKeyProblem.MEDIUM_NOT_EMPTY,
                               f"{key_file(medium, label)} already exists; use an empty medium")
    if not passphrase:
        raise RootKeyError(RootKeyProblem.WRONG_PASSPHRASE, "the root passphrase is empty")
    if hmac.compare_digest(passphrase, home_passphrase):
        raise RootKeyError(RootKeyProblem.SAME_PASSPHRASE,
                           "the root passphrase must differ from the home's CA passphrase")
    return FileKeyStore(medium, passphrase)


def open_root_key(path: Path, passphrase: bytes) -> Signer:
    """The key in ``path``, decrypted (not yet matched to any root: see :func:`matches`)."""
    try:
        return load_key_file(path, passphrase, "root")
    except KeyStoreError:
        if not path.is_file():
            raise RootKeyError(RootKeyProblem.MISSING, f"{path} does not exist "
                               "(is the medium mounted?)") from None
        raise RootKeyError(RootKeyProblem.WRONG_PASSPHRASE,
                           f"cannot decrypt {path}: wrong passphrase or damaged file") from None


def matches(signer: Signer, root: x509.Certificate) -> bool:
    """Whether ``signer`` holds the private key of ``root``'s public key."""
    try:
        return verify_signature(certificate_key(root), signer.sign(_MATCH_PROBE), _MATCH_PROBE)
    except (KeyStoreError, ValueError, TypeError):
        # A key of another algorithm than the certificate's cannot be its key.
        return False
