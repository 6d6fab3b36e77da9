"""Shared fixtures: the real MONAI Label server, started as the README says, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: the server and the tests share 2 cores

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env() -> dict:
    """The environment an activated venv gives: ``monailabel start_server`` runs ``python -m
    monailabel.main`` from PATH, so the venv's bin folder must come first."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}


class Server:
    """A ``python main.py serve`` subprocess on a free loopback port and its own studies copy."""

    def __init__(self, studies: Path, log_path: Path, extra_args=(), monailabel_cli: bool = False, model_dir=None,
                 compile_networks: bool = False):
        self.studies = studies
        # its own live-model folder: training in one test server never touches apps/muscle/model
        self.model_dir = Path(model_dir) if model_dir else log_path.parent / f"model_{log_path.stem}"
        # Compiling (lib.networks.compiled, on by default) is off unless a test asks for it: dozens
        # of servers each compiling in the background would load CI's 2 cores unpredictably. It
        # gives the same labels; tests/networks/test_compiled.py and the server test there cover it.
        extra_args = ["--conf", "model_dir", str(self.model_dir),
                      "--conf", "compile_networks", str(compile_networks).lower(), *extra_args]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        if monailabel_cli:  # the MONAI Label way: monailabel start_server --app ... --studies ...
            cmd = [str(Path(sys.executable).parent / "monailabel"), "start_server", "--app", str(ROOT / "apps" / "muscle"),
                   "--studies", str(studies), "--host", "127.0.0.1", "--port", str(self.port), *extra_args]
        else:
            cmd = [sys.executable, str(ROOT / "main.py"), "serve", "--studies", str(studies),
                   "--host", "127.0.0.1", "--port", str(self.port), *extra_args]
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=server_env())

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/info/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1.0)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def __enter__(self) -> "Server":
        """``with Server(...) as srv:`` waits until it serves and always stops it."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def run_scoring(self, method: str, params=None, timeout: float = 600) -> dict:
        """``POST /scoring/<method>`` (again while another scoring task runs) and wait for that
        task; returns its final status record."""
        deadline = time.time() + timeout
        r = requests.post(f"{self.url}/scoring/{method}", json=params, timeout=60)
        while r.status_code == 429:  # another scoring task (e.g. the one after a publish) still runs
            assert time.time() < deadline
            time.sleep(1)
            r = requests.post(f"{self.url}/scoring/{method}", json=params, timeout=60)
        assert r.status_code == 200, r.text
        task_id = r.json()["id"]
        while True:
            tasks = requests.get(f"{self.url}/scoring/", params={"all": True}, timeout=30).json()
            task = next(t for t in tasks if t["id"] == task_id)
            if task["status"] not in ("SUBMITTED", "RUNNING"):
                return task
            assert time.time() < deadline
            time.sleep(1)

    def wait_scoring_idle(self, timeout: float = 600) -> None:
        """Until no scoring task waits or runs (the server queues slice scoring by itself at
        start-up, after saves and after a publish)."""
        deadline = time.time() + timeout
        while True:
            r = requests.get(f"{self.url}/scoring/", params={"all": True}, timeout=30)
            if r.status_code == 404 or all(t["status"] not in ("SUBMITTED", "RUNNING") for t in r.json()):
                return
            assert time.time() < deadline, f"scoring still busy after {timeout} s"
            time.sleep(1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def copy_studies(dest: Path) -> Path:
    shutil.copytree(ROOT / "studies", dest, ignore=shutil.ignore_patterns("datastore_v2.json", ".lock", "original"))
    return dest


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real server for the session, serving a private copy of the embedded studies."""
    base = tmp_path_factory.mktemp("server")
    with Server(copy_studies(base / "studies"), base / "server.log") as srv:
        yield srv
