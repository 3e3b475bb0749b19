"""Hostile input to the CLI and the imports: CSR files for ``cert issue`` and the
CA behind it, and people CSV and LDIF files. Each is refused with a clear error
(a typed ``BadRequest`` with its reason, a non-zero exit, or a (line, reason)
error of the import) and records nothing: no certificate, no audit record, no row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ObjectIdentifier

from directory.csvimport import MAX_FIELD, parse_csv
from directory.errors import NotFound
from directory.ldif import parse_ldif
from directory.model import Person
from pki.cli import cert
from pki.errors import BadRequest
from tests.fixtures.pki import CAEnv, make_csr

HEADER = "uid,name,department,title,email,mobile,employee_number,clearance,groups\n"
GOOD = "zhangwei,张伟,市财政局/预算处,科员,zhangwei@beijing.gov.cn,13800000000,E001,2,staff;ops\n"
PERSON_LDIF = (b"dn: uid=liuyang,ou=people,dc=x\nuid: liuyang\ndisplayName:: 5YiY5rSL\n"
               b"govDepartmentPath:: 5biC6LSi5pS/5bGA\ntitle: t\nmail: liuyang@beijing.gov.cn\n\n")


def csv(*rows: str, header: str = HEADER) -> bytes:
    return (header + "".join(rows)).encode("utf-8")


def only_error(data: bytes) -> tuple[int, str]:
    parsed = parse_csv(data)
    assert len(parsed.errors) == 1, parsed.errors
    return parsed.errors[0]


def _refused(env: CAEnv, reason: str, call: object) -> None:
    before = env.counts()
    with pytest.raises(BadRequest) as info:
        call()  # type: ignore[operator]
    assert info.value.reason == reason
    assert env.counts() == before


# -- cert issue --csr FILE: hostile files through the command ------------------------------

@dataclass
class People:
    """The directory's ``show`` for the command (the CA is real; people are data)."""

    people: dict[str, Person] = field(default_factory=dict)

    def show(self, uid: str) -> Person:
        try:
            return self.people[uid]
        except KeyError:
            raise NotFound("person", uid) from None


@dataclass
class Obj:
    ca: object
    directory: People
    json: bool = False


def _version_4_csr() -> bytes:
    der = bytearray(x509.load_pem_x509_csr(make_csr()[0]).public_bytes(
        serialization.Encoding.DER))
    at = der.index(b"\x02\x01\x00")
    der[at + 2] = 4
    return bytes(der)


HOSTILE_CSR_FILES = {
    "empty": lambda: b"",
    "text": lambda: b"hello, CA\n",
    "pem_without_body": lambda: b"-----BEGIN CERTIFICATE REQUEST-----\n"
                                b"-----END CERTIFICATE REQUEST-----\n",
    "pem_bad_base64": lambda: b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n"
                              b"-----END CERTIFICATE REQUEST-----\n",
    "certificate_not_request": lambda: b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                       b"-----END CERTIFICATE-----\n",
    "der_length_overflow": lambda: b"\x30\x84\xff\xff\xff\xff\x30\x00",
    "der_nested_deep": lambda: b"\x30\x80" * 2000,
    "version_4": _version_4_csr,
    "nul_bytes": lambda: b"\x00" * 64,
}


@pytest.mark.parametrize("content", HOSTILE_CSR_FILES.values(), ids=HOSTILE_CSR_FILES.keys())
def test_cert_issue_with_a_hostile_csr_file_exits_non_zero_and_records_nothing(
        env: CAEnv, person: Person, tmp_path: Path, content: object) -> None:
    path = tmp_path / "req.pem"
    path.write_bytes(content())  # type: ignore[operator]
    before = env.counts()
    result = CliRunner().invoke(cert, ["issue", "--uid", person.uid, "--profile", "user-auth",
                                       "--csr", str(path)],
                                obj=Obj(env.ca, People({person.uid: person})))
    assert result.exit_code == 1, result.output
    assert "garbage" in result.output or "too_large" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert env.counts() == before


def test_cert_issue_for_an_unknown_person_exits_non_zero(env: CAEnv, tmp_path: Path) -> None:
    path = tmp_path / "req.pem"
    path.write_bytes(make_csr()[0])
    before = env.counts()
    result = CliRunner().invoke(cert, ["issue", "--uid", "nobody", "--profile", "user-auth",
                                       "--csr", str(path)], obj=Obj(env.ca, People()))
    assert result.exit_code == 1 and "nobody" in result.output
    assert env.counts() == before


@pytest.mark.parametrize("profile", ["no-such-profile", "../../etc/passwd", "ocsp-signing"])
def test_cert_issue_with_a_hostile_profile_exits_non_zero(env: CAEnv, person: Person,
                                                          tmp_path: Path, profile: str) -> None:
    path = tmp_path / "req.pem"
    path.write_bytes(make_csr()[0])
    before = env.counts()
    result = CliRunner().invoke(cert, ["issue", "--uid", person.uid, "--profile", profile,
                                       "--csr", str(path)],
                                obj=Obj(env.ca, People({person.uid: person})))
    assert result.exit_code != 0, result.output
    assert env.counts() == before


# -- bad CSRs at the CA (moved from tests/pki/test_issuance.py) ----------------------------

def test_garbage_der_is_refused(env: CAEnv, person: Person) -> None:
    _refused(env, "garbage", lambda: env.ca.issue_from_csr(person, "user-auth",
                                                           b"\x30\x82\x01\x00garbage"))


def test_truncated_pem_is_refused(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    _refused(env, "garbage", lambda: env.ca.issue_from_csr(person, "user-auth", csr[:200]))


def test_truncated_der_is_refused(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    der = x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER)
    _refused(env, "garbage", lambda: env.ca.issue_from_csr(person, "user-auth", der[:-10]))


def test_csr_with_bad_signature_is_refused(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    der = bytearray(x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature's r or s
    _refused(env, "bad_signature",
             lambda: env.ca.issue_from_csr(person, "user-auth", bytes(der)))


def test_weak_rsa_key_is_refused(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr(rsa.generate_private_key(65537, 1024))
    _refused(env, "weak_key", lambda: env.ca.issue_from_csr(person, "user-auth", csr))


def test_unlisted_curve_is_refused(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr(ec.generate_private_key(ec.SECP521R1()))
    _refused(env, "weak_key", lambda: env.ca.issue_from_csr(person, "user-auth", csr))


def test_unsupported_key_type_is_refused(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr(ed25519.Ed25519PrivateKey.generate())
    _refused(env, "weak_key", lambda: env.ca.issue_from_csr(person, "user-encrypt", csr))


def test_csr_asking_for_ca_true_is_refused(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    _refused(env, "ca_requested", lambda: env.ca.issue_from_csr(person, "user-auth", csr))


def test_csr_with_unknown_extension_is_refused(env: CAEnv, person: Person) -> None:
    ext = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    csr, _ = make_csr(extensions=[(ext, False)])
    _refused(env, "extension_not_granted",
             lambda: env.ca.issue_from_csr(person, "user-auth", csr))


def test_csr_asking_for_ungranted_key_usage_is_refused(env: CAEnv, person: Person) -> None:
    ku = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    csr, _ = make_csr(extensions=[(ku, True)])
    _refused(env, "extension_not_granted",
             lambda: env.ca.issue_from_csr(person, "user-auth", csr))


def test_csr_asking_for_ungranted_eku_is_refused(env: CAEnv, person: Person) -> None:
    eku = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    csr, _ = make_csr(extensions=[(eku, False)])
    _refused(env, "extension_not_granted",
             lambda: env.ca.issue_from_csr(person, "user-auth", csr))


def test_oversized_csr_is_refused(env: CAEnv, person: Person) -> None:
    csr, _ = make_csr()
    big = csr + b"\n" * (64 * 1024)
    _refused(env, "too_large", lambda: env.ca.issue_from_csr(person, "user-auth", big))


def test_unapproved_dns_name_is_refused(env: CAEnv) -> None:
    env.ca.approve_dns("finance-app", ["finance.beijing.gov.cn"])
    _refused(env, "dns_not_approved", lambda: env.ca.issue_tls_server(
        "finance-app", dns_names=["finance.beijing.gov.cn", "evil.example"]))


def test_suspended_person_gets_no_certificate(env: CAEnv, suspended_person: Person) -> None:
    csr, _ = make_csr()
    _refused(env, "person_inactive",
             lambda: env.ca.issue_from_csr(suspended_person, "user-auth", csr))


def test_short_pkcs12_passphrase_is_refused(env: CAEnv, person: Person) -> None:
    _refused(env, "weak_passphrase",
             lambda: env.ca.issue_pkcs12(person, "user-auth", b"short"))



# -- people CSV and LDIF (moved from tests/directory/test_csvimport.py) --------------

def test_wrong_encoding_gbk_names_the_line() -> None:
    data = (HEADER + "ascii,A,市财政局,t,a@b.cn,,,,\n").encode("utf-8") + GOOD.encode("gbk")
    line, reason = only_error(data)
    assert line == 3 and "UTF-8" in reason


def test_missing_column() -> None:
    data = csv("zhangwei,张伟,市财政局,科员\n", header="uid,name,department,title\n")
    line, reason = only_error(data)
    assert line == 1 and "email" in reason


def test_extra_column() -> None:
    line, reason = only_error(csv(header=HEADER.strip() + ",salary\n"))
    assert line == 1 and "salary" in reason


def test_row_with_too_many_fields() -> None:
    line, reason = only_error(csv(GOOD, GOOD.strip() + ",extra\n"))
    assert line == 3 and "fields" in reason


def test_duplicate_uid_names_both_lines() -> None:
    line, reason = only_error(csv(GOOD, GOOD))
    assert line == 3 and "duplicate uid zhangwei" in reason and "line 2" in reason


def test_empty_file() -> None:
    assert only_error(b"")[0] == 1


@pytest.mark.parametrize("uid", [
    pytest.param("*)(uid=*", id="filter-injection"),
    pytest.param("zhang\\wei", id="backslash"),
    pytest.param("zhang,wei", id="comma"),
    pytest.param("zhang+wei", id="plus"),
    pytest.param('zhang"wei', id="quote"),
    pytest.param("zhang<wei>", id="angle"),
    pytest.param("zhang;wei", id="semicolon"),
    pytest.param("zhang=wei", id="equals"),
    pytest.param("ZhangWei", id="upper-case"),
    pytest.param("张伟", id="chinese-uid"),
])
def test_ldap_metacharacters_in_uid(uid: str) -> None:
    row = GOOD.replace("zhangwei,", f'"{uid.replace(chr(34), chr(34) * 2)}",', 1)
    line, reason = only_error(csv(row))
    assert line == 2 and "uid" in reason


@pytest.mark.parametrize("name", [
    pytest.param("*)(cn=*", id="filter-injection"),
    pytest.param("张\\伟", id="backslash"),
    pytest.param("张,伟", id="comma"),
    pytest.param("张+伟", id="plus"),
    pytest.param('张"伟', id="quote"),
    pytest.param("张<伟>", id="angle"),
    pytest.param("张;伟", id="semicolon"),
    pytest.param("张=伟", id="equals"),
])
def test_ldap_metacharacters_in_name(name: str) -> None:
    row = GOOD.replace("张伟", '"' + name.replace('"', '""') + '"')
    line, reason = only_error(csv(row))
    assert line == 2 and "name" in reason


def test_nul_byte_in_uid() -> None:
    line, reason = only_error(csv(GOOD.replace("zhangwei,", "zhang\x00wei,", 1)))
    assert line == 2 and "NUL" in reason


def test_nul_byte_in_name() -> None:
    line, reason = only_error(csv(GOOD.replace("张伟", "张\x00伟")))
    assert line == 2 and "NUL" in reason


def test_oversized_name() -> None:
    line, reason = only_error(csv(GOOD.replace("张伟", "张" * 65)))
    assert line == 2 and "longer than 64" in reason


def test_oversized_field() -> None:
    line, reason = only_error(csv(GOOD.replace("科员", "科" * (MAX_FIELD + 1))))
    assert line == 2 and "longer than" in reason


def test_oversized_uid() -> None:
    line, reason = only_error(csv(GOOD.replace("zhangwei,", "z" * 65 + ",", 1)))
    assert line == 2 and "uid" in reason


def test_bad_email() -> None:
    line, reason = only_error(csv(GOOD.replace("zhangwei@beijing.gov.cn", "not-an-address")))
    assert line == 2 and "email" in reason


def test_bad_clearance() -> None:
    line, reason = only_error(csv(GOOD.replace(",2,", ",5,")))
    assert line == 2 and "clearance" in reason


def test_all_bad_rows_are_reported_with_their_lines() -> None:
    bad_uid = GOOD.replace("zhangwei,", "bad uid,", 1)
    rows = [GOOD.replace("zhangwei", f"user{i}") for i in range(6)]
    rows[1], rows[3], rows[5] = bad_uid, bad_uid.replace("bad uid", "*"), "x,,,,,,,,\n"
    parsed = parse_csv(csv(*rows))
    assert [n for n, _ in parsed.errors] == [3, 5, 7]
    assert len(parsed.rows) == 3


@pytest.mark.parametrize(("name", "data", "says"), [
    ("garbage", b"\x00\x01\x02 not ldif at all\n:::\n", "not valid LDIF"),
    ("url_value_never_fetched",
     PERSON_LDIF.replace(b"title: t", b"title:< file:///etc/passwd"), "URL values"),
    ("gbk_bytes", PERSON_LDIF.replace(b"displayName:: 5YiY5rSL",
                                      b"displayName: " + "刘洋".encode("gbk")), "not valid LDIF"),
    ("bad_base64", PERSON_LDIF.replace(b"5YiY5rSL", b"!!!notbase64"), "not valid LDIF"),
    ("not_a_person", b"dn: ou=x,dc=x\nou: x\n\n", "not a person"),
    ("change_record", b"dn: uid=a,ou=people,dc=x\nchangetype: delete\n\n", "not a person"),
    ("duplicate_uid", PERSON_LDIF + PERSON_LDIF, "duplicate uid"),
])
def test_bad_ldif_is_named_and_yields_no_row(name: str, data: bytes, says: str) -> None:
    parsed = parse_ldif(data)
    assert parsed.errors and says in parsed.errors[-1][1], (name, parsed.errors)
    if name != "duplicate_uid":
        assert parsed.rows == []


def test_oversized_ldif_is_refused_before_parsing() -> None:
    from directory.csvimport import MAX_FILE_BYTES

    parsed = parse_ldif(PERSON_LDIF * (MAX_FILE_BYTES // len(PERSON_LDIF) + 1))
    assert parsed.rows == [] and "larger than" in parsed.errors[0][1]


@pytest.mark.parametrize("clearance", [
    pytest.param("²", id="superscript-two"),
    pytest.param("٣", id="arabic-indic-three"),
    pytest.param("３", id="fullwidth-three"),
    pytest.param("+3", id="plus-sign"),
    pytest.param("-0", id="minus-zero"),
    pytest.param("9" * 40, id="forty-digits"),
])
def test_non_ascii_clearance_names_the_row(clearance: str) -> None:
    row = GOOD.replace(",2,", f',"{clearance}",')
    line, reason = only_error(csv(row))
    assert line == 2 and "clearance" in reason


def test_non_ascii_clearance_in_ldif_names_the_entry() -> None:
    data = ("dn: uid=li,ou=people,dc=x\nuid: li\ncn: 李娜\ngovDepartmentPath: 市公安局\n"
            "title: t\nmail: li@beijing.gov.cn\ngovClearance: ²\n").encode()
    parsed = parse_ldif(data)
    assert parsed.rows == [] and len(parsed.errors) == 1
    assert "clearance" in parsed.errors[0][1]

