"""The alerting service's parts built from settings: one place for serve, the
embedded mode and ``opswatch digest``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from services.alerting import incidents as inc
from services.alerting.api.deps import Auth
from services.alerting.book import AlertBook, Clock
from services.alerting.lifecycle import Policy
from services.alerting.links import LinkSigner, PublicLinks
from services.alerting.notify import Sender, build_senders
from services.alerting.routing import AlertingConfig, Routing, load_config
from services.alerting.store import AlertStore
from services.common.config import OpswatchSettings


def wall_clock() -> datetime:
    """Now, to the second: stored times compare as text, so they share one format."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Runtime:
    config: AlertingConfig
    book: AlertBook
    senders: dict[str, Sender]
    auth: Auth
    public: PublicLinks | None  # OPSWATCH_PUBLIC_URL, when set


def build(settings: OpswatchSettings, clock: Clock = wall_clock) -> Runtime:
    """Raises ConfigError (routing) or ValueError (a secret) with a clear message."""
    config = load_config(settings.alerting_config)
    families = {m.name: m.family for m in settings.catalog().metrics}
    book = AlertBook(
        AlertStore(settings.database_url, settings.database_upgrade),
        families,
        Routing(config, families),
        clock,
        Policy(settings.alert_cooldown, settings.flap_window, settings.flap_count),
        inc.NotifyPolicy(
            settings.group_wait,
            settings.group_interval,
            settings.repeat_interval,
            settings.incident_window,
        ),
    )
    auth = Auth(settings.secret("api_write_token"), settings.secret("api_read_token"))
    public = None
    if settings.public_url is not None:
        signer = LinkSigner.for_read_token(auth.read_token)
        public = PublicLinks(settings.public_url, signer, settings.link_expiry, clock)
    return Runtime(config, book, build_senders(config, clock, public), auth, public)
