"""The audit log over HTTP: the latest signed checkpoint, inclusion and consistency
proofs, and records of what was done elsewhere."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import Field

from tether.audit.log import AuditLog
from tether.errors import RequestError
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, errors
from tether.server.routing import ApiRoute, known_query_only
from tether.server.schemas import WireModel

router = APIRouter(
    route_class=ApiRoute,
    tags=["audit"],
    responses=errors(*AUTHENTICATED, 404),
    dependencies=[Depends(known_query_only)],
)


def audit_log(request: Request) -> AuditLog:
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
    return PlainTextResponse(audit_log(request).latest_checkpoint())


@router.get("/v1/audit/proof/{seq}", dependencies=[Depends(require("audit:read"))])
async def proof(seq: Annotated[int, Path(ge=0)], request: Request) -> dict[str, Any]:
    return audit_log(request).inclusion_proof(seq)


@router.get("/v1/audit/consistency/{first_size}", dependencies=[Depends(require("audit:read"))])
async def consistency(first_size: Annotated[int, Path(ge=0)], request: Request) -> dict[str, Any]:
    """Proof that the latest checkpoint extends a checkpoint of ``first_size`` records."""
    return audit_log(request).consistency_proof(first_size)


class AuditEvent(WireModel):
    event: str = Field(
        pattern=r"^[a-z][a-z0-9_.:-]{0,63}$", description="What happened, e.g. eval.run."
    )
    details: dict[str, Any] = Field(default_factory=dict, description="Its facts; no content.")


@router.post(
    "/v1/audit/events",
    status_code=201,
    dependencies=[Depends(require("audit:write"))],
)
async def record_event(request: Request, body: AuditEvent) -> dict[str, Any]:
    """Record something done elsewhere (e.g. an evaluation run) as a signed audit record."""
    recorder = getattr(request.app.state, "audit_recorder", None)
    if recorder is None:
        raise RequestError("the audit log is switched off here (audit.enabled = false)")
    request_id: str = request.state.request_id
    recorder.record_event(request_id, request.state.principal, body.event, body.details)
    return {"object": "audit.event", "request_id": f"evt-{request_id}"}


class CommandRecord(WireModel):
    """An answer or refusal a command made in process while this server keeps the log."""

    request_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", description="The answer's id."
    )
    model_sha256: str = Field(max_length=256, description="The model that answered.")
    params: dict[str, Any] = Field(default_factory=dict)
    policy: list[dict[str, Any]] = Field(default_factory=list)
    findings: list[dict[str, Any]] = Field(default_factory=list)
    prompt: str | None = Field(default=None, description="Kept as audit.content says.")
    completion: str | None = Field(default=None, description="Kept as audit.content says.")
    completion_redacted: str | None = Field(
        default=None,
        description='The answer as the client got it, as audit.content = "redacted" keeps it.',
    )


@router.post(
    "/v1/audit/records",
    status_code=201,
    dependencies=[Depends(require("audit:write"))],
    responses={
        202: {
            "description": "Taken but not yet on disk: its disk refuses writes. The body "
            'says "written": false and the problem; the record waits in the server\'s '
            "memory, and is lost if the server stops first."
        }
    },
)
async def record_command(
    request: Request, response: Response, body: CommandRecord
) -> dict[str, Any]:
    """Record what a command answered in process (the log has one writer: this server).
    Answered once the record is on disk, under a signed checkpoint: 201. While the disk
    refuses it, 202 with ``written`` false: the record waits in the server's memory, in
    its place in the chain, and is lost if the server stops first."""
    recorder = getattr(request.app.state, "audit_recorder", None)
    if recorder is None:
        raise RequestError("the audit log is switched off here (audit.enabled = false)")
    fields = body.model_dump(include=set(CommandRecord.model_fields))
    seq = recorder.record_relayed(request.state.request_id, request.state.principal, fields)
    log = audit_log(request)
    await asyncio.to_thread(log.flush)
    if log.covers(seq):
        return {"object": "audit.record", "seq": seq, "written": True}
    response.status_code = 202
    return {"object": "audit.record", "seq": seq, "written": False, "problem": log.problem}
