"""The audit log over HTTP: the latest signed checkpoint and inclusion proofs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from tether.audit.log import AuditLog
from tether.errors import RequestError
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, errors

router = APIRouter(tags=["audit"], responses=errors(*AUTHENTICATED, 404))


def _log(request: Request) -> AuditLog:
    log: AuditLog | None = getattr(request.app.state, "audit", None)
    if log is None:
        raise RequestError("the audit log is switched off here (audit.enabled = false)")
    return log


@router.get(
    "/v1/audit/checkpoint",
    response_class=PlainTextResponse,
    dependencies=[Depends(require("audit:read"))],
)
async def checkpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse(_log(request).latest_checkpoint())


@router.get("/v1/audit/proof/{seq}", dependencies=[Depends(require("audit:read"))])
async def proof(seq: int, request: Request) -> dict[str, Any]:
    return _log(request).inclusion_proof(seq)


@router.get("/v1/audit/consistency/{first_size}", dependencies=[Depends(require("audit:read"))])
async def consistency(first_size: int, request: Request) -> dict[str, Any]:
    """Proof that the latest checkpoint extends a checkpoint of ``first_size`` records."""
    return _log(request).consistency_proof(first_size)
