"""``tether suggest``: a model-proposed change, written as a patch to review and apply."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from tether.cli.backend import Backend, call_server, server_trace
from tether.cli.common import (
    EXIT_NO,
    OUTPUT_FILE,
    STDOUT,
    Progress,
    backend_options,
    check_output_folder,
    make_params,
    run_async,
    sampling_options,
    settings_from_flags,
    terminated_as_interrupted,
    with_backend,
    write_output,
)
from tether.databases import private_folder
from tether.engines.base import SamplingParams
from tether.errors import (
    ContextLengthError,
    ForbiddenError,
    NotFoundError,
    PatchError,
    RequestError,
)
from tether.pipeline import Completion, Findings
from tether.repro.gitfiles import MANIFEST_SUFFIX
from tether.repro.manifest import Manifest, from_trace
from tether.settings import Settings
from tether.suggestions.patch import apply_patch, patch_target, place_patch
from tether.suggestions.paths import check_relative, inside, project_root
from tether.suggestions.service import (
    ends_its_last_line,
    file_too_long,
    line_end_runs,
    suggestion_from,
    suggestion_task,
    usual_line_ending,
)
from tether.templates import PromptTemplates
from tether.textfile import read_text, write_atomically
from tether.traces import Trace


def _remote(
    settings: Settings,
    server: str,
    token: str | None,
    path: str,
    source: str,
    instruction: str,
    params: SamplingParams,
) -> tuple[str, bool, str, int, list[str], str, bool]:
    """(patch, truncated, id, completion tokens, rules that blocked it, why there is no
    file, whether it was traced) from a server's /v1/suggestions."""
    body: dict[str, Any] = {
        "path": path,
        "source": source,
        "instruction": instruction,
        "temperature": params.temperature,
        "seed": params.seed,
    }
    if params.max_tokens_explicit:
        body["max_tokens"] = params.max_tokens

    answer = call_server(settings, server, token, "POST", "/v1/suggestions", body)
    try:
        used = int(answer["usage"]["completion_tokens"])
        fields = answer.get("tether", {})
        blocked = Findings.from_records(fields.get("findings", [])).blocking
        patch = str(answer["patch"] or "")
        problem = str(answer.get("problem") or "")
        traced = fields.get("trace_id", answer["id"]) is not None
        return patch, bool(answer["truncated"]), str(answer["id"]), used, blocked, problem, traced
    except (AttributeError, KeyError, TypeError, ValueError):
        raise RequestError(
            f"the server at {server} is not a tether server: it answered /v1/suggestions "
            "with JSON of another shape; check --server (or TETHER_SERVER)",
            param="server",
        ) from None


NAME_BYTES = 120  # of the file's name in a patch's name; the rest is date, id, suffixes


def _manifest_of(path: Path) -> Path:
    """Where a patch's or a file's reproducibility manifest lies: beside it."""
    return path.with_name(path.name + MANIFEST_SUFFIX)


_UNTRACED = (
    "note: no reproducibility manifest: traces are off (traces.enabled = false), "
    "and a manifest is made from the suggestion's trace"
)


def _explained(completion_id: str, traced: bool) -> str:
    """Where to read why, when a trace of the answer is kept."""
    return f" `tether explain {completion_id}` shows the findings" if traced else ""


def _remote_trace(
    settings: Settings, server: str, token: str | None, trace_id: str
) -> Trace | None:
    """The server's trace of a suggestion, for its manifest; None when the token may not read it."""
    try:
        return server_trace(settings, server, token, trace_id)[0]
    except (ForbiddenError, NotFoundError) as exc:
        click.echo(f"note: no reproducibility manifest: {exc.message}", err=True)
        return None


def _in_project(file: Path) -> str:
    """``file`` relative to the project root, as the patch header will name it."""
    root = project_root(Path.cwd())
    try:
        relative = file.resolve().relative_to(root).as_posix()
    except ValueError:
        raise PatchError(
            f"{file} is outside the project {root}; run tether suggest inside its project"
        ) from None
    return check_relative(relative)


def _apply(patch_file: Path, as_json: bool) -> None:
    """Apply a reviewed patch to its file, which must lie inside this project."""
    patch = read_text(patch_file, exact=True)
    name = patch_target(patch)
    root = project_root(Path.cwd())
    target = inside(root, name)
    if not target.is_file():
        raise PatchError(
            f"the patch changes {name}, which is not a file in {root}; run inside the "
            "project the suggestion was made for"
        )
    # The file's provenance travels with it: checked, like the patch, before anything is
    # written, so a refusal leaves the project as it was.
    manifest = _manifest_of(patch_file)
    provenance = None
    if manifest.is_file():
        provenance = read_text(manifest, exact=True)
        Manifest.from_json(provenance, str(manifest))
        _check_manifest_target(root, name + MANIFEST_SUFFIX)
    placed = place_patch(read_text(target, exact=True), patch)
    write_atomically(target, placed.text)
    if provenance is not None:
        write_atomically(inside(root, name + MANIFEST_SUFFIX), provenance)
    shown = os.path.relpath(target)
    if as_json:
        moved = [{"hunk_line": move.hunk, "by": move.by} for move in placed.moves]
        click.echo(json.dumps({"applied": shown, "moved": moved}))
        return
    click.echo(f"applied {patch_file} to {shown}")
    for move in placed.moves:  # the file changed elsewhere since: say where each went
        lines = f"{abs(move.by)} line{'s' if abs(move.by) != 1 else ''}"
        way = "lower" if move.by > 0 else "higher"
        click.echo(f"  the hunk at line {move.hunk} of the patch went {lines} {way}")


def _check_manifest_target(root: Path, name: str) -> None:
    """The manifest beside the patched file may be made or replaced: a regular file or
    nothing, never a link (which would write wherever it points) or a folder."""
    where = root / name
    if where.is_symlink():
        raise PatchError(
            f"refusing to write {name}: it is a symbolic link; tether writes the manifest "
            "only as a plain file in the project (remove the link, then apply again)"
        )
    inside(root, name)
    if where.exists() and not where.is_file():
        raise PatchError(f"refusing to write {name}: it is not a regular file; move it away")


def _shortened(name: str, limit: int = NAME_BYTES) -> str:
    """``name`` cut to ``limit`` bytes of UTF-8, so that the patch's and its manifest's
    names stay within the 255 bytes file systems allow."""
    return name.encode()[:limit].decode(errors="ignore")


def _given_besides_apply() -> Iterator[str]:
    """The arguments and options on the command line that --apply has no use for."""
    ctx = click.get_current_context()
    for param in ctx.command.params:
        if param.name in ("apply_file", "as_json", "help") or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE:
            yield param.opts[0] if isinstance(param, click.Option) else param.human_readable_name


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("-i", "--instruction", help="What to change.")
@click.option(
    "-o",
    "--output",
    type=OUTPUT_FILE,
    help="Where to write the patch ('-': standard output, without a manifest); default "
    "under the data directory.",
)
@click.option(
    "--apply",
    "apply_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Apply a reviewed patch instead of making one.",
)
@sampling_options(None)
@backend_options
@terminated_as_interrupted()  # SIGTERM cleans up as Ctrl-C does
def suggest(
    file: Path | None,
    instruction: str | None,
    output: Path | None,
    apply_file: Path | None,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Ask for a change to FILE and write it as a unified diff to review.

    \b
    tether suggest app.py -i "add type hints"     # prints the patch path
    tether suggest --apply PATCH                   # applies it after review
    """
    if apply_file is not None:
        extra = list(_given_besides_apply())
        if extra:
            named = " and ".join([", ".join(extra[:-1]), extra[-1]] if extra[1:] else extra)
            raise click.UsageError(
                f"--apply takes only the patch and --json; drop {named}, or drop --apply "
                "to make a new suggestion"
            )
        _apply(apply_file, as_json)
        return
    if file is None or not instruction:
        raise click.UsageError("give FILE and --instruction, or --apply PATCH")
    if as_json and output == STDOUT:
        raise click.UsageError("-o - prints the patch and --json a summary: give one of them")
    if not file.is_file():
        raise RequestError(f"{file} is not a file")
    check_output_folder(output)
    if output not in (None, STDOUT) and output.exists() and output.samefile(file):
        raise click.UsageError(
            f"-o {output} is {file} itself: the patch would replace the file it changes; "
            "give the patch another name, or leave out -o"
        )
    settings = settings_from_flags()
    source = read_text(file, exact=True)  # its "\r\n" endings stay in the patch
    relative = _in_project(file)
    params = make_params(settings, max_tokens, temperature, seed, default_temperature=0.2)
    if server:
        found = _remote(settings, server, token, relative, source, instruction, params)
        patch, truncated, completion_id, used, blocked, problem, traced = found
        trace = _remote_trace(settings, server, token, completion_id) if patch and traced else None
    else:
        templates = PromptTemplates(settings.templates.dir)
        task = suggestion_task(
            relative, source, instruction, params, templates, settings.engine.n_ctx
        )
        progress = Progress("suggesting")

        async def body(backend: Backend) -> tuple[Completion, Trace | None]:
            answer = await backend.run(task, progress)
            return answer, await backend.trace(answer.id) if answer.traced else None

        try:
            completion, trace = run_async(lambda: with_backend(settings, server, token, body))
        except ContextLengthError as exc:
            raise file_too_long(relative, exc) from exc
        finally:  # an interrupted command leaves no counter where its last line goes
            progress.done()
        allowed = task.params.max_tokens
        suggestion = suggestion_from(relative, source, completion, settings.policy, allowed)
        patch, truncated, problem = suggestion.patch, suggestion.truncated, suggestion.problem
        completion_id, used = completion.id, completion.completion_tokens
        blocked = completion.findings.blocking
        traced = completion.traced
    summary: dict[str, Any] = {
        "patch": None,
        "id": completion_id,
        "seed": params.seed,
        "truncated": truncated,
    }
    if blocked:
        summary["blocked"] = blocked
        if as_json:
            click.echo(json.dumps(summary))
        click.echo(
            f"error: the compliance checks blocked the suggested file ({', '.join(blocked)}); "
            f"nothing was written.{_explained(completion_id, traced)}",
            err=True,
        )
        sys.exit(EXIT_NO)
    if problem:
        if as_json:
            click.echo(json.dumps({**summary, "problem": problem}))
        click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_NO)
    if not patch:
        if as_json:
            click.echo(json.dumps(summary))
        else:
            click.echo("the model proposed no change", err=True)
        return
    if output == STDOUT:  # `-o - | git apply`: the patch alone
        write_output(output, patch, utf8=True)
        _warn_if_truncated(truncated, used)
        return
    if output is None:
        folder = settings.data.home / "suggestions"
        private_folder(folder)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        output = folder / f"{stamp}-{_shortened(file.name)}-{completion_id[-8:]}.patch"
    write_output(output, patch)  # the folder checked again: it may have gone since
    made = {
        "path": relative,
        "derive": "suggestion",
        "trailing_newline": ends_its_last_line(source),
        # How the file's lines end, so that `tether repro verify` can write the model's
        # answer as suggest did (keep_line_endings).
        "line_ending": usual_line_ending(source),
        "bom": source.startswith("\ufeff"),
    }
    runs = line_end_runs(apply_patch(source, patch))
    if len(runs) > 1:  # lines that end both ways: no one ending says which does which
        made["line_endings"] = runs
    if trace is not None:
        manifest = replace(from_trace(trace), file=made)
        write_atomically(_manifest_of(output), manifest.to_json())
    elif not traced:
        click.echo(_UNTRACED, err=True)
    _warn_if_truncated(truncated, used)
    if as_json:
        click.echo(json.dumps({**summary, "patch": str(output)}))
    else:
        click.echo(str(output))


def _warn_if_truncated(truncated: bool, used: int | None) -> None:
    if truncated:
        # An answer cut off inside its file gives no patch: this one closed its file first.
        click.echo(
            f"warning: the answer ran on to max_tokens ({used}) after the file it gave; "
            "review the patch",
            err=True,
        )


COMMANDS = [suggest]
