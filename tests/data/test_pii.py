"""Graders for PII masking: each format the handout lists (emails, US phone numbers, IPv4 addresses),
bounds, punctuation, placeholders, counts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

EMAIL = "|||EMAIL_ADDRESS|||"
PHONE = "|||PHONE_NUMBER|||"
IP = "|||IP_ADDRESS|||"


@pytest.mark.parametrize(
    "run, placeholder, fresh",
    [
        ("run_mask_emails", EMAIL, "ada@example.org"),
        ("run_mask_phone_numbers", PHONE, "283-182-3829"),
        ("run_mask_ips", IP, "10.0.0.1"),
    ],
)
def test_existing_placeholders_are_not_remasked_or_counted(adapters, run, placeholder, fresh):
    mask = getattr(adapters, run)
    text = f"already {placeholder} and {placeholder}; new {fresh}"
    masked, count = mask(text)
    assert masked == f"already {placeholder} and {placeholder}; new {placeholder}"
    assert count == 1
    assert mask(masked) == (masked, 0)  # idempotent


def test_maskers_leave_each_others_pii_alone(adapters):
    text = "ada@example.org 283-182-3829 10.0.0.1"
    assert adapters.run_mask_emails(text) == (f"{EMAIL} 283-182-3829 10.0.0.1", 1)
    assert adapters.run_mask_phone_numbers(text) == (f"ada@example.org {PHONE} 10.0.0.1", 1)
    assert adapters.run_mask_ips(text) == (f"ada@example.org 283-182-3829 {IP}", 1)
