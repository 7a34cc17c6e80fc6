"""Baselines: the findings a project already has, so ``tether check`` reports only new ones.

A finding is known when the baseline holds one with the same rule id, path and fingerprint
(the sha256 of the line's text), so moving code up or down keeps it known while editing
the line makes it new. Each baseline entry absorbs one finding: a second copy of a known
problem is still reported. Paths are relative to the top of the git work tree (the folder
checked from outside git), so a baseline works from any subfolder.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tether.compliance.files import display_path
from tether.compliance.report import FileFinding
from tether.errors import ConfigError

BASELINE_VERSION = 1
Key = tuple[str, str, str]


def key(item: FileFinding, root: Path | None = None) -> Key:
    """``root``: the folder the baseline's paths are relative to; None: as ``item`` has it."""
    path = item.path if root is None else display_path(Path(item.path), root)
    return item.finding.rule_id, path, item.finding.fingerprint


def save_baseline(path: Path, findings: Iterable[FileFinding], root: Path | None = None) -> int:
    entries = sorted(key(f, root) for f in findings)
    payload = {
        "version": BASELINE_VERSION,
        "findings": [{"rule_id": r, "path": p, "fingerprint": fp} for r, p, fp in entries],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return len(entries)


def load_baseline(path: Path) -> Counter[Key]:
    """The findings the baseline at ``path`` records; ConfigError, saying what is wrong and
    what to do, where it is missing, cannot be read or is not a baseline."""
    wrote = "name the file `tether check --write-baseline` wrote"
    # Quoted as a shell reads it: a name with a space, copied, is one argument.
    command = f"`tether check --write-baseline {shlex.quote(str(path))}`"
    write_new = f"write a new one with {command}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"the baseline {path} does not exist; {wrote}, or write one with {command}"
        ) from None
    except NotADirectoryError:
        raise ConfigError(
            f"the baseline {path} does not exist (a folder in its path is a file); {wrote}"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"the baseline {path} is a folder; {wrote}") from None
    except PermissionError as exc:
        raise ConfigError(
            f"the baseline {path} cannot be read ({exc.strerror or exc}); give this user read "
            "access to it, or leave out --baseline"
        ) from exc
    except OSError as exc:  # a link that leads to itself, a disk that fails
        raise ConfigError(
            f"the baseline {path} cannot be read ({exc.strerror or exc}); {wrote}, or leave "
            "out --baseline"
        ) from exc
    try:
        payload = json.loads(data.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(
            f"the baseline {path} is not a baseline of tether check's (not JSON: {exc}); "
            f"{write_new}"
        ) from exc
    if not isinstance(payload, dict):
        why = "JSON, but not an object"
    elif payload.get("version") != BASELINE_VERSION:
        why = f"version {payload.get('version')!r}, expected {BASELINE_VERSION}"
    elif not isinstance(payload.get("findings"), list):
        why = "no list of findings"
    else:
        keys = ("rule_id", "path", "fingerprint")
        entries = payload["findings"]
        if all(
            isinstance(e, dict) and all(isinstance(e.get(k), str) for k in keys) for e in entries
        ):
            return Counter((e["rule_id"], e["path"], e["fingerprint"]) for e in entries)
        why = "a finding without the strings rule_id, path and fingerprint"
    raise ConfigError(
        f"the baseline {path} is not a baseline of tether check's ({why}); {write_new}"
    )


def without_baseline(
    findings: Iterable[FileFinding], baseline: Counter[Key], root: Path | None = None
) -> list[FileFinding]:
    remaining = Counter(baseline)
    fresh = []
    for item in findings:
        k = key(item, root)
        if remaining[k] > 0:
            remaining[k] -= 1
        else:
            fresh.append(item)
    return fresh
