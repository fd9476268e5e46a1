"""No secret in the logs: account keys, SAS signatures and connection-string secrets are masked.

`install()` puts the masking into the log record factory, so it covers every logger and every
handler (console, files, Application Insights) including exception traces, whatever code logs.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# key=value secrets in connection strings (`;`-separated) and SAS query strings (`&`-separated).
_SECRET_PAIRS = re.compile(
    r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|sig|Password|Pwd|client_secret)=([^;&\s\"'<>]+)"
)
# `Authorization: <scheme> <credentials>` headers, e.g. in HTTP client debug logs.
_AUTHORIZATION = re.compile(r"(?i)\b(Authorization['\"]?\s*[:=]\s*['\"]?)([A-Za-z]+\s+)?[^\s'\",}]+")


def redact(text: str) -> str:
    """The text with every secret value replaced by ***."""
    text = _SECRET_PAIRS.sub(lambda match: f"{match.group(1)}={MASK}", text)
    return _AUTHORIZATION.sub(lambda match: f"{match.group(1)}{match.group(2) or ''}{MASK}", text)


_installed = False


def install() -> None:
    """Mask secrets in every log record created from now on in this process (idempotent)."""
    global _installed
    if _installed:
        return
    base_factory = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base_factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem to report, not ours
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(formatter.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
