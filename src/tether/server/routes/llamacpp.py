"""llama.cpp server's own API: ``/completion`` and ``/infill``, for its editor plugins and
the clients that speak it (llama.vim, llama.vscode, Continue's llama.cpp provider), and
its ``/tokenize``, ``/detokenize``, ``/props`` and ``/slots`` (and saving, restoring and
erasing a slot's cache)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tether.engines.base import SequenceKeeper, SequenceReporter, SequenceState
from tether.errors import (
    ContextLengthError,
    NoFreeSequenceError,
    NotFoundError,
    NotSupportedError,
    RequestError,
)
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, GENERATING, errors
from tether.server.routes.formats import InfillFormat
from tether.server.routing import ApiRoute
from tether.server.schemas import (
    DetokenizeRequest,
    InfillRequest,
    LlamaCompletionRequest,
    LlamaSamplingFields,
    SlotFileRequest,
    TokenizeRequest,
)
from tether.server.serving import governed_texts, serve_task, state_of, tokenizer_of

router = APIRouter(
    route_class=ApiRoute,
    tags=["llama.cpp"],
    dependencies=[Depends(require("completions"))],
    responses=errors(*GENERATING),
)
about = APIRouter(
    route_class=ApiRoute,
    tags=["llama.cpp"],
    dependencies=[Depends(require("completions"))],
    responses=errors(*AUTHENTICATED),
)

# What a client reads of the server, every few seconds as some poll it: no request
# of this kind counts against a token's rpm, which its completions would then share.
status = APIRouter(
    route_class=ApiRoute,
    tags=["llama.cpp"],
    dependencies=[Depends(require("completions", counted=False))],
    responses=errors(*AUTHENTICATED),
)

# Saving a slot writes what its requests read (the tokens of their prompts) to disk.
slot_actions = APIRouter(
    route_class=ApiRoute,
    tags=["llama.cpp"],
    dependencies=[Depends(require("slots"))],
    responses=errors(*AUTHENTICATED, 404, 501),
)


@router.post("/completion")
@router.post("/completions")  # llama-server's other name for it
async def completion(request: Request, body: LlamaCompletionRequest) -> Response:
    return await _serve(request, body)


@router.post("/infill")
async def infill(request: Request, body: InfillRequest) -> Response:
    return await _serve(request, body)


async def _serve(request: Request, body: LlamaCompletionRequest | InfillRequest) -> Response:
    settings = state_of(request).settings
    task = body.to_task(settings.generation.max_tokens, settings.generation.seed)
    answer = InfillFormat(tuple(body.response_fields))
    # Its timings split the prompt's time from the predicting at the first token.
    return await serve_task(request, task, answer, stream=body.streams, in_pieces=True)


@about.post("/tokenize")
async def tokenize(request: Request, body: TokenizeRequest) -> dict[str, Any]:
    """The model's tokens for ``content``, at most a context window's; with
    ``with_pieces``, each as ``{id, piece}``, the piece a string, or its bytes where they
    are not whole UTF-8 characters."""
    tokenizer = tokenizer_of(request)
    n_ctx = state_of(request).pipeline.engine.info().n_ctx
    # Governed as a prompt is, before tokenization: a client that counts tokens gets the
    # count of what the model would be shown.
    content = (await governed_texts(request, "tokenize", {"content": body.content}))["content"]

    def run() -> list[Any]:  # long text takes a while: not on the event loop
        ids = tokenizer.token_ids(
            content, add_special=body.add_special, parse_special=body.parse_special
        )
        if len(ids) > n_ctx:  # what a request can use; bounds the answer's size too
            raise ContextLengthError(
                f"the text is {len(ids)} tokens, more than the context window of {n_ctx}; "
                "send it in pieces",
                param="content",
            )
        if not body.with_pieces:
            return list(ids)
        return [{"id": token, "piece": _piece(tokenizer.token_bytes(token))} for token in ids]

    return {"tokens": await asyncio.to_thread(run)}


@about.post("/detokenize")
async def detokenize(request: Request, body: DetokenizeRequest) -> dict[str, str]:
    """The text that ``tokens`` spell, special tokens included; at most a context
    window's tokens, as ``/tokenize`` gives."""
    tokenizer = tokenizer_of(request)
    n_ctx = state_of(request).pipeline.engine.info().n_ctx
    if len(body.tokens) > n_ctx:
        raise ContextLengthError(
            f"{len(body.tokens)} tokens are more than the context window of {n_ctx}; "
            "send them in pieces",
            param="tokens",
        )

    def run() -> str:
        spelled = b"".join(tokenizer.token_bytes(token) for token in body.tokens)
        return spelled.decode("utf-8", errors="replace")

    return {"content": await asyncio.to_thread(run)}


@status.get("/props")
async def props(request: Request) -> dict[str, Any]:
    """What llama.cpp's clients read about the server: the context size, the defaults a
    ``/completion`` samples with, the model and its chat template."""
    state = state_of(request)
    info = state.pipeline.engine.info()
    fields = LlamaSamplingFields.model_fields
    return {
        "default_generation_settings": {
            "n_ctx": info.n_ctx,
            "params": {
                "n_predict": state.settings.generation.max_tokens,
                "temperature": fields["temperature"].default,
                "top_p": fields["top_p"].default,
                "seed": state.settings.generation.seed,
            },
        },
        "total_slots": info.n_seq,
        "model_alias": info.model_id,
        "model_path": info.model_path or info.model_id,
        "chat_template": info.chat_template or "",
        "bos_token": info.bos_token,
        "eos_token": info.eos_token,
        "modalities": {"vision": False, "audio": False},
        "build_info": info.engine_version,
    }


@status.get("/slots", responses=errors(503))
async def slots(request: Request, fail_on_no_slot: bool = False) -> list[dict[str, Any]]:
    """Each of the embedded engine's sequences (llama.cpp's slots): whether it is
    generating, and for the request it holds, its sampling parameters, how many tokens it
    has read and generated, and whether it drafts from its prompt (``speculative``).
    Prompts and answers are not shown: a token that may complete does not read other
    callers' text. With ``fail_on_no_slot``, a 503 (``no_slot_available``) when every
    sequence is busy, for a load balancer's check."""
    engine = state_of(request).pipeline.engine
    if not isinstance(engine, SequenceReporter):
        raise RequestError(
            f"the {engine.info().engine} engine has no sequences of its own: it serves an "
            "upstream's model. Ask the upstream's /slots, or see /metrics for this "
            "gateway's requests in flight"
        )
    states = engine.sequences()
    if fail_on_no_slot and all(state.busy for state in states):
        raise NoFreeSequenceError(
            f"every sequence is generating ({len(states)} of {len(states)}); send the "
            "request to another server, or ask again shortly",
            retry_after_s=1,
        )
    return [_slot(state) for state in states]


@slot_actions.post("/slots/{id_slot}")
async def slot_action(
    request: Request,
    id_slot: int,
    action: Literal["save", "restore", "erase"],
    body: SlotFileRequest | None = None,
) -> dict[str, Any]:
    """Save a sequence's KV cache to a file in ``engine.slot_save_path``, restore one into
    it, or erase it, as llama.cpp's server does; each waits until no request holds the
    sequence. A restored cache serves the next request that shares its prefix."""
    state = state_of(request)
    engine = state.pipeline.engine
    if not isinstance(engine, SequenceKeeper):
        raise RequestError(
            f"the {engine.info().engine} engine has no sequences of its own: it serves an "
            "upstream's model. Ask the upstream's /slots"
        )
    if action == "erase":
        return {"id_slot": id_slot, "n_erased": await engine.erase_sequence(id_slot)}
    folder = state.settings.engine.slot_save_path
    if folder is None:
        raise NotSupportedError(
            "saving and restoring slots needs a directory for the files: set "
            "engine.slot_save_path (TETHER_ENGINE_SLOT_SAVE_PATH) and restart the server"
        )
    if body is None or body.filename is None:
        raise RequestError(
            f'{action} needs a body naming the file: {{"filename": "..."}}', param="filename"
        )
    path = folder / body.filename
    if action == "save":
        await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
        moved = await engine.save_sequence(id_slot, path)
    else:
        if not await asyncio.to_thread(path.is_file):
            raise NotFoundError(
                f"no saved slot named {body.filename} in engine.slot_save_path; save one "
                "first with action=save",
                param="filename",
            )
        moved = await engine.restore_sequence(id_slot, path)
    tokens, size, took = _SLOT_FILE_FIELDS[action]
    return {
        "id_slot": id_slot,
        "filename": body.filename,
        tokens: moved.tokens,
        size: moved.bytes,
        "timings": {took: moved.seconds * 1000},
    }


# llama-server's names for what a save or a restore moved, and how long it took.
_SLOT_FILE_FIELDS = {
    "save": ("n_saved", "n_written", "save_ms"),
    "restore": ("n_restored", "n_read", "restore_ms"),
}


def _slot(state: SequenceState) -> dict[str, Any]:
    slot: dict[str, Any] = {
        "id": state.id,
        "n_ctx": state.n_ctx,
        "speculative": state.drafting,
        "is_processing": state.busy,
    }
    params = state.params
    if params is None:
        return slot
    return slot | {
        "id_task": state.task,
        "n_prompt_tokens": state.prompt_tokens,
        "n_prompt_tokens_processed": state.read_tokens,
        "n_prompt_tokens_cache": state.cached_tokens,
        "params": {
            "n_predict": params.max_tokens,
            "seed": params.seed,
            "temperature": params.temperature,
            "top_p": params.top_p,
        },
        "next_token": [
            {
                "has_next_token": True,
                "n_remain": params.max_tokens - state.generated,
                "n_decoded": state.generated,
            }
        ],
    }


def _piece(spelled: bytes) -> str | list[int]:
    """A token's text as llama.cpp gives it: a string when it is valid UTF-8, else the
    byte values (a token may spell part of a character)."""
    try:
        return spelled.decode("utf-8")
    except UnicodeDecodeError:
        return list(spelled)
