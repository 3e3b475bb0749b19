"""Shared fixtures: real servers started per session, in the slapdtest manner."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.slapd",
    "tests.fixtures.pki",
    "tests.fixtures.idp",
    "tests.fixtures.served",
    "tests.fixtures.gmssl",
    "tests.fixtures.client_calls",
]
