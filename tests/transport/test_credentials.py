"""Credentials never shown: the NATS addresses in log lines and errors."""

from __future__ import annotations

import pytest

from transport.credentials import mask_url, mask_urls_in
from transport.nats import _describe


def test_a_url_loses_its_credentials_and_keeps_the_rest() -> None:
    assert mask_url("tls://ann:s3cret@nats-1:4222") == "tls://***@nats-1:4222"
    assert mask_url("nats://token@nats-1:4222") == "nats://***@nats-1:4222"
    assert mask_url("nats://nats-1:4222") == "nats://nats-1:4222"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cannot connect to 'nats://ann:s3cret@h:4222'", "cannot connect to 'nats://***@h:4222'"),
        ("(nats://ann:s3cret@h:4222)", "(nats://***@h:4222)"),
        ("nats://tok@h:1, tls://u:p@x:2.", "nats://***@h:1, tls://***@x:2."),
        ('"nats://u:p@h"', '"nats://***@h"'),
        ("nats://h:4222 has none", "nats://h:4222 has none"),
        ("no address at all", "no address at all"),
    ],
)
def test_every_url_in_a_text_is_masked_wherever_it_stands(text: str, shown: str) -> None:
    """Word by word, a quoted or bracketed URL kept its password (an error's text goes into
    the NATS outage lines)."""
    assert mask_urls_in(text) == shown
    assert _describe(RuntimeError(text)) == shown
    assert "s3cret" not in _describe(RuntimeError(text))
