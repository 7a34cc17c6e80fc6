"""Secrets inside base64: found, covered whole, allow-listed as written plainly, and the
shapes that only look like base64 left alone."""

from __future__ import annotations

import base64
import random

import pytest

from tests.policy.fakes import ALNUM, EXAMPLES, Example, pem, rand
from tether.findings import Finding, fingerprint
from tether.policy import Scanner, govern
from tether.policy.encoded import decode, decoded_runs


def b64(text: str, *, url_safe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if url_safe else base64.b64encode
    return encode(text.encode()).decode()


def wrapped(value: str, width: int = 76) -> str:
    return "\n".join(value[i : i + width] for i in range(0, len(value), width))


def github_token(seed: int = 0) -> str:
    return "gh" + "p_" + rand(ALNUM, 36, seed)


def covered(text: str, findings: list[Finding], value: str) -> list[tuple[str, str]]:
    start = text.index(value)
    return [
        (f.rule_id, f.message) for f in findings if (f.start, f.end) == (start, start + len(value))
    ]


def test_a_private_key_in_a_kubeconfig_is_found_over_the_whole_encoded_value(
    scanner: Scanner,
) -> None:
    key = pem()
    value = b64(key + "\n")
    text = f"users:\n- name: admin\n  user:\n    client-key-data: {value}\n"
    (finding,) = scanner.scan(text)
    assert (finding.rule_id, text[finding.start : finding.end]) == ("private-key", value)
    assert finding.message == "private key (PEM, OpenSSH or PGP), base64-encoded"
    (plain,) = scanner.scan(key + "\n")  # the same key written plainly: allowed alike
    assert finding.fingerprint == plain.fingerprint
    assert (finding.line, finding.column) == (4, 22)
    redacted = govern(text, [finding]).text
    assert (
        redacted == "users:\n- name: admin\n  user:\n    client-key-data: [REDACTED:private-key]\n"
    )


def test_base64_wrapped_at_76_columns_is_read_as_one_value(scanner: Scanner) -> None:
    key = pem(lines=12)
    value = wrapped(b64(key))
    assert value.count("\n") > 3
    text = f"$ base64 id_deploy\n{value}\n$ echo done\n"
    (finding,) = scanner.scan(text)
    assert (finding.rule_id, text[finding.start : finding.end].rstrip()) == ("private-key", value)


def test_a_line_of_base64_width_before_code_is_still_read_alone(scanner: Scanner) -> None:
    value = b64(f"token = {github_token()}\n" + "#" * 8)  # 76 characters: a full line
    assert len(value) == 76
    text = f"BLOB = '''\n{value}\n    pass\n'''"
    (finding,) = scanner.scan(text)
    assert (finding.rule_id, text[finding.start : finding.end]) == ("github-pat", value)


@pytest.mark.parametrize("url_safe", [False, True])
def test_either_alphabet_is_read(scanner: Scanner, url_safe: bool) -> None:
    # ">>>?" encodes to "Pj4+Pw" in one alphabet and "Pj4-Pw" in the other.
    value = b64(f">>>? {github_token(3)} ???", url_safe=url_safe)
    assert ("-" in value or "_" in value) == url_safe
    assert ("+" in value or "/" in value) != url_safe
    text = f"blob: {value}"
    assert covered(text, scanner.scan(text), value) == [
        ("github-pat", "GitHub personal access token (classic), base64-encoded")
    ]


def test_base64_inside_base64_is_read_two_levels_deep_not_three(scanner: Scanner) -> None:
    token = github_token(1)
    once, twice = b64(f"token: {token}"), b64(f"inner: {b64(f'token: {token}')}")
    thrice = b64(f"x: {twice}")
    for value, found in [(once, True), (twice, True), (thrice, False)]:
        text = f"data: {value}\n"
        assert bool(covered(text, scanner.scan(text), value)) is found, value


def test_a_docker_config_secret_is_found(scanner: Scanner) -> None:
    auth = b64("ci:" + rand(ALNUM, 20, 5))
    config = '{"auths":{"registry.example.com":{"username":"ci","auth":"' + auth + '"}}}'
    value = b64(config)
    text = f"data:\n  .dockerconfigjson: {value}\n"
    (finding,) = scanner.scan(text)
    assert (finding.rule_id, text[finding.start : finding.end]) == ("basic-auth", value)
    (plain,) = scanner.scan(config)  # ~/.docker/config.json as docker login writes it
    assert (plain.rule_id, config[plain.start : plain.end]) == ("basic-auth", auth)


def test_the_strongest_action_inside_wins(scanner: Scanner) -> None:
    tether_token = "tth" + "_" + rand(ALNUM, 43, 2)
    value = b64(f"owner: jane.doe@example.org\nadmin token: {tether_token}\n")
    (finding,) = scanner.scan(f"config: {value}")
    assert (finding.rule_id, finding.action) == ("tether-token", "block")
    assert finding.fingerprint == fingerprint(tether_token)


def test_personal_data_inside_is_pseudonymized_as_a_whole(scanner: Scanner) -> None:
    value = b64("contact: jane.doe@example.org, on call this week")
    text = f"annotations:\n  owner: {value}\n"
    (finding,) = scanner.scan(text)
    assert (finding.rule_id, finding.action) == ("email", "pseudonymize")
    assert text[finding.start : finding.end] == value


def test_the_allow_list_takes_the_plain_value_or_the_encoded_one() -> None:
    token = github_token(4)
    value = b64(f"token: {token}")
    text = f"blob: {value}"
    assert len(Scanner().scan(text)) == 1
    assert Scanner(allow=[fingerprint(token)]).scan(text) == []
    assert Scanner(allow=[fingerprint(value)]).scan(text) == []


def test_an_encoded_value_beyond_ascii_text_is_found_where_it_is(scanner: Scanner) -> None:
    value = b64(f"token: {github_token(6)}")
    text = f"# clé d'accès — ne pas committer\nblob: {value} ✓\n"
    (finding,) = scanner.scan(text)
    assert text[finding.start : finding.end] == value
    assert (finding.line, finding.column) == (2, 7)


@pytest.mark.parametrize(
    "text",
    [
        # A certificate is public; only its private key is a secret.
        "certificate-authority-data: "
        + b64(
            "-----BEGIN CERTIFICATE-----\n" + rand(ALNUM, 600, 7) + "\n-----END CERTIFICATE-----\n"
        ),
        "config.json: " + b64('{"log_level": "debug", "replicas": 3, "region": "eu-west-1"}'),
        # Random bytes: a digest, an image.
        "integrity: sha512-" + base64.b64encode(random.Random(1).randbytes(64)).decode(),
        '<img src="data:image/png;base64,'
        + base64.b64encode(random.Random(2).randbytes(900)).decode()
        + '">',
        # The base64 alphabet, not base64.
        "from tether.pipeline.service import CompletionServiceWithPolicyChecks",
        "src/tether/policy/scanner/encoded_runs_of_the_base64_alphabet.py",
        "AbstractSingletonProxyFactoryBeanDefinitionRegistryPostProcessor",
    ],
)
def test_what_only_looks_like_base64_is_left_alone(scanner: Scanner, text: str) -> None:
    assert scanner.scan(text) == []


def test_decoding_refuses_binary_mixed_alphabets_and_short_runs() -> None:
    assert decode(b64("password = " + rand(ALNUM, 20, 8))) is not None
    assert decode(base64.b64encode(bytes(range(40))).decode()) is None  # control characters
    # Both alphabets at once: "-" for "+" would decode to the same text, but is refused.
    text = ">>>? ??? password = hunter2-and-more"
    value = b64(text)
    assert "+" in value and "/" in value and decode(value) == text
    assert decode(value.replace("+", "-", 1)) is None
    assert decode(b64("short")) is None
    assert decode(b64("y" * 30) + "A") is None  # a length base64 never has


def test_runs_are_found_in_order_with_their_spans() -> None:
    first, second = b64("first value of some length"), b64("second value of some length")
    text = f"a: {first}\nb: {second}\n"
    runs = list(decoded_runs(text))
    assert [(text[r.start : r.end], r.text) for r in runs] == [
        (first, "first value of some length"),
        (second, "second value of some length"),
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.rule_id)
def test_text_beyond_ascii_is_scanned_as_ascii_text_is(scanner: Scanner, example: Example) -> None:
    # ASCII text is given to RE2 as bytes, other text as str: the findings must agree.
    plain = [(f.rule_id, f.start, f.end) for f in scanner.scan(example.text)]
    shifted = [(f.rule_id, f.start - 2, f.end - 2) for f in scanner.scan("é\n" + example.text)]
    assert plain == shifted


def test_a_word_after_a_wrapped_block_does_not_hide_it(scanner: Scanner) -> None:
    # The secret crosses the block's line break; "EOF" is base64's alphabet too.
    config = f"# config for the deploy job, generated\ndb_password = '{rand(ALNUM, 20, 13)}'\n"
    value = wrapped(b64(config + "#" * 37 + "\n"))  # 114 bytes: two full lines, no padding
    assert [len(line) for line in value.split("\n")] == [76, 76]
    assert b64(config[:57])[:76] == value[:76] and config.index("db_password") + 15 < 57 < len(
        config
    )
    for after in ["\nEOF\n", "\nEOF", "\n\nEOF\n", "\n"]:
        text = f"cat <<EOF | base64 -d > creds\n{value}{after}"
        assert covered(text, scanner.scan(text), value) == [
            (
                "generic-secret",
                "high-entropy value assigned to a password, secret, token or key, base64-encoded",
            )
        ], after


def test_twenty_four_characters_with_padding_are_read(scanner: Scanner) -> None:
    value = b64("password=" + rand(ALNUM, 8, 14))
    assert len(value) == 24 and value.endswith("=")
    text = f"data: {value}\n"
    assert [f.rule_id for f in scanner.scan(text)] == ["generic-secret"]
    assert decode(value[:20]) is None  # fewer than 24 characters: not read


def test_blocks_that_fail_beyond_ascii_text_are_read_a_line_at_a_time(scanner: Scanner) -> None:
    # Lines that look wrapped but hold random bytes; one line of them holds a secret alone.
    # (`bench.secret_scanner`, "failed blocks beyond ASCII", shows the time stays linear.)
    rng = random.Random(15)
    noise = wrapped(base64.b64encode(rng.randbytes(96)).decode(), 64)
    line = b64(f"token: {github_token(16)} ")  # 48 bytes: 64 characters, no padding
    assert len(line) == 64
    text = f"é {noise}\n{line}\n{noise}\n"
    runs = list(decoded_runs(text))
    assert [(text[r.start : r.end], r.text) for r in runs] == [
        (line, base64.b64decode(line).decode())
    ]
    (finding,) = scanner.scan(text)
    assert (finding.rule_id, text[finding.start : finding.end]) == ("github-pat", line)
