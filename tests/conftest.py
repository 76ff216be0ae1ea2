"""Shared fixtures: real services (PostgreSQL, a MongoDB-wire server, loopback HTTP) and temp homes.

Under ``CI=true`` a service that cannot be had fails the tests that need it instead of skipping them.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from tests.http_fixtures import FeedServer  # noqa: F401  (re-exported for tests)
from tests.services import unavailable
from tests.services.tally import TALLY

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (``$OSMOSIS_TEST_PG_DSN`` or a throwaway cluster)."""
    from tests.services.postgres_server import PostgresServer, available

    ok, reason = available()
    if not ok:
        unavailable("PostgreSQL", reason)
    server = PostgresServer()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        unavailable("PostgreSQL", str(exc))
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(pg_server, request):
    """A fresh database on the session's server, dropped afterwards."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    dsn = pg_server.create_database(name)
    yield dsn
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def mongo_server():
    """A real MongoDB-wire server for the session (``$OSMOSIS_TEST_MONGO_URI`` or CongoDB)."""
    from tests.services.mongo_server import MongoServer, available

    ok, reason = available(install=True)
    if not ok:
        unavailable("MongoDB-wire server", reason)
    server = MongoServer()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        unavailable("MongoDB-wire server", str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ferretdb_server():
    """FerretDB 1.x (SQLite backend) for the session: a MongoDB-wire server that keeps BSON types on update
    and enforces unique indexes, which CongoDB does not (see tests/services/ferretdb_server.py)."""
    from tests.services.ferretdb_server import FerretDBServer, available

    ok, reason = available(install=True)
    if not ok:
        unavailable("FerretDB", reason)
    server = FerretDBServer()
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        unavailable("FerretDB", str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ferretdb_auth_server():
    """FerretDB 1.x (SQLite backend) that requires authentication, for the session: one user (``.username``,
    ``.password``, random) in ``.database``; ``.uri`` logs in as that user, ``.uri_with(pw)`` with another
    password, which the server refuses (code 18). ``start()`` checks both before the tests get it."""
    from tests.services.ferretdb_server import FerretDBServer, available

    ok, reason = available(install=True)
    if not ok:
        unavailable("FerretDB with authentication", reason)
    server = FerretDBServer(username="osmosis", database="osmosis_auth")
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001
        unavailable("FerretDB with authentication", str(exc))
    yield server
    server.stop()


# -- running on pytest-xdist workers (pytest.ini: -n 2 --dist loadgroup; the cluster tests carry xdist_group) -----
def pytest_collection_modifyitems(config, items):
    """Every test on a session cluster must carry its xdist group, or the suite would start that cluster twice."""
    for item in items:
        groups = {m.args[0] if m.args else m.kwargs.get("name") for m in item.iter_markers("xdist_group")}
        for cluster in ("flink_cluster", "spark_cluster"):
            if cluster in getattr(item, "fixturenames", ()) and cluster not in groups:
                raise pytest.UsageError(f"{item.nodeid} uses {cluster}: mark it @pytest.mark.xdist_group({cluster!r}) "
                                        "so that it runs on the one worker that starts the cluster")


def pytest_sessionfinish(session):
    """On a worker: hand the fault tally to the controller."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["fault_tally"] = dataclasses.asdict(TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """On the controller: add up a finished worker's fault tally."""
    TALLY.add(getattr(node, "workeroutput", {}).get("fault_tally", {}))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if TALLY.tests:
        terminalreporter.write_line(TALLY.line())


@pytest.fixture
def mongo_kind():
    """Which MongoDB-wire server ``mongo_db`` is on; parametrized below."""
    return "congodb"


def pytest_generate_tests(metafunc):
    """Tests that use ``mongo_db`` run once per MongoDB-wire server (``mongo_servers`` marker narrows it)."""
    if "mongo_kind" in metafunc.fixturenames:
        from tests.integration.mongo_support import servers_for

        kinds = servers_for(metafunc.definition)
        metafunc.parametrize("mongo_kind", kinds, ids=kinds)


@pytest.fixture
def home(tmp_path):
    """An empty osmosis home."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def feed_server():
    """A loopback HTTP server serving feeds; ``feed_server.set(path, body, headers)``."""
    server = FeedServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def osmosis_cli(home):
    """Run the ``osmosis`` CLI in a subprocess: ``osmosis_cli("run", yaml_path)`` -> CompletedProcess."""
    import subprocess

    def run(*args, env=None, timeout=180, home_dir=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        cmd = [sys.executable, "-m", "osmosis_beam.cli", "--home", str(home_dir or home), *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=str(ROOT))

    return run


def _claim_for_this_worker(what: str) -> Path | None:
    """Fail if another xdist worker of this run already started the session's ``what``.

    Every test on a cluster carries the cluster's xdist group, so one worker starts it. That holds only while
    xdist's loadgroup takes effect: under pytest 9.2 it silently did not (pytest-xdist#1386), and each worker
    started both clusters, which cost minutes. A claim file per run (xdist's run id) catches such a split.
    """
    worker, run = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if worker is None or run is None:
        return None
    import tempfile

    claim = Path(tempfile.gettempdir()) / f"osmosis-tests-{run}-{what.replace(' ', '-')}"
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        owner = claim.read_text()
        if owner != worker:
            pytest.fail(f"the {what} was already started by xdist worker {owner}, and {worker} needs one too: the "
                        "tests on it were split across workers (--dist loadgroup did not take effect; pytest-xdist#1386 "
                        "under pytest 9.2: install pytest<9.2, as the test extra says)", pytrace=False)
        return None
    with os.fdopen(fd, "w") as out:
        out.write(worker)
    return claim


def _session_cluster(what: str, available, make):
    """Start ``make()`` (a cluster) for the session, or fail/skip the tests that need it; stop it at the end."""
    claim = _claim_for_this_worker(what)
    try:
        ok, reason = available()
        if not ok:
            unavailable(what, reason)
        cluster = make()
        try:
            cluster.start()
        except Exception as exc:  # noqa: BLE001 - reported as the reason
            cluster.stop()
            unavailable(what, str(exc))
        yield cluster
        cluster.stop()
    finally:
        if claim is not None:
            claim.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def flink_cluster():
    """A real Flink cluster on loopback for the session: a JobManager, two TaskManagers with one slot each,
    and Beam's Flink job server (tests/services/flink_cluster.py). Fetched into ~/.cache/osmosis-beam once."""
    from tests.services.flink_cluster import FlinkCluster, available

    yield from _session_cluster("Flink cluster", available, lambda: FlinkCluster(taskmanagers=2, slots=1))


@pytest.fixture(scope="session")
def spark_cluster():
    """A real standalone Spark cluster on loopback for the session: a master, two workers with one core each,
    and Beam's Spark job server (tests/services/spark_cluster.py). Fetched into ~/.cache/osmosis-beam once."""
    from tests.services.spark_cluster import SparkCluster, available

    yield from _session_cluster("Spark cluster", available, lambda: SparkCluster(workers=2, cores=1))


@pytest.fixture(scope="session")
def prism_binary():
    """Beam's Prism runner binary (``go install``, cached in ~/.cache/osmosis-beam/prism-<beam version>)."""
    from tests.services import jars

    try:
        return jars.prism_binary()
    except jars.FetchError as exc:
        unavailable("Prism", str(exc))
