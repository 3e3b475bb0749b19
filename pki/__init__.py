"""The certificate authority: keys, profiles, issuance, revocation, CRL, OCSP, audit log.

The core builds and checks certificates, CRLs and OCSP responses from plain
values; keys sit behind a small ``Signer`` interface (encrypted files or
PKCS#11). SQLAlchemy lives in ``store``; click in ``cli``; Flask in ``http``.
"""
