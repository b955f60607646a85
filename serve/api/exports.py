"""Corrected analyses leave the service as a training data set (a zip archive)."""
from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from serve.core.errors import documented
from serve.deps import CurrentPrincipal, ImageStoreDep, SessionDep, SettingsDep
from serve.schemas.exports import ExportCreate
from serve.services import exports as service

router = APIRouter(prefix="/v1/exports", tags=["exports"])


@router.post("", response_class=FileResponse,
             responses={200: {"content": {"application/zip": {}},
                              "description": "annotations.json (COCO-extended) + images/"},
                        **documented(413)})
async def create_export(
    body: ExportCreate, principal: CurrentPrincipal, session: SessionDep,
    store: ImageStoreDep, settings: SettingsDep, cleanup: BackgroundTasks,
) -> FileResponse:
    """Admins or the canteen's kiosk key: analyses (with a corrected item) as COCO-extended."""
    query = service.ExportQuery(canteen_id=body.canteen_id, start=body.start, end=body.end,
                                corrected_only=body.corrected_only)
    export = await run_in_threadpool(lambda: service.write_export(
        session, principal, store, query, max_bytes=int(settings.max_export_mb * 1048576),
        fmt=body.format))
    cleanup.add_task(export.path.unlink, missing_ok=True)
    counts = service.export_summary(export)
    headers = {f"X-TrayLens-Export-{k.replace('_', '-').title()}": str(v)
               for k, v in counts.items()}
    return FileResponse(export.path, media_type="application/zip",
                        filename=service.export_filename(query), headers=headers,
                        background=cleanup)
