"""``tether serve``."""

from __future__ import annotations

from pathlib import Path

import click

from tether.cli.common import IntRange, settings_from_flags


@click.command()
@click.option("--host", help="Address to bind (server.host).")
@click.option("--port", type=IntRange(0, 65535), help="Port (server.port; 0 = any free).")
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    help="GGUF file to serve (engine.model_path).",
)
@click.option(
    "--engine",
    "engine_kind",
    metavar="KIND",
    help="Engine kind (engine.kind): llamacpp, openai, or one a plugin registers.",
)
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="URL",
    help="OpenAI-compatible upstream base URL; repeat for several (upstream.base_urls). "
    "Implies --engine openai.",
)
@click.option("--n-parallel", type=IntRange(1, 64), help="Requests generated at once.")
@click.option("--n-ctx", type=IntRange(min=256), help="Context window of each request, in tokens.")
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(
    host: str | None,
    port: int | None,
    model_path: Path | None,
    engine_kind: str | None,
    upstreams: tuple[str, ...],
    n_parallel: int | None,
    n_ctx: int | None,
    log_level: str,
) -> None:
    """Serve the OpenAI, FIM, llama.cpp and Tabby APIs on the configured model."""
    from tether.server.runner import serve as run

    if upstreams and engine_kind not in (None, "openai"):
        raise click.UsageError(
            f"--upstream is where an openai engine sends requests; --engine {engine_kind} "
            "has none: drop --upstream, or serve with --engine openai"
        )
    if upstreams:  # naming an upstream asks to serve it, not the embedded model
        engine_kind = "openai"
    settings = settings_from_flags(
        **{
            "server.host": host,
            "server.port": port,
            "engine.model_path": model_path,
            "engine.kind": engine_kind,
            "upstream.base_urls": list(upstreams) or None,
            "engine.n_parallel": n_parallel,
            "engine.n_ctx": n_ctx,
        }
    )
    run(settings, log_level=log_level)


COMMANDS = [serve]
