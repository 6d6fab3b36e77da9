"""``GET /evaluation/``: the last evaluation report the server made (scoring method ``evaluation``).

    GET /evaluation/                 summary.json (Dice per region, muscle, group; classifier)
    GET /evaluation/report           report.md (Markdown; figure links are relative)
    GET /evaluation/figures/<name>   one PNG of the report

404 with a message until ``POST /scoring/evaluation`` has run. Only files inside the report
folder are served, by exact name.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import FileResponse, PlainTextResponse

FIGURE_NAME = re.compile(r"[A-Za-z0-9_.-]+\.png")


def _folder() -> Path:
    from monailabel.interfaces.utils.app import app_instance

    from lib.evaluation.run import report_dir

    return report_dir(app_instance().model_dir)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise HTTPException(status_code=404, detail="no evaluation yet: run POST /scoring/evaluation first")
    return path


def evaluation_summary():
    return FileResponse(_existing(_folder() / "summary.json"), media_type="application/json")


def evaluation_report():
    return PlainTextResponse(_existing(_folder() / "report.md").read_text(), media_type="text/markdown")


def evaluation_figure(name: str):
    if not FIGURE_NAME.fullmatch(name) or name.startswith("."):
        raise HTTPException(status_code=404, detail=f"no such figure: {name!r}")
    return FileResponse(_existing(_folder() / "figures" / name), media_type="image/png")


def install_evaluation_routes() -> None:
    """Add the routes to MONAI Label's FastAPI app (idempotent; a no-op outside the server)."""
    try:
        from monailabel.app import app
    except Exception:
        return
    if any(getattr(r, "path", "") == "/evaluation/" for r in app.routes):
        return
    for path, endpoint, summary in (("/evaluation/", evaluation_summary, "Last evaluation report (JSON)"),
                                    ("/evaluation/report", evaluation_report, "Last evaluation report (Markdown)"),
                                    ("/evaluation/figures/{name}", evaluation_figure, "A figure of the last report")):
        app.add_api_route(path, endpoint, methods=["GET"], summary=summary, tags=["Evaluation"])
    app.middleware_stack = None
