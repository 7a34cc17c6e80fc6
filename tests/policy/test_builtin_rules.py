"""Every built-in rule finds a realistic fake value and leaves a look-alike alone."""

from __future__ import annotations

import base64

import pytest

from tests.policy.fakes import ALNUM, B64, EXAMPLES, Example, rand
from tether.findings import fingerprint
from tether.policy import Scanner, builtin_rules


def test_every_builtin_rule_has_an_example() -> None:
    assert sorted(e.rule_id for e in EXAMPLES) == sorted(r.id for r in builtin_rules())


def test_builtin_ids_are_unique() -> None:
    ids = [rule.id for rule in builtin_rules()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.rule_id)
def test_rule_finds_its_secret_exactly(scanner: Scanner, example: Example) -> None:
    start = example.text.index(example.secret)
    findings = scanner.scan(example.text)
    ours = [f for f in findings if f.rule_id == example.rule_id]
    assert len(ours) == 1, findings
    finding = ours[0]
    assert (finding.start, finding.end) == (start, start + len(example.secret))
    assert finding.fingerprint == fingerprint(example.secret)
    assert finding.stage == "policy"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.rule_id)
def test_look_alike_is_not_flagged(scanner: Scanner, example: Example) -> None:
    assert scanner.scan(example.look_alike) == []


@pytest.mark.parametrize(
    ("rule_id", "action"),
    [
        ("tether-token", "block"),
        ("aws-access-key-id", "redact"),
        ("private-key", "redact"),
        ("generic-secret", "redact"),
        ("email", "pseudonymize"),
        ("phone", "pseudonymize"),
        ("card-number", "redact"),
        ("iban", "redact"),
    ],
)
def test_default_actions(rule_id: str, action: str) -> None:
    assert {r.id: r.action for r in builtin_rules()}[rule_id] == action


def test_finding_never_carries_the_value(scanner: Scanner) -> None:
    example = next(e for e in EXAMPLES if e.rule_id == "github-pat")
    (finding,) = scanner.scan(example.text)
    assert example.secret not in repr(finding.as_record())


def test_private_key_cut_off_before_its_end_line_is_still_caught(scanner: Scanner) -> None:
    key = next(e for e in EXAMPLES if e.rule_id == "private-key").secret
    truncated = key[: len(key) // 2]
    (finding,) = scanner.scan(f"my key:\n{truncated}")
    assert finding.rule_id == "private-key"
    assert finding.end - finding.start == len(truncated)


def test_password_in_database_url_is_redacted_not_pseudonymized(scanner: Scanner) -> None:
    # "pw@db.example.com" also reads as an e-mail address; the stronger action wins.
    text = "mongodb+srv://svc:Zx81kQ4vTw@db.example.com/app"
    findings = scanner.scan(text)
    assert [(f.rule_id, text[f.start : f.end]) for f in findings] == [
        ("database-url", "Zx81kQ4vTw")
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@host.com/",
        "https://username:password@host.com:80/path",
        "postgres://user:%s@host/db",
        "postgresql://app:%(password)s@db/orders",
        "http://user:****@host/",
        "redis://default:your_password@cache:6379",
        "amqp://guest:xxxxxx@broker//",
    ],
)
def test_documentation_s_stand_in_for_a_url_password_is_no_secret(
    scanner: Scanner, url: str
) -> None:
    """Docstrings and READMEs write these; flagged, every library's docs failed a check."""
    assert scanner.scan(f'connect("{url}")') == []


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgres://app:%23Xk9vLq2mZ@db.internal/prod", "%23Xk9vLq2mZ"),  # "#" escaped
        ("mysql://root:Sphere-2024-Qx@db/prod", "Sphere-2024-Qx"),  # holds "here"
        ("redis://:Yours9Kq2!@cache:6379", "Yours9Kq2!"),  # holds "your"
        ("https://deploy:p4ssw0rd-Example-77@pypi.corp.example/simple", "p4ssw0rd-Example-77"),
    ],
)
def test_a_real_url_password_that_looks_a_little_like_a_stand_in_is_found(
    scanner: Scanner, url: str, password: str
) -> None:
    found = scanner.scan(url)
    assert [url[f.start : f.end] for f in found] == [password], found


def test_tether_token_is_caught_even_when_it_looks_like_a_placeholder(scanner: Scanner) -> None:
    # Other token rules skip "ghp_xxxx..."; a tether admin token must never get through.
    token = "tth" + "_" + "x" * 43
    assert [(f.rule_id, f.action) for f in scanner.scan(f"t={token}")] == [
        ("tether-token", "block")
    ]


@pytest.mark.parametrize(
    ("text", "rule_id"),
    [
        ("AWS_PRIVATE_KEY=" + rand(B64, 40), "aws-secret-access-key"),
        ("auth-key: Zq3Vb8Lw2Xy7Kp1M", "generic-secret"),
        ("private.key = 'Zq3Vb8Lw2Xy7Kp1M'", "generic-secret"),
        ("Api.Key=Zq3Vb8Lw2Xy7Kp1M", "generic-secret"),
        ("GET /geo?key=Zq3Vb8Lw2Xy7Kp1Mn4 HTTP/1.1", "generic-secret"),
    ],
)
def test_every_spelling_gets_past_the_keyword_prefilter(
    scanner: Scanner, text: str, rule_id: str
) -> None:
    assert [f.rule_id for f in scanner.scan(text)] == [rule_id]


@pytest.mark.parametrize(
    "line",
    [
        "//npm.corp.example/:_auth={s}",  # .npmrc
        '{{"auths": {{"registry.corp.example": {{"auth": "{s}"}}}}}}',  # ~/.docker/config.json
        "Authorization: basic {s}",
    ],
)
def test_basic_credentials_are_found_where_clients_keep_them(scanner: Scanner, line: str) -> None:
    credentials = base64.b64encode(b"deploy:" + rand(B64, 18, 9).encode()).decode()
    text = line.format(s=credentials)
    assert [(f.rule_id, text[f.start : f.end]) for f in scanner.scan(text)] == [
        ("basic-auth", credentials)
    ]
    # Not a user and a password: the same shape, decoding to something else.
    other = base64.b64encode(rand(B64, 25, 9).encode()).decode()
    assert scanner.scan(line.format(s=other)) == []


def test_netrc_entries_with_a_login_or_account_and_not_prose(scanner: Scanner) -> None:
    password = rand(ALNUM, 20, 11)
    for text in [
        f"machine a.example login me account ops password {password}",
        f"machine a.example\n\tlogin me\n\tpassword {password}\n",
        f"machine a.example account ops password {password}",
    ]:
        assert [text[f.start : f.end] for f in scanner.scan(text)] == [password], text
    for prose in [
        "How do I log into the machine with password authentication disabled?",
        "ssh to the build machine using password login fails",
    ]:
        assert scanner.scan(prose) == []


@pytest.mark.parametrize(
    "name",
    [
        "Passwort", "db_kennwort", "mot_de_passe", "MotDePasse", "mot-de-passe", "contraseña",
        "contrasena", "senha", "wachtwoord", "hasło", "lösenord", "salasana", "ПАРОЛЬ", "密码",
        "パスワード", "비밀번호",
    ],
)  # fmt: skip
def test_a_password_under_a_key_name_in_another_language_is_found(
    scanner: Scanner, name: str
) -> None:
    value = rand(ALNUM, 16, 12)
    for text in [f'{name} = "{value}"', f"{name}: {value}\n", f'{{"{name}": "{value}"}}']:
        assert [(f.rule_id, text[f.start : f.end]) for f in scanner.scan(text)] == [
            ("generic-secret", value)
        ], text
    # Fullwidth punctuation, as an IME types it, reads as ASCII.
    text = f"{name}\uff1a{value}"
    assert [text[f.start : f.end] for f in scanner.scan(text)] == [value]
    assert scanner.scan(f"{name} = forms.CharField(max_length=128)") == []
