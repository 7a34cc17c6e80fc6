"""A reproducibility manifest: one generation pinned down well enough to make it again.

It holds the request exactly as the engine received it (after the policy and the
templates), the sampling parameters and seed, who generated it (the model file's sha256,
the engine, its version and build) and the sha256 of the bytes it wrote. Made from a trace
(``tether repro record``), or by ``tether suggest`` beside each patch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError

from tether.engines.base import GenerationRequest, SamplingParams
from tether.errors import ConfigError
from tether.settings import MAX_SEED
from tether.textfile import lone_surrogate
from tether.traces import Trace

FORMAT = "tether.repro/1"


class _Params(BaseModel):
    """What ``params`` must hold for the generation to be made again."""

    model_config = ConfigDict(strict=True, extra="allow")

    max_tokens: int = Field(ge=0)
    temperature: float = Field(ge=0, le=2, allow_inf_nan=False)
    top_p: float = Field(gt=0, le=1, allow_inf_nan=False)
    seed: int = Field(ge=0, le=MAX_SEED)
    stop: list[str] | None = None


class _File(BaseModel):
    """What ``file`` must hold for the file to be written again: how its lines end, in
    runs of one ending, where they end both ways."""

    model_config = ConfigDict(extra="allow")

    line_endings: list[tuple[Literal["\r\n", "\n"], Annotated[StrictInt, Field(ge=1)]]] | None = (
        None
    )


class _Checked(BaseModel):
    kind: Literal["completion", "chat", "fim"]
    params: _Params
    file: _File


def output_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Manifest:
    id: str
    created: float
    kind: str  # completion, chat or fim
    prompt: str | None  # what the engine was given; None when it took messages
    messages: list[dict[str, str]] | None
    params: dict[str, Any]  # max_tokens, temperature, top_p, seed, stop
    model: str
    model_sha256: str
    engine: str  # "<kind> (<version>)", as traces name it
    build: str
    template: str
    template_digest: str
    system_fingerprint: str
    output: str
    output_sha256: str
    # When the output became a file: its path and how (e.g. a suggestion's fenced code).
    file: dict[str, Any] = field(default_factory=dict)
    # tether stopped the engine here (an editor's hole was filled): regenerate this far.
    ended_early: bool = False
    format: str = FORMAT

    def request(self) -> GenerationRequest:
        params = SamplingParams(
            max_tokens=int(self.params["max_tokens"]),
            # As a bound: where the engine cut it to fit the context, it cuts it again.
            max_tokens_explicit=False,
            temperature=float(self.params["temperature"]),
            top_p=float(self.params["top_p"]),
            seed=int(self.params["seed"]),
            stop=tuple(self.params.get("stop") or ()),
            response_format=(
                json.dumps(self.params["response_format"], ensure_ascii=False)
                if self.params.get("response_format")
                else None
            ),
            chosen_call_format=(
                json.dumps(self.params["chosen_call_format"], ensure_ascii=False)
                if self.params.get("chosen_call_format")
                else None
            ),
        )
        return GenerationRequest(params, prompt=self.prompt, messages=self.messages, stream=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{where} is not JSON ({exc}); is it a tether manifest?") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{where} is not a {FORMAT} manifest (`tether repro record`)")
        if (place := lone_surrogate(data)) is not None:
            raise ConfigError(
                f"{where} is a damaged manifest ({place}: a \\u escape of a lone UTF-16 "
                "surrogate, which is not text)"
            )
        try:
            manifest = _MANIFEST.validate_python(data)
            _Checked.model_validate(
                {"kind": manifest.kind, "params": manifest.params, "file": manifest.file}
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            at = ".".join(str(part) for part in problem["loc"])
            raise ConfigError(f"{where} is a damaged manifest ({at}: {problem['msg']})") from exc
        if (manifest.prompt is None) == (manifest.messages is None):
            held = "both" if manifest.prompt is not None else "neither"
            raise ConfigError(
                f"{where} is a damaged manifest (it holds {held} of prompt and messages: "
                "what the engine was given is one of them)"
            )
        if output_digest(manifest.output) != manifest.output_sha256:
            raise ConfigError(f"{where}: its output does not match its own output_sha256")
        return manifest

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            text = path.read_text(encoding="utf-8")  # as written, whatever the locale
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read manifest {path}: {exc}") from exc
        return cls.from_json(text, str(path))


_MANIFEST = TypeAdapter(Manifest)


def from_trace(trace: Trace) -> Manifest:
    """The manifest of a traced generation."""
    messages = None
    prompt: str | None = trace.prompt
    if trace.template == "upstream":  # an upstream took the messages, rendered as JSON
        messages = json.loads(trace.prompt)
        prompt = None
    params = {**trace.sampling}
    asked = params.get("max_tokens")
    cut = isinstance(asked, int) and 0 < trace.completion_tokens < asked
    if trace.finish_reason == "length" and cut and not trace.ended_early:
        # The context window, not max_tokens, ended it: regenerated on an engine with a
        # larger window it would go on. It is made again exactly as far as it went. (One
        # tether ended, a limit of the request's, is made again as far as its output.)
        params["max_tokens"] = trace.completion_tokens
        params["max_tokens_asked"] = asked
    return Manifest(
        id=trace.id,
        created=trace.created,
        kind=trace.kind,
        prompt=prompt,
        messages=messages,
        params=params,
        model=trace.model,
        model_sha256=trace.model_sha256,
        engine=trace.engine,
        build=trace.build,
        template=trace.template,
        template_digest=trace.template_digest,
        system_fingerprint=trace.system_fingerprint,
        output=trace.output,
        output_sha256=output_digest(trace.output),
        ended_early=trace.ended_early,
    )
