"""Make a pinned generation again and compare it, byte for byte, with what it was.

A comparison means something only on the same model file, engine, version and build:
where any differs, the verdict says so instead of reporting a mismatch.
"""

from __future__ import annotations

import re
from contextlib import aclosing
from dataclasses import dataclass, field

from tether.engines.base import Engine, EngineInfo
from tether.errors import ContextLengthError
from tether.repro.manifest import Manifest, output_digest
from tether.unidiff import unified_diff


def engine_label(info: EngineInfo) -> str:
    return f"{info.engine} ({info.engine_version})"


@dataclass(frozen=True)
class Verification:
    manifest: Manifest
    output: str = ""  # what was generated now
    differences: list[str] = field(default_factory=list)  # why no comparison was made

    @property
    def comparable(self) -> bool:
        return not self.differences

    @property
    def match(self) -> bool:
        return self.comparable and output_digest(self.output) == self.manifest.output_sha256

    def first_difference(self) -> int:
        """Index of the first character where the new output leaves the old one."""
        old, new = self.manifest.output, self.output
        for index, (a, b) in enumerate(zip(old, new, strict=False)):
            if a != b:
                return index
        return min(len(old), len(new))

    def diff(self, context: int = 3) -> str:
        """The diff, in the lines git shows: str.splitlines() also ends one at U+2028."""
        return unified_diff(
            _LINE.findall(self.manifest.output),
            _LINE.findall(self.output),
            "recorded",
            "regenerated",
            context,
        )


_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")  # a line and its "\n"


def differences(manifest: Manifest, info: EngineInfo) -> list[str]:
    """What differs between the manifest's generator and this one; empty when the same."""
    found = []
    if manifest.model_sha256 != (info.model_sha256 or ""):
        if not manifest.model_sha256:  # made through a gateway, which cannot hash the file
            found.append(
                f"model file: the manifest's was not known (an upstream's model: "
                f"{manifest.model}), this one is {info.model_sha256} ({info.model_id}); "
                "verify it through the same kind of engine it was made with"
            )
        else:
            shown = info.model_sha256 or "not known (an upstream's)"
            found.append(
                f"model file: the manifest's has sha256 {manifest.model_sha256}, this one "
                f"{shown} ({info.model_id}); set engine.model_path to that file"
            )
    if manifest.engine != engine_label(info):
        found.append(f"engine: the manifest's is {manifest.engine}, this is {engine_label(info)}")
    if manifest.build != info.build:
        found.append(f"build: the manifest's is {manifest.build!r}, this is {info.build!r}")
    return found


async def regenerate(manifest: Manifest, engine: Engine) -> Verification:
    found = differences(manifest, engine.info())
    if found:
        return Verification(manifest, differences=found)
    parts: list[str] = []
    try:
        async with aclosing(engine.generate(manifest.request())) as chunks:
            async for chunk in chunks:
                parts.append(chunk.text)
                if manifest.ended_early and sum(map(len, parts)) >= len(manifest.output):
                    break
    except ContextLengthError as exc:  # made with a larger window than this engine's
        window = (
            f"context window: {exc.message.split(';')[0]}; set engine.n_ctx "
            "(TETHER_ENGINE_N_CTX) to the window the manifest was made with"
        )
        return Verification(manifest, differences=[window])
    output = "".join(parts)
    if manifest.ended_early:  # the engine's last chunk then held what came by that time
        output = output[: len(manifest.output)]
    return Verification(manifest, output=output)
