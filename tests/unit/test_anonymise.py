"""What developers see of conversations: masked contact details and per-submission pseudonyms."""

from __future__ import annotations

import re
import time

import pytest

from guanaco_dagster.feedback.anonymise import mask_pii, pseudonymise
from guanaco_dagster.feedback.pseudonym_key import pseudonym_key

KEY = b"a-test-pseudonym-key"

try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a dev extra; the property tests at the end need it
    given = None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe@example.com", "mail me at [email]"),
        ("JOHN+bots@mail.example.co.uk.", "[email]."),
        ("see https://example.com/a?b=1&c=2.", "see [url]."),
        ("(http://example.org)", "([url])"),
        ("go to www.example.org now", "go to [url] now"),
        ("my page: example.com/profile/123", "my page: [url]"),
        ("call +1 (555) 123-4567", "call [phone]"),
        ("+44 20 7946 0958", "[phone]"),
        ("+33 6 12 34 56 78", "[phone]"),
        ("+4915112345678", "[phone]"),
        ("555-123-4567", "[phone]"),
        ("(555) 123-4567", "[phone]"),
        ("555.123.4567", "[phone]"),
        ("1-800-555-0199", "[phone]"),
        ("my number is 07911 123456!", "my number is [phone]!"),
        ("07911123456", "[phone]"),
        ("06 12 34 56 78", "[phone]"),
        ("write to...jane@example.com", "write to...[email]"),
    ],
)
def test_contact_details_are_masked(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I am 25",
        "pi is 3.14",
        "3.14159265358",
        "see you on 2026-11-24",
        "born 24.11.1990",
        "from 2019-2023",
        "(2019-2023)",
        "I have 1000000 coins",
        "1.000.000 views",
        "meet at 12:30",
        "count 1 2 3 4 5 6 7",
        "version 1.2.3",
        "e.g. read file.txt",
        "10/10 would chat again",
        "an @mention and a #tag",
        "I {love} braces",
    ],
)
def test_ordinary_numbers_and_words_are_left_alone(text: str) -> None:
    assert mask_pii(text) == text


def test_every_kind_of_contact_detail_is_masked_in_one_text() -> None:
    text = "I'm sam@example.com, +1 555 123 4567, https://sam.example.com/me; I am 25."
    assert mask_pii(text) == "I'm [email], [phone], [url]; I am 25."


def test_digits_inside_urls_are_masked_as_part_of_the_url() -> None:
    assert mask_pii("https://example.com/call/5551234567") == "[url]"


@pytest.mark.parametrize("run", ["a.", "a-", "1.", "x@", "_.", "1 "])
def test_masking_long_pathological_text_takes_linear_time(run: str) -> None:
    started = time.perf_counter()
    mask_pii(run * 20_000)
    assert time.perf_counter() - started < 2.0


def test_pseudonym_is_stable_for_the_same_user_and_salt() -> None:
    assert pseudonymise("user-42", "acme-model_v1", KEY) == pseudonymise("user-42", "acme-model_v1", KEY)


def test_pseudonym_differs_between_submissions() -> None:
    assert pseudonymise("user-42", "acme-model_v1", KEY) != pseudonymise("user-42", "acme-model_v2", KEY)


def test_pseudonym_differs_between_users() -> None:
    assert pseudonymise("user-42", "acme-model_v1", KEY) != pseudonymise("user-43", "acme-model_v1", KEY)


def test_pseudonym_is_short_hex_and_hides_the_user_id() -> None:
    pseudonym = pseudonymise("alice@example.com", "acme-model_v1", KEY)
    assert re.fullmatch(r"user-[0-9a-f]{10}", pseudonym)
    assert "alice" not in pseudonym


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 please", "card [card] please"),
        ("4111-1111-1111-1111.", "[card]."),
        ("amex 378282246310005", "amex [card]"),
        ("ip 192.168.1.20, gateway 10.0.0.1:8080", "ip [ip], gateway [ip]:8080"),
        ("v6 2001:db8::1 and ::ffff:10.0.0.1.", "v6 [ip] and [ip]."),
        ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN [iban] thanks"),
        ("DE89370400440532013000", "[iban]"),
    ],
)
def test_cards_ip_addresses_and_ibans_are_masked(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "DE89370400440532013001",  # fails mod 97
        "meet at 12:30:45",
        "999.1.1.1 is no address",
        "std::vector and a::b",
    ],
)
def test_numbers_that_fail_their_checksum_are_left_alone(text: str) -> None:
    assert mask_pii(text) == text


def test_a_pseudonym_cannot_be_recomputed_without_the_platforms_key() -> None:
    # The developer knows the submission id and may guess user ids; without the key they get another value.
    assert pseudonymise("user-42", "acme-model_v1", KEY) != pseudonymise("user-42", "acme-model_v1", b"guess")


def test_pseudonym_needs_the_key() -> None:
    with pytest.raises(ValueError, match="pseudonym key"):
        pseudonymise("user-42", "acme-model_v1", b"")


def test_the_pseudonym_key_is_created_once_readable_by_its_owner_only(tmp_path) -> None:
    first = pseudonym_key(tmp_path / "home")
    key_file = tmp_path / "home" / "pseudonym.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(first) == 64
    assert pseudonym_key(tmp_path / "home") == first
    assert [p.name for p in key_file.parent.iterdir()] == ["pseudonym.key"]  # no temporary file left


def test_a_key_file_with_loose_permissions_is_closed_again(tmp_path) -> None:
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text("k" * 64)
    key_file.chmod(0o644)
    assert pseudonym_key(tmp_path) == b"k" * 64
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_the_configured_key_overrides_the_file(tmp_path) -> None:
    assert pseudonym_key(tmp_path, "from-GUANACO_PSEUDONYM_KEY") == b"from-GUANACO_PSEUDONYM_KEY"
    assert not (tmp_path / "pseudonym.key").exists()


def test_pseudonym_needs_a_salt() -> None:
    with pytest.raises(ValueError, match="non-empty salt"):
        pseudonymise("user-42", "", KEY)


# Properties

if given is not None:
    # Text rich in the characters that PII rules react to, so the search reaches the edge cases.
    pii_like_text = st.text(alphabet=st.sampled_from("0123456789 +-.()/@:abcwm[]\n"), max_size=60) | st.text(
        max_size=60
    )

    @given(pii_like_text)
    def test_masking_twice_changes_nothing(text: str) -> None:
        once = mask_pii(text)
        assert mask_pii(once) == once

    @given(st.text(alphabet=st.characters(categories=["Lu", "Ll", "Zs"]), max_size=80))
    def test_text_of_only_letters_and_spaces_is_unchanged(text: str) -> None:
        assert mask_pii(text) == text

    @given(st.text(max_size=20), st.text(min_size=1, max_size=20))
    def test_pseudonym_has_a_fixed_shape(user_id: str, salt: str) -> None:
        assert re.fullmatch(r"user-[0-9a-f]{10}", pseudonymise(user_id, salt, KEY))
