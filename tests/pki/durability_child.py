"""A child process for the durability tests: the real CA over a real home, in a
process of its own, so a test can SIGKILL it or give it its own SoftHSM2 token.

``python -m tests.pki.durability_child init HOME``: migrate and create the CA.
``... work HOME SEED N``: issue N certificates (revoking every third one just
issued), printing ``issued SERIAL`` only after issue returned and ``revoked
SERIAL`` only after revoke returned, each line in one flushed write: what a
client was told.
``... token-removed HOME TOKENDIR``: issue and pre-sign an OCSP answer, remove
the token's folder, then report as JSON what the CA does without its key.

The home's configuration comes from the environment (``GOVTRUST_*``), as for
``govtrust``; certificates go to a recording publisher instead of the directory
(there is no slapd here; publishing is not what these tests are about).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from idp.runtime.config import Config
from idp.runtime.db import upgrade
from idp.runtime.services import Services
from pki.errors import KeyStoreError
from pki.http import create_app
from pki.publish import RecordingPublisher
from tests.fixtures.pki import make_csr, make_person


def services(home: Path) -> Services:
    s = Services(Config.load(home))
    s.__dict__["certificate_publisher"] = RecordingPublisher()
    return s


def init(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    s = services(home)
    upgrade(s.engine)
    s.ca.initialize(actor="test")
    s.close()


def tell(line: str) -> None:
    # One write per line: print() writes its pieces one by one when the output is
    # unbuffered (PYTHONUNBUFFERED), and a SIGKILL between them would cut a line.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def work(home: Path, seed: str, count: int) -> None:
    s = services(home)
    ca = s.ca
    person = make_person(f"u{seed}")
    for i in range(count):
        issued = ca.issue_from_csr(person, "user-auth", make_csr()[0], actor=f"w{seed}")
        tell(f"issued {issued.record.serial}")
        if i % 3 == 2:
            ca.revoke(issued.record.serial, "superseded", actor=f"w{seed}", refresh=False)
            tell(f"revoked {issued.record.serial}")


def _outcome(fn: object) -> str:
    try:
        fn()  # type: ignore[operator]
    except KeyStoreError as exc:
        return f"KeyStoreError: {exc.reason}"
    return "ok"


def token_removed(home: Path, tokens: Path) -> None:
    s = services(home)
    ca = s.ca
    issued = ca.issue_from_csr(make_person(), "user-auth", make_csr()[0])
    request = ocsp.OCSPRequestBuilder().add_certificate(
        issued.certificate, ca.issuing_certificate, hashes.SHA1()).build()
    der = request.public_bytes(serialization.Encoding.DER)
    before = ca.responder.respond(der)
    shutil.rmtree(tokens)
    client = create_app(ca).test_client()
    after = client.post("/ocsp", data=der, content_type="application/ocsp-request")
    other = ca.issue_from_csr  # a new certificate's first answer needs the key
    report = {
        "issue": _outcome(lambda: other(make_person("lisi"), "user-auth", make_csr()[0])),
        "crl": _outcome(lambda: ca.generate_crl()),
        "presigned_status": after.status_code,
        "presigned_same": after.data == before,
        "key_status": [k.as_dict() for k in ca.key_status()],
        "crl_http": client.get("/crl/issuing-delta.crl").status_code,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    command, home = sys.argv[1], Path(sys.argv[2])
    if command == "init":
        init(home)
    elif command == "work":
        work(home, sys.argv[3], int(sys.argv[4]))
    elif command == "token-removed":
        token_removed(home, Path(sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {command}")
