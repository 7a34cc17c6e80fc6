"""Applying decisions: redact, pseudonymize and restore, block, annotate."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.policy.fakes import ALNUM, rand
from tether.findings import Finding
from tether.policy import Governed, Pseudonyms, Scanner, govern


def scan_and_govern(text: str, pseudonyms: Pseudonyms | None = None, **options: Any) -> Governed:
    scanner = Scanner(**options)
    return govern(text, scanner.scan(text), pseudonyms)


def test_redact_replaces_the_value_with_the_rule_id() -> None:
    token = "gh" + "p_" + rand(ALNUM, 36)
    governed = scan_and_govern(f'GITHUB_TOKEN="{token}"  # ci')
    assert governed.text == 'GITHUB_TOKEN="[REDACTED:github-pat]"  # ci'
    assert not governed.blocked
    assert governed.restore(f"use [REDACTED:github-pat] and {token}") == (
        f"use [REDACTED:github-pat] and {token}"
    )


def test_pseudonymize_gives_one_placeholder_per_distinct_value() -> None:
    text = "From ann@example.org to bob@example.org, cc ann@example.org; call +1 415 555 2671"
    governed = scan_and_govern(text)
    assert governed.text == "From <EMAIL_1> to <EMAIL_2>, cc <EMAIL_1>; call <PHONE_1>"


def test_restore_puts_pseudonymized_values_back_and_nothing_else() -> None:
    text = "Write to ann@example.org about card 4111 1111 1111 1111."
    governed = scan_and_govern(text)
    assert governed.text == "Write to <EMAIL_1> about card [REDACTED:card-number]."
    answer = "Dear <EMAIL_1>, re [REDACTED:card-number]; <EMAIL_9> and <email_1> are unknown."
    assert governed.restore(answer) == (
        "Dear ann@example.org, re [REDACTED:card-number]; <EMAIL_9> and <email_1> are unknown."
    )


def test_one_pseudonym_table_spans_the_texts_of_a_request() -> None:
    pseudonyms = Pseudonyms()
    first = scan_and_govern("from ann@example.org", pseudonyms)
    second = scan_and_govern("to bob@example.org and ann@example.org", pseudonyms)
    assert second.text == "to <EMAIL_2> and <EMAIL_1>"
    assert first.restore("<EMAIL_2> replied to <EMAIL_1>") == (
        "bob@example.org replied to ann@example.org"
    )
    assert len(pseudonyms) == 2


def test_placeholders_already_in_the_text_are_not_reused() -> None:
    governed = scan_and_govern("The template says <EMAIL_1>; the real one is ann@example.org")
    assert governed.text == "The template says <EMAIL_1>; the real one is <EMAIL_2>"
    assert governed.restore("<EMAIL_2>") == "ann@example.org"


def test_block_marks_the_text_and_still_redacts_the_value() -> None:
    token = "tth" + "_" + rand(ALNUM, 43)
    governed = scan_and_govern(f"my admin token is {token}, mail ann@example.org")
    assert governed.blocked
    assert [f.rule_id for f in governed.blocking] == ["tether-token"]
    assert token not in governed.text
    assert "[REDACTED:tether-token]" in governed.text


def test_annotate_reports_without_changing_the_text() -> None:
    text = "mail ann@example.org"
    governed = scan_and_govern(text, actions={"email": "annotate"})
    assert governed.text == text
    assert [f.action for f in governed.findings] == ["annotate"]


def test_nothing_found_leaves_the_text_alone() -> None:
    governed = scan_and_govern("def add(a, b):\n    return a + b\n")
    assert governed.text == "def add(a, b):\n    return a + b\n"
    assert governed.findings == () and not governed.blocked
    assert governed.restore("<EMAIL_1>") == "<EMAIL_1>"


def test_values_do_not_leak_through_repr() -> None:
    governed = scan_and_govern("mail ann@example.org")
    assert "ann@example.org" not in repr(governed)
    assert "ann@example.org" not in repr(governed.pseudonyms)


def test_findings_of_another_text_are_rejected() -> None:
    finding = Finding("email", "e-mail address", "policy", "redact", start=5, end=50)
    with pytest.raises(ValueError, match="outside the text"):
        govern("short", [finding])


def test_long_custom_rule_ids_give_short_placeholders() -> None:
    table = {"id": "very-long-internal-customer-number", "regex": r"C-[0-9]{5}"}
    governed = scan_and_govern("C-12345", custom=[{**table, "action": "pseudonymize"}])
    assert governed.text == "<VERY_LONG_INTERN_1>"
    assert governed.restore(governed.text) == "C-12345"


def test_overlapping_findings_from_elsewhere_are_applied_once() -> None:
    first = Finding("a", "a", "policy", "redact", start=0, end=10)
    inside = Finding("b", "b", "policy", "redact", start=5, end=15)
    governed = govern("0123456789ABCDEF", [inside, first])
    assert governed.text == "[REDACTED:a]ABCDEF"


def test_a_placeholder_held_by_another_text_of_the_request_is_not_reused() -> None:
    pseudonyms = Pseudonyms()
    texts = ["mail ann@example.org", "and repeat <EMAIL_1> as it is"]
    for text in texts:
        pseudonyms.reserve(text)
    first, second = (scan_and_govern(text, pseudonyms) for text in texts)
    assert first.text == "mail <EMAIL_2>"
    assert second.text == texts[1]
    assert first.restore("<EMAIL_1> <EMAIL_2>") == "<EMAIL_1> ann@example.org"


def test_pseudonymizing_many_values_in_a_long_text_takes_linear_time() -> None:
    # Each new placeholder used to be looked for in the whole text: 3000 values in a
    # megabyte took seconds.
    text = " ".join(f"u{i}@example.org" for i in range(3000)) + " " + "x" * 1_000_000
    findings = Scanner().scan(text)
    started = time.perf_counter()
    governed = govern(text, findings)
    assert time.perf_counter() - started < 0.5
    assert governed.text.startswith("<EMAIL_1> <EMAIL_2> ") and len(governed.pseudonyms) == 3000
