"""``maxResults`` / ``nextToken`` pagination as the ECS List* operations do it.

moto returns every item in one page; real ECS returns at most ``maxResults``
(1..100; ListServices defaults to 10, ListServiceDeployments to 20) and an
opaque ``nextToken``. An agent that forgets to follow ``nextToken`` loses
services silently on AWS, so the local endpoint paginates too.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

MAX_PAGE = 100


class PagingError(ValueError):
    """Bad ``maxResults`` or ``nextToken`` (ECS answers InvalidParameterException)."""


def encode_token(offset: int) -> str:
    """An opaque token for the page that starts at ``offset``."""
    raw = json.dumps({"offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> int:
    """The offset a token from :func:`encode_token` stands for."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = data["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise PagingError("Invalid nextToken.") from exc
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise PagingError("Invalid nextToken.")
    return offset


def page(
    items: Sequence[T], max_results: int | None, next_token: str | None, default: int
) -> tuple[list[T], str | None]:
    """One page of ``items`` and the token of the next page (None on the last)."""
    size = default if max_results is None else max_results
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE:
        raise PagingError(f"maxResults must be between 1 and {MAX_PAGE}, got {max_results!r}.")
    start = 0 if not next_token else decode_token(next_token)
    chunk = list(items[start : start + size])
    end = start + len(chunk)
    return chunk, (encode_token(end) if end < len(items) else None)
