"""Mask personally identifiable information: emails, US phone numbers, IPv4 addresses (handout 2.4).

Each masker is ``(text) -> (masked_text, count)``: every match is replaced by a fixed placeholder
and counted, so a pipeline can report how much PII it removed.

>>> mask_emails("write to ada@example.org or bob.smith+cc@mail.co.uk.")
('write to |||EMAIL_ADDRESS||| or |||EMAIL_ADDRESS|||.', 2)
>>> mask_phone_numbers("call (283) 182 3829 or +1 283-182-3829")
('call |||PHONE_NUMBER||| or |||PHONE_NUMBER|||', 2)
>>> mask_ips("server 10.0.0.255, not 10.0.0.256.")
('server |||IP_ADDRESS|||, not 10.0.0.256.', 1)

Placeholders are never re-masked or counted: none of them contains an ``@`` or a digit, so no
pattern can match inside one, and running a masker twice changes nothing the second time.

The patterns (regular expressions, like the handout's reference solution):

* email: ``local@domain.tld`` with the usual local-part characters (Unicode letters, digits,
  ``_.%+-``), dot-separated domain labels and a 2+-letter top-level domain. A sentence-final period is not
  part of the address.
* phone (North American Numbering Plan): an optional ``+1``/``1`` country code, a 3-digit area
  code (optionally in parentheses), a 3-digit exchange and a 4-digit line number, separated by at
  most one space, dot or hyphen each. The area code starts with 2-9, as in every real NANP
  number (this keeps 10-digit Unix timestamps and ``123-456-7890`` out). Digits glued to the
  match (a longer number) prevent it.
* IPv4: four decimal octets 0-255 without leading zeros, joined by dots, not part of a longer
  dotted number. A trailing period stays outside the match.

False positives and negatives we found (and left, because fixing them costs recall or precision
elsewhere -- a student can try):

* email FN: quoted local parts (``"john doe"@example.com``), numeric top-level domains
  (``root@[10.0.0.1]``), obfuscations (``ada [at] example [dot] org``). FP: ``name@2x.png``-style asset names (retina image
  file names) and package specifiers that look like addresses.
* phone FP: any 10-digit number with NANP-shaped digits -- order numbers, ISBN-10 without hyphens,
  ``2831823829`` as a product ID. FN: fake example numbers ``123-456-7890`` / ``555-0100``-style
  short forms (area code starting with 0/1 is not NANP), extensions (``x123`` stays), numbers
  written with two separators in a row (``283 - 182 - 3829``), other countries' formats
  (``+44 20 7946 0958``), and numbers in words.
* IP FP: version strings and section numbers with four parts (``version 1.2.3.4``,
  ``section 2.1.0.3``). FN: IPv6, octets written with leading zeros (``010.001.001.001``),
  and addresses glued to a port are masked without the port (``10.0.0.1:8080`` keeps ``:8080``).
"""

from __future__ import annotations

import re

EMAIL_PLACEHOLDER = "|||EMAIL_ADDRESS|||"
PHONE_PLACEHOLDER = "|||PHONE_NUMBER|||"
IP_PLACEHOLDER = "|||IP_ADDRESS|||"

EMAIL_RE = re.compile(
    r"(?<![\w.%+-])"  # start of the local part, not mid-token
    r"[\w.%+-]+"  # local part (\w is Unicode-aware: jörg@ counts)
    r"@(?:[^\W_](?:[\w-]*[^\W_])?\.)+"  # domain labels, each followed by a dot
    r"[^\W\d_]{2,}"  # top-level domain: letters only
    r"(?![\w-])"  # and nothing glued on after it
)

PHONE_RE = re.compile(
    r"(?<![\w+.-])"  # not the tail of a longer number, word or decimal
    r"(?:\+?1[ .-]?)?"  # optional country code: +1, 1, +1-, 1.
    r"(?:\([2-9]\d{2}\)|[2-9]\d{2})"  # area code, maybe in parentheses
    r"[ .-]?"
    r"\d{3}"  # exchange
    r"[ .-]?"
    r"\d{4}"  # line number
    r"(?![\w-]*\d)"  # not followed by more digits (a longer number)
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"  # 0-255, no leading zeros
IP_RE = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\d|\.\d)")


def _mask(pattern: re.Pattern[str], placeholder: str, text: str) -> tuple[str, int]:
    if not isinstance(text, str):
        raise ValueError(f"PII masking expects str, got {type(text).__name__}")
    return pattern.subn(placeholder, text)


def mask_emails(text: str) -> tuple[str, int]:
    """Replace every email address by ``|||EMAIL_ADDRESS|||``; return the text and the count."""
    return _mask(EMAIL_RE, EMAIL_PLACEHOLDER, text)


def mask_phone_numbers(text: str) -> tuple[str, int]:
    """Replace every US phone number by ``|||PHONE_NUMBER|||``; return the text and the count."""
    return _mask(PHONE_RE, PHONE_PLACEHOLDER, text)


def mask_ips(text: str) -> tuple[str, int]:
    """Replace every IPv4 address by ``|||IP_ADDRESS|||``; return the text and the count."""
    return _mask(IP_RE, IP_PLACEHOLDER, text)


def mask_pii(text: str) -> tuple[str, dict[str, int]]:
    """All three maskers in turn: the masked text and ``{"email": n, "phone": n, "ip": n}``."""
    text, emails = mask_emails(text)
    text, phones = mask_phone_numbers(text)
    text, ips = mask_ips(text)
    return text, {"email": emails, "phone": phones, "ip": ips}
