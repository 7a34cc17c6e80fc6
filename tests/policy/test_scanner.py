"""The scanner: prefilter, thresholds, custom rules and their errors, overrides,
the allow-list, positions, overlaps, and linear time on hostile input."""

from __future__ import annotations

import random
import unicodedata
from typing import Any

import pytest
import re2

from tests.policy.fakes import ALNUM, rand
from tether.errors import ConfigError
from tether.findings import fingerprint
from tether.policy import Scanner, ScanRule, builtin_rules
from tether.settings import PolicySettings


def only(*tables: dict[str, Any], **options: Any) -> Scanner:
    """A scanner with just these custom rules, no built-ins."""
    return Scanner(rules=(), custom=tables, **options)


def spans(scanner: Scanner, text: str) -> list[tuple[str, str]]:
    return [(f.rule_id, text[f.start : f.end]) for f in scanner.scan(text)]


def github_token(seed: int) -> str:
    return "gh" + "p_" + rand(ALNUM, 36, seed)


# --- prefilter, entropy, custom rules ------------------------------------------------------


def test_rule_runs_only_when_a_keyword_occurs_in_any_case() -> None:
    scanner = only({"id": "codeword", "regex": "falcon", "keywords": ["Zeppelin"]})
    assert scanner.rules[0].keywords == ("zeppelin",)
    assert spans(scanner, "falcon") == []
    assert spans(scanner, "falcon over the ZEPPELIN") == [("codeword", "falcon")]


def test_overlapping_keywords_and_regex_characters_are_each_found_literally() -> None:
    rules = [
        {"id": "whole", "regex": "w", "keywords": ["api_key"]},
        {"id": "inside", "regex": "i", "keywords": ["pi_k"]},  # inside the first keyword
        {"id": "dotted", "regex": "d", "keywords": ["a.b"]},  # "." is no wildcard
        {"id": "bracket", "regex": "b", "keywords": ["(x"]},  # nor an error
    ]
    scanner = only(*rules)
    assert {f.rule_id for f in scanner.scan("w i d b: api_key (x")} == {
        "whole",
        "inside",
        "bracket",
    }
    assert {f.rule_id for f in scanner.scan("w i d b: axb a.b")} == {"dotted"}


@pytest.mark.parametrize("seed", range(5))
def test_the_keyword_prefilter_runs_exactly_the_rules_a_substring_search_would(
    scanner: Scanner, seed: int
) -> None:
    # Texts of keyword pieces: many keywords present, many only in part, in every case.
    chooser = random.Random(seed)
    keywords = sorted({k for rule in scanner.rules for k in rule.keywords})
    pieces = [k[: chooser.randint(1, len(k))] for k in keywords for _ in range(2)]
    text = " ".join(
        chooser.choice(pieces).upper() if chooser.random() < 0.3 else chooser.choice(pieces)
        for _ in range(300)
    )
    expected = {k for k in keywords if k in text.lower()}
    assert scanner._keywords.occurring(text.lower()) == expected
    assert 0 < len(expected) < len(keywords)


def test_rule_without_keywords_always_runs() -> None:
    assert spans(only({"id": "codeword", "regex": "falcon"}), "a falcon") == [
        ("codeword", "falcon")
    ]


def test_builtin_keyword_prefilter_is_case_insensitive(scanner: Scanner) -> None:
    token = github_token(1)
    assert spans(scanner, f"TOKEN: {token}") == [("github-pat", token)]


def test_entropy_threshold_applies_to_the_captured_secret() -> None:
    scanner = only(
        {"id": "ticket", "regex": r"tkt-([a-z0-9]{12})", "entropy": 3.0, "secret_group": 1}
    )
    assert spans(scanner, "tkt-aaaaaaaaaaaa") == []
    assert spans(scanner, "tkt-abababababab") == []  # 1 bit per character
    assert spans(scanner, "tkt-a8f3k2m9x7q1") == [("ticket", "a8f3k2m9x7q1")]


def test_custom_rule_from_config_table() -> None:
    table: dict[str, Any] = {
        "id": "employee-id",
        "description": "employee number",
        "regex": r"\bEMP-([0-9]{6})\b",
        "keywords": ["emp-"],
        "action": "pseudonymize",
        "secret_group": 1,
    }
    scanner = Scanner(custom=[table])
    rule = scanner.rules[-1]
    assert rule == ScanRule(
        id="employee-id",
        description="employee number",
        regex=table["regex"],
        keywords=("emp-",),
        action="pseudonymize",
        secret_group=1,
    )
    (finding,) = scanner.scan("Reviewer: EMP-004211.")
    assert (finding.rule_id, finding.action, finding.message) == (
        "employee-id",
        "pseudonymize",
        "employee number",
    )
    assert "Reviewer: EMP-004211."[finding.start : finding.end] == "004211"


def test_custom_rule_with_a_builtin_id_replaces_it() -> None:
    scanner = Scanner(custom=[{"id": "email", "regex": r"\S+@corp\.example", "action": "annotate"}])
    assert [r.id for r in scanner.rules].count("email") == 1
    assert {f.action for f in scanner.scan("mail a@corp.example")} == {"annotate"}
    assert spans(scanner, "mail a@corp.example or b@gmail.com") == [("email", "a@corp.example")]


def test_secret_group_falls_back_to_the_alternative_that_matched() -> None:
    scanner = only({"id": "pair", "regex": r"x=([0-9]+)|y=([a-z]+)", "secret_group": 1})
    assert spans(scanner, "x=42 y=abc") == [("pair", "42"), ("pair", "abc")]


BAD_RULES: list[tuple[list[Any], list[str]]] = [
    (
        [{"id": "my-rule", "regex": "foo(?=bar)"}],
        ["policy.rules[0], rule 'my-rule'", "'regex'", "look-arounds"],
    ),
    ([{"id": "backref", "regex": r"(a)\1"}], ["rule 'backref'", "'regex'"]),
    ([{"id": "unbalanced", "regex": "(abc"}], ["rule 'unbalanced'", "'regex'", "missing )"]),
    ([{"id": "x", "regex": "a", "action": "delete"}], ["rule 'x'", "'action'", "'delete'"]),
    (
        [{"id": "ok", "regex": "a"}, {"regex": "b", "action": "block"}],
        ["policy.rules[1]", "'id' is missing"],
    ),
    ([{"id": "no-regex"}], ["policy.rules[0]", "'regex' is missing"]),
    ([{"id": "typo", "regexp": "a"}], ["policy.rules[0]", "unknown field 'regexp'"]),
    ([{"id": "e", "regex": "a", "entropy": "high"}], ["rule 'e'", "'entropy'"]),
    ([{"id": "e", "regex": "a", "entropy": -1}], ["rule 'e'", "'entropy'"]),
    ([{"id": "v", "regex": "a", "validator": "md5"}], ["rule 'v'", "'validator'", "luhn"]),
    ([{"id": "g", "regex": "(a)", "secret_group": 2}], ["rule 'g'", "'secret_group'", "1 group"]),
    ([{"id": "g", "regex": "a", "secret_group": True}], ["rule 'g'", "'secret_group'"]),
    ([{"id": "k", "regex": "a", "keywords": "token"}], ["rule 'k'", "'keywords'"]),
    ([{"id": "has space", "regex": "a"}], ["policy.rules[0]", "'id'", "'has space'"]),
    (
        [{"id": "d", "regex": "a"}, {"id": "d", "regex": "b"}],
        ["policy.rules[1], rule 'd'", "twice"],
    ),
    (["id=x"], ["policy.rules[0]", "table"]),
    ([{"id": "star", "regex": "token=[a-z]*|x*"}], ["rule 'star'", "empty string"]),
    ([{"id": "opt", "regex": "(?:secret)?"}], ["rule 'opt'", "empty string"]),
    ([{"id": "line", "regex": "(?m)^"}], ["rule 'line'", "empty string"]),
    ([{"id": "edge", "regex": r"\bk*"}], ["rule 'edge'", "empty string"]),
    ([{"id": "end", "regex": r"k*\b$"}], ["rule 'end'", "empty string"]),
    # A repeat left open is literal text to RE2: the rule never matched a real ticket.
    (
        [{"id": "tkt", "regex": r"\btkt_[a-z0-9]{24\b"}],
        ["rule 'tkt'", "'{24' is not a repeat", "close it ({24}) or escape it (\\{24)"],
    ),
    ([{"id": "r", "regex": r"x{2,"}], ["rule 'r'", "'{2,' is not a repeat"]),
    ([{"id": "r", "regex": r"x{,3}"}], ["rule 'r'", "'{,3}' is not a repeat"]),
    ([{"id": "r", "regex": r"\x{1F600}{24"}], ["rule 'r'", "'{24' is not a repeat"]),
    ([{"id": "r", "regex": r"[[:alpha:]]{3"}], ["rule 'r'", "'{3' is not a repeat"]),
]


@pytest.mark.parametrize(("tables", "expected"), BAD_RULES)
def test_bad_custom_rule_is_a_config_error_naming_rule_and_field(
    tables: list[Any], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        Scanner(custom=tables)
    for part in expected:
        assert part in caught.value.message


@pytest.mark.parametrize(
    "regex",
    [
        *(r"x{2}", r"x{2,}", r"x{2,5}", r"\{24", r"[{]24", r"[]{]24", r"[^]{]2", r"\Q{24\E"),
        *(
            r"a{b}",
            r"\x{1F600}",
            r"x{2}\x{2F}",
            r"\p{Greek}{2}",
            r"[[:digit:]{]2",
            r"[[:alpha:]{2]",
        ),
    ],
)
def test_repeats_and_literal_braces_are_taken(regex: str) -> None:
    assert Scanner(custom=[{"id": "r", "regex": regex}]).rules


def test_rule_object_with_bad_regex_or_validator_names_its_id() -> None:
    with pytest.raises(ConfigError, match=r"rule 'mine'.*'regex'"):
        Scanner(rules=[ScanRule(id="mine", description="d", regex="a(?<=b)")])
    with pytest.raises(ConfigError, match=r"rule 'mine'.*'validator'"):
        Scanner(rules=[ScanRule(id="mine", description="d", regex="a", validator="crc")])


# --- overrides, disabled rules, allow-list, settings ----------------------------------------


def test_action_override() -> None:
    scanner = Scanner(actions={"email": "block"})
    (finding,) = scanner.scan("ping ann@example.org")
    assert (finding.action, finding.severity) == ("block", "error")


def test_allow_action_turns_a_rule_off() -> None:
    scanner = Scanner(actions={"email": "allow"})
    assert scanner.scan("ping ann@example.org") == []
    assert "email" not in scanner.patterns


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"actions": {"emial": "block"}}, "no rule 'emial'"),
        ({"actions": {"email": "delete"}}, "policy.actions.email is 'delete'"),
        ({"allow": ["abc123"]}, "not a sha256 fingerprint"),
    ],
)
def test_bad_overrides_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Scanner(**options)


def test_allow_list_suppresses_exactly_one_value() -> None:
    allowed, other = github_token(1), github_token(2)
    text = f"a={allowed}\nb={other}\nc={allowed}"
    scanner = Scanner(allow=[fingerprint(allowed).upper()])  # case of the hex does not matter
    assert spans(scanner, text) == [("github-pat", other)]
    assert len(Scanner().scan(text)) == 3


def test_from_settings() -> None:
    settings = PolicySettings(
        enabled=True,
        rules=[{"id": "ticket", "regex": r"tkt-[0-9]{6}", "action": "block"}],
        actions={"email": "annotate"},
        allow=[fingerprint("tkt-000001")],
    )
    scanner = Scanner.from_settings(settings)
    text = "tkt-000001 tkt-123456 bo@example.com"
    assert [(f.rule_id, f.action) for f in scanner.scan(text)] == [
        ("ticket", "block"),
        ("email", "annotate"),
    ]
    assert scanner.scan(text)[0].start == text.index("tkt-123456")


def test_disabled_policy_scans_nothing() -> None:
    scanner = Scanner.from_settings(PolicySettings(enabled=False))
    assert scanner.rules == ()
    assert scanner.scan("ann@example.org " + github_token(1)) == []


# --- positions and overlaps ------------------------------------------------------------------


def test_line_and_column_count_characters_from_one() -> None:
    token = github_token(3)
    text = f"héllo 🔑 wörld\n\n\tkey = {token}\nmail é@x.io or ann@example.org\n"
    findings = Scanner().scan(text)
    assert [(f.rule_id, f.line, f.column) for f in findings] == [
        ("github-pat", 3, 8),
        ("email", 4, 16),
    ]
    for f in findings:
        assert f.line == text.count("\n", 0, f.start) + 1
        assert f.column == f.start - (text.rfind("\n", 0, f.start) + 1) + 1


def test_positions_of_many_findings_on_one_line_and_many_lines() -> None:
    lines = [" ".join(f"u{i}x{j}@example.org" for j in range(3)) for i in range(50)]
    text = "\n".join(lines)
    findings = Scanner().scan(text)
    assert len(findings) == 150
    for f in findings:
        line = lines[f.line - 1]
        assert line[f.column - 1 : f.column - 1 + f.end - f.start] == text[f.start : f.end]


@pytest.mark.parametrize(
    "values",
    [
        ["ann@example.org", "bob@example.org", "cy@example.org"],
        ["4111 1111 1111 1111", "5500 0000 0000 0004", "4111111111111111"],
        ["DE89370400440532013000", "GB82WEST12345698765432"],
        [github_token(1), github_token(2)],
    ],
)
@pytest.mark.parametrize("separator", [" ", ",", "\n", ", "])
def test_values_one_character_apart_are_each_found(values: list[str], separator: str) -> None:
    text = separator.join(values)
    assert [value for _, value in spans(Scanner(), text)] == values


@pytest.mark.parametrize("separator", [",", "\n", ", ", " or "])
def test_phone_numbers_one_separator_apart_are_each_found(separator: str) -> None:
    # Not a bare space: "+1 415 555 2671 (212) 555-0188" reads as one number of 17
    # digits, which is too long to be a phone number, so neither is reported.
    values = ["+1 415 555 2671", "(212) 555-0188", "+44 20 7946 0958"]
    assert [value for _, value in spans(Scanner(), separator.join(values))] == values


def test_longer_match_wins_an_overlap() -> None:
    scanner = only({"id": "short", "regex": "abc"}, {"id": "long", "regex": "abcdef"})
    assert spans(scanner, "xx abcdef") == [("long", "abcdef")]


def test_equal_matches_go_to_the_earlier_rule() -> None:
    scanner = only({"id": "first", "regex": "abc"}, {"id": "second", "regex": "abc"})
    assert spans(scanner, "abc") == [("first", "abc")]


def test_stronger_action_wins_over_a_longer_match() -> None:
    scanner = only(
        {"id": "note", "regex": "abcdef", "action": "annotate"},
        {"id": "stop", "regex": "cd", "action": "block"},
    )
    assert spans(scanner, "abcdef") == [("stop", "cd")]


def test_a_chain_of_overlaps_keeps_the_non_overlapping_best() -> None:
    # a=[0,6) b=[4,10) c=[8,12): a beats b (same length, earlier rule); c touches only b.
    scanner = only(
        {"id": "a", "regex": "012345"},
        {"id": "b", "regex": "456789"},
        {"id": "c", "regex": "89AB"},
    )
    assert spans(scanner, "0123456789AB") == [("a", "012345"), ("c", "89AB")]


def test_a_match_that_spans_others_shadows_them_all() -> None:
    # b lies inside a, and c starts inside a after b has ended.
    scanner = only(
        {"id": "a", "regex": "0123456789"},
        {"id": "b", "regex": "23"},
        {"id": "c", "regex": "6789AB"},
    )
    assert spans(scanner, "0123456789AB") == [("a", "0123456789")]


def test_adjacent_matches_are_both_kept() -> None:
    scanner = only({"id": "a", "regex": "abc"}, {"id": "d", "regex": "def"})
    assert spans(scanner, "abcdef") == [("a", "abc"), ("d", "def")]


def test_empty_text() -> None:
    assert Scanner().scan("") == []


def test_lone_surrogates_from_json_do_not_break_scanning_or_offsets() -> None:
    text = "\ud83d broken emoji, then ann@example.org"
    (finding,) = Scanner().scan(text)
    assert text[finding.start : finding.end] == "ann@example.org"


AWS_KEY = "AKIA" + "QZ7RVN2XWLKD5HJT"


def test_a_secret_in_fullwidth_characters_is_found_where_it_is() -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in AWS_KEY)  # fullwidth AKIA...
    text = f"é\nkey = '{fullwidth}' # ann@example.org"
    assert spans(Scanner(), text) == [
        ("aws-access-key-id", fullwidth),
        ("email", "ann@example.org"),
    ]
    (finding, _) = Scanner().scan(text)
    assert (finding.line, finding.column) == (2, 8)
    assert finding.fingerprint == fingerprint(AWS_KEY)  # one allow-list entry for both


def test_letters_of_other_scripts_that_look_like_ascii_ones_are_read_as_those() -> None:
    """A deny rule for "password" let it through in Cyrillic a and o; NFKC keeps them."""
    scanner = only({"id": "word", "regex": r"(?i)\bpassword\b"})
    disguised = "p\u0430ssw\u043erd"  # Cyrillic a, o
    text = f"my {disguised} is"
    assert spans(scanner, text) == [("word", disguised)]
    greek = "P\u0391SSW\u039fRD"  # Greek capital alpha, omicron
    assert spans(scanner, greek) == [("word", greek)]
    # Letters that look like digits stay letters: Cyrillic text reads as no number.
    assert spans(only({"id": "n", "regex": r"\d"}), "\u0431\u0417") == []
    # Whatever stands beside it (a CJK word, a Cyrillic one, a symbol look-alike), it is
    # found where the ASCII word is.
    anywhere = only({"id": "word", "regex": "(?i)password"})
    for around in ("\u6211\u7684{}=1", "\u043a\u043b\u044e\u0447_{} = 1", "\u237a{}"):
        assert spans(anywhere, around.format(disguised)) == [("word", disguised)], around
    # A rule of those scripts still reads them as written: an all look-alike word
    # ("SEKRET" in capitals) is itself first.
    cyrillic = only({"id": "secret", "regex": "(?i)\u0441\u0435\u043a\u0440\u0435\u0442"})
    shouting = "\u0421\u0415\u041a\u0420\u0415\u0422: \u043f\u0440\u043e\u0435\u043a\u0442"
    assert spans(cyrillic, shouting) == [("secret", shouting[:6])]
    assert spans(scanner, "\u043f\u0430\u0440\u043e\u043b\u044c") == []  # "parol'"
    # A rule whose finding is the value after its keyword: the value is as written, the
    # keyword was not.
    keyed = f'{disguised} = "Xy7!kP2#qR9*wZ4"'
    assert [rule for rule, _ in spans(Scanner(), keyed)] == ["generic-secret"]


@pytest.mark.parametrize(
    "keyword", ["\ube44\ubc00\ubc88\ud638", "\u30d1\u30b9\u30ef\u30fc\u30c9", "l\u00f6senord"]
)
def test_a_keyword_written_decomposed_is_read_as_composed(keyword: str) -> None:
    # Text from macOS and some editors comes decomposed (NFD): Korean as its jamo, a kana
    # with its voicing mark apart, an o and its diaeresis. Read a character at a time,
    # none of those was the keyword, and the password after it went through.
    decomposed = unicodedata.normalize("NFD", keyword)
    assert decomposed != keyword
    text = f"{decomposed} = Zq8vN3xWp7Lk2Rt9\n# ann@example.org"
    assert spans(Scanner(), text) == [
        ("generic-secret", "Zq8vN3xWp7Lk2Rt9"),
        ("email", "ann@example.org"),
    ]


def test_a_value_written_decomposed_is_found_where_it_is_as_its_composed_self() -> None:
    composed = "Projekt Gr\u00f6\u00dfe"
    scanner = only({"id": "codename", "regex": composed, "action": "block"})
    decomposed = "Projekt Gro\u0308\u00dfe"
    text = f"\u00e9\u0301 {decomposed} starts"
    assert spans(scanner, text) == [("codename", decomposed)]
    (finding,) = scanner.scan(text)
    assert finding.fingerprint == fingerprint(composed)  # one allow-list entry for both
    # A mark that composes with nothing, or text already composed, reads as before.
    assert spans(scanner, composed + "\u0336") == [("codename", composed)]
    assert spans(scanner, "Projekt Gro\u0336\u00dfe") == []


def test_a_rule_written_decomposed_finds_its_value_either_way() -> None:
    # A regex and keyword pasted from a decomposed text: the text is read composed.
    decomposed = unicodedata.normalize("NFD", "Gr\u00f6\u00dfe-[0-9]+")
    scanner = only({"id": "g", "regex": decomposed, "keywords": ["gro\u0308\u00dfe"]})
    for text in ("Gr\u00f6\u00dfe-12", "Gro\u0308\u00dfe-12"):
        assert spans(scanner, f"x {text} y") == [("g", text)]


@pytest.mark.parametrize(
    ("regex", "matches", "misses"),
    [
        ("lo\u0308?senord", ["losenord", "lo\u0308senord"], ["l\u00f6senord"]),
        ("x[o\u0308]y", ["xoy"], ["x\u00f6y"]),
        ("o\u0308{2}x", ["o\u0308\u0308x"], ["\u00f6\u00f6x"]),
    ],
    ids=["optional mark", "class", "repeat"],
)
def test_a_regex_keeps_its_meaning_where_its_marks_are_not_letters_own(
    regex: str, matches: list[str], misses: list[str]
) -> None:
    """Composed whole, `lo\u0308?senord` read `l\u00f6?senord` (matching "lsenord", not
    "losenord"), and a class of o and a diaeresis became a class of \u00f6."""
    scanner = only({"id": "r", "regex": regex})
    for text in matches:
        assert spans(scanner, f"a {text} b") == [("r", text)], text
    for text in misses:
        assert spans(scanner, f"a {text} b") == [], text


@pytest.mark.parametrize("mark", ["\u0301", "\u0344", "\u0308\u0301"])
def test_a_value_with_a_mark_after_it_is_found_whole_and_alone(mark: str) -> None:
    # Read composed only, the token's last letter and the mark were one letter beyond
    # ASCII: the token no longer matched its rule and went through, or took the mark in.
    token = github_token(5)
    text = f"see {token}{mark} ok"
    assert spans(Scanner(), text) == [("github-pat", token)]


def test_a_value_allowed_as_composed_is_allowed_written_decomposed() -> None:
    scanner = only(
        {"id": "pw", "regex": r"pw=(\S+)", "secret_group": 1}, allow=[fingerprint("heml\u00f6")]
    )
    assert spans(scanner, "pw=heml\u00f6 x") == []
    assert spans(scanner, "pw=hemlo\u0308 x") == []
    assert spans(scanner, "pw=hemlo\u0308\u0301 x") == [("pw", "hemlo\u0308\u0301")]


@pytest.mark.parametrize(
    "invisible",
    ["\u200b", "\u200d", "\u00ad", "\u2060", "\ufeff", "\ufff9", "\U0001bca0", "\U0001d173"],
)
def test_invisible_characters_inside_a_secret_do_not_hide_it(invisible: str) -> None:
    hidden = AWS_KEY[:4] + invisible + AWS_KEY[4:12] + invisible * 2 + AWS_KEY[12:]
    text = f"k = '{hidden}'\nmail\ufb01 ann@example.org"
    assert spans(Scanner(), text) == [
        ("aws-access-key-id", hidden),
        ("email", "ann@example.org"),
    ]


# --- linear time -------------------------------------------------------------------------------


def test_every_rule_is_compiled_by_re2() -> None:
    scanner = Scanner(custom=[{"id": "custom", "regex": "x+"}])
    re2_pattern = type(re2.compile("x"))
    assert set(scanner.patterns) == {r.id for r in builtin_rules()} | {"custom"}
    for rule_id, pattern in scanner.patterns.items():
        assert isinstance(pattern, re2_pattern), rule_id
        assert type(pattern).__module__ == "re2", rule_id


MB = 1 << 20


def test_one_megabyte_of_adversarial_text_completes() -> None:
    scanner = Scanner()
    assert scanner.scan("a" * MB + "!") == []
    near_misses = "AKIA ghp_ sk-ant- eyJ.eyJ -----BEGIN PRIVATE KEY-----\n password = ' a@b. +1 ("
    text = (near_misses * (MB // len(near_misses) + 1))[:MB]
    assert scanner.scan(text) == []


def test_catastrophic_backtracking_pattern_is_harmless_under_re2() -> None:
    # (a+)+$ takes exponential time in a backtracking engine on "aaa...!".
    scanner = only({"id": "redos", "regex": "(a+)+$"})
    assert scanner.scan("a" * MB + "!") == []
    assert len(scanner.scan("a" * MB)) == 1


def test_dense_findings_in_a_large_text_are_all_reported() -> None:
    unit = "ann@example.org AK" + "IA" + "QWERTYUIOPASDFGH\n"
    count = 256 * 1024 // len(unit)
    findings = Scanner().scan(unit * count)
    assert len(findings) == 2 * count
    assert findings[-1].line == count


def test_a_word_boundary_is_not_taken_next_to_a_letter_beyond_ascii() -> None:
    # RE2's \b knows only ASCII word characters: "épass" held a word "pass" for it.
    scanner = only({"id": "word", "regex": r"\bpass\b", "action": "annotate"})
    assert spans(scanner, "épass passé pass_ë") == []
    text = "impassé, pass; über pass"
    assert [f.start for f in scanner.scan(text)] == [9, 20]


@pytest.mark.parametrize(
    ("regex", "text", "found"),
    [
        (r"\bkey-[0-9]{4}|token=[0-9]{4}", "étoken=1234", "token=1234"),
        (r"(?:\bkey|token)=[0-9]{4}", "étoken=1234", "token=1234"),
        (r"(\bpre)?fix[0-9]{4}", "éfix1234", "fix1234"),
        (r"[0-9]{4}(?:x|y\b)", "1234xé", "1234x"),
    ],
)
def test_a_word_boundary_of_one_alternative_leaves_the_others_alone(
    regex: str, text: str, found: str
) -> None:
    # A \b that only one alternative, or an optional group, starts or ends with does not
    # bound every match: the rest matched next to a letter beyond ASCII all the same.
    assert spans(only({"id": "r", "regex": regex}), text) == [("r", found)]


def test_a_mailgun_key_after_a_letter_beyond_ascii_is_found() -> None:
    key = "0123456789abcdef" * 2 + "-01234567-89abcdef"
    assert spans(Scanner(), f"émailgun: {key}") == [("mailgun-api-key", key)]


@pytest.mark.parametrize(
    "address", ["müller@beispiel.de", "renée.dupont@exemple.fr", "josé@correo.españa.es"]
)
def test_an_address_with_letters_beyond_ascii_is_found_whole(address: str) -> None:
    assert spans(Scanner(), f"mail {address}, thanks") == [("email", address)]


FULLWIDTH = {code: code + 0xFEE0 for code in range(0x21, 0x7F)}


class _CountedNormalize:
    """``unicodedata`` as the scanner sees it, counting the characters it normalises."""

    def __init__(self) -> None:
        self.characters = 0

    def normalize(self, form: Any, text: str) -> str:
        self.characters += len(text)
        return unicodedata.normalize(form, text)

    def __getattr__(self, name: str) -> Any:
        return getattr(unicodedata, name)


def test_two_megabytes_of_fullwidth_text_are_normalised_in_one_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each character was normalised on its own, in Python: seconds for a megabyte. The
    # table of forms is built once, on first use; then the text is translated through it.
    import tether.policy.scanner as scanner_module

    fullwidth = "key=ABCD1234 ".translate(FULLWIDTH) + "テスト、"
    text = (fullwidth * (2 * MB // len(fullwidth) + 1))[: 2 * MB] + AWS_KEY.translate(FULLWIDTH)
    scanner = only({"id": "aws", "regex": r"AKIA[A-Z0-9]{16}", "keywords": ["akia"]})
    assert scanner.scan(fullwidth) == []
    counted = _CountedNormalize()
    monkeypatch.setattr(scanner_module, "unicodedata", counted)
    (finding,) = scanner.scan(text)
    assert counted.characters == 0
    assert finding.start == 2 * MB and finding.end == len(text)


def _every_rule_read(scanner: Scanner, text: str) -> list[Any]:
    """``scanner``'s findings with each rule without keywords run on its own, as before
    one search of them all decided whether any need run."""
    joined, scanner._any_unkeyed = scanner._any_unkeyed, None
    try:
        return scanner.scan(text)
    finally:
        scanner._any_unkeyed = joined


def test_the_rules_without_keywords_are_skipped_only_where_none_of_them_matches(
    scanner: Scanner,
) -> None:
    """The rules without keywords (cards, IBANs, phone numbers, Discord tokens) are read
    only where one search of them all finds something: the findings are the same as
    with each rule run on every text, on every example and look-alike, alone and in
    code, and their values with a digit or letter changed."""
    from tests.policy.fakes import EXAMPLES

    assert scanner._any_unkeyed is not None
    texts = [t for e in EXAMPLES for t in (e.text, e.look_alike, f"x = f({e.secret!r})\n")]
    chance = random.Random(0)
    for example in EXAMPLES:
        for _ in range(5):
            at = chance.randrange(len(example.secret))
            changed = chance.choice(ALNUM)
            texts.append(example.secret[:at] + changed + example.secret[at + 1 :])
    found = 0
    for text in texts:
        expected = _every_rule_read(scanner, text)
        assert scanner.scan(text) == expected, text
        found += bool(expected)
    assert found > len(EXAMPLES) // 2  # the texts hold secrets the rules find


def test_rules_without_keywords_too_large_to_join_each_still_run() -> None:
    """Two custom rules without keywords that RE2 takes alone but not as one pattern (too
    large): each runs on its own, as before."""
    scanner = only(
        {"id": "first", "regex": r"\pL{1,300}1"},
        {"id": "second", "regex": r"\pL{1,300}2"},
    )
    assert scanner._any_unkeyed is None
    assert spans(scanner, "falcon1 eagle2") == [("first", "falcon1"), ("second", "eagle2")]
    joined = only({"id": "first", "regex": "falcon[0-9]"}, {"id": "second", "regex": "eagle"})
    assert joined._any_unkeyed is not None
    assert spans(joined, "eagle falcon1") == [("second", "eagle"), ("first", "falcon1")]
    assert spans(joined, "a hawk") == []
