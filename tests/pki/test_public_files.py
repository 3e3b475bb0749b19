"""Pre-signed OCSP files (``pki.public_files``) for every serial, including the
about one in 190 whose GET path ends in ``/``: such a path names a folder, so the
file is ``_`` inside it, and nginx (``idp.runtime.nginx``) looks there next. Real
nginx answers such a GET and its POST from the file with no node alive
(tests/runtime/test_node.py); here, what is written."""

from __future__ import annotations

import dataclasses
import string
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pki import public_files
from pki.model import CertificateRecord
from tests.fixtures.pki import CAEnv, make_csr, make_person


def serial_whose_path_ends_in_a_slash(env: CAEnv, algorithm: str) -> int:
    issuer = env.ca.issuing_certificate
    return next(serial for serial in range(1, 100_000) if public_files.get_path(
        public_files.ocsp_request(issuer, serial, algorithm)).endswith("/"))


def issued(env: CAEnv) -> CertificateRecord:
    cert = env.ca.issue_from_csr(make_person(), "user-auth", make_csr()[0]).certificate
    (record,) = [r for r in env.ca.find(limit=10)
                 if int(r.serial, 16) == cert.serial_number]
    return record


def test_file_path_is_the_get_path_unless_that_names_a_folder() -> None:
    assert public_files.file_path(b"\x30\x03\x02\x01\x01") == "MAMCAQE="
    ends_in_a_slash = b"\x30\x04\xff\xff\xff\xff"
    assert public_files.get_path(ends_in_a_slash) == "MAT/////"
    assert public_files.file_path(ends_in_a_slash) == "MAT/////_"
    alphabet = string.ascii_letters + string.digits + "+/="
    assert public_files.FOLDER_FILE not in alphabet  # never another request's name


@pytest.mark.parametrize("algorithm", public_files.CERT_ID_HASHES)
def test_a_serial_whose_get_path_ends_in_a_slash_gets_its_file(
        env: CAEnv, tmp_path: Path, algorithm: str) -> None:
    serial = serial_whose_path_ends_in_a_slash(env, algorithm)
    record = dataclasses.replace(issued(env), serial=format(serial, "x"))
    folder = tmp_path / "public"
    report = public_files.export([(env.ca, env.ca.responder)], [record], folder,
                                 datetime.now(UTC))
    request = public_files.ocsp_request(env.ca.issuing_certificate, serial, algorithm)
    path = public_files.get_path(request)
    written = folder / "ocsp" / (path + public_files.FOLDER_FILE)
    assert written.is_file()
    assert report.ocsp_files == len(public_files.CERT_ID_HASHES)  # none skipped
    # The responder's own answer for that request, as a node would give it.
    from cryptography.x509 import ocsp

    answer = ocsp.load_der_ocsp_response(written.read_bytes())
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.serial_number == serial
