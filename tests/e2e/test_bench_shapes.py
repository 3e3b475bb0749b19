"""scripts/bench/shapes.py: each deployment shape the benchmarks measure comes up
on loopback with real servers, answers through its front, lists the processes a
benchmark measures, and leaves nothing behind — no process, no folder — when it
goes down, also after a failed start.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
import requests

from tests.fixtures.bench import load_bench

pytestmark = [pytest.mark.slapd]


def _load() -> ModuleType:
    return load_bench("shapes.py", "bench_shapes")


shapes = _load()


def _alive(pids: set[int]) -> set[int]:
    return pids & set(shapes.process_table())


def test_an_unknown_shape_or_no_node_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--shape"):
        shapes.shape("cluster", tmp_path / "x")
    with pytest.raises(ValueError, match="--nodes"):
        shapes.shape("production", tmp_path / "y", nodes=0)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_roles_group_for_the_memory_figures() -> None:
    assert shapes.group_of("idp_worker2") == "idp_workers"
    assert shapes.group_of("node_master1") == "node_workers"
    assert shapes.group_of("postgres_backend12") == "postgres"
    assert shapes.group_of("nginx_worker1") == "nginx"
    assert shapes.group_of("something3") == "other"


@pytest.mark.postgres
def test_production_shape_serves_through_nginx_and_leaves_nothing_behind(
        tmp_path: Path) -> None:
    base = Path("/dev/shm") / f"govtrust-test-shape-{os.getpid()}"
    with shapes.shape("production", base, nodes=2) as shape:
        conf = requests.get(shape.issuer + "/.well-known/openid-configuration",
                            verify=shape.ca, timeout=10)
        assert conf.status_code == 200 and conf.json()["issuer"] == shape.issuer
        assert requests.get(shape.pki_url + "/ca/issuing.der", timeout=10).status_code == 200
        assert shape.people() and shape.admin()[0]
        assert shape.database_url.startswith("postgresql")
        roles = shape.processes()
        groups = {shapes.group_of(r) for r in roles}
        assert {"node_supervisors", "node_workers", "nginx", "slapd", "postgres"} <= groups
        assert sum(1 for r in roles if r.startswith("node") and r[4:].isdigit()) == 2
        listed = shape.govtrust("--json", "client", "list")
        assert "client_id" in listed
        pids = set(roles.values())
    assert not _alive(pids)
    assert not base.exists()


def test_serve_shape_starts_and_stops_its_whole_tree(tmp_path: Path) -> None:
    base = Path("/dev/shm") / f"govtrust-test-shape-serve-{os.getpid()}"
    with shapes.shape("serve", base) as shape:
        conf = requests.get(shape.issuer + "/.well-known/openid-configuration",
                            verify=shape.ca, timeout=10)
        assert conf.status_code == 200
        roles = shape.processes()
        groups = {shapes.group_of(r) for r in roles}
        assert {"supervisor", "idp_workers", "pki_workers", "slapd"} <= groups
        assert shape.database_url.startswith("sqlite")
        pids = set(roles.values())
    assert not _alive(pids)
    assert not base.exists()


@pytest.mark.postgres
def test_a_failed_start_tears_down_what_did_start(tmp_path: Path) -> None:
    base = Path("/dev/shm") / f"govtrust-test-shape-fail-{os.getpid()}"
    shape = shapes.shape("production", base)
    # init fails (no database there), after PostgreSQL has started
    shape.env["GOVTRUST_DATABASE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:9/none"
    with pytest.raises(RuntimeError, match="init"):
        with shape:
            pass
    assert not shape.pg_started
    assert not [p for p, (_, cmd) in shapes.process_table().items() if str(base) in cmd]
    assert not base.exists()
