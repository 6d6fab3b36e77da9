"""Department scale: Orthanc's index in PostgreSQL behind the same DICOMweb URL.

A private PostgreSQL cluster (Debian's binaries, run as the ``postgres`` user, on a free
loopback port) and ``ORTHANC_POSTGRESQL=... bash scripts/orthanc.sh``; a phantom uploaded
with ``main.py upload`` is found through DICOMweb and its index rows are in PostgreSQL, not
in Orthanc's SQLite file. Skips, saying why, where PostgreSQL or orthanc-postgresql is absent.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, server_env
from tests.viewers.test_orthanc import USER, Orthanc

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def as_postgres(*cmd, **kwargs):
    """PostgreSQL refuses to run as root: its tools run as the ``postgres`` user."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def postgres():
    if not PG_BIN or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("PostgreSQL server binaries are not installed (Debian: postgresql)")
    bin_dir = Path(PG_BIN[-1])
    base = Path(tempfile.mkdtemp(prefix="pg"))  # not under pytest's root-only temp dir
    base.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    port = free_port()
    run = as_postgres(str(bin_dir / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres")
    assert run.returncode == 0, run.stderr
    run = as_postgres(str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "log"), "-w", "-o",
                      f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start")
    assert run.returncode == 0, run.stderr
    try:
        assert as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                           "orthanc").returncode == 0
        yield {"port": port, "base": base, "psql": str(bin_dir / "psql")}
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_the_index_lives_in_postgresql_behind_the_same_dicomweb_url(postgres, tmp_path, monkeypatch):
    config = tmp_path / "postgresql.json"
    config.write_text(json.dumps({"PostgreSQL": {
        "EnableIndex": True, "EnableStorage": False, "Host": "127.0.0.1", "Port": postgres["port"],
        "Database": "orthanc", "Username": "postgres", "Password": "", "Lock": False}}))
    monkeypatch.setenv("ORTHANC_POSTGRESQL", str(config))  # read by Orthanc.install_error and the script
    why = Orthanc.install_error()
    if why:
        pytest.skip(f"orthanc-postgresql cannot be installed here: {why}")
    pacs = Orthanc(tmp_path)
    try:
        env = {**server_env(), "MONAI_LABEL_DICOMWEB_USERNAME": USER, "MONAI_LABEL_DICOMWEB_PASSWORD": pacs.password}
        run = subprocess.run([sys.executable, "main.py", "upload", str(ROOT / "studies" / "real_leg_t1.nii.gz"),
                              "--url", pacs.url], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        series = pacs.client.search_for_series(search_filters={"Modality": "MR"})
        assert len(series) == 1 and series[0]["0020000E"]["Value"][0] in run.stdout
    finally:
        pacs.stop()
    rows = as_postgres(postgres["psql"], "-h", "127.0.0.1", "-p", str(postgres["port"]), "-U", "postgres", "-d",
                       "orthanc", "-tAc", "SELECT resourceType, count(*) FROM Resources GROUP BY 1 ORDER BY 1")
    assert rows.returncode == 0, rows.stderr
    assert rows.stdout.split() == ["0|1", "1|1", "2|1", "3|1"]  # patient, study, series, instance
    assert not (tmp_path / "orthanc" / "storage" / "index").exists()  # no SQLite index
