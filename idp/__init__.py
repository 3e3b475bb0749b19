"""The OpenID Connect provider and the composition root.

``config`` reads the home's TOML and secrets; ``db`` builds the SQLAlchemy engine
and runs Alembic; ``outbox`` delivers directory lifecycle events durably;
``cli`` is the ``govtrust`` command; ``serve`` runs everything on one machine.
"""
