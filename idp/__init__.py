"""The OpenID Connect provider, its login methods, its web edge and console, and
the composition root. One sub-package per concern; imports point down this list:

``runtime`` (composition root) → ``console`` → ``web`` → ``oidc`` → ``login``,
and from there to ``pki`` and ``directory``, then ``policies``. ``idp.errors`` is
the root of the IdP's exception tree, below every sub-package.
"""
