"""The OpenID Connect provider's protocol core, one spec per module.

``clients`` (RFC 6749 section 3.1.2 / RFC 9700 redirect rules, keyed secret
hashes), ``keys`` (JWKS, rotation), ``tokens`` (RFC 9068 access tokens, ID tokens,
refresh rotation), ``server`` (authlib's grants and endpoints: RFC 6749, RFC 7636,
RFC 7662, RFC 7009, OIDC Core), ``logout`` (RP-Initiated and Back-Channel Logout
1.0), ``discovery``, ``lifecycle`` (suspended and departed people logged out),
``provider`` (the assembled provider), and ``tables``. No Flask here: the web
edge is ``idp.web``.
"""
