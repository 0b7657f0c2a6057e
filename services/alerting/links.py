"""Signed links: one incident's page and chart, opened for a while without the read
token (Slack fetches a message's chart; a person follows the link in it).

A link carries ``expires`` (Unix seconds) and ``signature``, the hex HMAC-SHA256
of ``incident/{id}|{expires}`` with a key derived from OPSWATCH_API_READ_TOKEN: a
link grants nothing the read token does not, and changing the token revokes every
link. With reads open (no read token) links go unsigned, since they need nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from pydantic import SecretStr

from services.common.contracts import unix_seconds

LINK_COOKIE = "opswatch_link_"  # + the incident's id: the grant a signed link opened
_PURPOSE = b"opswatch signed links v1"


class LinkRefusedError(Exception):
    """A signature that is malformed, does not match, or has expired."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail


@dataclass(frozen=True)
class Grant:
    """A verified link's ``expires`` and ``signature``, as a cookie can keep them."""

    expires: int
    signature: str

    def cookie(self) -> str:
        return f"{self.expires}.{self.signature}"


@dataclass(frozen=True)
class LinkSigner:
    key: bytes

    @classmethod
    def for_read_token(cls, token: SecretStr | None) -> LinkSigner | None:
        if token is None:
            return None
        key = hmac.new(token.get_secret_value().encode(), _PURPOSE, hashlib.sha256).digest()
        return cls(key)

    def _mac(self, incident_id: str, expires: int) -> str:
        message = f"incident/{incident_id}|{expires}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def sign(self, incident_id: str, expires: datetime) -> Grant:
        stamp = int(expires.timestamp())
        return Grant(stamp, self._mac(incident_id, stamp))

    def verify(self, incident_id: str, expires: str, signature: str, now: datetime) -> Grant:
        """The grant, or LinkRefusedError saying what is wrong with it."""
        stamp = unix_seconds(expires)
        if stamp is None:
            raise LinkRefusedError("Bad link signature", "expires must be a Unix time in seconds")
        if not hmac.compare_digest(signature.encode(), self._mac(incident_id, stamp).encode()):
            raise LinkRefusedError(
                "Bad link signature",
                f"the link's signature does not match incident {incident_id!r} and its expiry",
            )
        if stamp <= now.timestamp():
            when = datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")
            raise LinkRefusedError(
                "Link expired",
                f"the link expired at {when}; open the incident from a newer notification",
            )
        return Grant(stamp, signature)

    def from_cookie(self, incident_id: str, value: str, now: datetime) -> Grant:
        expires, _, signature = value.partition(".")
        return self.verify(incident_id, expires, signature, now)


@dataclass(frozen=True)
class PublicLinks:
    """Links to the alert API at OPSWATCH_PUBLIC_URL, for Slack and for people: each
    signed to last ``expiry`` from when it is written (when reads need a token)."""

    base: str
    signer: LinkSigner | None
    expiry: timedelta
    clock: Callable[[], datetime]

    def _signed(self, path: str, incident_id: str) -> str:
        url = f"{self.base.rstrip('/')}{path}"
        if self.signer is None:
            return url
        grant = self.signer.sign(incident_id, self.clock() + self.expiry)
        return f"{url}?{urlencode({'expires': grant.expires, 'signature': grant.signature})}"

    def incident_page(self, incident_id: str) -> str:
        return self._signed(f"/incidents/{incident_id}", incident_id)

    def incident_chart(self, incident_id: str) -> str:
        return self._signed(f"/v1/incidents/{incident_id}/chart.png", incident_id)
