"""The civil-servant directory: schema, managed slapd, people, departments, groups.

The core (``model``, ``errors``, ``events``, ``csvimport``) is framework-free: plain
values in, plain values or typed errors out. python-ldap lives in ``gateway`` and
``slapd``; click lives in ``cli``. Cross-cutting services (the audit log, the
durable event outbox) are declared here as small Protocols and wired by ``idp``.
"""
