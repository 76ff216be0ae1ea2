"""Java processes for the test suite: find ``java``, start a JVM service, stop it for sure.

Every JVM the suite starts goes through :class:`JavaProcess`: its own process group (so a shell
script's children die with it), its log in a file, a deadline on every wait, and an ``atexit``
finaliser, so no Java is left running after the session, however it ends.

Example::

    from tests.services.java import JavaProcess, find_java, wait_port
    proc = JavaProcess("job server", [find_java(), "-cp", "lib/*", "Main"], log=Path("/tmp/js.log")).start()
    wait_port(8099, proc, timeout=60)
    proc.stop()
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["JavaProcess", "find_java", "free_port", "wait_port", "wait_until", "java_and_maven"]

_LIVE: "weakref.WeakSet[JavaProcess]" = weakref.WeakSet()


def find_java() -> str | None:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH (Java 11 or 17 for Flink 1.19 and Spark 3.5)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def java_and_maven(runner: str) -> tuple[bool, str]:
    """(True, "") when ``java`` and ``mvn`` (which fetches Beam's ``runner`` runner) are installed, else why not."""
    if not find_java():
        return False, "no java on PATH (apt-get install -y openjdk-17-jre-headless)"
    if not shutil.which("mvn"):
        return False, f"no mvn on PATH (apt-get install -y maven) to fetch Beam's {runner} runner"
    return True, ""


def java_home() -> str | None:
    java = find_java()
    return str(Path(os.path.realpath(java)).parent.parent) if java else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float, proc: "JavaProcess | None" = None, interval: float = 0.2):
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` s or when ``proc`` dies."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive:
            raise RuntimeError(f"{proc.name} exited with {proc.returncode} while waiting for {what}: {proc.tail()}")
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise RuntimeError(f"{what} not reached within {timeout:.0f}s" + (f" (last error: {last_exc})" if last_exc else "")
                       + (f": {proc.tail()}" if proc is not None else ""))


def wait_port(port: int, proc: "JavaProcess | None", timeout: float = 60, what: str | None = None) -> None:
    def listening() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True

    wait_until(what or f"port {port}", listening, timeout, proc)


class JavaProcess:
    """One JVM (or a script that execs one) in its own process group, logged to ``log``."""

    def __init__(self, name: str, cmd: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.name, self.cmd, self.log = name, [str(c) for c in cmd], Path(log)
        self.env = dict(os.environ if env is None else env)
        self.cwd = str(cwd) if cwd else None
        self.proc: subprocess.Popen | None = None

    def start(self) -> "JavaProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        _LIVE.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the whole group now (a crash, as a machine failure would be)."""
        self._signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group, SIGKILL it after ``timeout`` s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # stragglers in the group, if any
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _LIVE.discard(self)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


@atexit.register
def _stop_all() -> None:
    for proc in list(_LIVE):
        proc.stop(timeout=5)
