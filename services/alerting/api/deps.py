"""Dependencies of the alert API: the book, the store, and the bearer tokens."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from services.alerting.book import AlertBook
from services.alerting.store import AlertStore
from services.common.problems import ProblemError

READ_COOKIE = "opswatch_read"  # the read token, as the incident pages keep it
bearer = HTTPBearer(auto_error=False, description="OPSWATCH_API_WRITE_TOKEN (or READ_TOKEN)")


@dataclass(frozen=True)
class Auth:
    """Writes need the write token; reads need the read token (or the write token)
    when one is set. Without a write token configured, writes are refused."""

    write_token: SecretStr | None = None
    read_token: SecretStr | None = None


def get_book(request: Request) -> AlertBook:
    return request.app.state.book  # type: ignore[no-any-return]


def get_store(request: Request) -> AlertStore:
    return request.app.state.book.store  # type: ignore[no-any-return]


def _matches(given: str, token: SecretStr | None) -> bool:
    return token is not None and hmac.compare_digest(
        given.encode(), token.get_secret_value().encode()
    )


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="opswatch"'}
    )


def may_read(auth: Auth, given: str) -> bool:
    """Whether ``given`` opens reads: any value without a read token set."""
    if auth.read_token is None:
        return True
    return _matches(given, auth.read_token) or _matches(given, auth.write_token)


def require_read(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The read token as a bearer token, or the cookie the incident pages set (so a
    page's chart loads in the browser)."""
    given = credentials.credentials if credentials else request.cookies.get(READ_COOKIE, "")
    if not may_read(request.app.state.auth, given):
        raise _unauthorized("reads need the read token as a bearer token")


def require_write(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    auth: Auth = request.app.state.auth
    if auth.write_token is None:
        raise _unauthorized("writes are disabled: set OPSWATCH_API_WRITE_TOKEN")
    given = credentials.credentials if credentials else ""
    if not _matches(given, auth.write_token):
        raise _unauthorized("writes need the write token as a bearer token")


BookDep = Annotated[AlertBook, Depends(get_book)]
StoreDep = Annotated[AlertStore, Depends(get_store)]
ReadAuth = Depends(require_read)
WriteAuth = Depends(require_write)
