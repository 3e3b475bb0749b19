"""The issuing CA's key in a SoftHSM2 token: issuance, CRL and OCSP work; export fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from directory.model import Person
from pki.errors import KeyStoreError
from pki.keys import KeyAlgorithm
from pki.model import CASettings, RevocationReason
from pki.pkcs11 import Pkcs11KeyStore
from tests.fixtures.pki import CAEnv, build_env, make_csr, pem, run

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "87654321"

pytestmark = pytest.mark.hsm


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # SoftHSM reads SOFTHSM2_CONF once per process (python-pkcs11 loads the module
    # once), so the whole module shares one temporary token.
    if not (Path(MODULE).exists() and shutil.which("softhsm2-util")):
        pytest.fail("SoftHSM2 is not installed: run scripts/setup")
    folder = tmp_path_factory.mktemp("softhsm")
    tokens = folder / "tokens"
    tokens.mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "govtrust-test",
                    "--so-pin", "12345678", "--pin", PIN], check=True, capture_output=True)
    try:
        yield "govtrust-test"
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


@pytest.fixture(scope="module")
def hsm_env(tmp_path_factory: pytest.TempPathFactory, token: str
            ) -> Iterator[tuple[CAEnv, Pkcs11KeyStore]]:
    folder = tmp_path_factory.mktemp("hsm-ca")
    keys = Pkcs11KeyStore(MODULE, token, PIN)
    env = build_env(folder, f"sqlite:///{folder / 'hsm.db'}", keys=keys,
                    settings=CASettings(key_algorithm=KeyAlgorithm.EC_P256))
    try:
        yield env, keys
    finally:
        env.engine.dispose()
        keys.close()


def test_issuance_crl_and_ocsp_with_the_hsm_key(hsm_env: tuple[CAEnv, Pkcs11KeyStore],
                                                person: Person) -> None:
    env, _ = hsm_env
    assert env.ca.issuing_signer().__class__.__name__ == "Pkcs11Signer"
    csr, _ = make_csr()
    issued = env.ca.issue_from_csr(person, "user-auth", csr)
    issued.certificate.verify_directly_issued_by(env.ca.issuing_certificate)
    root = env.write("root.pem", pem(env.ca.root_certificate))
    issuing = env.write("issuing.pem", pem(env.ca.issuing_certificate))
    user = env.write("user.pem", issued.pem)
    env.ca.revoke(issued.record.serial, RevocationReason.KEY_COMPROMISE)
    crl = x509.load_der_x509_crl(env.ca.crl())
    assert crl.is_signature_valid(env.ca.issuing_certificate.public_key())  # type: ignore[arg-type]
    crl_path = env.write("crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    proc = run("openssl", "verify", "-CAfile", root, "-untrusted", issuing, "-crl_check",
               "-CRLfile", crl_path, user, check=False)
    assert proc.returncode == 2 and "certificate revoked" in proc.stdout + proc.stderr
    req = ocsp.OCSPRequestBuilder().add_certificate(
        issued.certificate, env.ca.issuing_certificate, hashes.SHA1()).build()
    resp = ocsp.load_der_ocsp_response(
        env.ca.responder.respond(req.public_bytes(serialization.Encoding.DER)))
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    responder = resp.certificates[0]
    responder.verify_directly_issued_by(env.ca.issuing_certificate)
    from pki.keys import verify_signature

    assert verify_signature(responder.public_key(), resp.signature, resp.tbs_response_bytes)


def test_hsm_key_cannot_be_exported(hsm_env: tuple[CAEnv, Pkcs11KeyStore], token: str) -> None:
    env, _ = hsm_env
    lib = pkcs11.lib(MODULE)
    with lib.get_token(token_label=token).open() as session:  # login is per application
        key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label="issuing")
        assert key[pkcs11.Attribute.SENSITIVE] and not key[pkcs11.Attribute.EXTRACTABLE]
        with pytest.raises(pkcs11.AttributeSensitive):
            key[pkcs11.Attribute.VALUE]  # noqa: B018
        # Nor can it be wrapped out under a key we hold (C_WrapKey).
        wrapping = session.generate_key(pkcs11.KeyType.AES, 256, store=False,
                                        template={pkcs11.Attribute.WRAP: True})
        with pytest.raises((pkcs11.KeyUnextractable, pkcs11.KeyNotWrappable)):
            wrapping.wrap_key(key)


def test_hsm_key_survives_a_new_session_and_refuses_duplicates(
        hsm_env: tuple[CAEnv, Pkcs11KeyStore], token: str) -> None:
    env, keys = hsm_env
    again = Pkcs11KeyStore(MODULE, token, PIN)
    try:
        assert again.get("issuing").public_key() == env.ca.issuing_signer().public_key()
        with pytest.raises(KeyStoreError):
            again.create("issuing", KeyAlgorithm.EC_P256)
    finally:
        again.close()
