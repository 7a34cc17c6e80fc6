"""Checks a regex cannot express: checksums, digit counts and randomness.

A rule names its validator; the scanner keeps a match only when the validator accepts
the secret. Each one takes the matched value as written (spaces and dashes included).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Callable

# Length of a full IBAN per country (ISO 13616 registry); other country codes are rejected.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


# Words in the values of documentation and templates, rarely in a generated secret.
_PLACEHOLDER_WORDS = (
    "your", "example", "changeme", "change-me", "change_me", "placeholder", "dummy",
    "sample", "redacted", "xxxx", "here", "replace", "insert", "todo", "fixme", "...",
)  # fmt: skip


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    if not value:
        return 0.0
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in Counter(value).values())


def luhn(value: str) -> bool:
    """A payment card number: 13 to 19 digits whose Luhn checksum is 0."""
    digits = [int(c) for c in value if c in "0123456789"]  # "²".isdigit(), but not int()
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban(value: str) -> bool:
    """An IBAN of its country's length whose ISO 7064 mod-97 check gives 1."""
    compact = value.replace(" ", "").upper()
    if not (compact.isascii() and compact.isalnum()):
        return False
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    # Letters count as two digits: A=10 ... Z=35.
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


# Capitalised words run together, letters only, as type and class names are written.
_TYPE_NAME = re.compile(r"(?:[A-Z][a-z]+)+")


def random_looking(value: str) -> bool:
    """A value that could be a generated secret rather than a name or a placeholder.

    It mixes at least two of lowercase, uppercase and digits (identifiers such as
    ``bert-base-uncased`` do not), holds no placeholder word (``YOUR_API_KEY``), and is not
    a CamelCase type name (``token: FimTokens | None`` is a Python annotation).
    """
    lowered = value.lower()
    if any(word in lowered for word in _PLACEHOLDER_WORDS):
        return False
    if _TYPE_NAME.fullmatch(value):
        return False
    kinds = (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
    )
    return kinds >= 2


# What documentation writes in a URL for the password (https://user:pass@host): a word
# for it, with "your" or "my" before it, or "changeme" and the like, whole; a mask; a
# format placeholder (%s, %(password)s). A real password's %23 escapes are none of these.
_STAND_IN_PASSWORD = re.compile(
    r"(?:(?:your|my)[_\-]?)?(?:pass|password|passwd|pwd|pw|p|secret|token)"
    r"|change[_\-]?(?:me|it)|example|placeholder|redacted|dummy|sample|test"
    r"|(.)\1*"
    r"|%(?:\(\w+\))?[sdr]",
    re.IGNORECASE,
)


def url_password(value: str) -> bool:
    """A password in a URL, not documentation's stand-in for one ("pass", "password",
    "your_password", "changeme", "****", "%s", "%(password)s")."""
    return not _STAND_IN_PASSWORD.fullmatch(value)


def phone(value: str) -> bool:
    """A phone number: 8 to 15 digits, the range E.164 allows once formatting is gone."""
    return 8 <= sum(c.isdigit() for c in value) <= 15


def basic_credentials(value: str) -> bool:
    """HTTP Basic credentials: base64 of ``user:password`` as text, the password not empty
    (a word after "Basic" in prose almost never decodes to that)."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, colon, password = decoded.partition(":")
    return bool(colon and password) and decoded.isprintable()


VALIDATORS: dict[str, Callable[[str], bool]] = {
    "luhn": luhn,
    "iban": iban,
    "phone": phone,
    "random": random_looking,
    "basic": basic_credentials,
    "url_password": url_password,
}
