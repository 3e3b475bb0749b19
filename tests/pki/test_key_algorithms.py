"""Every selectable CA key algorithm: the chain, a CRL and an OCSP response verify."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from directory.model import Person
from pki.keys import KeyAlgorithm
from pki.model import CASettings
from tests.fixtures.pki import VENV_BIN, build_env, make_csr, pem, run


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P384, KeyAlgorithm.RSA_3072,
                                       KeyAlgorithm.ED25519], ids=str)
def test_ca_key_algorithm(tmp_path: Path, person: Person, algorithm: KeyAlgorithm) -> None:
    env = build_env(tmp_path, f"sqlite:///{tmp_path / 'k.db'}",
                    settings=CASettings(key_algorithm=algorithm))
    try:
        ca = env.ca
        assert KeyAlgorithm.of(ca.issuing_certificate.public_key()) is algorithm
        issued = ca.issue_from_csr(person, "user-auth", make_csr()[0])
        ca.revoke(issued.record.serial, "keyCompromise")
        root = env.write("root.pem", pem(ca.root_certificate))
        issuing = env.write("issuing.pem", pem(ca.issuing_certificate))
        user = env.write("user.pem", issued.pem)
        crl = env.write("crl.pem", x509.load_der_x509_crl(ca.crl()).public_bytes(
            serialization.Encoding.PEM))
        proc = run("openssl", "verify", "-CAfile", root, "-untrusted", issuing, "-crl_check",
                   "-CRLfile", crl, user, check=False)
        assert proc.returncode == 2 and "certificate revoked" in proc.stdout + proc.stderr
        for path in (root, issuing):
            lint = run(VENV_BIN / "lint_pkix_cert", "lint", "-s", "WARNING", path, check=False)
            assert lint.returncode == 0, lint.stdout
        req = ocsp.OCSPRequestBuilder().add_certificate(
            issued.certificate, ca.issuing_certificate, hashes.SHA1()).build()
        resp = ocsp.load_der_ocsp_response(
            ca.responder.respond(req.public_bytes(serialization.Encoding.DER)))
        assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
        resp_path = env.write("resp.der", ca.responder.respond(
            req.public_bytes(serialization.Encoding.DER)))
        chain = env.write("chain.pem", pem(ca.issuing_certificate) + pem(ca.root_certificate))
        proc = run("openssl", "ocsp", "-respin", resp_path, "-issuer", issuing, "-cert", user,
                   "-CAfile", chain, "-no_nonce", check=False)
        assert "Response verify OK" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    finally:
        env.engine.dispose()
