"""Against the running public service: OpenSSL, GnuTLS and pkilint as independent judges."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from asn1crypto import ocsp as a_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from directory.model import Person
from pki.model import RevocationReason
from tests.fixtures.pki import VENV_BIN, CAEnv, Served, make_csr, pem, run


def _files(env: CAEnv, person: Person, profile: str = "user-auth") -> dict[str, Path]:
    csr, key = make_csr()
    issued = env.ca.issue_from_csr(person, profile, csr)
    return {
        "root": env.write("root.pem", pem(env.ca.root_certificate)),
        "issuing": env.write("issuing.pem", pem(env.ca.issuing_certificate)),
        "chain": env.write("chain.pem", pem(env.ca.issuing_certificate)
                           + pem(env.ca.root_certificate)),
        "user": env.write("user.pem", issued.pem),
        "serial": Path(issued.record.serial),
    }


def _crl(url: str, path: Path) -> Path:
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/pkix-crl"
    x509.load_der_x509_crl(resp.content)
    path.write_bytes(x509.load_der_x509_crl(resp.content).public_bytes(
        serialization.Encoding.PEM))
    return path


def _verify(f: dict[str, Path], *crls: Path) -> tuple[int, str]:
    args = ["openssl", "verify", "-CAfile", f["root"], "-untrusted", f["issuing"], "-crl_check"]
    if len(crls) > 1:
        args.append("-use_deltas")
    for c in crls:
        args += ["-CRLfile", c]
    proc = run(*args, f["user"], check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_openssl_verify_with_served_full_crl(served: Served, person: Person) -> None:
    env = served.env
    f = _files(env, person)
    crl_url = env.ca.settings.crl_url
    assert _verify(f, _crl(crl_url, env.folder / "before.pem"))[0] == 0
    env.ca.revoke(str(f["serial"]), RevocationReason.KEY_COMPROMISE)
    code, out = _verify(f, _crl(crl_url, env.folder / "after.pem"))
    assert code == 2 and "certificate revoked" in out
    # GnuTLS agrees.
    proc = run("certtool", "--verify", "--load-ca-certificate", f["chain"], "--load-crl",
               env.folder / "after.pem", "--infile", f["user"], check=False)
    assert proc.returncode == 1 and "revoked" in (proc.stdout + proc.stderr).lower()


def test_openssl_verify_with_served_delta_crl(serve_ca: Callable[..., Served],
                                              person: Person) -> None:
    # Revocations go into delta CRLs only, so the base predates the revocation.
    served = serve_ca(full_crl_on_revoke_max=0)
    env = served.env
    f = _files(env, person)
    base = _crl(env.ca.settings.crl_url, env.folder / "base.pem")
    env.ca.revoke(str(f["serial"]), RevocationReason.AFFILIATION_CHANGED)
    assert _verify(f, base)[0] == 0  # the base alone does not know yet
    delta = _crl(env.ca.settings.delta_crl_url, env.folder / "delta.pem")
    code, out = _verify(f, base, delta)
    assert code == 2 and "certificate revoked" in out


def _openssl_ocsp(f: dict[str, Path], url: str) -> str:
    proc = run("openssl", "ocsp", "-issuer", f["issuing"], "-cert", f["user"], "-url", url,
               "-CAfile", f["chain"], "-resp_text", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Response verify OK" in out
    # openssl sends a nonce and checks the echo; a missing or wrong one is reported.
    assert "OCSP Nonce" in out
    assert "no nonce" not in out.lower() and "nonce verify error" not in out.lower()
    return out


def _ocsptool(f: dict[str, Path], url: str) -> str:
    proc = run("ocsptool", f"--ask={url}", f"--load-issuer={f['issuing']}",
               f"--load-cert={f['user']}", f"--load-trust={f['chain']}", check=False)
    return proc.stdout + proc.stderr


def test_openssl_ocsp_good_then_revoked_with_reason(served: Served, person: Person) -> None:
    env = served.env
    f = _files(env, person)
    aia = x509.load_pem_x509_certificate(f["user"].read_bytes()).extensions \
        .get_extension_for_class(x509.AuthorityInformationAccess).value
    url = [d.access_location.value for d in aia
           if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP][0]
    out = _openssl_ocsp(f, url)
    assert f"{f['user']}: good" in out
    assert "Certificate Status: good" in _ocsptool(f, url)
    env.ca.revoke(str(f["serial"]), RevocationReason.KEY_COMPROMISE)
    out = _openssl_ocsp(f, url)
    assert f"{f['user']}: revoked" in out and "Reason: keyCompromise" in out
    assert "Certificate Status: revoked" in _ocsptool(f, url)


def _request(f: dict[str, Path], nonce: bytes | None = None) -> bytes:
    cert = x509.load_pem_x509_certificate(f["user"].read_bytes())
    issuer = x509.load_pem_x509_certificate(f["issuing"].read_bytes())
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _post(url: str, body: bytes) -> requests.Response:
    return requests.post(url, data=body, timeout=10,
                         headers={"Content-Type": "application/ocsp-request"})


def test_ocsp_get_and_cached_response(served: Served, person: Person) -> None:
    env = served.env
    f = _files(env, person)
    req = _request(f)
    get = requests.get(f"{env.ca.settings.ocsp_url}/{base64.b64encode(req).decode()}",
                       timeout=10)
    assert get.status_code == 200
    assert ocsp.load_der_ocsp_response(get.content).certificate_status is ocsp.OCSPCertStatus.GOOD
    again = _post(env.ca.settings.ocsp_url, req).content
    assert again == get.content  # pre-signed, reused
    env.ca.hold(str(f["serial"]))
    held = ocsp.load_der_ocsp_response(_post(env.ca.settings.ocsp_url, req).content)
    assert held.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert held.revocation_reason is x509.ReasonFlags.certificate_hold


def test_ocsp_garbage_gets_malformed_request(served: Served) -> None:
    resp = _post(served.env.ca.settings.ocsp_url, b"\x30\x03garbage")
    assert ocsp.load_der_ocsp_response(resp.content).response_status is \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_too_large_request_is_refused(served: Served) -> None:
    resp = _post(served.env.ca.settings.ocsp_url, b"\x30" * (64 * 1024))
    assert resp.status_code == 413
    assert ocsp.load_der_ocsp_response(resp.content).response_status is \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_nonce_over_32_octets_gets_malformed_request(served: Served,
                                                          person: Person) -> None:
    f = _files(served.env, person)
    resp = _post(served.env.ca.settings.ocsp_url, _request(f, os.urandom(33)))
    assert ocsp.load_der_ocsp_response(resp.content).response_status is \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    ok = ocsp.load_der_ocsp_response(
        _post(served.env.ca.settings.ocsp_url, _request(f, b"n" * 32)).content)
    assert ok.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 32


def test_ocsp_for_another_issuer_gets_unauthorized(serve_ca: Callable[..., Served],
                                                   person: Person) -> None:
    ours, other = serve_ca(), serve_ca()
    f = _files(other.env, person)
    resp = _post(ours.env.ca.settings.ocsp_url, _request(f))
    assert ocsp.load_der_ocsp_response(resp.content).response_status is \
        ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_unknown_serial_gets_unknown(served: Served, person: Person) -> None:
    env = served.env
    f = _files(env, person)
    cert = x509.load_pem_x509_certificate(f["user"].read_bytes())
    req = a_ocsp.OCSPRequest.load(_request(f))
    req["tbs_request"]["request_list"][0]["req_cert"]["serial_number"] = cert.serial_number + 1
    resp = ocsp.load_der_ocsp_response(_post(env.ca.settings.ocsp_url, req.dump(True)).content)
    assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


# -- pkilint: the RFC 5280 / 6960 floor ---------------------------------------------

def _lint(tool: str, *args: str | Path) -> None:
    proc = run(VENV_BIN / tool, "lint", *args, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip(), f"{tool} {args}:\n{proc.stdout}"


@pytest.mark.parametrize("profile", ["user-auth", "user-sign", "user-encrypt"])
def test_pkilint_user_profiles(env: CAEnv, person: Person, profile: str) -> None:
    csr, _ = make_csr()
    path = env.write(f"{profile}.pem", env.ca.issue_from_csr(person, profile, csr).pem)
    _lint("lint_pkix_cert", "-s", "WARNING", path)
    _lint("lint_pkix_signer_signee_cert_chain",
          env.write("issuing.pem", pem(env.ca.issuing_certificate)), path)


def test_pkilint_tls_server_and_rsa_key(env: CAEnv) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    env.ca.approve_dns("portal", ["portal.beijing.gov.cn"])
    csr, _ = make_csr(rsa.generate_private_key(65537, 2048), extensions=[(
        x509.SubjectAlternativeName([x509.DNSName("portal.beijing.gov.cn")]), False)])
    issued = env.ca.issue_tls_server("portal", csr=csr)
    path = env.write("tls.pem", issued.pem)  # type: ignore[union-attr]
    _lint("lint_pkix_cert", "-s", "WARNING", path)


def test_pkilint_cas_ocsp_responder_and_chain(env: CAEnv) -> None:
    root = env.write("root.pem", pem(env.ca.root_certificate))
    issuing = env.write("issuing.pem", pem(env.ca.issuing_certificate))
    responder = env.write("ocsp.pem", pem(env.ca.ocsp_credentials()[0]))
    for path in (root, issuing, responder):
        _lint("lint_pkix_cert", "-s", "WARNING", path)
    _lint("lint_pkix_signer_signee_cert_chain", root, issuing)
    _lint("lint_pkix_signer_signee_cert_chain", issuing, responder)
    ext = x509.load_pem_x509_certificate(responder.read_bytes()).extensions
    assert ext.get_extension_for_class(x509.OCSPNoCheck)


def test_pkilint_crls_and_ocsp_response(served: Served, person: Person) -> None:
    env = served.env
    f = _files(env, person)
    env.ca.revoke(str(f["serial"]), RevocationReason.KEY_COMPROMISE,
                  invalidity_date=env.ca.now())
    for name, url in (("full", env.ca.settings.crl_url), ("delta", env.ca.settings.delta_crl_url),
                      ("root", env.ca.settings.root_crl_url)):
        path = _crl(url, env.folder / f"{name}.pem")
        _lint("lint_crl", "-t", "CRL", "-p", "PKIX", path)
    resp = _post(env.ca.settings.ocsp_url, _request(f, b"0123456789abcdef")).content
    _lint("lint_ocsp_response", env.write("resp.der", resp))


def test_ca_certificates_are_served_as_der_and_pem(served: Served) -> None:
    base = served.url
    ca = served.env.ca
    der = requests.get(f"{base}/ca/root.der", timeout=10)
    assert der.headers["Content-Type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(der.content) == ca.root_certificate
    got = requests.get(f"{base}/ca/issuing.pem", timeout=10)
    assert x509.load_pem_x509_certificate(got.content) == ca.issuing_certificate
    for path in ("/ca/evil.der", "/ca/root.exe", "/crl/evil.crl"):
        assert requests.get(base + path, timeout=10).status_code == 404
    bad_get = requests.get(f"{base}/ocsp/not-base64!", timeout=10)
    assert ocsp.load_der_ocsp_response(bad_get.content).response_status is \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
