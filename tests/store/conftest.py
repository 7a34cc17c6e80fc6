from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.settings import StoreSettings
from tether.store import SnippetStore
from tether.store.ingest import draft_from_code
from tether.store.model import Draft, Snippet

DATES = '''\
# SPDX-License-Identifier: MIT
from datetime import date


def parse_iso_date(text: str) -> date:
    """Parse an ISO 8601 date such as 2024-01-31."""
    return date.fromisoformat(text)


def slugify(title: str) -> str:
    """Turn a title into a URL slug."""
    return "-".join(title.lower().split())


def add(a: int, b: int = 1) -> int:
    return a + b
'''
UTIL_TS = """\
/**
 * Convert camelCase to snake_case.
 */
export function camelToSnake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

export const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SnippetStore]:
    store = SnippetStore(tmp_path / "store.sqlite")
    yield store
    store.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "dates.py").write_text(DATES)
    (root / "lib" / "util.ts").write_text(UTIL_TS)
    (root / "LICENSE").write_text("Permission is hereby granted, free of charge, to any person")
    return root


def draft(code: str, language: str = "python", **kwargs: Any) -> Draft:
    kwargs.setdefault("licence", "MIT")
    return draft_from_code(code, language, **kwargs)


def vetted(db: SnippetStore, code: str, **kwargs: Any) -> Snippet:
    snippet = db.add(draft(code, **kwargs), "tester").snippet
    make_callable = bool(kwargs.get("make_callable"))
    db.decide(snippet.id, "vetted", "tester", "reviewed", callable_=make_callable)
    return db.get(snippet.id)


SETTINGS = StoreSettings()
