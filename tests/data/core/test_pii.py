"""Graders for PII masking: each format the handout lists (emails, US phone numbers, IPv4 addresses),
bounds, punctuation, placeholders, counts."""


from __future__ import annotations

import pytest

pytestmark = pytest.mark.core


EMAIL = "|||EMAIL_ADDRESS|||"


PHONE = "|||PHONE_NUMBER|||"


IP = "|||IP_ADDRESS|||"


@pytest.mark.points(2, problem="mask_pii")
@pytest.mark.parametrize(
    "address",
    [
        "ada@example.org",
        "bob.smith+newsletter@mail.example.co.uk",
        "x_y-z%1@sub-domain.example.com",
        "A@B.IO",
    ],
)
def test_email_formats(adapters, address):
    text = f"Contact {address} for details."
    assert adapters.run_mask_emails(text) == (f"Contact {EMAIL} for details.", 1)


@pytest.mark.points(1, problem="mask_pii")
def test_email_punctuation_and_count(adapters):
    text = "Mail ada@example.org, bob@example.com; or (carol@example.net). Done: dave@example.edu."
    masked, count = adapters.run_mask_emails(text)
    assert masked == f"Mail {EMAIL}, {EMAIL}; or ({EMAIL}). Done: {EMAIL}."
    assert count == 4


@pytest.mark.points(1, problem="mask_pii")
@pytest.mark.parametrize(
    "text", ["no at sign here", "user@localhost", "twitter @handle", "a@b", "x @ example.com"]
)
def test_email_non_matches(adapters, text):
    assert adapters.run_mask_emails(text) == (text, 0)


@pytest.mark.points(2, problem="mask_pii")
@pytest.mark.parametrize(
    "number",
    [
        "2831823829",
        "(283)-182-3829",
        "(283) 182 3829",
        "283-182-3829",
        "283.182.3829",
        "283 182 3829",
        "+1 283-182-3829",
        "+1 (283) 182-3829",
        "+12831823829",
        "1-283-182-3829",
    ],
)
def test_phone_formats(adapters, number):
    text = f"Call me at {number} tomorrow."
    assert adapters.run_mask_phone_numbers(text) == (f"Call me at {PHONE} tomorrow.", 1)


@pytest.mark.points(1, problem="mask_pii")
def test_phone_sentence_end_and_count(adapters):
    text = "Office: 283-182-3829. Cell: (415) 555 0199, fax 6175550123."
    assert adapters.run_mask_phone_numbers(text) == (f"Office: {PHONE}. Cell: {PHONE}, fax {PHONE}.", 3)


@pytest.mark.points(1, problem="mask_pii")
@pytest.mark.parametrize(
    "text", ["order 28318238291 shipped", "pi is 3.2831823829", "zip 02139", "call 182-3829"]
)
def test_phone_non_matches(adapters, text):
    assert adapters.run_mask_phone_numbers(text) == (text, 0)


@pytest.mark.points(1, problem="mask_pii")
@pytest.mark.parametrize("address", ["0.0.0.0", "255.255.255.255", "192.168.1.10", "10.0.0.1", "8.8.8.8"])
def test_ip_formats(adapters, address):
    assert adapters.run_mask_ips(f"host {address} is up") == (f"host {IP} is up", 1)


@pytest.mark.points(1, problem="mask_pii")
def test_ip_trailing_period_stays(adapters):
    assert adapters.run_mask_ips("Connect to 192.168.0.1.") == (f"Connect to {IP}.", 1)
    assert adapters.run_mask_ips("a 1.2.3.4, b 5.6.7.8.") == (f"a {IP}, b {IP}.", 2)


@pytest.mark.points(1, problem="mask_pii")
@pytest.mark.parametrize(
    "text", ["256.1.1.1", "1.1.1.256", "1.300.2.3", "999.999.999.999", "1.2.3", "1.2.3.4.5", "ip 10.0.0.1234"]
)
def test_ip_octet_bounds(adapters, text):
    assert adapters.run_mask_ips(text) == (text, 0)
