"""A real standalone Flink cluster on loopback: one JobManager, TaskManagers with one slot each, and Beam's job server.

The distribution comes from PyPI (:func:`tests.services.jars.flink_home`); every JVM is started in the
foreground by Flink's own scripts (``bin/jobmanager.sh start-foreground``) with a configuration written
for this cluster only (free ports, small heaps, pid and log folders of its own), so several sessions can
run clusters side by side. Beam's Flink job server runs from the runner's Maven classpath, shaded into one jar
(``org.apache.beam.runners.flink.FlinkJobServerDriver``) and submits to the JobManager's REST port.

Example (``python -m tests.services.flink_cluster`` starts one, prints its overview and stops it)::

    with FlinkCluster(taskmanagers=2) as flink:
        flink.rest("/overview")          # {"taskmanagers": 2, "slots-total": 2, ...}
        flink.master                     # "localhost:PORT" for --flink_master
        flink.job_endpoint               # "localhost:PORT" of the Beam job server for --job_endpoint
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.services import jars
from tests.services.java import JavaProcess, find_java, free_port, java_and_maven, java_home, wait_port, wait_until

__all__ = ["FlinkCluster", "available"]

JVM_OPTS = (  # what Flink's own config.yaml passes for Java 17
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED "
    "--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED "
    "--add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED "
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED "
    "--add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED "
    "--add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED"
)
START_TIMEOUT = 120


def available() -> tuple[bool, str]:
    return java_and_maven("Flink")


class FlinkCluster:
    """JobManager + ``taskmanagers`` TaskManagers (``slots`` each) + Beam's Flink job server, all on 127.0.0.1."""

    def __init__(self, taskmanagers: int = 2, slots: int = 1, *, job_server: bool = True,
                 workdir: Path | None = None) -> None:
        self.taskmanagers, self.slots, self.with_job_server = taskmanagers, slots, job_server
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="osmosis-flink-"))
        self.rest_port, self.rpc_port = free_port(), free_port()
        self.job_port, self.artifact_port, self.expansion_port = free_port(), free_port(), free_port()
        self.home: Path | None = None
        self.jobmanager: JavaProcess | None = None
        self.tms: list[JavaProcess] = []
        self.job_server: JavaProcess | None = None

    # -- addresses -----------------------------------------------------------------------------------
    @property
    def master(self) -> str:
        return f"localhost:{self.rest_port}"

    @property
    def job_endpoint(self) -> str:
        return f"localhost:{self.job_port}"

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> "FlinkCluster":
        self.home = jars.flink_home()
        # one jar, not the runner's 161: the job server stages its classpath with every job (jars.shaded_classpath)
        classpath = jars.shaded_classpath("beam-runners-flink-1.19") if self.with_job_server else []
        conf = self.workdir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        for name in ("log4j-console.properties", "log4j.properties", "logback-console.xml"):
            if (self.home / "conf" / name).exists():
                shutil.copy(self.home / "conf" / name, conf / name)
        (conf / "config.yaml").write_text("\n".join(f"{k}: {v}" for k, v in self._config().items()) + "\n")
        try:
            self.jobmanager = self._script("jobmanager", "jobmanager.sh", conf).start()
            wait_until("the Flink REST API", lambda: self.rest("/overview"), START_TIMEOUT, self.jobmanager)
            for _ in range(self.taskmanagers):
                self.add_taskmanager()
            self.wait_for_taskmanagers(self.taskmanagers)
            if classpath:
                self._start_job_server(classpath)
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self) -> dict[str, Any]:
        return {
            "env.java.opts.all": JVM_OPTS,
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.rpc.address": "localhost",
            "jobmanager.rpc.port": self.rpc_port,
            "jobmanager.memory.process.size": "768m",
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.host": "localhost",
            "taskmanager.numberOfTaskSlots": self.slots,
            "taskmanager.memory.process.size": "896m",
            "taskmanager.memory.managed.fraction": "0.1",
            "taskmanager.rpc.port": 0,
            "taskmanager.data.port": 0,
            "blob.server.port": 0,
            "rest.address": "localhost",
            "rest.bind-address": "127.0.0.1",
            "rest.port": self.rest_port,
            "parallelism.default": 1,
            # A killed TaskManager fails the job at once: no restarts, and a short heartbeat timeout.
            "restart-strategy.type": "none",
            "heartbeat.interval": 1000,
            "heartbeat.timeout": 5000,
            "pekko.ask.timeout": "10s",
            "io.tmp.dirs": str(self.workdir / "tmp"),
            "web.tmpdir": str(self.workdir / "web"),
        }

    def _env(self, conf: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(FLINK_CONF_DIR=str(conf), FLINK_LOG_DIR=str(self.workdir / "log"),
                   FLINK_PID_DIR=str(self.workdir / "pid"), FLINK_HOME=str(self.home))
        if java_home():
            env["JAVA_HOME"] = java_home()
        for d in ("log", "pid", "tmp", "web"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        return env

    def _script(self, name: str, script: str, conf: Path) -> JavaProcess:
        return JavaProcess(f"Flink {name}", ["bash", str(self.home / "bin" / script), "start-foreground"],
                           log=self.workdir / "log" / f"{name}.out", env=self._env(conf), cwd=self.workdir)

    def add_taskmanager(self) -> JavaProcess:
        tm = self._script(f"taskmanager-{len(self.tms) + 1}", "taskmanager.sh", self.workdir / "conf").start()
        self.tms.append(tm)
        return tm

    def wait_for_taskmanagers(self, count: int, timeout: float = START_TIMEOUT) -> None:
        wait_until(f"{count} Flink TaskManagers", lambda: len(self.rest("/taskmanagers")["taskmanagers"]) == count,
                   timeout, self.jobmanager)

    def _start_job_server(self, classpath: list[Path]) -> None:
        # Flink's own log4j jars give the job server a log (the Maven classpath has no SLF4J binding).
        logging_jars = sorted((self.home / "lib").glob("log4j-*.jar"))
        cmd = [find_java(), "-Xmx512m", *JVM_OPTS.split(),
               f"-Dlog4j.configurationFile={self.workdir / 'conf' / 'log4j-console.properties'}",
               "-cp", os.pathsep.join(map(str, [*classpath, *logging_jars])),
               "org.apache.beam.runners.flink.FlinkJobServerDriver",
               f"--flink-master=http://localhost:{self.rest_port}", "--job-host=localhost",
               f"--job-port={self.job_port}", f"--artifact-port={self.artifact_port}",
               f"--expansion-port={self.expansion_port}"]
        self.job_server = JavaProcess("Beam Flink job server", cmd, log=self.workdir / "log" / "job-server.out",
                                      cwd=self.workdir).start()
        wait_port(self.job_port, self.job_server, START_TIMEOUT, "the Beam Flink job server")

    def stop(self) -> None:
        for proc in [self.job_server, *self.tms, self.jobmanager]:
            if proc is not None:
                proc.stop()
        if not os.environ.get("OSMOSIS_KEEP_CLUSTER_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "FlinkCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the REST API ---------------------------------------------------------------------------------
    def rest(self, path: str, method: str = "GET", timeout: float = 10) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def jobs(self) -> dict[str, dict]:
        """Job id -> ``{"name", "state", ...}`` for every job the JobManager knows."""
        return {j["jid"]: j for j in self.rest("/jobs/overview")["jobs"]}

    def job(self, job_id: str) -> dict:
        return self.rest(f"/jobs/{job_id}")

    def new_job(self, before: set[str], timeout: float = 60) -> str:
        """The id of the one job submitted since ``before`` (a set of ids)."""
        return wait_until("a new Flink job", lambda: next(iter(set(self.jobs()) - before), None), timeout)

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float = 60) -> str:
        return wait_until(f"Flink job {job_id} in {states}",
                          lambda: self.job(job_id)["state"] if self.job(job_id)["state"] in states else None, timeout)

    def subtask_hosts(self, job_id: str) -> dict[str, set[str]]:
        """Vertex name -> the TaskManager ids its subtasks ran on (from ``/jobs/<id>/vertices/<v>/subtasks``)."""
        out: dict[str, set[str]] = {}
        for vertex in self.job(job_id)["vertices"]:
            detail = self.rest(f"/jobs/{job_id}/vertices/{vertex['id']}")
            out[vertex["name"]] = {s.get("taskmanager-id") or s.get("host") for s in detail["subtasks"]}
        return out

    def taskmanager_ids(self) -> list[str]:
        return [tm["id"] for tm in self.rest("/taskmanagers")["taskmanagers"]]


if __name__ == "__main__":  # pragma: no cover - a manual check
    started = time.monotonic()
    with FlinkCluster() as flink:
        print(f"started in {time.monotonic() - started:.1f}s; master {flink.master}, job server {flink.job_endpoint}")
        print(json.dumps(flink.rest("/overview"), indent=1))
