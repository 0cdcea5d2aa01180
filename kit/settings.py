"""Service settings, read from the environment (PASSNUM_ prefix, plus DATABASE_URL and PORT).

No secret has a default in code: missing secrets are generated once into the data folder
(mode 0600) and read back from there on every start.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSNUM_", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PASSNUM_DATABASE_URL")
    )
    port: int = Field(default=8000, validation_alias=AliasChoices("PORT", "PASSNUM_PORT"))
    host: str = "127.0.0.1"
    data_dir: Path = Path(".passnum")
    jwt_secret: str | None = None
    access_token_minutes: int = 30
    beneficiary_retention_days: int = 3 * 365
    # An expiry run touching more than this share of the live cheques asks for confirmation.
    expiry_confirm_share_percent: int = Field(default=10, ge=0, le=100)
    # ProConnect (OpenID Connect) for issuer agents and site mediators: off unless the issuer
    # (its discovery document is `<issuer>/.well-known/openid-configuration`), the client id
    # and the client secret are all set.
    proconnect_issuer: str | None = None
    proconnect_client_id: str | None = None
    proconnect_client_secret: str | None = None
    proconnect_scope: str = "openid email siret given_name usual_name"
    # Rate limits (per worker process): sustained per-minute rate and burst.
    rate_limit_per_user_per_minute: int = 120
    rate_limit_per_ip_per_minute: int = 300
    rate_limit_burst: int = 60
    # Failed logins (password guessing, and Argon2's 64 MiB per attempt): per e-mail address and
    # per client address, sustained per-minute rate and burst. Successful logins cost nothing.
    login_failures_per_minute: int = 6
    login_failure_burst: int = 10
    login_failures_per_ip_per_minute: int = 30
    login_failure_ip_burst: int = 100
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: str | None = None
    operator_iban: str = "FR7630006000011234567890189"
    operator_bic: str = "AGRIFRPP"
    operator_name: str = "Opérateur Pass numérique"
    # The operator as seller on its invoices (issue 14): SIRET, VAT number (or, without one,
    # the exemption mention printed instead), postal address.
    operator_siret: str | None = None
    operator_vat_number: str | None = None
    operator_vat_exemption: str | None = None
    operator_address: str | None = None
    operator_postcode: str | None = None
    operator_city: str | None = None
    # Invoices: days to pay, VAT category (UNCL 5305) and rate in basis points per line kind.
    invoice_due_days: int = Field(default=30, ge=1, le=60)
    invoice_face_value_vat_category: str = "O"
    invoice_face_value_vat_bp: int = Field(default=0, ge=0, le=10_000)
    invoice_fee_vat_category: str = "S"
    invoice_fee_vat_bp: int = Field(default=2000, ge=0, le=10_000)
    # Chorus Pro over PISTE (off by default): OAuth2 client credentials, the technical
    # account sent in the `cpro-account` header, the user id deposits are made under.
    chorus_enabled: bool = False
    chorus_api_base: str = "https://sandbox-api.piste.gouv.fr"
    chorus_token_url: str = "https://sandbox-oauth.piste.gouv.fr/api/oauth/token"
    chorus_client_id: str | None = None
    chorus_client_secret: str | None = None
    chorus_login: str | None = None
    chorus_password: str | None = None
    chorus_user_id: int | None = None
    log_json: bool = True
    # Whether each web worker seals the ledger in the background; `passnum serve` turns it
    # off and runs one sealer process beside the workers instead (ledger.sealer).
    sealer_in_app: bool = True
    # Seconds between two sealing runs while entries keep coming (idle, the runs space out to
    # one a second: ledger.sealer.next_wait). Short: each run seals what came in since the
    # last, so the work arrives in small slices instead of a burst that delays the requests
    # around it.
    sealer_interval: float = Field(default=0.05, gt=0, le=60)
    # The figures' rollup (pass_.reporting): `passnum serve` runs one process counting the
    # sealed journal into it every `rollup_interval` seconds; `false` runs none (then run
    # `passnum rollup`, e.g. from cron). Pages show how far behind it is.
    rollup_in_app: bool = True
    rollup_interval: float = Field(default=2.0, gt=0, le=3600)
    secure_cookies: bool = False
    # The public side (issue 15): the address people reach the service at, printed in the
    # booklet cover's QR code (/mon-pass/<number>); days before a programme's last day of
    # validity when issuers and financers are alerted, and when stock booklets can no longer
    # be handed out.
    public_url: str = "http://127.0.0.1:8000"
    validity_alert_days: int = Field(default=30, ge=0, le=366)
    hand_out_stop_days: int = Field(default=15, ge=0, le=366)
    # Where people write about accessibility problems (the accessibility statement, /accessibilite).
    accessibility_email: str = "accessibilite@demo.passnum.fr"
    # The anomaly watch (clearing/anomalies.py explains each rule; `passnum watch` runs it).
    # Window looked at by each run, in hours (cron runs it more often than that).
    anomaly_lookback_hours: int = Field(default=48, ge=1, le=24 * 31)
    # A booklet redeemed at one site: ≥ N of its cheques (or all, if fewer) within M minutes.
    anomaly_booklet_burst_cheques: int = Field(default=5, ge=2, le=100)
    anomaly_booklet_burst_minutes: int = Field(default=60, ge=1, le=24 * 60)
    # Redemptions while the site is closed by its opening hours: at least K in a day, each
    # closed also `grace` minutes before and after.
    anomaly_outside_hours_min: int = Field(default=2, ge=1, le=1000)
    anomaly_outside_hours_grace_minutes: int = Field(default=30, ge=0, le=240)
    # A day far above one's own history or one's peers': count ≥ floor and ≥ factor (percent)
    # × own mean over the history (enough active days needed) or × peers' median (enough peers).
    anomaly_spike_factor_percent: int = Field(default=300, ge=110, le=10_000)
    anomaly_spike_min_count: int = Field(default=20, ge=1, le=100_000)
    anomaly_spike_history_days: int = Field(default=28, ge=7, le=366)
    anomaly_spike_min_history_days: int = Field(default=7, ge=1, le=366)
    anomaly_spike_min_peers: int = Field(default=3, ge=1, le=10_000)
    # Cheques of one booklet redeemed in ≥ C different communes within D days.
    anomaly_spread_communes: int = Field(default=3, ge=2, le=100)
    anomaly_spread_days: int = Field(default=7, ge=1, le=366)
    # Scans refused as forged or unknown codes, per account and day; kept this many days.
    anomaly_refused_scans_per_day: int = Field(default=10, ge=1, le=100_000)
    anomaly_refused_scan_retention_days: int = Field(default=90, ge=1, le=3660)

    def secret(self, name: str, nbytes: int = 32) -> str:
        """Return the secret `name`: from the environment if set, else from the data folder,
        generating it there (0600) the first time."""
        value = getattr(self, name, None)
        if value:
            return str(value)
        path = self.data_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Written whole to a private file, then published with link(), which fails if the
            # name exists: two processes starting together agree on one secret, and none ever
            # reads a file another is still writing.
            draft = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_urlsafe(nbytes).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(draft, path)
            except FileExistsError:
                pass  # another process published first: use its secret
            finally:
                os.unlink(draft)
        value = path.read_text().strip()
        if len(value) < 16:
            raise RuntimeError(f"secret file {path} is empty or too short: remove it or fix it")
        return value

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"


@lru_cache
def get_settings() -> Settings:
    return Settings()
