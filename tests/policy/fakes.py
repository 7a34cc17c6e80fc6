"""Fake credentials and personal data for the scanner tests, built at run time.

Values are drawn from a seeded ``random.Random`` and assembled from pieces, so the test
sources hold nothing a secret scanner (ours, gitleaks, GitHub push protection) would flag.
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
BASE32 = string.ascii_uppercase + "234567"


def rand(alphabet: str, n: int, seed: int = 0) -> str:
    rng = random.Random(f"{alphabet}:{n}:{seed}")
    return "".join(rng.choice(alphabet) for _ in range(n))


def luhn_complete(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return digits + str(-total % 10)


def iban(country: str, bban: str) -> str:
    number = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


def pem(label: str = "RSA PRIVATE KEY", lines: int = 6) -> str:
    body = "\n".join(rand(B64, 64, seed) for seed in range(lines))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def discord_token() -> str:
    head = base64.urlsafe_b64encode(b"412345678901234567").decode().rstrip("=")
    return f"{head}.{rand(B64URL, 6)}.{rand(B64URL, 38)}"


def jwt() -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    claims = base64.urlsafe_b64encode(b'{"sub":"1234","iat":1717236153}').decode().rstrip("=")
    return f"{header}.{claims}.{rand(B64URL, 43)}"


@dataclass(frozen=True)
class Example:
    rule_id: str
    secret: str
    text: str  # holds ``secret`` once
    look_alike: str  # similar, but nothing in it may be flagged


def _examples() -> list[Example]:
    t = "tth" + "_"
    akia = "AK" + "IA"
    sk = "sk" + "-"
    key88 = rand(B64, 86) + "=="
    uuid = f"{rand(HEX, 8)}-{rand(HEX, 4)}-4{rand(HEX, 3)}-a{rand(HEX, 3)}-{rand(HEX, 12)}"
    gcp_pem = pem("PRIVATE KEY").replace("\n", "\\n") + "\\n"
    slack_hook = f"https://hooks.slack.com/services/T{rand(BASE32, 8)}/B{rand(BASE32, 10)}/"
    card = luhn_complete("4" + rand(string.digits, 14))
    bad_card = card[:-1] + str((int(card[-1]) + 3) % 10)
    good_iban = iban("DE", rand(string.digits, 18))
    bad_iban = good_iban[:2] + f"{(int(good_iban[2:4]) + 1) % 100:02d}" + good_iban[4:]
    examples = [
        (
            "tether-token",
            t + rand(B64URL, 43),
            "curl -H 'X-Token: {s}' http://127.0.0.1:8421/v1/models",
            'TOKEN = "' + t + 'test-token"',
        ),
        (
            "aws-access-key-id",
            akia + rand(BASE32, 16),
            "aws_access_key_id = {s}\nregion = eu-west-1",
            "aws_access_key_id = " + akia + "X" * 16,
        ),
        (
            "aws-secret-access-key",
            rand(B64, 40),
            "aws_secret_access_key = {s}\n",
            'aws_secret_access_key = "' + "A" * 40 + '"',
        ),
        (
            "gcp-service-account-key",
            gcp_pem,
            '{{\n  "type": "service_account",\n  "private_key": "{s}",\n  "x": 1\n}}',
            '{"public_key": "-----BEGIN PUBLIC KEY-----\\nMIIBIjANBg\\n-----END PUBLIC KEY-----"}',
        ),
        (
            "gcp-api-key",
            "AI" + "za" + rand(B64URL, 35),
            'const firebaseConfig = {{ apiKey: "{s}" }};',
            "Google keys start with AI" + "za and 35 more characters, e.g. AI" + "zaShort",
        ),
        (
            "azure-storage-connection-string",
            key88,
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={s};EndpointSuffix=x",
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=" + rand(B64, 20),
        ),
        (
            "azure-storage-account-key",
            key88,
            'AZURE_STORAGE_KEY="{s}"',
            'AZURE_STORAGE_ACCOUNT="acmestorageprod"',
        ),
        (
            "digitalocean-token",
            "do" + "p_v1_" + rand(HEX, 64),
            "export DIGITALOCEAN_TOKEN={s}",
            "revoked do" + "p_v1_" + rand(HEX, 63) + " yesterday",
        ),
        (
            "heroku-api-key",
            uuid,
            "HEROKU_API_KEY={s}",
            "HEROKU_APP_ID=" + uuid,
        ),
        (
            "heroku-platform-token",
            "HR" + "KU-" + rand(B64URL, 60),
            "heroku auth: {s}",
            "see HRKU-1234 in the tracker",
        ),
        (
            "github-pat",
            "gh" + "p_" + rand(ALNUM, 36),
            "git clone https://{s}@github.com/acme/app.git",
            "GITHUB_TOKEN=gh" + "p_" + "x" * 36,
        ),
        (
            "github-fine-grained-pat",
            "github" + "_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59),
            "gh auth login --with-token <<< {s}",
            "github" + "_pat_" + rand(ALNUM, 20) + "_" + rand(ALNUM, 59),
        ),
        (
            "github-oauth-token",
            "gh" + "o_" + rand(ALNUM, 36),
            "oauth_token: {s}",
            "gh" + "o_" + rand(ALNUM, 35),
        ),
        (
            "github-app-token",
            "gh" + "s_" + rand(ALNUM, 36),
            "Authorization: token {s}",
            "gh" + "x_" + rand(ALNUM, 36),
        ),
        (
            "github-refresh-token",
            "gh" + "r_" + rand(ALNUM, 76),
            "refresh={s}",
            "gh" + "r_" + rand(ALNUM, 20),
        ),
        (
            "gitlab-pat",
            "gl" + "pat-" + rand(B64URL, 20),
            "PRIVATE-TOKEN: {s}",
            "glpat-" + rand(ALNUM, 10),
        ),
        (
            "gitlab-token",
            "gl" + "rt-" + rand(B64URL, 20),
            "gitlab-runner register --token {s}",
            "gitlab-runner register --token glrt-abc",
        ),
        (
            "npm-token",
            "np" + "m_" + rand(ALNUM, 36),
            "//registry.npmjs.org/:_authToken={s}",
            "npm_config_registry=https://registry.npmjs.org/",
        ),
        (
            "pypi-token",
            "pypi-" + "AgEIcHlwaS5vcmc" + rand(B64URL, 120),
            "[pypi]\n  username = __token__\n  password = {s}\n",
            "pypi-" + rand(ALNUM, 60),
        ),
        (
            "huggingface-token",
            "h" + "f_" + rand(string.ascii_letters, 34),
            "huggingface-cli login --token {s}",
            "from huggingface_hub import hf_hub_download",
        ),
        (
            "anthropic-api-key",
            sk + "ant-api03-" + rand(B64URL, 93) + "AA",
            "client = Anthropic(api_key='{s}')",
            "ANTHROPIC_API_KEY=" + sk + "ant-api03-...",
        ),
        (
            "openai-api-key",
            sk + "proj-" + rand(B64URL, 74) + "T3Blbk" + "FJ" + rand(B64URL, 74),
            "OPENAI_API_KEY={s}",
            "disk-" + rand(ALNUM, 48),
        ),
        (
            "slack-bot-token",
            "xox"
            + "b-"
            + rand(string.digits, 11)
            + "-"
            + rand(string.digits, 13)
            + "-"
            + rand(ALNUM, 24),
            "app = App(token='{s}')",
            "xox" + "b-not-a-token",
        ),
        (
            "slack-user-token",
            "xox"
            + "p-"
            + "-".join(rand(string.digits, 12, i) for i in range(3))
            + "-"
            + rand(HEX, 32),
            "SLACK_USER_TOKEN={s}",
            "xox" + "p-123",
        ),
        (
            "slack-app-token",
            "xa"
            + "pp-1-A"
            + rand(BASE32, 10)
            + "-"
            + rand(string.digits, 13)
            + "-"
            + rand(HEX, 64),
            "SLACK_APP_TOKEN={s}",
            "set SLACK_APP_TOKEN to your xapp-1 token",
        ),
        (
            "slack-webhook",
            slack_hook + rand(ALNUM, 24),
            'requests.post("{s}", json=payload)',
            "see https://api.slack.com/messaging/webhooks",
        ),
        (
            "discord-webhook",
            "https://discord.com/api/webhooks/123456789012345678/" + rand(B64URL, 68),
            "WEBHOOK={s}",
            "https://discord.com/api/webhooks/<id>/<token>",
        ),
        (
            "discord-bot-token",
            discord_token(),
            "client.run('{s}')",
            "MainApplicationWindowClass.render.anotherMethodNameGoesHereNow()",
        ),
        (
            "telegram-bot-token",
            "123456789:AA" + rand(B64URL, 33),
            "bot = Bot(token='{s}')",
            "at 10:22:AA the bot 123:AAshort started",
        ),
        (
            "stripe-api-key",
            "sk" + "_live_" + rand(ALNUM, 24),
            "stripe.api_key = '{s}'",
            "Stripe('pk" + "_live_" + rand(ALNUM, 24) + "')",
        ),
        (
            "square-token",
            "EA" + "AA" + rand(B64URL, 60),
            "SQUARE_ACCESS_TOKEN={s}",
            "SQUARE_APPLICATION_ID=sq0idp-" + rand(B64URL, 22),
        ),
        (
            "shopify-token",
            "shp" + "at_" + rand(HEX, 32),
            "X-Shopify-Access-Token: {s}",
            "shp" + "at_" + "g" * 32,
        ),
        (
            "sendgrid-api-key",
            "S" + "G." + rand(B64URL, 22) + "." + rand(B64URL, 43),
            "sg = SendGridAPIClient('{s}')",
            "mail.SG.example.com",
        ),
        (
            "twilio-api-key",
            "S" + "K" + rand(HEX, 32),
            "TWILIO_API_KEY={s}",
            "TWILIO_ACCOUNT_SID=AC" + rand(HEX, 32),
        ),
        (
            "twilio-auth-token",
            rand(HEX, 32, 1),
            'TWILIO_AUTH_TOKEN="{s}"',
            'TWILIO_REGION="ie1"',
        ),
        (
            "mailgun-api-key",
            "key" + "-" + rand(string.ascii_lowercase + string.digits, 32),
            "auth=('api', '{s}')",
            "a primary-key-constraint on the table",
        ),
        (
            "private-key",
            pem(),
            "Here is the key:\n{s}\nWhy does ssh reject it?",
            "The file starts with -----BEGIN PRIVATE KEY----- and ends with -----END "
            "PRIVATE KEY----- and nothing between is shown here",
        ),
        (
            "jwt",
            jwt(),
            "Cookie: session={s}; Path=/",
            "the header eyJhbGciOiJIUzI1NiJ9 alone is no token",
        ),
        (
            "database-url",
            rand(ALNUM, 18),
            "DATABASE_URL=postgresql://app:{s}@db.internal:5432/orders",
            "DATABASE_URL=postgresql://localhost:5432/orders",
        ),
        (
            "url-password",
            rand(ALNUM, 20),
            "pip install --index-url https://deploy:{s}@pypi.corp.example/simple tether",
            "git clone https://$USER:$TOKEN@git.corp.example/app.git; see https://[::1]:8080/@me;"
            ' url = "https://%s:%s@%s" % (user, password, host)',
        ),
        (
            "netrc-password",
            rand(ALNUM, 24, 3),
            "machine git.corp.example\n  login deploy\n  password {s}\n",
            'echo "machine github.com login ci password $GH_TOKEN" >> ~/.netrc\n'
            "# the default machine is used when no other matches",
        ),
        (
            "basic-auth",
            base64.b64encode(b"deploy:" + rand(ALNUM, 16).encode()).decode(),
            "curl -H 'Authorization: Basic {s}' https://api.example.com",
            "The basic examples cover the Basic authentication scheme: Basic dGhlIG1vZGVs",
        ),
        (
            "bearer-token",
            rand(ALNUM + "-._~", 32),
            'fetch(url, {{ headers: {{ Authorization: "Bearer {s}" }} }})',
            "Authorization: Bearer <token> (the bearer authentication scheme)",
        ),
        (
            "generic-secret",
            rand(ALNUM + "!#%*", 24),
            'DB_PASSWORD = "{s}"',
            'password = "YOUR_PASSWORD_HERE"\ntokenizer_name = "bert-base-uncased"',
        ),
        (
            "email",
            "jane.doe+billing@acme-corp.io",
            "Please write to {s} about the invoice.",
            "git remote add origin git@github.com:acme/tether.git; npm i @types/node",
        ),
        (
            "phone",
            "+1 (415) 555-2671",
            "Call me on {s} tomorrow.",
            "version 2.14.1 built 2024-06-01 on port 8080, 12 items",
        ),
        (
            "card-number",
            " ".join(card[i : i + 4] for i in range(0, 16, 4)),
            "The customer paid with {s}, exp 04/27.",
            "The customer paid with " + " ".join(bad_card[i : i + 4] for i in range(0, 16, 4)),
        ),
        (
            "iban",
            " ".join(good_iban[i : i + 4] for i in range(0, len(good_iban), 4)),
            "Wire the deposit to {s} by Friday.",
            "Wire the deposit to " + bad_iban + " by Friday.",
        ),
    ]
    return [
        Example(rule_id, secret, text.format(s=secret), look_alike)
        for rule_id, secret, text, look_alike in examples
    ]


EXAMPLES = _examples()
