"""Whether a manifest still pins what the audit log recorded of its generation.

A manifest is a plain file: an edited seed or output made it fail to reproduce, which
reads as the engine's fault, or pass under the edit. The generation's audit record
(chained and signed) commits to its prompt and answer and names its sampling and model,
so where this machine's log holds it, an edit shows as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.audit.witness import SAMPLING, commitment_matches, generation_params, records_of
from tether.repro.manifest import Manifest


@dataclass(frozen=True)
class Attestation:
    seq: int  # the record held against the manifest
    differs: tuple[str, ...]  # what of the manifest its record contradicts

    @property
    def agrees(self) -> bool:
        return not self.differs

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "agrees": self.agrees, "differs": list(self.differs)}


def attestation(manifest: Manifest, folder: Path) -> Attestation | None:
    """What the audit log in ``folder`` says of ``manifest``; None where it holds no
    record of its generation (made on another machine, or with the log off). A record
    that agrees is believed before one that does not: anyone with ``audit:write`` may
    relay a record under any id."""
    found = None
    for record in records_of(folder, manifest.id):
        params = generation_params(record)
        if params is None:
            continue  # not a generation's record
        seen = Attestation(record["seq"], tuple(_contradicted(manifest, record, params)))
        if seen.agrees:
            return seen
        found = found or seen
    return found


def _contradicted(manifest: Manifest, record: dict[str, Any], params: dict[str, Any]) -> list[str]:
    differs = []
    if commitment_matches(manifest.request().shown_text(), record.get("prompt")) is False:
        differs.append("prompt")
    if commitment_matches(manifest.output, record.get("completion")) is False:
        differs.append("output")
    # A generation the context window ended is pinned as far as it went (the tokens it
    # got, which newer records keep), with what was asked beside it.
    pinned = manifest.params
    asked = {**pinned, "max_tokens": pinned.get("max_tokens_asked", pinned.get("max_tokens"))}
    differs += [name for name in SAMPLING if asked.get(name) != params.get(name)]
    got = params.get("completion_tokens")
    if "max_tokens_asked" in pinned and isinstance(got, int) and pinned["max_tokens"] != got:
        differs.append("max_tokens (as far as it went)")
    ended_early = params.get("ended_early")
    if isinstance(ended_early, bool) and ended_early != manifest.ended_early:
        differs.append("ended_early")
    model = record.get("model_sha256")
    if manifest.model_sha256 and isinstance(model, str) and model != manifest.model_sha256:
        differs.append("model_sha256")
    return differs
