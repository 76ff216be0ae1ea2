"""Fetch and cache what the cluster tests run: Flink (PyPI), Spark (PyPI's pyspark) and Beam's Java runners (Maven).

Everything lands under ``$OSMOSIS_CACHE`` (default ``~/.cache/osmosis-beam``) and is fetched once, through
the ordinary clients only: ``pip download --no-deps`` (unpacked, never installed) and ``mvn``. A lock file
per item keeps two test sessions from fetching the same thing at once.

What Maven Central serves (checked newest first, from 2.77.0 down; see README "Running at scale"):
the ``beam-runners-flink-<v>-job-server`` and ``beam-runners-spark-3-job-server`` jars are not served at any
version a Python 3.11 SDK can use (the only one is ``beam-runners-flink-1.12-job-server:2.34.0``). The runner
artifacts ``beam-runners-flink-1.19`` and ``beam-runners-spark-3`` are served at 2.62.0 with every dependency,
so the job servers run from that classpath (``java -cp 'lib/*' ...JobServerDriver``): the same code the
job-server jar bundles. ``BEAM_JAVA_VERSION`` is that version.

Example::

    from tests.services import jars
    flink_home = jars.flink_home()                  # ~/.cache/osmosis-beam/flink-1.19.3 (bin/, lib/flink-dist)
    cp = jars.beam_classpath("beam-runners-flink-1.19")   # [.../lib/*.jar] for FlinkJobServerDriver
    prism = jars.prism_binary()                     # ~/.cache/osmosis-beam/prism-2.62.0/prism (go install)

``python -m tests.services.jars`` fetches everything (``./run_local.sh test`` does, before the tests).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

__all__ = ["CACHE", "FLINK_VERSION", "SPARK_VERSION", "BEAM_JAVA_VERSION", "flink_home", "spark_home",
           "beam_classpath", "shaded_classpath", "job_server_jar", "prism_binary", "FetchError"]

CACHE = Path(os.environ.get("OSMOSIS_CACHE") or Path.home() / ".cache" / "osmosis-beam")
FLINK_VERSION = os.environ.get("OSMOSIS_FLINK_DIST_VERSION", "1.19.3")
SPARK_VERSION = os.environ.get("OSMOSIS_SPARK_DIST_VERSION", "3.5.7")
# The newest Beam release whose Flink 1.19 and Spark 3 runners Maven Central serves with all dependencies.
BEAM_JAVA_VERSION = os.environ.get("OSMOSIS_BEAM_JAVA_VERSION", "2.62.0")
FETCH_TIMEOUT = 900  # seconds for one download (Flink's libraries are 230 MB, pyspark 320 MB)


class FetchError(RuntimeError):
    """Something could not be fetched; the message holds the command and its output."""


@contextlib.contextmanager
def _locked(name: str):
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = FETCH_TIMEOUT) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise FetchError(f"{cmd[0]} is not installed: {exc}") from None
    except subprocess.TimeoutExpired:
        raise FetchError(f"`{' '.join(cmd)}` took longer than {timeout}s") from None
    if done.returncode != 0:
        out = (done.stdout + done.stderr).strip().splitlines()
        useful = [line for line in out if "Download" not in line][-25:]
        raise FetchError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n" + "\n".join(useful))
    return done.stdout


def _pip_download(requirement: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    name, version = requirement.split("==")
    stem = f"{name}_{version}".replace("-", "_").lower()
    for found in dest.iterdir():
        if found.name.replace("-", "_").lower().startswith(stem):
            return found
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
          "-d", str(dest), requirement])
    for found in dest.iterdir():
        if found.name.replace("-", "_").lower().startswith(stem):
            return found
    raise FetchError(f"pip download {requirement} left nothing in {dest}")


def _unpack_deps(archive: Path, prefix: str, dest: Path) -> None:
    """Extract the members under ``prefix`` (``pyspark-3.5.7/deps/``) of a tar archive into ``dest``."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and len(m.name) > len(prefix)]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(dest, members=members)


def flink_home(version: str = FLINK_VERSION) -> Path:
    """A Flink distribution (``bin/``, ``conf/``, ``lib/flink-dist-*.jar``) unpacked from PyPI's packages."""
    home = CACHE / f"flink-{version}"
    if (home / ".complete").exists():
        return home
    with _locked(f"flink-{version}"):
        if (home / ".complete").exists():
            return home
        dl = CACHE / "dl"
        libs = _pip_download(f"apache-flink-libraries=={version}", dl)
        wheel = _pip_download(f"apache-flink=={version}", dl)
        tmp = CACHE / f"flink-{version}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _unpack_deps(libs, f"apache-flink-libraries-{version}/deps/", tmp)
        with zipfile.ZipFile(wheel) as whl:
            for info in whl.infolist():
                for part in ("bin/", "conf/"):
                    if info.filename.startswith("pyflink/" + part) and not info.is_dir():
                        target = tmp / info.filename[len("pyflink/"):]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(whl.read(info))
        for script in (tmp / "bin").iterdir():
            script.chmod(0o755)
        if not list((tmp / "lib").glob("flink-dist*.jar")):
            raise FetchError(f"no flink-dist jar in {libs.name}")
        (tmp / ".complete").write_text(version)
        shutil.rmtree(home, ignore_errors=True)
        tmp.rename(home)
    return home


def spark_home(version: str = SPARK_VERSION) -> Path:
    """A Spark distribution (``bin/spark-class``, ``jars/``) unpacked from PyPI's pyspark sdist."""
    home = CACHE / f"spark-{version}"
    if (home / ".complete").exists():
        return home
    with _locked(f"spark-{version}"):
        if (home / ".complete").exists():
            return home
        sdist = _pip_download(f"pyspark=={version}", CACHE / "dl")
        tmp = CACHE / f"spark-{version}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _unpack_deps(sdist, f"pyspark-{version}/deps/", tmp)
        if not (tmp / "bin" / "spark-class").exists() or not (tmp / "jars").is_dir():
            raise FetchError(f"{sdist.name} has no deps/bin/spark-class and deps/jars")
        for script in (tmp / "bin").iterdir():
            script.chmod(0o755)
        for script in (tmp / "sbin").glob("*") if (tmp / "sbin").is_dir() else ():
            script.chmod(0o755)
        (tmp / ".complete").write_text(version)
        shutil.rmtree(home, ignore_errors=True)
        tmp.rename(home)
    return home


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>osmosis-beam</groupId><artifactId>classpath</artifactId><version>1</version>
<dependencies><dependency><groupId>org.apache.beam</groupId><artifactId>{artifact}</artifactId>
<version>{version}</version></dependency></dependencies></project>
"""


def _maven_build(name: str, pom: str, goals: list[str]) -> Path:
    """``mvn goals`` run once on ``pom`` in ``$CACHE/maven/<name>`` (under a lock; marked complete after)."""
    root = CACHE / "maven" / name
    if not (root / ".complete").exists():
        with _locked(name):
            if not (root / ".complete").exists():
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir(parents=True)
                (root / "pom.xml").write_text(pom)
                _run(["mvn", "-B", "-q", *goals], cwd=root)
                (root / ".complete").write_text(name)
    return root


def beam_classpath(artifact: str, version: str = BEAM_JAVA_VERSION) -> list[Path]:
    """The jars of ``org.apache.beam:<artifact>:<version>`` and its runtime dependencies, from Maven Central."""
    root = _maven_build(f"{artifact}-{version}", _POM.format(artifact=artifact, version=version),
                        ["dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory=lib"])
    jars = sorted((root / "lib").glob("*.jar"))
    if not jars:
        raise FetchError(f"no jars in {root / 'lib'}")
    return jars


_SHADE_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>osmosis-beam</groupId><artifactId>{artifact}-shaded</artifactId><version>1</version>
<dependencies><dependency><groupId>org.apache.beam</groupId><artifactId>{artifact}</artifactId>
<version>{version}</version></dependency></dependencies>
<build><plugins><plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-shade-plugin</artifactId>
<version>3.6.0</version><executions><execution><phase>package</phase><goals><goal>shade</goal></goals><configuration>
<createDependencyReducedPom>false</createDependencyReducedPom>
<filters><filter><artifact>*:*</artifact><excludes><exclude>META-INF/*.SF</exclude><exclude>META-INF/*.DSA</exclude>
<exclude>META-INF/*.RSA</exclude></excludes></filter></filters>
<transformers><transformer implementation="org.apache.maven.plugins.shade.resource.ServicesResourceTransformer"/>
</transformers></configuration></execution></executions></plugin></plugins></build></project>
"""


def shaded_classpath(artifact: str, version: str = BEAM_JAVA_VERSION) -> list[Path]:
    """:func:`beam_classpath` merged into one jar by maven-shade-plugin (service files joined, signatures
    dropped, nothing relocated): what Beam's own ``*-job-server`` jars are, built here since Maven Central
    does not serve those (module docstring).

    Why one jar: the Flink job server stages every jar of its classpath with each job, and the JobManager
    puts them into its BLOB store one by one. For the 161 jars of the runner's classpath that took 13 s of
    every job submission here; one jar of the same 157 MB takes under a second.
    """
    root = _maven_build(f"{artifact}-{version}-shaded", _SHADE_POM.format(artifact=artifact, version=version),
                        ["package", "-DskipTests"])
    jar = root / "target" / f"{artifact}-shaded-1.jar"
    if not jar.is_file():
        raise FetchError(f"maven-shade-plugin left no {jar}")
    return [jar]


def job_server_jar(artifact: str, version: str) -> Path:
    """``org.apache.beam:<artifact>:<version>`` itself (e.g. ``beam-runners-flink-1.19-job-server``), or FetchError."""
    dest = CACHE / "jars"
    jar = dest / f"{artifact}-{version}.jar"
    if not jar.exists():
        with _locked(f"{artifact}-{version}"):
            if not jar.exists():
                _run(["mvn", "-B", "-q", "dependency:copy", f"-Dartifact=org.apache.beam:{artifact}:{version}",
                      f"-DoutputDirectory={dest}"], timeout=FETCH_TIMEOUT)
    return jar


def _go() -> str:
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FetchError("go is not installed (it builds Beam's Prism runner from the Go module proxy)")


def prism_binary(version: str = BEAM_JAVA_VERSION) -> Path:
    """Beam's Prism runner, built with ``go install github.com/apache/beam/sdks/v2/go/cmd/prism@v<version>``.

    The Go proxy serves the module, but the checksum database answers 404 for it, so its checksum check
    is skipped for ``github.com/apache/beam`` only (``GONOSUMDB``); every other module is still verified.
    """
    root = CACHE / f"prism-{version}"
    binary = root / "prism"
    if binary.exists():
        return binary
    with _locked(f"prism-{version}"):
        if binary.exists():
            return binary
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOBIN": str(root), "GONOSUMDB": "github.com/apache/beam", "GOFLAGS": "-buildvcs=false"}
        cmd = [_go(), "install", f"github.com/apache/beam/sdks/v2/go/cmd/prism@v{version}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT, env=env)
        except subprocess.TimeoutExpired:
            raise FetchError(f"`{' '.join(cmd)}` took longer than {FETCH_TIMEOUT}s") from None
        if done.returncode != 0 or not binary.exists():
            raise FetchError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return binary


if __name__ == "__main__":  # fetch everything the cluster tests use
    print(f"flink: {flink_home()}")
    print(f"spark: {spark_home()}")
    for artifact in ("beam-runners-flink-1.19", "beam-runners-spark-3"):
        print(f"{artifact}: {len(beam_classpath(artifact))} jars")
    print(f"beam-runners-flink-1.19 shaded: {shaded_classpath('beam-runners-flink-1.19')[0]}")
    try:
        print(f"prism: {prism_binary()}")
    except FetchError as exc:
        print(f"prism: not built ({exc})", file=sys.stderr)
