"""OpenAI's ``POST /v1/embeddings``, answered by the embedding model the function store
searches with (WordLlama, from its wheel), for clients that index a project for context:
llama.vscode's chat with project context, RAG tools."""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request

from tether.errors import RequestError
from tether.server.auth import require, token_store
from tether.server.openapi import AUTHENTICATED, errors
from tether.server.routing import ApiRoute
from tether.server.schemas import EmbeddingsRequest
from tether.server.serving import governed_texts
from tether.store import FunctionStore
from tether.tokens import Principal

if TYPE_CHECKING:  # numpy comes with the embedding model, not with every install
    import numpy as np
    from numpy.typing import NDArray

router = APIRouter(
    route_class=ApiRoute,
    tags=["OpenAI"],
    dependencies=[Depends(require("completions"))],
    responses=errors(*AUTHENTICATED),
)


@router.post("/v1/embeddings")
async def embeddings(request: Request, body: EmbeddingsRequest) -> dict[str, Any]:
    store: FunctionStore = request.app.state.store
    embedder = store.searcher.embedder
    if embedder is None:
        raise RequestError(
            "this server has no embedding model: install tether[embeddings] and leave "
            "store.embeddings unset or true"
        )
    size = body.dimensions or embedder.dimensions
    if size > embedder.dimensions:
        raise RequestError(
            f"{embedder.name} gives at most {embedder.dimensions} dimensions; ask for that "
            "many or fewer",
            param="dimensions",
        )
    # Read as a prompt is: a vector index of a blocked value would keep what the policy
    # refuses a model, and a redacted one is embedded as the model would see it.
    inputs = {f"input[{i}]": text for i, text in enumerate(body.texts())}
    texts = list((await governed_texts(request, "embeddings", inputs)).values())

    def run() -> NDArray[np.float32]:  # CPU work: off the loop
        import numpy as np

        vectors = embedder.embed(texts)[:, :size]
        if size < embedder.dimensions:  # a shorter prefix, made unit length again
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        return vectors.astype("<f4")

    tokens = await asyncio.to_thread(embedder.count_tokens, texts)
    # The tokens read count against the token's tpm and daily budget, as an answer's do:
    # held while the texts are read, so requests sent at once cannot all pass the budget.
    principal: Principal = request.state.principal
    issued = token_store(request)
    release = issued.hold(principal, tokens)
    try:
        vectors = await asyncio.to_thread(run)
        issued.limiter.spend(principal.token_id, tokens, principal.issuers)
    finally:
        release()
    request.state.usage = (tokens, 0)  # for the access log and the usage ledger
    request.state.usage_model = embedder.name
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encoded(row, body)}
            for index, row in enumerate(vectors)
        ],
        "model": embedder.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encoded(row: NDArray[np.float32], body: EmbeddingsRequest) -> Any:
    """A row as the client asked: numbers, or base64 of little-endian float32 (what the
    OpenAI SDKs ask for and decode)."""
    if body.encoding_format == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return [float(x) for x in row]
