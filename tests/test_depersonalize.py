"""Depersonalization and dead letters of single events (the file-level audit is in test_pii_audit)."""

from __future__ import annotations

import msgspec
import pytest

from features.depersonalize import Pseudonymizer, Redactor
from features.featureset import LocalRunner

PII = ("Anna Svensson", "anna.svensson@example.se", "4539578763621486", "C1001", "81.2.69.160", "dev-1")


def test_pseudonyms_are_keyed_stable_and_domain_separated() -> None:
    p, q = Pseudonymizer("k1"), Pseudonymizer("k2")
    assert p("customer", "C1") == p("customer", "C1")
    assert p("customer", "C1") != q("customer", "C1")
    assert p("customer", "C1") != p("card", "C1")
    assert "C1" not in p("customer", "C1")


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="SAMESTREAM_SECRET"):
        Pseudonymizer("")


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("refund to DE89 3704 0044 0532 0130 00 please", "IBAN_CODE"),
        ("card 4539 5787 6362 1486 declined", "CREDIT_CARD"),
        ("contact jane.doe@example.com", "EMAIL_ADDRESS"),
        ("from 203.0.113.77", "IP_ADDRESS"),
        ("login from 2001:db8:85a3::8a2e:370:7334 today", "IP_ADDRESS"),
        ("mapped ::ffff:192.0.2.128 seen", "IP_ADDRESS"),
        ("Gift from Olivier Fleury", "PERSON"),
    ],
)
def test_redactor_finds_pattern_entities(text: str, entity: str) -> None:
    redacted, found = Redactor().redact(text)
    assert found == 1
    assert f"<{entity}>" in redacted


def test_redactor_leaves_harmless_text_alone() -> None:
    assert Redactor().redact("Order 48213, table 12") == ("Order 48213, table 12", 0)


def test_known_values_are_redacted_case_insensitively() -> None:
    redacted, found = Redactor().redact("Gift from ANNA SVENSSON", known=["Anna Svensson"])
    assert redacted == "Gift from <PERSON_DATA>" and found == 1


def test_no_personal_value_survives_into_a_row(fraud_fs, payment) -> None:
    event = payment(reference="Anna Svensson paid with 4539 5787 6362 1486, mail anna.svensson@example.se")
    outcome = LocalRunner(fraud_fs).process("payment", event)
    text = repr(outcome.rows)
    for value in (*PII, "4539 5787 6362 1486"):
        assert value not in text


def test_schema_violations_become_dead_letters_with_reasons_and_no_pii(fraud_fs, payment) -> None:
    runner = LocalRunner(fraud_fs)
    cases = {
        "amount": ({**payment(), "amount": "lots"}, "Expected `float`, got `str` - at `$.amount`"),
        "negative": ({**payment(), "amount": -5}, "Expected `float` > 0.0"),
        "latitude": ({**payment(), "lat": 123.0}, "Expected `float` <= 90.0"),
        "merchant": ({**payment(), "merchant_id": "M404"}, "unknown reference: merchant_id 'M404'"),
        "currency": ({**payment(), "currency": "XXX"}, "unknown reference: currency 'XXX'"),
        "missing": ({k: v for k, v in payment().items() if k != "ts"}, "missing required field `ts`"),
        "naive time": ({**payment(), "ts": "2026-03-02T12:00:00"}, "timezone"),
    }
    for name, (event, reason) in cases.items():
        outcome = runner.process("payment", event, source="test", position=name)
        assert outcome.rows == [], name
        assert outcome.dead_letter is not None, name
        assert reason in outcome.dead_letter.reason, (name, outcome.dead_letter.reason)
        for value in PII:
            assert value not in outcome.dead_letter.payload, (name, value)
    valid = runner.process("payment", payment())
    assert len(valid.rows) == 1 and valid.dead_letter is None


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"type": "payment"}', b'{"type": "refund", "x": 1}', b"\xff\xfe\x00", b"[]", b"null", b""],
)
def test_unreadable_bytes_become_dead_letters(fraud_fs, raw: bytes) -> None:
    outcome = LocalRunner(fraud_fs).process(None, raw)
    assert outcome.dead_letter is not None and outcome.dead_letter.reason


def test_raw_json_dead_letter_masks_personal_fields(fraud_fs, payment) -> None:
    raw = msgspec.json.encode({"type": "payment", **payment(amount="NaNish")})
    outcome = LocalRunner(fraud_fs).process(None, raw)
    assert outcome.dead_letter is not None
    for value in PII:
        assert value not in outcome.dead_letter.payload
    assert "NaNish" in outcome.dead_letter.payload


def test_every_schema_field_has_a_declared_policy(fraud_fs) -> None:
    fields = {f for schema in fraud_fs.schemas.values() for f in schema.__struct_fields__}
    assert fields == set(fraud_fs.policies)
    assert "cardholder_name" in fraud_fs.personal_fields and "amount" not in fraud_fs.personal_fields
