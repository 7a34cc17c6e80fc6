"""A live stream holds back what may be a secret until it is checked, and no more."""

from __future__ import annotations

import base64
import dataclasses
import random

import pytest

from tether.findings import Finding
from tether.pipeline.holdback import RUN_LOOKBACK, SecretHoldback, SecretKeywords
from tether.policy import builtin_rules
from tether.settings import Settings

KEY = "AKIAQ3EGRT5JX7ZLK2MB"
PEM_BODY = "MIIEowIBAAKCAQEA7bq98kdjf93kdkeuRk23kdjfe9\nabcDEFghiJKLmnoPQRstuVWxyz0123456789abcd\n"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----\n"
PLAIN = 'def total(items):\n    """Ask the desk for the task list."""\n    return sum(items)\n'


def keywords(**compliance: object) -> SecretKeywords:
    rules = SecretKeywords.from_settings(Settings.model_validate({"compliance": compliance}))
    assert rules is not None
    return rules


def stream(
    rules: SecretKeywords, text: str, seed: int, most: int = 7
) -> tuple[SecretHoldback, list[str]]:
    """Feed ``text`` in random pieces of up to ``most`` characters; what went out after
    each piece, cumulatively."""
    chance = random.Random(seed)
    holdback = SecretHoldback(rules)
    shown, out, at = [], "", 0
    while at < len(text):
        size = chance.randint(1, most)
        out += holdback.feed(text[at : at + size])
        at += size
        shown.append(out)
    return holdback, shown


@pytest.mark.parametrize("seed", range(5))
def test_code_without_secrets_streams_to_its_end(seed: int) -> None:
    holdback, shown = stream(keywords(), PLAIN, seed)
    assert shown[-1] == PLAIN and not holdback.holding
    assert holdback.rest(PLAIN, blocked=False) == ""


@pytest.mark.parametrize("seed", range(5))
def test_a_key_never_goes_out_and_holds_the_rest(seed: int) -> None:
    text = f"import boto3\nclient = boto3.client(key='{KEY}')\nprint(client)\n"
    holdback, shown = stream(keywords(), text, seed)
    assert shown[-1] == "import boto3\nclient = boto3.client("  # "key=" is a keyword
    assert not any(KEY[:4] in out for out in shown)
    assert holdback.holding
    # The line's start went out before its keyword: the redaction follows on its own line.
    checked = "import boto3\n# [REDACTED:secrets/aws-access-key-id]\nprint(client)\n"
    assert holdback.rest(checked, blocked=False) == "\n" + checked.split("\n", 1)[1]


@pytest.mark.parametrize("seed", range(5))
def test_a_private_key_holds_from_its_header(seed: int) -> None:
    holdback, shown = stream(keywords(), f"key = '''\n{PEM}'''\n", seed)
    assert holdback.holding
    assert not any(line in shown[-1] for line in PEM_BODY.splitlines())
    assert "PRIVATE" not in shown[-1]


def test_a_keyword_line_without_a_secret_goes_out_at_its_end() -> None:
    holdback = SecretHoldback(keywords())
    assert holdback.feed("x = 1\ntoken_count = len(") == "x = 1\n"
    assert holdback.feed("words)\n") == "token_count = len(words)\n"
    assert not holdback.holding


def test_a_run_of_token_characters_waits_for_its_end() -> None:
    holdback = SecretHoldback(keywords())
    assert holdback.feed("result") == ""
    assert holdback.feed(" = compute") == "result = "
    assert holdback.feed("(") == "compute("


def test_a_tail_that_may_begin_a_keyword_waits() -> None:
    holdback = SecretHoldback(keywords())
    assert holdback.feed("value = pass") == "value = "  # could be "password"
    assert holdback.feed("es\n") == "passes\n"


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("discord", ["redact", "allow"])
def test_a_key_inside_base64_never_goes_out(seed: int, discord: str) -> None:
    # A run of token characters waits for its end even without a rule that has no keywords.
    settings = Settings.model_validate({"policy": {"actions": {"discord-bot-token": discord}}})
    rules = SecretKeywords.from_settings(settings)
    assert rules is not None
    encoded = base64.b64encode(f"aws_access_key_id = {KEY}\n".encode()).decode()
    holdback, shown = stream(rules, f"data:\n  blob: {encoded}\nnext: 1\n", seed)
    assert holdback.holding
    assert shown[-1] == "data:\n  blob: "


def test_a_custom_rule_without_keywords_holds_every_line() -> None:
    rule = {"id": "codename", "regex": r"project\s+falcon", "action": "redact"}
    settings = Settings.model_validate({"policy": {"rules": [rule]}})
    rules = SecretKeywords.from_settings(settings)
    assert rules is not None and rules.every_line
    holdback = SecretHoldback(rules)
    assert holdback.feed("launch project ") == ""
    assert holdback.feed("falcon now\n") == ""
    assert holdback.holding


def test_a_blocked_answer_sends_nothing_more() -> None:
    holdback = SecretHoldback(keywords())
    holdback.feed(f"a = 1\nb = '{KEY}'\n")
    assert holdback.rest("", blocked=True) == ""


def test_a_line_changed_after_it_went_out_is_followed_by_the_checked_rest() -> None:
    holdback = SecretHoldback(keywords())
    assert holdback.feed("a = 1\nb = 2\n") == "a = 1\nb = 2\n"
    assert holdback.rest("# [REDACTED:x]\nb = 2\nc = 3", blocked=False) == "c = 3"


def test_a_secret_found_only_by_the_whole_answer_check_is_not_sent() -> None:
    """Should the final check redact a line the holdback let start, the rest is checked."""
    holdback = SecretHoldback(keywords())
    assert holdback.feed("a = 1\nb = (") == "a = 1\nb = ("
    assert holdback.rest("a = 1\n# [REDACTED:x]\nc\n", blocked=False) == "\n# [REDACTED:x]\nc\n"


@pytest.mark.parametrize("separator", ["\u2028", "\u0085", "\x0c", "\x1c"])
def test_a_line_separator_that_is_no_line_end_does_not_repeat_a_line(separator: str) -> None:
    """Lines end at "\n" alone, as the count of those that went out does: read at a
    Unicode separator or a form feed too, the rest began a line early and sent it again."""
    holdback = SecretHoldback(keywords())
    start = f'note = "a{separator}b"\nimport boto3\nclient = boto3.client('
    assert holdback.feed(start + f"key='{KEY}')\n") == start
    checked = f'note = "a{separator}b"\nimport boto3\n# [REDACTED:x]\nprint(client)\n'
    assert holdback.rest(checked, blocked=False) == "\n# [REDACTED:x]\nprint(client)\n"


@pytest.mark.parametrize(
    "settings",
    [
        {"compliance": {"stream_holdback": False}},
        {"compliance": {"enabled": False}},
        {"compliance": {"actions": {"secrets": "annotate"}}},
    ],
)
def test_no_holdback_when_no_secret_is_withheld(settings: dict[str, object]) -> None:
    assert SecretKeywords.from_settings(Settings.model_validate(settings)) is None


def test_prompts_left_unscanned_still_hold_a_stream_back() -> None:
    """The answer's check finds secrets with the policy's rules whether or not they scan
    prompts: a stream sent live went out with the secret the check then found."""
    settings = Settings.model_validate({"policy": {"enabled": False}})
    assert SecretKeywords.from_settings(settings) is not None


@pytest.mark.parametrize("seed", range(5))
def test_a_secret_without_a_keyword_never_goes_out(seed: int) -> None:
    bot_token = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123"
    holdback, shown = stream(keywords(), f"bot.run({bot_token})\nprint(1)\n", seed)
    assert shown[-1] == "bot.run(" and holdback.holding


class CountingCheck:
    """A holdback's secret check that records the length of each text it scans."""

    def __init__(self, rules: SecretKeywords) -> None:
        self.check = rules.check
        self.lengths: list[int] = []
        self.rules = dataclasses.replace(rules, check=self)

    def __call__(self, text: str) -> list[Finding]:
        self.lengths.append(len(text))
        return list(self.check(text))


def test_a_long_line_costs_each_piece_the_same() -> None:
    """Minified code, or a model looping without a newline: each word scanned from the
    line's start made the stream quadratic and held up the server's other requests."""
    counting = CountingCheck(keywords())
    holdback = SecretHoldback(counting.rules)
    words = [f"w{i} " for i in range(20_000)]
    out = "".join(holdback.feed(word) for word in words) + holdback.feed("\n")
    assert out == "".join(words) + "\n" and not holdback.holding
    assert max(counting.lengths) <= RUN_LOOKBACK + 16


def test_an_unfinished_run_is_scanned_once_it_ends() -> None:
    run = "QUJD" * 25_000  # 100,000 characters of base64, fed five at a time
    counting = CountingCheck(keywords())
    holdback = SecretHoldback(counting.rules)
    assert holdback.feed("blob = ") == "blob = "
    scans = len(counting.lengths)
    assert not any(holdback.feed(run[at : at + 5]) for at in range(0, len(run), 5))
    assert len(counting.lengths) == scans
    assert holdback.feed(" # end\n") == run + " # end\n"
    assert len(counting.lengths) <= scans + 2


def test_a_held_answer_is_not_scanned_again() -> None:
    counting = CountingCheck(keywords())
    holdback = SecretHoldback(counting.rules)
    holdback.feed(f"key = '{KEY}'\n")
    assert holdback.holding and holdback.sent == "key = '"
    scans = len(counting.lengths)
    assert all(holdback.feed(f"line {i}\n") == "" for i in range(1_000))
    assert len(counting.lengths) == scans and holdback.sent == "key = '"


DISCORD = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123"
BLOB = base64.b64encode(f"aws_access_key_id = {KEY}\n".encode()).decode()
# A line holding a secret, and the secret's value: no part of it may go out.
SECRETS = [
    (f"aws = '{KEY}'", KEY),
    (PEM, PEM_BODY),
    (f"bot.run({DISCORD})", DISCORD),
    (f"blob {BLOB}", BLOB),
]
FILLER = ["x = 1", "return total(items)", "y" * 300, "z = " + "ab " * 2_000, "# note", ""]


@pytest.mark.parametrize("most", [7, 2_000])
@pytest.mark.parametrize("seed", range(30))
def test_no_withheld_secret_goes_out_whatever_the_pieces(seed: int, most: int) -> None:
    """Text long enough that old text is dropped and scans start after a line's start,
    in small pieces and in large: what goes out is the answer's start, and holds no part
    of the secret's value."""
    chance = random.Random(seed)
    lines = [chance.choice(FILLER) for _ in range(chance.randint(5, 40))]
    line, value = chance.choice(SECRETS)
    lines.insert(chance.randint(0, len(lines)), line)
    text = "\n".join(lines) + "\n"
    holdback, shown = stream(keywords(), text, seed, most)
    assert text.startswith(shown[-1]) and holdback.sent == shown[-1]
    assert len(shown[-1]) <= text.index(value), (shown[-1][-80:], value[:20])
    assert holdback.holding


GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


def _bold(c: str) -> str:
    """``c`` in MATHEMATICAL BOLD, where it has such a form (letters and digits)."""
    if c.isdigit():
        return chr(0x1D7CE + int(c))
    if c.isascii() and c.isalpha():
        return chr((0x1D400 if c.isupper() else 0x1D41A) + ord(c.lower()) - ord("a"))
    return c


@pytest.mark.parametrize(
    "written",
    [
        "".join(chr(ord(c) + 0xFEE0) for c in GITHUB),  # fullwidth, which the rules fold
        "\u200b".join(GITHUB),  # zero-width spaces, which the rules read as nothing
        "".join(_bold(c) for c in GITHUB),  # mathematical bold, which the rules fold
    ],
    ids=["fullwidth", "zero-width", "bold"],
)
@pytest.mark.parametrize("seed", range(3))
def test_a_key_the_rules_fold_never_goes_out(written: str, seed: int) -> None:
    """Each such character went out on its own before the key was whole: 35 of 36."""
    holdback, shown = stream(keywords(), f"x = {written}\nprint(x)\n", seed, most=3)
    assert shown[-1] == "x = " and holdback.holding


@pytest.mark.parametrize(
    "keyword",
    [
        "p\u0430ssw\u043erd",  # Cyrillic a and o, which the rules read as Latin ones
        "".join(chr(ord(c) + 0xFEE0) for c in "password"),  # fullwidth
        "\u200b".join("password"),  # zero-width spaces between its letters
        "\u1107\u1175\u1106\u1175\u11af\u1107\u1165\u11ab\u1112\u1169",  # Korean, decomposed
        "\u30cf\u309a\u30b9\u30ef\u30fc\u30c8\u3099",  # kana with their marks apart
    ],
    ids=["look-alike", "fullwidth", "zero-width", "jamo", "kana-marks"],
)
@pytest.mark.parametrize("seed", range(3))
def test_a_secret_after_a_keyword_the_rules_fold_never_goes_out(keyword: str, seed: int) -> None:
    """The keyword was looked for in the text as written: the line went out, and with it
    the value the whole answer's check then found."""
    value = "Xy7!kP2#qR9*wZ4"
    text = f'x = 1\n{keyword} = "{value}"\nprint(x)\n'
    rules = keywords()
    assert any(f.rule_id.endswith("generic-secret") for f in rules.check(text)), "found at the end"
    holdback, shown = stream(rules, text, seed)
    assert not any(value[:4] in out for out in shown), shown[-1]
    assert holdback.holding


@pytest.mark.parametrize("seed", range(3))
def test_a_custom_keyword_of_another_script_still_holds_its_line(seed: int) -> None:
    """Most of its letters are look-alikes of Latin ones: read only as those, it was not
    found, and the line went out up to the value."""
    custom = {"id": "ru-secret", "regex": "\u043f\u0430\u0440\u043e\u043b\u044c: (\\S{12,})",
              "keywords": ["\u043f\u0430\u0440\u043e\u043b\u044c"], "action": "redact"}  # fmt: skip
    rules = SecretKeywords.from_settings(Settings.model_validate({"policy": {"rules": [custom]}}))
    assert rules is not None
    # Not one run of token characters, each of which is scanned whole: the keyword holds it.
    text = "x = 1\n# \u043f\u0430\u0440\u043e\u043b\u044c: hunter2!Zq9#xx\nprint(x)\n"
    holdback, shown = stream(rules, text, seed)
    assert shown[-1] == "x = 1\n# " and holdback.holding  # held from the keyword on


def _reference_find(rules: SecretKeywords, text: str, start: int, end: int) -> int | None:
    assert rules.keyword is not None
    found = rules.keyword.search(text, start, end)
    return found.start() if found else None


def _random_texts(rules: SecretKeywords, seed: int, count: int) -> list[str]:
    """ASCII texts of code, keywords and their pieces in any case, close together."""
    chance = random.Random(seed)
    whole = {word for rule in builtin_rules() for word in rule.keywords}
    words = sorted(word for word in rules.starts | whole if word.isascii())
    pieces = [*words, " ", "_", "=", "\n", "x1", "(", '"']
    texts = []
    for _ in range(count):
        parts = [chance.choice(pieces) for _ in range(chance.randint(1, 12))]
        parts = [p.upper() if chance.random() < 0.3 else p for p in parts]
        texts.append("".join(parts))
    return texts


@pytest.mark.parametrize("seed", range(3))
def test_keywords_in_ascii_are_found_where_the_search_ignoring_case_finds_them(
    seed: int,
) -> None:
    """In ASCII text, RE2 looks for the keywords: it finds each where Python's search of
    them, ignoring case, does, in any part of a text."""
    rules = keywords()
    assert rules.in_ascii is not None and rules.starts_in_ascii is not None
    chance = random.Random(seed)
    found = 0
    for text in _random_texts(rules, seed, 600):
        start = chance.randint(0, len(text))
        end = chance.randint(start, len(text))
        expected = _reference_find(rules, text, start, end)
        assert rules.find(text, start, end) == expected, (text, start, end)
        found += expected is not None
    assert 100 < found < 600


@pytest.mark.parametrize("seed", range(3))
def test_the_longest_start_of_a_keyword_at_a_texts_end_is_found_as_letter_by_letter(
    seed: int,
) -> None:
    rules = keywords()
    started = 0
    for text in _random_texts(rules, seed, 600):
        tail = text[-(rules.longest - 1) :]
        expected = next(
            (n for n in range(len(tail), 0, -1) if rules.begins_keyword(tail[len(tail) - n :])),
            0,
        )
        assert rules.longest_start(tail) == expected, tail
        started += expected > 0
    assert started > 100


def test_a_keyword_with_a_letter_read_as_ascii_is_searched_as_python_reads_it() -> None:
    """Ignoring case, Python takes a dotless i for an i: a custom rule's keyword with one
    is then looked for as before, not by RE2, which does not."""
    word = "parola\N{LATIN SMALL LETTER S}\N{LATIN SMALL LETTER DOTLESS I}"
    policy = {"rules": [{"id": "tr", "regex": f"{word}=\\S+", "keywords": [word]}]}
    settings = Settings.model_validate({"policy": policy, "compliance": {}})
    rules = SecretKeywords.from_settings(settings)
    assert rules is not None and rules.in_ascii is None
    assert rules.find("x = 1; PAROLASI=hunter2") == 7
    assert rules.longest_start("x = PAROLA") == 6  # its starts hold no such letter
