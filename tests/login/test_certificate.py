"""Client-certificate login: one named test per bad input, with certificates from the
real CA service, and an external CA with its own OCSP responder and CRL served over
HTTP by the test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from directory.model import PersonStatus
from idp.login.certificate import CertificateValidator, Owner, RevocationSource, check_person
from idp.login.certsettings import CertAuthSettings, ExternalCA, MappingRule
from idp.login.refusals import CertificateRefused, Refusal
from pki.model import CASettings
from policies.profiles import HARDWARE_KEY_POLICY
from tests.fixtures.pki import CAEnv, build_env, make_csr, make_person

UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[CAEnv]:
    e = build_env(tmp_path, f"sqlite:///{tmp_path / 'govtrust.db'}", settings=CASettings())
    yield e
    e.engine.dispose()


def issue(env: CAEnv, profile: str = "user-auth", *, hardware: bool = False,
          uid: str = "zhangwei") -> x509.Certificate:
    csr, _ = make_csr()
    return env.ca.issue_from_csr(make_person(uid), profile, csr, hardware_key=hardware,
                                 actor="test").certificate


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def refused(validator: CertificateValidator, data: bytes | x509.Certificate,
            **kw: object) -> Refusal:
    with pytest.raises(CertificateRefused) as info:
        validator.validate(data, **kw)  # type: ignore[arg-type]
    return info.value.reason


# -- our certificates --------------------------------------------------------------------
def test_our_certificate_logs_in_with_swk(env: CAEnv) -> None:
    cert = issue(env)
    v = CertificateValidator(env.ca).validate(pem(cert))
    assert v.ours and v.amr == "swk" and v.revocation is RevocationSource.OWN_STORE
    assert v.owner.value == "uuid-zhangwei" and v.owner.uid == "zhangwei"
    assert v.owner.rule is None
    check_person(v, make_person())


def test_der_is_accepted_too(env: CAEnv) -> None:
    cert = issue(env)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert CertificateValidator(env.ca).validate(der).serial == format(cert.serial_number, "x")


def test_hardware_key_policy_gives_hwk(env: CAEnv) -> None:
    cert = issue(env, hardware=True)
    assert any(p.policy_identifier.dotted_string == HARDWARE_KEY_POLICY for p in
               cert.extensions.get_extension_for_class(x509.CertificatePolicies).value)
    assert CertificateValidator(env.ca).validate(cert).amr == "hwk"


def test_unknown_ca(env: CAEnv) -> None:
    other = ExtCA.make("某省数字证书认证中心")
    cert = other.issue("lisi@example.cn")
    assert refused(CertificateValidator(env.ca), pem(cert)) is Refusal.UNKNOWN_CA


def test_expired(env: CAEnv) -> None:
    cert = issue(env)
    later = cert.not_valid_after_utc + timedelta(seconds=1)
    assert refused(CertificateValidator(env.ca, clock=lambda: later), cert) is Refusal.EXPIRED


def test_not_yet_valid(env: CAEnv) -> None:
    cert = issue(env)
    earlier = cert.not_valid_before_utc - timedelta(seconds=1)
    assert refused(CertificateValidator(env.ca, clock=lambda: earlier), cert) \
        is Refusal.NOT_YET_VALID


def test_revoked_a_second_ago(env: CAEnv) -> None:
    cert = issue(env)
    validator = CertificateValidator(env.ca)
    assert validator.validate(cert).ours
    env.ca.revoke(format(cert.serial_number, "x"), "keyCompromise", actor="admin")
    with pytest.raises(CertificateRefused) as info:
        validator.validate(pem(cert))
    assert info.value.reason is Refusal.REVOKED
    assert info.value.serial == format(cert.serial_number, "x")


def test_on_hold_then_released(env: CAEnv) -> None:
    cert = issue(env)
    serial = format(cert.serial_number, "x")
    validator = CertificateValidator(env.ca)
    env.ca.hold(serial, actor="admin")
    assert refused(validator, cert) is Refusal.ON_HOLD
    env.ca.release(serial, actor="admin")
    assert validator.validate(cert).ours


def test_without_client_auth(env: CAEnv) -> None:
    cert = issue(env, "user-sign")  # email protection only
    assert refused(CertificateValidator(env.ca), cert) is Refusal.NO_CLIENT_AUTH


def test_without_digital_signature(env: CAEnv) -> None:
    cert = issue(env, "user-encrypt")  # keyAgreement only
    assert refused(CertificateValidator(env.ca), cert) is Refusal.NO_DIGITAL_SIGNATURE


def test_forged_chain(env: CAEnv) -> None:
    """A certificate naming our issuing CA as issuer, signed by another key."""
    real = issue(env)
    impostor = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateBuilder().subject_name(real.subject).issuer_name(
        env.ca.issuing_certificate.subject).public_key(real.public_key()).serial_number(
        x509.random_serial_number()).not_valid_before(real.not_valid_before_utc
                                                      ).not_valid_after(real.not_valid_after_utc)
    for ext in real.extensions:
        if ext.oid != x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            builder = builder.add_extension(ext.value, ext.critical)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(
            env.ca.issuing_certificate.public_key()), False)  # type: ignore[arg-type]
    forged = builder.sign(impostor, hashes.SHA256())
    assert refused(CertificateValidator(env.ca), forged) is Refusal.FORGED_CHAIN


def test_forged_chain_with_a_fake_intermediate(env: CAEnv) -> None:
    """A fake issuing CA (our issuing CA's name, another key) sent along as intermediate."""
    fake = ExtCA.make("fake", subject=env.ca.issuing_certificate.subject)
    cert = fake.issue("x@beijing.gov.cn")
    assert refused(CertificateValidator(env.ca), cert,
                   intermediates=[fake.cert]) is Refusal.FORGED_CHAIN


def test_a_certificate_we_never_recorded(env: CAEnv) -> None:
    """Our issuing key's signature but no record: refused (the store is the truth)."""
    from pki.assemble import sign_certificate

    real = issue(env)
    builder = x509.CertificateBuilder().subject_name(real.subject).issuer_name(
        real.issuer).public_key(real.public_key()).serial_number(
        x509.random_serial_number()).not_valid_before(real.not_valid_before_utc
                                                      ).not_valid_after(real.not_valid_after_utc)
    for ext in real.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    ghost = sign_certificate(builder, env.ca.issuing_signer(), env.ca.issuing_certificate)
    assert refused(CertificateValidator(env.ca), ghost) is Refusal.NOT_ISSUED_HERE


def test_a_ca_certificate_is_not_a_login(env: CAEnv) -> None:
    assert refused(CertificateValidator(env.ca), env.ca.issuing_certificate) is Refusal.IS_A_CA


@pytest.mark.parametrize(("data", "reason"), [
    (b"garbage", Refusal.MALFORMED),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", Refusal.MALFORMED),
    (b"\x30" * 20_000, Refusal.TOO_LARGE),
    (b"", Refusal.MALFORMED),
])
def test_malformed_input(env: CAEnv, data: bytes, reason: Refusal) -> None:
    assert refused(CertificateValidator(env.ca), data) is reason


@pytest.mark.parametrize(("status", "reason"), [
    (PersonStatus.SUSPENDED, Refusal.PERSON_SUSPENDED),
    (PersonStatus.LEFT, Refusal.PERSON_LEFT),
])
def test_suspended_or_departed_person(env: CAEnv, status: PersonStatus,
                                      reason: Refusal) -> None:
    v = CertificateValidator(env.ca).validate(issue(env))
    with pytest.raises(CertificateRefused) as info:
        check_person(v, make_person(status=status))
    assert info.value.reason is reason


def test_someone_elses_certificate(env: CAEnv) -> None:
    v = CertificateValidator(env.ca).validate(issue(env))
    with pytest.raises(CertificateRefused) as info:
        check_person(v, make_person("lisi"))
    assert info.value.reason is Refusal.OWNER_MISMATCH


# -- an external CA with its own OCSP responder and CRL ---------------------------------------
@dataclass
class ExtCA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    base_url: str = ""
    revoked: dict[int, x509.ReasonFlags | None] = field(default_factory=dict)
    ocsp_up: bool = True
    crl_up: bool = True
    ocsp_hits: int = 0
    delegate: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None

    @classmethod
    def make(cls, cn: str, subject: x509.Name | None = None,
             path_length: int | None = 0) -> ExtCA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = subject or x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               False)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def issue(self, email: str, *, upn: str | None = None, extra_email: str | None = None,
              policy: str | None = None) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        sans: list[x509.GeneralName] = [x509.RFC822Name(email)]
        if extra_email:
            sans.append(x509.RFC822Name(extra_email))
        if upn:
            raw = upn.encode()
            sans.append(x509.OtherName(UPN_OID, b"\x0c" + bytes([len(raw)]) + raw))
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "李四"),
                                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, email)]))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=30))
             .add_extension(x509.SubjectAlternativeName(sans), False)
             .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                          False, False), True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), False))
        if self.base_url:
            b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(f"{self.base_url}/ocsp"))]), False)
            b = b.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier(f"{self.base_url}/ca.crl")], None, None, None)]),
                False)
        if policy:
            b = b.add_extension(x509.CertificatePolicies([x509.PolicyInformation(
                x509.ObjectIdentifier(policy), None)]), False)
        return b.sign(self.key, hashes.SHA256())

    def ocsp_response(self, body: bytes) -> bytes:
        req = ocsp.load_der_ocsp_request(body)
        now = datetime.now(UTC)
        serial = req.serial_number
        if serial in self.revoked:
            status, at, reason = ocsp.OCSPCertStatus.REVOKED, now - timedelta(minutes=1), \
                self.revoked[serial]
        else:
            status, at, reason = ocsp.OCSPCertStatus.GOOD, None, None
        # cryptography needs the certificate itself; a stand-in with the serial will do
        # only through the hash-based builder.
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            req.issuer_name_hash, req.issuer_key_hash, req.serial_number, req.hash_algorithm,
            status, now, now + timedelta(hours=1), at, reason)
        if self.delegate is not None:  # RFC 6960 section 4.2.2.2: a delegated responder
            cert, key = self.delegate
            builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, cert
                                           ).certificates([cert])
            return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.cert)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    def responder(self, *, ocsp_signing: bool = True
                  ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OCSP 响应器")]))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=3))
             .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                          False, False), True))
        if ocsp_signing:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                                False)
        return b.sign(self.key, hashes.SHA256()), key

    def crl(self) -> bytes:
        now = datetime.now(UTC)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(now).next_update(now + timedelta(hours=1)))
        for serial, reason in self.revoked.items():
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(
                now - timedelta(minutes=1))
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), False)
            b = b.add_revoked_certificate(entry.build())
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture
def ext_ca() -> Iterator[ExtCA]:
    ca = ExtCA.make("外部测试认证中心")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ca.ocsp_hits += 1
            if self.path != "/ocsp" or not ca.ocsp_up:
                self._send(503, b"down", "text/plain")
                return
            self._send(200, ca.ocsp_response(body), "application/ocsp-response")

        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/ca.crl" or not ca.crl_up:
                self._send(404, b"no", "text/plain")
                return
            self._send(200, ca.crl(), "application/pkix-crl")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ca.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ca
    server.shutdown()
    thread.join(5)


def ext_validator(env: CAEnv, ca: ExtCA, rule: MappingRule = MappingRule.SAN_EMAIL, *,
                  fail_open: bool = False, cache: int = 0) -> CertificateValidator:
    return CertificateValidator(env.ca, CertAuthSettings(
        external=(ExternalCA("外部CA", ca.cert, rule, frozenset({"1.2.3.4.5"})),),
        fail_open=fail_open, revocation_cache_seconds=cache))


def test_external_good_by_ocsp(env: CAEnv, ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("LiSi@Example.cn")
    v = ext_validator(env, ext_ca).validate(cert)
    assert not v.ours and v.revocation is RevocationSource.OCSP and v.amr == "swk"
    assert v.owner.rule is MappingRule.SAN_EMAIL and v.owner.value == "lisi@example.cn"
    check_person(v, make_person("lisi"))  # mapped by the caller's lookup; status checked here


def test_external_revoked_by_ocsp(env: CAEnv, ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("lisi@example.cn")
    ext_ca.revoked[cert.serial_number] = x509.ReasonFlags.key_compromise
    assert refused(ext_validator(env, ext_ca), cert) is Refusal.REVOKED


def test_external_on_hold_by_ocsp(env: CAEnv, ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("lisi@example.cn")
    ext_ca.revoked[cert.serial_number] = x509.ReasonFlags.certificate_hold
    assert refused(ext_validator(env, ext_ca), cert) is Refusal.ON_HOLD


def test_external_crl_fallback_when_ocsp_is_down(env: CAEnv, ext_ca: ExtCA) -> None:
    good, bad = ext_ca.issue("a@example.cn"), ext_ca.issue("b@example.cn")
    ext_ca.revoked[bad.serial_number] = None
    ext_ca.ocsp_up = False
    v = ext_validator(env, ext_ca)
    assert v.validate(good).revocation is RevocationSource.CRL
    assert refused(v, bad) is Refusal.REVOKED


def test_external_fails_closed_when_nothing_answers(env: CAEnv, ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("a@example.cn")
    ext_ca.ocsp_up = ext_ca.crl_up = False
    assert refused(ext_validator(env, ext_ca), cert) is Refusal.REVOCATION_UNAVAILABLE
    v = ext_validator(env, ext_ca, fail_open=True).validate(cert)
    assert v.revocation is RevocationSource.UNCHECKED


def test_external_status_is_cached(env: CAEnv, ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("a@example.cn")
    v = ext_validator(env, ext_ca, cache=300)
    v.validate(cert)
    v.validate(cert)
    assert ext_ca.ocsp_hits == 1


def test_external_ocsp_signed_by_someone_else_is_not_believed(env: CAEnv,
                                                              ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("a@example.cn")
    ext_ca.revoked[cert.serial_number] = x509.ReasonFlags.key_compromise
    real_key = ext_ca.key
    ext_ca.key = ec.generate_private_key(ec.SECP256R1())  # the OCSP answer is forged...
    ext_ca.crl_up = False
    assert refused(ext_validator(env, ext_ca), cert) is Refusal.REVOCATION_UNAVAILABLE
    ext_ca.key = real_key


@pytest.mark.parametrize(("rule", "expected"), [
    (MappingRule.UPN, "lisi@example.cn"),
    (MappingRule.SUBJECT_DN, "1.2.840.113549.1.9.1=lisi@mail.example.cn,CN=李四"),
    (MappingRule.ISSUER_SERIAL, None),
])
def test_external_mapping_rules(env: CAEnv, ext_ca: ExtCA, rule: MappingRule,
                                expected: str | None) -> None:
    cert = ext_ca.issue("lisi@mail.example.cn", upn="lisi@example.cn")
    v = ext_validator(env, ext_ca, rule).validate(cert)
    assert v.owner.rule is rule
    if expected is None:
        assert v.owner.value == (f"{ext_ca.cert.subject.rfc4514_string()}|"
                                 f"{format(cert.serial_number, 'x')}")
    else:
        assert v.owner.value == expected


def test_external_mapping_refuses_an_ambiguous_certificate(env: CAEnv, ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("a@example.cn", extra_email="b@example.cn")
    assert refused(ext_validator(env, ext_ca), cert) is Refusal.NO_MAPPING
    assert refused(ext_validator(env, ext_ca, MappingRule.UPN), cert) is Refusal.NO_MAPPING


def test_external_hardware_policy(env: CAEnv, ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("a@example.cn", policy="1.2.3.4.5")
    assert ext_validator(env, ext_ca).validate(cert).amr == "hwk"


def test_settings_from_the_config_section(tmp_path: Path, ext_ca: ExtCA) -> None:
    (tmp_path / "ext.pem").write_bytes(pem(ext_ca.cert))
    s = CertAuthSettings.from_mapping({"external_cas": [
        {"name": "外部", "file": "ext.pem", "rule": "upn"}], "fail_open": True}, tmp_path)
    assert s.external[0].rule is MappingRule.UPN and s.fail_open
    assert s.external[0].certificate == ext_ca.cert


@pytest.mark.parametrize(("owner", "key"), [
    (Owner(None, "uuid-1", "zhangwei"), ("entryUUID", "uuid-1")),
    (Owner(MappingRule.SAN_EMAIL, "lisi@example.cn"), ("mail", "lisi@example.cn")),
    (Owner(MappingRule.UPN, "lisi@Beijing.gov.cn"), ("uid", "lisi")),
    (Owner(MappingRule.UPN, "lisi@elsewhere.cn"), None),
    (Owner(MappingRule.SUBJECT_DN, "CN=李四"), None),
])
def test_owner_directory_lookup(owner: Owner, key: tuple[str, str] | None) -> None:
    assert owner.lookup("beijing.gov.cn") == key


def test_external_delegated_ocsp_responder(env: CAEnv, ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("a@example.cn")
    ext_ca.revoked[cert.serial_number] = x509.ReasonFlags.key_compromise
    ext_ca.delegate = ext_ca.responder()
    ext_ca.crl_up = False
    assert refused(ext_validator(env, ext_ca), cert) is Refusal.REVOKED


def test_external_responder_without_ocsp_signing_is_not_believed(env: CAEnv,
                                                                 ext_ca: ExtCA) -> None:
    cert = ext_ca.issue("a@example.cn")
    ext_ca.delegate = ext_ca.responder(ocsp_signing=False)
    ext_ca.crl_up = False
    assert refused(ext_validator(env, ext_ca), cert) is Refusal.REVOCATION_UNAVAILABLE


@pytest.mark.parametrize("reason", list(Refusal))
def test_every_refusal_names_its_catalog_key(reason: Refusal) -> None:
    # the words are idp.web.catalog's (tests/web/test_catalog.py checks both languages)
    assert reason.message_key == f"refusal.{reason.value}"


# -- path validation through pyca's ClientVerifier -------------------------------------------
def external_chain(path_length: int | None) -> tuple[ExtCA, x509.Certificate,
                                                     x509.Certificate]:
    """(root, intermediate, leaf) of an external hierarchy."""
    root = ExtCA.make("外部根CA", path_length=path_length)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "外部中级CA")])
    inter_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(root.cert.subject)
                  .public_key(key.public_key()).serial_number(x509.random_serial_number())
                  .not_valid_before(now - timedelta(days=1))
                  .not_valid_after(now + timedelta(days=365))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
                  .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                               False, False), True)
                  .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                 False)
                  .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                      root.key.public_key()), False)
                  .sign(root.key, hashes.SHA256()))
    return root, inter_cert, ExtCA(key, inter_cert).issue("lisi@example.cn")


def test_external_ca_path_through_an_intermediate(env: CAEnv) -> None:
    """pyca builds root -> intermediate -> leaf from the intermediates sent along."""
    root, inter_cert, cert = external_chain(None)
    v = CertificateValidator(env.ca, CertAuthSettings(
        external=(ExternalCA("外部根CA", root.cert, MappingRule.SAN_EMAIL),), fail_open=True))
    got = v.validate(cert, intermediates=[inter_cert])
    assert got.ca_name == "外部根CA" and got.issuer == inter_cert.subject.rfc4514_string()
    assert refused(v, cert) is Refusal.UNKNOWN_CA  # without the intermediate: no path


def test_path_length_constraint_is_enforced(env: CAEnv) -> None:
    """RFC 5280 section 4.2.1.9: a root with pathLen 0 may not have an intermediate
    (our own walk never checked this; pyca does)."""
    root, inter_cert, cert = external_chain(0)
    v = CertificateValidator(env.ca, CertAuthSettings(
        external=(ExternalCA("外部根CA", root.cert, MappingRule.SAN_EMAIL),), fail_open=True))
    with pytest.raises(CertificateRefused) as info:
        v.validate(cert, intermediates=[inter_cert])
    assert info.value.reason is Refusal.UNKNOWN_CA
    assert info.value.detail.startswith("path validation:")


def test_nonconforming_external_certificate_is_refused_by_path_validation(
        env: CAEnv) -> None:
    """No authorityKeyIdentifier (RFC 5280 section 4.2.1.1): pyca refuses the path and
    none of our finer reasons applies, so it is an untrusted issuer, with pyca's word
    in the audit detail."""
    ca = ExtCA.make("不合规CA")
    good = ca.issue("lisi@example.cn")
    builder = (x509.CertificateBuilder().subject_name(good.subject).issuer_name(good.issuer)
               .public_key(good.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(good.not_valid_before_utc)
               .not_valid_after(good.not_valid_after_utc))
    for ext in good.extensions:
        if ext.oid != x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            builder = builder.add_extension(ext.value, ext.critical)
    bare = builder.sign(ca.key, hashes.SHA256())
    v = CertificateValidator(env.ca, CertAuthSettings(
        external=(ExternalCA("不合规CA", ca.cert, MappingRule.SAN_EMAIL),), fail_open=True))
    with pytest.raises(CertificateRefused) as info:
        v.validate(bare)
    assert info.value.reason is Refusal.UNKNOWN_CA
    assert info.value.detail.startswith("path validation:")
    assert v.validate(good).owner.value == "lisi@example.cn"


def test_expired_intermediate_is_refused_as_expired(env: CAEnv) -> None:
    cert = issue(env)
    later = env.ca.issuing_certificate.not_valid_after_utc + timedelta(seconds=1)
    assert refused(CertificateValidator(env.ca, clock=lambda: later), cert) is Refusal.EXPIRED


def test_ed25519_ca_is_checked_by_our_own_walk(tmp_path: Path) -> None:
    """pyca's Web PKI policy forbids Ed25519 keys and cannot be told otherwise; our CA
    may use one, so such a path is accepted by our own walk and checks."""
    from pki.keys import KeyAlgorithm

    e = build_env(tmp_path, f"sqlite:///{tmp_path / 'ed.db'}",
                  settings=CASettings(key_algorithm=KeyAlgorithm.ED25519))
    try:
        cert = issue(e)
        validator = CertificateValidator(e.ca)
        assert validator.validate(cert).owner.uid == "zhangwei"
        assert refused(validator, issue(e, "user-sign")) is Refusal.NO_CLIENT_AUTH
        assert refused(validator, e.ca.issuing_certificate) is Refusal.IS_A_CA
        impostor = ExtCA.make("fake", subject=e.ca.issuing_certificate.subject)
        assert refused(validator, impostor.issue("x@beijing.gov.cn")) is Refusal.FORGED_CHAIN
    finally:
        e.engine.dispose()
