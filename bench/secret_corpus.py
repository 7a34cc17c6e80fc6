"""A deterministic corpus for the secret scanner: fake credentials and personal data in
realistic contexts, and look-alikes that must not be flagged.

Values follow each provider's published shape (prefix, alphabet, length) and are drawn
from ``random.Random(seed)``, so no real credential is involved and every run sees the
same corpus. The corpus is written from the formats, not from the scanner's rules: a
value the rules miss shows up as lower recall, a look-alike they flag as lower precision.
Fake values are assembled at run time so this file itself holds nothing secret-shaped.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

UPPER, LOWER, DIGITS = string.ascii_uppercase, string.ascii_lowercase, string.digits
ALNUM = UPPER + LOWER + DIGITS
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
BASE32 = UPPER + "234567"


@dataclass(frozen=True)
class Secret:
    kind: str  # provider or data kind, e.g. "github", "email"
    value: str  # the exact text a detector must cover


@dataclass(frozen=True)
class Sample:
    kind: str
    text: str
    secrets: tuple[Secret, ...]  # empty for a look-alike


def rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# --- credentials: (kind, service, env name, key name, value maker) -------------------------

Maker = Callable[[random.Random], str]


def _openai(rng: random.Random) -> str:
    marker = "T3Blbk" + "FJ"
    form = rng.randrange(3)
    if form == 0:
        return "sk-" + "proj-" + rand(rng, B64URL, 74) + marker + rand(rng, B64URL, 74)
    if form == 1:
        return "sk-" + rand(rng, ALNUM, 20) + marker + rand(rng, ALNUM, 20)
    return "sk-" + "svcacct-" + rand(rng, B64URL, 74) + marker + rand(rng, B64URL, 74)


def _github(rng: random.Random) -> str:
    prefix = rng.choice(["ghp", "gho", "ghu", "ghs", "ghr", "github_pat"])
    if prefix == "github_pat":
        return prefix + "_" + rand(rng, ALNUM, 22) + "_" + rand(rng, ALNUM, 59)
    return prefix + "_" + rand(rng, ALNUM, 36)


def _slack(rng: random.Random) -> str:
    team, user = rand(rng, DIGITS, 11), rand(rng, DIGITS, 13)
    if rng.random() < 0.5:
        return "xox" + "b-" + f"{team}-{user}-" + rand(rng, ALNUM, 24)
    return "xox" + "p-" + f"{team}-{user}-{rand(rng, DIGITS, 13)}-" + rand(rng, HEX, 32)


def _stripe(rng: random.Random) -> str:
    prefix = rng.choice(["sk_live_", "rk_live_", "sk_test_"])
    return prefix[:3] + prefix[3:] + rand(rng, ALNUM, rng.choice([24, 99]))


def _twilio(rng: random.Random) -> str:
    return "S" + "K" + rand(rng, HEX, 32)


def _mailgun(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "key" + "-" + rand(rng, LOWER + DIGITS, 32)
    return f"{rand(rng, HEX, 32)}-{rand(rng, HEX, 8)}-{rand(rng, HEX, 8)}"


def _square(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "EA" + "AA" + rand(rng, B64URL, 60)
    return "sq0" + "csp-" + rand(rng, B64URL, 43)


def _heroku(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return "HR" + "KU-" + rand(rng, B64URL, 60)


def _discord(rng: random.Random) -> str:
    user_id = str(rng.randrange(10**17, 10**19)).encode()
    head = base64.urlsafe_b64encode(user_id).decode().rstrip("=")
    return f"{head}.{rand(rng, B64URL, 6)}.{rand(rng, B64URL, rng.choice([27, 38]))}"


def _jwt(rng: random.Random) -> str:
    def b64(data: dict[str, object]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    claims = {"sub": str(rng.randrange(10**6)), "name": "svc", "iat": rng.randrange(10**9)}
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims)}.{rand(rng, B64URL, 43)}"


def _password(rng: random.Random) -> str:
    """Most generated secrets are random; one in five is a human-made password."""
    if rng.random() < 0.2:
        word = rng.choice(["Summer", "Dragon", "Monkey", "Sunshine", "Football", "Kitten"])
        return f"{word}{rng.randrange(1970, 2030)}{rng.choice('!#$*?')}"
    return rand(rng, ALNUM + "!#%*-_~", rng.randrange(16, 41))


CREDENTIALS: list[tuple[str, str, str, str, Maker]] = [
    ("tether", "tether", "TETHER_TOKEN", "token", lambda r: "tth" + "_" + rand(r, B64URL, 43)),
    ("aws-id", "aws", "AWS_ACCESS_KEY_ID", "aws_access_key_id",
     lambda r: r.choice(["AK", "AS"]) + "IA" + rand(r, BASE32, 16)),
    ("aws-secret", "aws", "AWS_SECRET_ACCESS_KEY", "aws_secret_access_key",
     lambda r: rand(r, B64, 40)),
    ("gcp-api-key", "google", "GOOGLE_API_KEY", "api_key",
     lambda r: "AI" + "za" + rand(r, B64URL, 35)),
    ("azure-key", "azure", "AZURE_STORAGE_KEY", "azure_storage_key",
     lambda r: rand(r, B64, 86) + "=="),
    ("github", "github", "GITHUB_TOKEN", "github_token", _github),
    ("gitlab", "gitlab", "GITLAB_TOKEN", "private_token",
     lambda r: "gl" + "pat-" + rand(r, B64URL, 20)),
    ("slack", "slack", "SLACK_TOKEN", "slack_token", _slack),
    ("stripe", "stripe", "STRIPE_SECRET_KEY", "stripe_key", _stripe),
    ("openai", "openai", "OPENAI_API_KEY", "api_key", _openai),
    ("anthropic", "anthropic", "ANTHROPIC_API_KEY", "api_key",
     lambda r: "sk-" + "ant-api03-" + rand(r, B64URL, 93) + "AA"),
    ("huggingface", "huggingface", "HF_TOKEN", "token",
     lambda r: "hf" + "_" + rand(r, UPPER + LOWER, 34)),
    ("npm", "npm", "NPM_TOKEN", "npm_token", lambda r: "npm" + "_" + rand(r, ALNUM, 36)),
    ("pypi", "pypi", "PYPI_TOKEN", "password",
     lambda r: "pypi-" + "AgEIcHlwaS5vcmc" + rand(r, B64URL, r.randrange(120, 200))),
    ("sendgrid", "sendgrid", "SENDGRID_API_KEY", "api_key",
     lambda r: "S" + "G." + rand(r, B64URL, 22) + "." + rand(r, B64URL, 43)),
    ("twilio-key", "twilio", "TWILIO_API_KEY", "api_key_sid", _twilio),
    ("twilio-token", "twilio", "TWILIO_AUTH_TOKEN", "twilio_auth_token",
     lambda r: rand(r, HEX, 32)),
    ("mailgun", "mailgun", "MAILGUN_API_KEY", "mailgun_api_key", _mailgun),
    ("shopify", "shopify", "SHOPIFY_ACCESS_TOKEN", "access_token",
     lambda r: "shp" + r.choice(["at", "ss", "ca"]) + "_" + rand(r, HEX, 32)),
    ("square", "square", "SQUARE_ACCESS_TOKEN", "square_token", _square),
    ("digitalocean", "digitalocean", "DIGITALOCEAN_TOKEN", "do_token",
     lambda r: "do" + "p_v1_" + rand(r, HEX, 64)),
    ("heroku", "heroku", "HEROKU_API_KEY", "heroku_api_key", _heroku),
    ("discord", "discord", "DISCORD_BOT_TOKEN", "bot_token", _discord),
    ("telegram", "telegram", "TELEGRAM_BOT_TOKEN", "bot_token",
     lambda r: f"{r.randrange(10**8, 10**10)}:AA" + rand(r, B64URL, 33)),
    ("jwt", "auth", "AUTH_JWT", "jwt", _jwt),
    ("generic", "app", "DB_PASSWORD", "password", _password),
    ("generic", "app", "SECRET_KEY", "secret_key", _password),
    ("generic", "app", "API_TOKEN", "client_secret", _password),
]  # fmt: skip

# Where a credential shows up in a prompt: (env name, key name, service, value) -> text.
Context = Callable[[str, str, str, str], str]
CONTEXTS: list[Context] = [
    lambda env, key, svc, v: f"# {svc} credentials\n{env}={v}\nLOG_LEVEL=debug\n",
    lambda env, key, svc, v: f'client = Client(\n    {key}="{v}",\n    timeout=30,\n)\n',
    lambda env, key, svc, v: f"{svc}:\n  {key}: {v}\n  region: us-east-1\n  retries: 3\n",
    lambda env, key, svc, v: f'{{\n  "{key}": "{v}",\n  "debug": false\n}}\n',
    lambda env, key, svc, v: f"export {env}='{v}'\n./scripts/deploy.sh --env prod\n",
    lambda env, key, svc, v: f"Why does this fail? I set it to {v} but {svc} says 401.",
    lambda env, key, svc, v: f'curl -s -H "Authorization: Bearer {v}" https://api.{svc}.com/v1/me',
    lambda env, key, svc, v: f"2024-06-01T10:22:33Z ERROR {svc} auth failed key={v} status=403",
    lambda env, key, svc, v: f"const client = new Client({{ apiKey: '{v}', timeout: 30 }});",
    lambda env, key, svc, v: f'[{svc}]\n{key} = "{v}"\nendpoint = "https://{svc}.example.net"\n',
]  # fmt: skip

# --- keys and URLs with their own contexts -------------------------------------------------


def _pem(rng: random.Random, kind: str) -> str:
    label, head = {
        "rsa": ("RSA PRIVATE KEY", "MIIEowIBAAKCAQEA"),
        "pkcs8": ("PRIVATE KEY", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
        "ec": ("EC PRIVATE KEY", "MHcCAQEEI"),
        "openssh": ("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAA"),
    }[kind]
    body = head + rand(rng, B64, {"ec": 150, "openssh": 380}.get(kind, 1560))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def private_keys(rng: random.Random) -> list[Sample]:
    samples = []
    for kind in ["rsa", "pkcs8", "ec", "openssh"] * 2:
        key = _pem(rng, kind)
        text = rng.choice(
            [
                f"I get 'invalid format' when loading this key:\n\n```\n{key}\n```\n",
                f"$ cat ~/.ssh/id_deploy\n{key}\n$ ssh -i ~/.ssh/id_deploy deploy@10.0.0.5\n",
                f'KEY = """{key}"""\n\nsigner = load_pem_private_key(KEY.encode(), None)\n',
            ]
        )
        samples.append(Sample("private-key", text, (Secret("private-key", key),)))
    for _ in range(4):  # a Google service account JSON key file
        pem = _pem(rng, "pkcs8") + "\n"
        record = {
            "type": "service_account",
            "project_id": f"proj-{rand(rng, LOWER, 6)}",
            "private_key_id": rand(rng, HEX, 40),
            "private_key": pem,
            "client_email": f"deployer@proj-{rand(rng, LOWER, 6)}.iam.gserviceaccount.com",
        }
        escaped = json.dumps(pem)[1:-1]  # as it appears in the file: newlines as \n
        secrets = (Secret("gcp-service-account", escaped), Secret("email", record["client_email"]))
        samples.append(Sample("gcp-service-account", json.dumps(record, indent=2), secrets))
    return samples


def webhooks_and_urls(rng: random.Random) -> list[Sample]:
    samples = []
    for _ in range(4):
        slack = (
            "https://hooks.slack.com/services/"
            f"T{rand(rng, UPPER + DIGITS, 8)}/B{rand(rng, UPPER + DIGITS, 10)}/"
            + rand(rng, ALNUM, 24)
        )
        discord = f"https://discord.com/api/webhooks/{rng.randrange(10**17, 10**19)}/" + rand(
            rng, B64URL, 68
        )
        for kind, url in [("slack-webhook", slack), ("discord-webhook", discord)]:
            text = rng.choice(
                [
                    f"WEBHOOK_URL={url}\n",
                    f'requests.post("{url}", json={{"text": "deploy finished"}})\n',
                    f"notify:\n  url: {url}\n  on_failure: true\n",
                ]
            )
            samples.append(Sample(kind, text, (Secret(kind, url),)))
    for _ in range(4):  # Azure connection strings
        key = rand(rng, B64, 86) + "=="
        conn = (
            "DefaultEndpointsProtocol=https;AccountName=st"
            f"{rand(rng, LOWER, 10)};AccountKey={key};EndpointSuffix=core.windows.net"
        )
        text = rng.choice(
            [
                f'"ConnectionStrings": {{\n  "Storage": "{conn}"\n}}\n',
                f"AZURE_STORAGE_CONNECTION_STRING='{conn}'\n",
            ]
        )
        samples.append(Sample("azure-connection", text, (Secret("azure-connection", key),)))
    for _ in range(12):  # database and broker URLs: the password is the secret
        scheme = rng.choice(
            [
                "postgres",
                "postgresql",
                "mysql",
                "mongodb+srv",
                "redis",
                "amqp",
                "postgresql+psycopg",
            ]
        )
        user = rng.choice(["app", "admin", "svc_orders", "root", "reporting"])
        password = rand(rng, ALNUM + "-_~", rng.randrange(12, 28))
        host = rng.choice(["db.internal", "10.0.4.12", "prod-db.cluster-xyz.rds.amazonaws.com"])
        url = f"{scheme}://{user}:{password}@{host}/orders"
        text = rng.choice(
            [
                f"DATABASE_URL={url}\n",
                f'engine = create_engine("{url}", pool_size=5)\n',
                f"sqlalchemy.exc.OperationalError: could not connect to {url}\n",
            ]
        )
        samples.append(Sample("database-url", text, (Secret("database-url", password),)))
    return samples


# --- encoded values and credentials in URLs and headers -----------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def encoded_and_headers(rng: random.Random) -> list[Sample]:
    samples = []
    for index in range(8):  # base64 as Kubernetes, kubectl and Docker write it
        pem = _b64(_pem(rng, "pkcs8" if index % 2 else "rsa") + "\n")
        ca = _b64(
            "-----BEGIN CERTIFICATE-----\n" + rand(rng, B64, 800) + "\n-----END CERTIFICATE-----\n"
        )
        auth = _b64(f"deploy:{rand(rng, ALNUM, 20)}")
        password = rand(rng, ALNUM + "!#%", 18)
        docker = _b64(
            json.dumps(
                {
                    "auths": {
                        "registry.example.com": {
                            "username": "ci",
                            "password": password,
                            "auth": auth,
                        }
                    }
                }
            )
        )
        aws = _b64(f"[default]\naws_access_key_id = AKIA{rand(rng, UPPER + DIGITS, 16)}\n")
        kind, value, text = rng.choice(
            [
                (
                    "private-key-base64",
                    pem,
                    "users:\n- name: admin\n  user:\n"
                    f"    client-certificate-data: {ca}\n    client-key-data: {{v}}\n",
                ),
                (
                    "private-key-base64",
                    pem,
                    "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\ndata:\n"
                    f"  tls.crt: {ca}\n  tls.key: {{v}}\n",
                ),
                (
                    "docker-config-base64",
                    docker,
                    "kind: Secret\ntype: kubernetes.io/dockerconfigjson\n"
                    "data:\n  .dockerconfigjson: {v}\n",
                ),
                ("aws-credentials-base64", aws, "data:\n  credentials: {v}\n"),
            ]
        )
        samples.append(Sample(kind, text.format(v=value), (Secret(kind, value),)))
    for _ in range(8):
        user = rng.choice(["deploy", "ci", "admin", "svc-build"])
        secret = rand(rng, ALNUM, rng.randrange(12, 24))
        basic = _b64(f"{user}:{secret}")
        url = rng.choice(
            [
                "https://pypi.corp.example/simple",
                "http://proxy.corp.example:3128",
                "ftp://files.example.net/drop",
            ]
        )
        scheme, rest = url.split("://")
        kind, value, text = rng.choice(
            [
                (
                    "basic-auth",
                    basic,
                    f"curl -H 'Authorization: Basic {basic}' https://api.example.com/v1/jobs\n",
                ),
                ("basic-auth", basic, f'headers = {{"Authorization": "Basic {basic}"}}\n'),
                (
                    "url-password",
                    secret,
                    f"pip install --index-url {scheme}://{user}:{secret}@{rest} tether\n",
                ),
                ("url-password", secret, f"export HTTPS_PROXY={scheme}://{user}:{secret}@{rest}\n"),
                ("basic-auth", basic, f"registry=https://npm.corp.example/\n_auth={basic}\n"),
                (
                    "netrc",
                    secret,
                    f"machine {rest.split('/')[0]}\n  login {user}\n  password {secret}\n",
                ),
            ]
        )
        samples.append(Sample(kind, text, (Secret(kind, value),)))
    return samples


# --- personal and payment data -------------------------------------------------------------

FIRST = ["Maria", "James", "Aiko", "Oluwaseun", "Lena", "Rahul", "Sofia", "Pierre", "Chen"]
LAST = ["Garcia", "Smith", "Tanaka", "Adeyemi", "Muller", "Sharma", "Rossi", "Dubois", "Wei"]
DOMAINS = ["gmail.com", "outlook.com", "acme-corp.io", "mail.uni-heidelberg.de", "shop.co.uk"]


def _email(rng: random.Random, first: str, last: str) -> str:
    local = rng.choice(
        [f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randrange(99)}", first]
    ).lower()
    if rng.random() < 0.15:
        local += "+invoices"
    return f"{local}@{rng.choice(DOMAINS)}"


def _phone(rng: random.Random) -> str:
    def d(n: int) -> str:
        return rand(rng, DIGITS, n)

    area, exchange = f"{rng.randrange(2, 10)}{d(2)}", f"{rng.randrange(2, 10)}{d(2)}"
    return rng.choice(
        [
            f"+1 ({area}) {exchange}-{d(4)}",
            f"({area}) {exchange}-{d(4)}",
            f"{area}-{exchange}-{d(4)}",
            f"+1{area}{exchange}{d(4)}",
            f"+44 20 {d(4)} {d(4)}",
            f"+44 7{d(3)} {d(6)}",
            f"020 {d(4)} {d(4)}",
            f"07{d(3)} {d(6)}",
            f"+33 {rng.randrange(1, 8)} {d(2)} {d(2)} {d(2)} {d(2)}",
            f"0{rng.randrange(1, 8)} {d(2)} {d(2)} {d(2)} {d(2)}",
            f"+49 30 {d(8)}",
            f"+49 (0)151 {d(8)}",
        ]
    )


def luhn_complete(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 0:  # these double once the check digit is appended
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return digits + str((10 - total % 10) % 10)


def _card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice(
        [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)]
    )
    number = luhn_complete(prefix + rand(rng, DIGITS, length - len(prefix) - 1))
    if not valid:
        number = number[:-1] + str((int(number[-1]) + rng.randrange(1, 10)) % 10)
    if length == 15:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice([" ", "-", ""]).join(groups)


IBAN_FORMATS = {"DE": "8n10n", "GB": "4a14n", "FR": "10n11c2n", "NL": "4a10n", "ES": "20n"}


def _iban(rng: random.Random) -> str:
    country = rng.choice(list(IBAN_FORMATS))
    bban = ""
    for count, kind in _format_parts(IBAN_FORMATS[country]):
        alphabet = {"n": DIGITS, "a": UPPER, "c": UPPER + DIGITS}[kind]
        bban += rand(rng, alphabet, count)
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    compact = f"{country}{98 - number % 97:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def _format_parts(spec: str) -> list[tuple[int, str]]:
    parts, digits = [], ""
    for char in spec:
        if char.isdigit():
            digits += char
        else:
            parts.append((int(digits), char))
            digits = ""
    return parts


def personal_data(rng: random.Random, count: int) -> list[Sample]:
    samples = []
    for _ in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email, phone = _email(rng, first, last), _phone(rng)
        card, iban = _card(rng), _iban(rng)
        pick = rng.randrange(8)
        if pick == 0:
            text = f"Hi, please update the account of {first} {last}: {email}, {phone}."
            secrets = [("email", email), ("phone", phone)]
        elif pick == 1:
            text = f"id,name,email,phone\n{rng.randrange(1000)},{first} {last},{email},{phone}\n"
            secrets = [("email", email), ("phone", phone)]
        elif pick == 2:
            record = {"name": f"{first} {last}", "email": email, "phone": phone}
            text = "fixture = " + json.dumps(record, indent=2) + "\n"
            secrets = [("email", email), ("phone", phone)]
        elif pick == 3:
            text = f"commit {rand(rng, HEX, 40)}\nAuthor: {first} {last} <{email}>\n\n    Fix\n"
            secrets = [("email", email)]
        elif pick == 4:
            text = f"--\n{first} {last}\nSenior Engineer\nTel: {phone}\n"
            secrets = [("phone", phone)]
        elif pick == 5:
            text = f"The customer paid with card {card}, exp 04/27, and now wants a refund."
            secrets = [("card", card)]
        elif pick == 6:
            text = f"Please wire the deposit to IBAN {iban} (BIC DEUTDEFFXXX) by Friday."
            secrets = [("iban", iban)]
        else:
            text = f"INSERT INTO users (name, email) VALUES ('{first} {last}', '{email}');\n"
            secrets = [("email", email)]
        samples.append(Sample(secrets[0][0], text, tuple(Secret(k, v) for k, v in secrets)))
    return samples


# --- look-alikes: nothing here may be flagged ----------------------------------------------


def look_alikes(rng: random.Random) -> list[Sample]:
    texts: list[tuple[str, str]] = []
    for _ in range(6):
        u = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        sha = rand(rng, HEX, 40)
        digest = rand(rng, HEX, 64)
        texts += [
            ("uuid", f'request_id = "{u}"\nlogger.info("trace %s took 23ms", request_id)\n'),
            ("uuid", f'{{"id": "{u}", "status": "active", "retries": 0}}'),
            ("git-sha", f"git checkout {sha}\nHEAD is now at {sha[:7]} Fix flaky test\n"),
            ("git-sha", f"This regression was introduced in {sha[:12]} (#4821)."),
            ("hex-hash", f"{digest}  dist/tether-0.1.0.tar.gz\n"),
            ("hex-hash", f"requests==2.32.3 \\\n    --hash=sha256:{digest}\n"),
            ("hex-hash", f'"integrity": "sha512-{rand(rng, B64, 86)}=="'),
            ("docker", f"FROM python:3.11-slim@sha256:{digest}\n"),
            ("image", f'<img src="data:image/png;base64,iVBORw0KGgo{rand(rng, B64, 1500)}=">'),
            ("image", f"background: url(data:image/gif;base64,R0lGODlh{rand(rng, B64, 400)});"),
            ("stripe-ids", f"charge cus_{rand(rng, ALNUM, 14)} with pi_{rand(rng, ALNUM, 24)}"),
            ("aws-ids", f"arn:aws:iam::{rand(rng, DIGITS, 12)}:role/ci i-{rand(rng, HEX, 17)}"),
            ("test-card", f"Card {_card(rng, valid=False)} is rejected by the checkout form."),
            ("numbers", f"order #{rng.randrange(10**9)} at {rng.randrange(10**12, 10**13)}"),
        ]  # fmt: skip
    texts += [
        ("placeholder", 'api_key = "YOUR_API_KEY"\n'),
        ("placeholder", "OPENAI_API_KEY=sk-...\n"),
        ("placeholder", '{"password": "<your-password>"}'),
        ("placeholder", "token: ${GITHUB_TOKEN}\n"),
        ("placeholder", "export AWS_SECRET_ACCESS_KEY=your-secret-access-key\n"),
        ("placeholder", "GITHUB_TOKEN=gh" + "p_" + "x" * 36 + "\n"),
        ("placeholder", "AWS_ACCESS_KEY_ID=AK" + "IA" + "X" * 16 + "\n"),
        ("placeholder", "STRIPE_KEY=sk_" + "live_" + "X" * 24 + "\n"),
        ("placeholder", 'password = os.environ["DB_PASSWORD"]\n'),
        ("placeholder", 'SECRET_KEY = env("DJANGO_SECRET_KEY", default="change-me")\n'),
        ("placeholder", "DATABASE_URL=postgres://user:${DB_PASSWORD}@localhost:5432/app\n"),
        ("placeholder", "password: {{ vault_db_password }}\n"),
        ("placeholder", "Authorization: Bearer <token>\n"),
        ("placeholder", "git clone https://$GIT_USER:$GIT_TOKEN@git.corp.example/app.git\n"),
        ("placeholder", "The server asks for Basic authentication; basic examples follow.\n"),
        (
            "encoded",
            "certificate-authority-data: "
            + _b64(
                "-----BEGIN CERTIFICATE-----\n"
                + rand(rng, B64, 600)
                + "\n-----END CERTIFICATE-----\n"
            )
            + "\n",
        ),
        (
            "encoded",
            "config.json: "
            + _b64(json.dumps({"log_level": "debug", "replicas": 3, "region": "eu-west-1"}))
            + "\n",
        ),
        ("encoded", "See https://docs.example.com:8443/guide and http://[::1]:8080/@status\n"),
        ("code", "tokens = tokenizer.encode(prompt)\nmax_tokens = 4096\n"),
        ("code", "password = forms.CharField(widget=forms.PasswordInput)\n"),
        ("code", 'tokenizer_name = "meta-llama/Llama-3.1-8B-Instruct"\n'),
        ("code", "def reset_password(user: User, token: str) -> None:\n    ...\n"),
        ("code", "secretKeyRef:\n  name: db-credentials\n  key: password\n"),
        ("code", '@app.route("/login", methods=["POST"])\ndef login(): ...\n'),
        ("code", 'import "@types/node";\nnpm install lodash@4.17.21\n'),
        ("code", "git remote add origin git@github.com:acme/tether.git\n"),
        ("code", "ssh -i key.pem ubuntu@ec2-3-91-12-7.compute-1.amazonaws.com"),
        ("code", "version 2.14.1 built on 2024-06-01 at 10.0.0.12:8080"),
        (
            "code",
            'users.sort(key=lambda u: u.last_login)\ncache.set(key=f"user:{uid}", value=row)\n',
        ),
        ("code", "GET /search?q=tether&key=name&order=asc HTTP/1.1"),
        ("log", f"DEBUG cache miss key={rand(rng, HEX, 32)} ttl=300"),
        ("prose", "The token bucket algorithm refills at a fixed rate; the secret is patience."),
        ("prose", "Reset your password from the account page; the link expires in 24 hours."),
        ("prose", "ISBN 978-3-16-148410-0, call number QA76.73 P98 2021, room 1204."),
        ("prose", "Our SLA is 99.95% and p99 latency stays under 250 ms at 1200 rps."),
    ]
    return [Sample(kind, text, ()) for kind, text in texts]


# --- the corpus and a realistic prompt -----------------------------------------------------


def credentials(rng: random.Random, variants: int) -> list[Sample]:
    samples = []
    for kind, service, env, key, make in CREDENTIALS:
        for _ in range(variants):
            value = make(rng)
            for context in rng.sample(CONTEXTS, 3):
                text = context(env, key, service, value)
                samples.append(Sample(kind, text, (Secret(kind, value),)))
    return samples


def build_corpus(seed: int = 20240601, variants: int = 4) -> list[Sample]:
    rng = random.Random(seed)
    return [
        *credentials(rng, variants),
        *private_keys(rng),
        *webhooks_and_urls(rng),
        *encoded_and_headers(rng),
        *personal_data(rng, 120),
        *look_alikes(rng),
    ]


CODE = '''\
def load_config(path: Path) -> Config:
    """Read the settings file and validate every section."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section {section!r}")
    return Config(**data)

'''


def realistic_prompt(seed: int = 1, size: int = 8192) -> str:
    """About ``size`` characters: mostly code and prose, a few secrets and PII among them."""
    rng = random.Random(seed)
    corpus = build_corpus(seed)
    parts = ["You are reviewing a pull request. Here is the diff and the failing log.\n\n"]
    while sum(map(len, parts)) < size:
        parts.append(CODE if rng.random() < 0.6 else rng.choice(corpus).text + "\n")
    return "".join(parts)[:size]
