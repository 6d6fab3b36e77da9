"""``python main.py serve``: start MONAI Label with this app, on loopback, port 8000.

By default it serves a working copy of the embedded ``studies/`` under ``var/studies`` so that
labels saved from a viewer, the datastore index and inference results never dirty the git
tree; ``--studies`` serves any folder (or a DICOMweb URL) in place.

``--dicomweb URL`` serves a PACS (README: "Orthanc (DICOMweb PACS)"): the login comes from
``MONAI_LABEL_DICOMWEB_USERNAME`` / ``_PASSWORD`` or from ``scripts/orthanc.sh``
(``lib/data/dicom/dicomweb.py``); before the server starts, the PACS is asked for its MR series
with that login, so a wrong URL or password ends in one line instead of a server that lists
nothing. MONAI Label's local copies of the series go to ``var/dicomweb_cache``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from lib.errors import UserError
from lib.paths import APP_DIR, EMBEDDED_STUDIES, WORKING_STUDIES, ROOT
from lib.settings import apply_server_defaults


def add_arguments(parser):
    parser.add_argument("--studies", help="studies folder or DICOMweb URL (default: working copy of studies/)")
    parser.add_argument("--dicomweb", metavar="URL", help="serve a DICOMweb PACS, e.g. http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (OHIF's MONAI Label panel expects 8000)")
    parser.add_argument("--conf", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[],
                        help="app config passed to MONAI Label, repeatable")
    parser.add_argument("--reset", action="store_true", help="re-seed the working copy from studies/")


def working_studies(reset: bool = False) -> Path:
    """The served copy of the embedded datastore, seeded once from ``studies/``."""
    if reset and WORKING_STUDIES.exists():
        shutil.rmtree(WORKING_STUDIES)
    if not WORKING_STUDIES.exists():
        WORKING_STUDIES.parent.mkdir(parents=True, exist_ok=True)
        ignore = shutil.ignore_patterns("datastore_v2.json", ".lock", "original")
        shutil.copytree(EMBEDDED_STUDIES, WORKING_STUDIES, ignore=ignore)
    return WORKING_STUDIES


def prepare_dicomweb(url: str) -> int:
    """Login and cache settings for MONAI Label, and a first search; returns the MR series count."""
    from lib.data.dicom.dicomweb import check_pacs, dicomweb_client, dicomweb_login
    from lib.settings import SERVER_DEFAULTS

    login = dicomweb_login()
    if login:  # MONAI Label reads these (and start_server copies them into its environment)
        os.environ["MONAI_LABEL_DICOMWEB_USERNAME"], os.environ["MONAI_LABEL_DICOMWEB_PASSWORD"] = login
    os.environ.setdefault("MONAI_LABEL_DICOMWEB_CACHE_PATH", str(ROOT / "var" / "dicomweb_cache"))
    search = SERVER_DEFAULTS["MONAI_LABEL_DICOMWEB_SEARCH_FILTER"]
    series = check_pacs(dicomweb_client(url, login), search)
    print(f"serve: {len(series)} series match {search} at {url}", flush=True)
    return len(series)


def server_argv(studies: str, host: str, port: int, conf) -> list[str]:
    argv = ["monailabel", "start_server", "--app", str(APP_DIR), "--studies", studies,
            "--host", host, "--port", str(port)]
    for key, value in conf:
        argv += ["--conf", key, value]
    return argv


def run(args) -> int:
    if args.studies and args.dicomweb:
        raise UserError("give either --studies or --dicomweb, not both")
    studies = args.dicomweb or args.studies
    if studies is None:
        studies = str(working_studies(args.reset))
    elif not studies.startswith(("http://", "https://")) and not Path(studies).is_dir():
        raise UserError(f"studies folder not found: {studies}")
    # the venv's tools (itkimage2segimage, monailabel) must be found even when not activated
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if studies.startswith(("http://", "https://")):
        prepare_dicomweb(studies)
    from monailabel.main import Main  # heavy import: only when really serving

    apply_server_defaults()
    sys.argv = server_argv(studies, args.host, args.port, args.conf)
    Main().run()
    return 0
