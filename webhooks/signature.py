"""GitHub webhook signatures (``X-Hub-Signature-256``)."""
from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes) -> str:
    """The header value GitHub sends for ``body``: ``sha256=`` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the SHA-256 signature of ``body``; constant-time comparison.

    The legacy SHA-1 header is deliberately not accepted; a missing, malformed or non-ASCII header
    is False, never an exception.
    """
    value = (header or "").strip()
    # compare_digest raises TypeError on non-ASCII str, which was a 500: anything that is not an
    # ASCII "sha256=..." is simply not a valid signature.
    if not value.startswith("sha256=") or not value.isascii():
        return False
    return hmac.compare_digest(sign(secret, body).encode("ascii"), value.encode("ascii"))
