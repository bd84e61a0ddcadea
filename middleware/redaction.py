"""Redaction of secrets and personal data before anything is exported.

A :class:`Redactor` is a plain callable ``(value) -> value``: strings are scanned with a list
of regular expressions (e-mail addresses, API keys and bearer tokens, ``key=value`` and JSON
``"password": ...`` secrets, private-key blocks, credit-card-like numbers that pass the Luhn
check) and each match is replaced by ``[REDACTED:<name>]``; dicts, lists and tuples are
walked recursively (a dict value under a secret-looking key such as ``"password"`` or
``"api_key"`` is replaced whole); every other value is returned unchanged.

The span handler (:class:`exporters.otel.OTelSpanHandler`) and the log handler
(:class:`middleware.logging.LoggingHandler`) run it on every piece of content they export
when content capture is switched on (the OpenTelemetry GenAI default is *off*; see the
README section "Traces and logs").

Pure Python, standard library only; patterns are compiled once. A redactor is not changed by
redacting, so one instance may be shared by threads once it is configured.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PATTERNS",
    "RedactionPattern",
    "Redactor",
    "default_redactor",
]

_SECRET_WORDS = (
    r"(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|client[_-]?secret|credentials?|authorization|auth)"
)
# A key that *ends* in a secret word: "password", "db_password", "OPENAI_API_KEY",
# "x-auth-token" (but not "input_tokens" or "author").
_SECRET_KEY = r"[A-Za-z0-9_.-]*?" + _SECRET_WORDS + r"(?![A-Za-z0-9])"
_SECRET_KEY_RE = re.compile(r"(?i)^" + _SECRET_KEY + r"$")


@dataclass(frozen=True, slots=True)
class RedactionPattern:
    """One named pattern.

    Attributes:
        name: short name shown in the placeholder, ``[REDACTED:<name>]``.
        regex: the compiled pattern.
        replacement: a ``re.sub`` replacement string (may use groups, e.g.
            ``r"\\1[REDACTED:secret]"``) or a function of the match; ``None`` replaces the
            whole match with ``[REDACTED:<name>]``.
    """

    name: str
    regex: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str] | None = None

    def apply(self, text: str) -> str:
        """Return ``text`` with every match of this pattern replaced."""
        repl = self.replacement
        if repl is None:
            return self.regex.sub(f"[REDACTED:{self.name}]", text)
        return self.regex.sub(repl, text)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = "".join(ch for ch in text if ch.isdigit())
    # Card networks' leading digits (2-6); timestamps and ids starting with 1 are left alone.
    if 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_ok(digits):
        return "[REDACTED:card]"
    return text


def _json_secret(match: re.Match[str]) -> str:
    value = match.group(0)[len(match.group(1)):]
    quote = value[0] if value[:1] in ("'", '"') else '"'  # keep JSON valid
    return f"{match.group(1)}{quote}[REDACTED:secret]{quote}"


def _p(name: str, pattern: str, replacement: str | Callable[[re.Match[str]], str] | None = None,
       flags: int = 0) -> RedactionPattern:
    return RedactionPattern(name, re.compile(pattern, flags), replacement)


DEFAULT_PATTERNS: tuple[RedactionPattern, ...] = (
    _p("private_key",
       r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
       flags=re.DOTALL),
    # JSON / dict-repr form: "password": "hunter2"  or  'api_key': 'abc'
    _p("secret",
       r"""(["'][A-Za-z0-9_.-]*?""" + _SECRET_WORDS
       + r"""["']\s*:\s*)(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[^\s,}\]]+)""",
       _json_secret, flags=re.IGNORECASE),
    # HTTP header / free text: Authorization: Bearer abc...
    _p("bearer", r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}",
       r"\1 [REDACTED:bearer]", flags=re.IGNORECASE),
    # key=value / key: value form (env files, URLs, log lines)
    _p("secret",
       r"(\b" + _SECRET_KEY + r"\s*[=:]\s*)(?!\[REDACTED)([^\s&,;\"'<>\]\)}]+)",
       r"\1[REDACTED:secret]", flags=re.IGNORECASE),
    _p("api_key", r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{16,}"),
    _p("api_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    _p("api_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    _p("api_key", r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}"),
    _p("api_key", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    _p("api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
    _p("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    _p("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    _p("card", r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])", _card),
)
"""The patterns of :func:`default_redactor`, in the order they are applied."""


class Redactor:
    """Replace secrets and personal data in strings and nested containers.

    ``redactor(value)`` returns a redacted copy: ``str`` values are scanned with every
    pattern, then passed to every custom function; ``dict`` (keys kept, values redacted; a
    value under a secret-looking key such as ``"password"``, ``"api_key"``,
    ``"Authorization"`` is replaced whole), ``list`` and ``tuple`` are walked recursively;
    any other value (numbers, ``None``, objects) is returned unchanged — stringify objects first
    if their text may hold secrets.

    Args:
        patterns: patterns to use; ``None`` means :data:`DEFAULT_PATTERNS`. Pass ``()`` for
            none (then only custom patterns and functions run).
        functions: extra ``(str) -> str`` functions applied to every string after the
            patterns (e.g. a call into a PII-detection library).
        redact_secret_keys: replace the whole value under a secret-looking dict key.

    The redactor is pure: it never mutates its input. ``add_pattern`` / ``add_function``
    change it; configure it before sharing it between threads.

    Example::

        r = default_redactor().add_pattern("order", r"ORD-\\d{6}")
        r({"note": "mail bob@example.com, order ORD-123456"})
        # {'note': 'mail [REDACTED:email], order [REDACTED:order]'}
    """

    __slots__ = ("_functions", "_patterns", "redact_secret_keys")

    def __init__(
        self,
        patterns: Iterable[RedactionPattern] | None = None,
        *,
        functions: Iterable[Callable[[str], str]] = (),
        redact_secret_keys: bool = True,
    ) -> None:
        pats = list(DEFAULT_PATTERNS if patterns is None else patterns)
        for p in pats:
            if not isinstance(p, RedactionPattern):
                raise TypeError(
                    f"patterns must be RedactionPattern instances, got {type(p).__name__}"
                )
        fns = list(functions)
        for fn in fns:
            if not callable(fn):
                raise TypeError(f"functions must be callables (str) -> str, got {fn!r}")
        self._patterns = pats
        self._functions = fns
        self.redact_secret_keys = redact_secret_keys

    @property
    def patterns(self) -> tuple[RedactionPattern, ...]:
        """The patterns, in the order they are applied."""
        return tuple(self._patterns)

    def add_pattern(
        self,
        name: str,
        pattern: str | re.Pattern[str],
        replacement: str | Callable[[re.Match[str]], str] | None = None,
    ) -> Redactor:
        """Append a pattern; returns ``self`` so calls chain.

        Args:
            name: placeholder name (``[REDACTED:<name>]``); non-empty.
            pattern: a regular expression (string or compiled).
            replacement: see :class:`RedactionPattern`.

        Raises:
            ValueError: empty ``name`` or a pattern that does not compile (``re.error``
                message included).
        """
        if not name:
            raise ValueError("pattern name must be a non-empty string")
        if isinstance(pattern, str):
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction pattern {name!r} does not compile: {exc}") from exc
        else:
            regex = pattern
        self._patterns.append(RedactionPattern(name, regex, replacement))
        return self

    def add_function(self, function: Callable[[str], str]) -> Redactor:
        """Append a ``(str) -> str`` function run on every string after the patterns;
        returns ``self``.

        Raises:
            TypeError: ``function`` is not callable.
        """
        if not callable(function):
            raise TypeError(f"function must be callable (str) -> str, got {function!r}")
        self._functions.append(function)
        return self

    def redact_text(self, text: str) -> str:
        """Redact one string."""
        for p in self._patterns:
            text = p.apply(text)
        for fn in self._functions:
            text = fn(text)
        return text

    def __call__(self, value: Any) -> Any:
        """Return a redacted copy of ``value`` (see the class docstring for the rules)."""
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if self.redact_secret_keys and isinstance(k, str) and _SECRET_KEY_RE.match(k):
                    out[k] = "[REDACTED:secret]"
                else:
                    out[k] = self(v)
            return out
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self(v) for v in value)
        return value

    def __repr__(self) -> str:
        return (f"Redactor(patterns={len(self._patterns)}, functions={len(self._functions)}, "
                f"redact_secret_keys={self.redact_secret_keys})")


def default_redactor() -> Redactor:
    """A new :class:`Redactor` with :data:`DEFAULT_PATTERNS`: e-mail addresses, API keys
    (OpenAI/Anthropic ``sk-…``, Stripe, AWS ``AKIA…``, GitHub ``ghp_…``, Slack, Google),
    bearer/basic tokens, JWTs, private-key blocks, ``key=value`` and JSON secrets, and
    Luhn-valid card numbers."""
    return Redactor()
