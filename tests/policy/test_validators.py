from __future__ import annotations

import math

import pytest

from tests.policy.fakes import iban as make_iban
from tests.policy.fakes import luhn_complete
from tether.policy.validators import iban, luhn, phone, random_looking, shannon_entropy


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011111111111117"],
)
def test_luhn_accepts_valid_numbers(number: str) -> None:
    assert luhn(number)


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1112", "5500-0000-0000-0005", "1234", "4" * 20],
)
def test_luhn_rejects_wrong_check_digit_and_length(number: str) -> None:
    assert not luhn(number)


def test_luhn_catches_every_single_digit_error() -> None:
    number = luhn_complete("453201511283036")
    assert luhn(number)
    for position in range(len(number)):
        for digit in "0123456789":
            if digit != number[position]:
                changed = number[:position] + digit + number[position + 1 :]
                assert not luhn(changed), changed


def test_iban_mod_97() -> None:
    assert iban("GB82 WEST 1234 5698 7654 32")
    assert iban("DE89370400440532013000")
    assert not iban("GB82 WEST 1234 5698 7654 33")  # check digits no longer fit
    assert not iban("DE89370400440532013001")


def test_iban_needs_its_countrys_length_and_a_known_country() -> None:
    generated = make_iban("NL", "ABNA0417164300")
    assert iban(generated)
    assert not iban(make_iban("NL", "ABNA04171643001"))  # NL is 18 characters
    assert not iban(make_iban("QQ", "12345678901234"))  # no such country
    assert not iban("DE89 3704 0044 0532 0130 0é")


def test_phone_counts_digits_not_formatting() -> None:
    assert phone("+1 (415) 555-2671")
    assert not phone("+1 234 5")  # 5 digits
    assert not phone("+" + "1" * 16)


def test_shannon_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("ab") == pytest.approx(1.0)
    assert shannon_entropy("0123456789abcdef") == pytest.approx(4.0)
    assert shannon_entropy("aab") == pytest.approx(math.log2(3) - 2 / 3)


@pytest.mark.parametrize("value", ["Xq7pL2vR9mK4", "3f9a0c7e1b2d4a6f", "Dragon2004#"])
def test_random_looking_values(value: str) -> None:
    assert random_looking(value)


@pytest.mark.parametrize(
    "value",
    ["YOUR_API_KEY", "bert-base-uncased", "sk-ant-api03-...", "ChangeMe2024", "xxxxXXXX1234"],
)
def test_names_and_placeholders_do_not_look_random(value: str) -> None:
    assert not random_looking(value)


def test_luhn_reads_only_the_digits_0_to_9() -> None:
    # "²" and "٣" are digits to str.isdigit(); a rule's match holding them is no crash.
    assert luhn("4111 1111 1111 1111 ²")
    assert not luhn("²" * 16) and not luhn("٣" * 16)
