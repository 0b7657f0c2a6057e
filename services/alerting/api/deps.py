"""Dependencies of the alert API: the book, the store, and the bearer tokens."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from services.alerting.book import AlertBook
from services.alerting.links import LINK_COOKIE, Grant, LinkRefusedError, LinkSigner
from services.alerting.store import AlertStore
from services.common.contracts import NO_CONTROL, NO_LINE_CONTROL
from services.common.problems import ProblemError

# an identifier in a path, a filter's text in a query: control characters are refused
# (422), as the API document says; a NUL in a search matched every incident on SQLite
PathId = Annotated[str, Path(pattern=NO_CONTROL)]
QueryText = Annotated[str | None, Query(pattern=NO_CONTROL)]
# a search: in the title or a note, whose text may hold tabs and line breaks
SEARCH = Query(
    max_length=200,
    pattern=NO_LINE_CONTROL,
    description="in the title or a note, whatever the case",
)

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


def _unauthorized(detail: str, title: str = "Unauthorized") -> ProblemError:
    return ProblemError(401, title, detail, headers={"WWW-Authenticate": 'Bearer realm="opswatch"'})


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


def incident_access(
    request: Request,
    incident_id: str,
    bearer_token: str | None,
    expires: str | None,
    signature: str | None,
) -> Grant | None:
    """Whether the request may read one incident (its page, its chart): the read token
    (bearer or cookie), a signed link (``expires`` and ``signature``), or the cookie
    such a link set. The grant of a link given now, to keep in a cookie; raises
    ProblemError: 401 without any of these, or with a bad or expired link (its title says
    which)."""
    given = bearer_token if bearer_token is not None else request.cookies.get(READ_COOKIE, "")
    if may_read(request.app.state.auth, given):
        return None
    signer: LinkSigner = request.app.state.links
    now = request.app.state.book.clock()
    try:
        if expires is not None or signature is not None:
            return signer.verify(incident_id, expires or "", signature or "", now)
        kept = request.cookies.get(LINK_COOKIE + incident_id)
        if kept:
            signer.from_cookie(incident_id, kept, now)
            return None
    except LinkRefusedError as exc:
        raise _unauthorized(exc.detail, exc.title) from None
    raise _unauthorized("reads need the read token as a bearer token, or a signed link")


def require_incident_read(
    request: Request,
    incident_id: PathId,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    expires: Annotated[
        str | None, Query(description="a signed link's expiry (Unix seconds)")
    ] = None,
    signature: Annotated[str | None, Query(description="a signed link's signature")] = None,
) -> None:
    token = credentials.credentials if credentials else None
    incident_access(request, incident_id, token, expires, signature)


BookDep = Annotated[AlertBook, Depends(get_book)]
StoreDep = Annotated[AlertStore, Depends(get_store)]
ReadAuth = Depends(require_read)
WriteAuth = Depends(require_write)
IncidentReadAuth = Depends(require_incident_read)
