"""The OpenID Connect provider and the composition root.

``config`` reads the home's TOML and secrets; ``db`` builds the SQLAlchemy engine
and runs Alembic; ``outbox`` delivers directory lifecycle events durably;
``cli`` is the ``govtrust`` command; ``serve`` runs everything on one machine.

The provider's framework-free core, one spec per module: ``clients`` (RFC 6749
3.1.2 / RFC 9700 redirect rules, keyed secret hashes), ``keys`` (JWKS, rotation),
``tokens`` (RFC 9068 access tokens, ID tokens, refresh rotation), ``sessions``
(SSO sessions), ``logout`` (RP-Initiated and Back-Channel Logout 1.0),
``discovery``, ``throttle``, ``i18n``, ``lifecycle`` (suspended/departed people
logged out). Strong login (issue 5): ``certauth`` (client certificates, RFC 5280),
``totp`` (RFC 6238) with ``strong_store``, and ``strong`` (the level a request asks
for, the session's methods, certificate-to-person mapping) under the policy in
``policies.assurance``. authlib's grants and endpoints are configured in ``oauth``;
Flask lives only in ``web`` (``create_app(services)``) and ``strong_web`` (the
certificate and one-time-code steps), and SQL tables in ``store``.
"""
