"""A real standalone Spark cluster on loopback: a master, workers with one core each, and Beam's Spark job server.

Spark comes from PyPI's pyspark sdist (:func:`tests.services.jars.spark_home`, which holds a whole Spark with
``bin/spark-class``); the master and the workers are started in the foreground by ``bin/spark-class`` with
ports, work and log folders of their own, so several sessions can run clusters side by side. Beam's Spark
job server runs from the ``beam-runners-spark-3`` Maven classpath next to Spark's own jars
(``org.apache.beam.runners.spark.SparkJobServerDriver --spark-master-url spark://...``); it is the Spark
driver of every job, and the executors run on the workers.

Example (``python -m tests.services.spark_cluster`` starts one, prints its state and stops it)::

    with SparkCluster(workers=2) as spark:
        spark.state()["aliveworkers"]    # 2
        spark.master_url                 # "spark://127.0.0.1:PORT" for --spark_master_url
        spark.job_endpoint               # "localhost:PORT" of the Beam job server for --job_endpoint
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

__all__ = ["SparkCluster", "available"]

# What Spark 3.5 itself passes to a Java 17 JVM (launcher/JavaModuleOptions), for the job server (the driver).
JVM_OPTS = (
    "-XX:+IgnoreUnrecognizedVMOptions --add-opens=java.base/java.lang=ALL-UNNAMED "
    "--add-opens=java.base/java.lang.invoke=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED "
    "--add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED "
    "--add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED "
    "--add-opens=java.base/sun.nio.cs=ALL-UNNAMED --add-opens=java.base/sun.security.action=ALL-UNNAMED "
    "--add-opens=java.base/sun.util.calendar=ALL-UNNAMED -Djdk.reflect.useDirectMethodHandle=false"
)
START_TIMEOUT = 120
# Spark jars the job server (the driver of Beam's batch RDD translation) never loads: left off its classpath,
# since the driver ships its whole classpath to every executor of every job (the workers have them anyway).
DRIVER_NEEDS_NOT = ("rocksdbjni", "breeze", "spire", "spark-mllib", "spark-graphx", "scala-compiler", "hive-",
                    "spark-hive", "kubernetes-", "spark-kubernetes", "mesos", "spark-mesos", "derby", "datanucleus",
                    "orc-", "arrow-", "jpmml", "pmml", "spark-repl", "spark-yarn", "algebra", "cats-kernel",
                    "shapeless", "libthrift", "libfb303", "spark-connect")


def available() -> tuple[bool, str]:
    return java_and_maven("Spark")


class SparkCluster:
    """Spark master + ``workers`` workers (``cores`` each) + Beam's Spark job server, all on 127.0.0.1."""

    def __init__(self, workers: int = 2, cores: int = 1, *, job_server: bool = True,
                 workdir: Path | None = None) -> None:
        self.workers_wanted, self.cores, self.with_job_server = workers, cores, job_server
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="osmosis-spark-"))
        self.master_port, self.ui_port = free_port(), free_port()
        self.job_port, self.artifact_port, self.expansion_port = free_port(), free_port(), free_port()
        self.driver_ui_port = free_port()  # the job server's (the driver's) web UI, where running jobs' counters are
        self.home: Path | None = None
        self.master: JavaProcess | None = None
        self.workers: list[JavaProcess] = []
        self.job_server: JavaProcess | None = None

    # -- addresses -----------------------------------------------------------------------------------
    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def job_endpoint(self) -> str:
        return f"localhost:{self.job_port}"

    @property
    def driver_ui(self) -> str:
        """``localhost:PORT`` of the driver's web UI (runner option ``spark_ui``), while a job runs."""
        return f"localhost:{self.driver_ui_port}"

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> "SparkCluster":
        self.home = jars.spark_home()
        classpath = jars.beam_classpath("beam-runners-spark-3") if self.with_job_server else []
        try:
            self.master = self._spark_class(
                "master", "org.apache.spark.deploy.master.Master",
                "--host", "127.0.0.1", "--port", self.master_port, "--webui-port", self.ui_port).start()
            wait_until("the Spark master", lambda: self.state().get("status") == "ALIVE", START_TIMEOUT, self.master)
            for _ in range(self.workers_wanted):
                self.add_worker()
            self.wait_for_workers(self.workers_wanted)
            if classpath:
                self._start_job_server(classpath)
        except BaseException:
            self.stop()
            raise
        return self

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for d in ("log", "work", "conf", "tmp"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        env.update(SPARK_HOME=str(self.home), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="localhost",
                   SPARK_LOG_DIR=str(self.workdir / "log"), SPARK_CONF_DIR=str(self.workdir / "conf"),
                   SPARK_WORKER_DIR=str(self.workdir / "work"), SPARK_PID_DIR=str(self.workdir / "tmp"),
                   SPARK_DAEMON_MEMORY="384m", SPARK_LOCAL_DIRS=str(self.workdir / "tmp"))
        env.pop("PYSPARK_PYTHON", None)
        if java_home():
            env["JAVA_HOME"] = java_home()
        return env

    def _spark_class(self, name: str, main: str, *args: Any) -> JavaProcess:
        return JavaProcess(f"Spark {name}", ["bash", str(self.home / "bin" / "spark-class"), main, *map(str, args)],
                           log=self.workdir / "log" / f"{name}.out", env=self._env(), cwd=self.workdir)

    def add_worker(self) -> JavaProcess:
        n = len(self.workers) + 1
        worker = self._spark_class(
            f"worker-{n}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", self.cores,
            "--memory", "1g", "--webui-port", free_port(), "--work-dir", self.workdir / "work" / f"w{n}",
            self.master_url).start()
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout: float = START_TIMEOUT) -> None:
        wait_until(f"{count} Spark workers", lambda: self.state().get("aliveworkers") == count, timeout, self.master)

    def _start_job_server(self, classpath: list[Path]) -> None:
        # Spark's own jars (the Beam runner is built against them: Spark is a provided dependency), then
        # Beam's others; but Beam's Guava, not Spark's 14.0 (Spark itself uses a shaded one).
        beam_wins = {"guava"}
        spark_jars = [j for j in sorted((self.home / "jars").glob("*.jar"))
                      if _artifact(j) not in beam_wins and not _artifact(j).startswith(DRIVER_NEEDS_NOT)]
        own = {_artifact(j) for j in spark_jars}
        beam = [j for j in classpath if _artifact(j) not in own]
        # Executors put Spark's jars (Guava 14) before the staged ones; Beam's Guava must come first there too.
        guava = [j for j in classpath if _artifact(j) in beam_wins]
        cmd = [find_java(), "-Xmx768m", *JVM_OPTS.split(), f"-Djava.io.tmpdir={self.workdir / 'tmp'}",
               "-Dspark.driver.host=127.0.0.1", "-Dspark.driver.bindAddress=127.0.0.1",
               "-Dspark.executor.memory=512m", f"-Dspark.ui.port={self.driver_ui_port}",
               f"-Dspark.executor.extraClassPath={os.pathsep.join(map(str, guava))}",
               f"-Dspark.local.dir={self.workdir / 'tmp'}",
               "-cp", os.pathsep.join(map(str, [*spark_jars, *beam])),
               "org.apache.beam.runners.spark.SparkJobServerDriver",
               "--spark-master-url", self.master_url, "--job-host", "localhost",
               "--job-port", str(self.job_port), "--artifact-port", str(self.artifact_port),
               "--expansion-port", str(self.expansion_port), "--artifacts-dir", str(self.workdir / "artifacts")]
        env = self._env()
        self.job_server = JavaProcess("Beam Spark job server", cmd, log=self.workdir / "log" / "job-server.out",
                                      env=env, cwd=self.workdir).start()
        wait_port(self.job_port, self.job_server, START_TIMEOUT, "the Beam Spark job server")

    def stop(self) -> None:
        for proc in [self.job_server, *self.workers, self.master]:
            if proc is not None:
                proc.stop()
        if not os.environ.get("OSMOSIS_KEEP_CLUSTER_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "SparkCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the master's JSON state ------------------------------------------------------------------------
    def state(self, timeout: float = 10) -> dict:
        """The master's ``/json/`` page: status, aliveworkers, workers, activeapps, completedapps."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=timeout) as resp:
            return json.loads(resp.read())

    def apps(self) -> dict[str, dict]:
        """Application id -> its entry (``name``, ``state``, ...), active and completed."""
        state = self.state()
        return {a["id"]: a for a in [*state.get("activeapps", []), *state.get("completedapps", [])]}

    def new_app(self, before: set[str], timeout: float = 60) -> str:
        return wait_until("a new Spark application", lambda: next(iter(set(self.apps()) - before), None), timeout)

    def wait_finished(self, app_id: str, timeout: float = 30) -> dict:
        """The application's entry once the master lists it as completed (the driver can report the Beam job
        done a moment before the master moves the application out of its active list)."""
        return wait_until(f"Spark application {app_id} completed",
                          lambda: next((a for a in self.state().get("completedapps", []) if a["id"] == app_id), None),
                          timeout, self.master)

    def executor_logs(self, app_id: str) -> dict[str, str]:
        """Worker folder name (``w1``, ``w2``) -> the stderr of the executor it ran for ``app_id``."""
        out = {}
        for log in sorted((self.workdir / "work").glob(f"w*/{app_id}/*/stderr")):
            out[log.parents[2].name] = log.read_text(errors="replace")
        return out


def _artifact(jar: Path) -> str:
    """``jackson-core`` for ``jackson-core-2.15.2.jar``: the name without its version."""
    stem = jar.name[:-4]
    parts = stem.split("-")
    for i, part in enumerate(parts):
        if part[:1].isdigit():
            return "-".join(parts[:i])
    return stem


if __name__ == "__main__":  # pragma: no cover - a manual check
    started = time.monotonic()
    with SparkCluster() as spark:
        print(f"started in {time.monotonic() - started:.1f}s; master {spark.master_url}, job server {spark.job_endpoint}")
        print(json.dumps(spark.state(), indent=1)[:2000])
