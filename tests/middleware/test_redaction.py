"""Tests of middleware.redaction: default patterns, containers, custom patterns/functions."""

from __future__ import annotations

import json
import re

import pytest

from middleware.redaction import DEFAULT_PATTERNS, RedactionPattern, Redactor, default_redactor


@pytest.mark.parametrize(
    ("secret", "kind"),
    [
        ("bob.smith+tag@example.co.uk", "email"),
        ("sk-proj-AbCdEfGhIjKlMnOp1234", "api_key"),
        ("AKIAIOSFODNN7EXAMPLE", "api_key"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123", "api_key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "jwt"),
        ("4111 1111 1111 1111", "card"),
    ],
)
def test_default_patterns_replace_secret_in_text(secret: str, kind: str) -> None:
    """Each default secret kind inside free text is replaced by its named placeholder."""
    out = default_redactor()(f"before {secret} after")
    assert secret not in out
    assert out == f"before [REDACTED:{kind}] after"


def test_bearer_token_redacted() -> None:
    """A bearer token in a header-like string is removed."""
    out = default_redactor()("curl -H 'Authorization: Bearer abcdef0123456789xyz'")
    assert "abcdef0123456789xyz" not in out
    assert "[REDACTED:bearer]" in out


def test_key_value_secret_redacted_but_not_lookalikes() -> None:
    """``password=...`` style secrets go; ``input_tokens=5`` and ``author=bob`` stay."""
    out = default_redactor()("DB_PASSWORD=s3cr3t&api_key: abc123 input_tokens=5 author=bob")
    assert "s3cr3t" not in out and "abc123" not in out
    assert "input_tokens=5" in out and "author=bob" in out


def test_json_secret_redaction_keeps_json_valid() -> None:
    """Secrets in a JSON document are replaced and the document still parses."""
    doc = json.dumps({"password": 'hun"ter2', "token": 12345, "input_tokens": 7, "q": "hi"})
    out = default_redactor()(doc)
    parsed = json.loads(out)
    assert parsed == {
        "password": "[REDACTED:secret]",
        "token": "[REDACTED:secret]",
        "input_tokens": 7,
        "q": "hi",
    }


def test_numbers_that_are_not_cards_stay() -> None:
    """A Luhn-invalid number and a nanosecond timestamp are not treated as card numbers."""
    text = "order 4111111111111112 at 1712345678901234567"
    assert default_redactor()(text) == text


def test_private_key_block_redacted() -> None:
    """A PEM private key block is removed whole."""
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----"
    out = default_redactor()(f"key:\n{pem}\nend")
    assert "MIIEow" not in out and out.endswith("[REDACTED:private_key]\nend")


def test_containers_walked_recursively_without_mutation() -> None:
    """Dicts, lists and tuples are redacted recursively; the input is not changed."""
    value = {
        "user": {"password": ["any", "thing"], "note": ["mail me@x.io", ("AKIAIOSFODNN7EXAMPLE",)]},
        "n": 5,
        "ok": True,
        "none": None,
    }
    before = json.dumps(value, default=list)
    out = default_redactor()(value)
    assert out == {
        "user": {"password": "[REDACTED:secret]",
                 "note": ["mail [REDACTED:email]", ("[REDACTED:api_key]",)]},
        "n": 5,
        "ok": True,
        "none": None,
    }
    assert json.dumps(value, default=list) == before


def test_secret_keys_can_be_kept() -> None:
    """With ``redact_secret_keys=False`` a value under ``password`` is only pattern-scanned."""
    out = Redactor(redact_secret_keys=False)({"password": "plain words"})
    assert out == {"password": "plain words"}


def test_custom_pattern_and_function() -> None:
    """Custom patterns and functions run after the defaults."""
    r = default_redactor().add_pattern("order", r"ORD-\d{6}").add_function(str.upper)
    assert r("order ORD-123456 for a@b.io") == "ORDER [REDACTED:ORDER] FOR [REDACTED:EMAIL]"


def test_no_default_patterns() -> None:
    """``Redactor(patterns=())`` leaves text alone except for what is added."""
    r = Redactor(patterns=()).add_pattern("x", re.compile("secret-[0-9]+"), "<x>")
    assert r("a@b.io secret-42") == "a@b.io <x>"
    assert len(r.patterns) == 1 and len(default_redactor().patterns) == len(DEFAULT_PATTERNS)


def test_bad_configuration_is_rejected_with_clear_errors() -> None:
    """Bad patterns, names and functions raise errors that name the problem."""
    with pytest.raises(ValueError, match="does not compile"):
        Redactor().add_pattern("bad", "(")
    with pytest.raises(ValueError, match="non-empty"):
        Redactor().add_pattern("", "x")
    with pytest.raises(TypeError, match="callable"):
        Redactor().add_function("nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RedactionPattern"):
        Redactor(patterns=["x"])  # type: ignore[list-item]


def test_pattern_with_function_replacement() -> None:
    """A RedactionPattern may use a function of the match."""
    p = RedactionPattern("digits", re.compile(r"\d+"), lambda m: "#" * len(m.group(0)))
    assert Redactor([p])("pin 1234") == "pin ####"
