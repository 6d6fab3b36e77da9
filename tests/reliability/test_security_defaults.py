"""Security defaults: the server listens on loopback unless told otherwise; nothing is unpickled.

The bind address is read from the kernel (``/proc/net/tcp``), not from our own arguments: the
listening socket of ``python main.py serve`` started *without* ``--host`` must be 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests
import torch

from lib.networks.checkpoint import CheckpointError, load_checkpoint
from lib.server.auth import bind_host
from tests.conftest import ROOT, copy_studies, free_port, server_env


def listening_addresses(port: int) -> set[str]:
    """IPv4/IPv6 addresses with a socket in LISTEN state on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = TCP_LISTEN
                found.add(address)
    return found


def test_serve_listens_on_loopback_only_by_default(tmp_path):
    port = free_port()
    studies = copy_studies(tmp_path / "studies")
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "serve", "--studies", str(studies),
                                "--port", str(port), "--conf", "model_dir", str(tmp_path / "model")],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=server_env())
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/info/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(1.0)
        assert listening_addresses(port) == {"0100007F"}, listening_addresses(port)  # 127.0.0.1, nothing else
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_monailabel_start_server_default_bind_is_recognised_as_exposed():
    """``monailabel start_server`` binds 0.0.0.0 unless ``--host``: the app then warns without auth."""
    assert bind_host(["monailabel.main", "start_server", "--app", "a"]) == "0.0.0.0"
    assert bind_host(["monailabel.main", "start_server", "--host", "127.0.0.1"]) == "127.0.0.1"
    assert bind_host(["main.py", "serve"]) is None


def test_a_checkpoint_that_pickles_code_is_refused_not_run(tmp_path):
    """Weights are loaded with ``weights_only=True``: a pickle with a callable is an error."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"format": "muscle-networks/1", "meta_json": "{}", "state_dict": {"w": Evil()}}, tmp_path / "evil.pt")
    try:
        load_checkpoint(tmp_path / "evil.pt")
        raised = False
    except CheckpointError:
        raised = True
    assert raised and not marker.exists()
