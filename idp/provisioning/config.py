"""The provider sections of the configuration (``[provisioning.alimail]``, ``[provisioning.scim]``).

They live apart from the provider clients so that reading the settings, which every command and every
gunicorn worker does, does not import httpx, scim2-client and scim2-models (about 0.6 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _RetrySettings(BaseModel):
    """How every provider client retries 429s, 5xx and dropped connections (see retry.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_base_wait: float = Field(default=0.2, gt=0, le=10)
    max_retry_wait: float = Field(default=20.0, gt=0, le=300)
    """Cap on one wait between attempts, including a Retry-After the server asks for."""


class AlimailSettings(_RetrySettings):
    """The ``[alimail]`` section of the configuration."""

    host: str = "https://alimail-cn.aliyuncs.com"
    """The regional API host; pick the one of the region the mail domain lives in."""
    client_id: str
    client_secret: SecretStr = SecretStr("")
    client_secret_file: Path | None = None
    mail_domain: str
    """The domain mailboxes are created in; also names the shared rate-limit bucket."""
    department_source: Literal["attribute", "ou"] = "attribute"
    """Where a person's department path comes from: AD's ``department`` attribute (``/`` separates
    levels) or the OU path of their DN."""
    api_limit_per_second: int = Field(default=40, ge=1, le=1000)
    """The API's own limit: this many requests in any one-second window per mail domain, counted when
    they arrive at the API and shared by every app of the domain (40, as Alibaba documents). We never
    send a request that could be the (N+1)-th arrival in one second: a place is held from the moment a
    request is sent until one second after its answer came back. Lower it to leave room for another
    app calling the API for the same domain."""
    rate_per_second: float = Field(default=40.0, gt=0, le=1000)
    """The pace we send at: requests at least ``1/rate`` seconds apart, never back to back. It smooths
    bursts; it is not what keeps us under the API's limit (``api_limit_per_second`` does that, whatever
    the network and thread scheduling do to when a request arrives). Above ``api_limit_per_second`` it
    has no effect; below it, it caps our share of the domain's budget. A sync at the defaults sends
    about 40 / (1 s + one round trip) requests per second."""
    redis_url: str = ""
    """Share the rate limit through this Redis (several processes or nodes); empty limits per process."""
    rate_limit_max_wait: float = Field(default=30.0, gt=0)
    """Longest a call waits for a slot under our own limiter before giving up with RateLimited."""
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    read_timeout: float = Field(default=15.0, gt=0, le=300)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for the emulator)")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _secret_source(self) -> AlimailSettings:
        if not self.client_secret.get_secret_value() and self.client_secret_file is None:
            raise ValueError("set client_secret or client_secret_file")
        return self

    def secret(self) -> str:
        if self.client_secret_file is not None:
            return self.client_secret_file.read_text(encoding="utf-8").strip()
        return self.client_secret.get_secret_value()


class ScimSettings(_RetrySettings):
    """The ``[scim]`` section of the configuration."""

    base_url: str
    """The SCIM base URL, e.g. https://saas.example.com/scim/v2 (``/Users`` is appended)."""
    bearer_token: SecretStr = SecretStr("")
    bearer_token_file: Path | None = None
    verify_tls: bool = True
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    read_timeout: float = Field(default=15.0, gt=0, le=300)
    rate_per_second: float | None = Field(default=None, gt=0)
    """Our own limit, when the service documents one; None sends as fast as answers come."""
    redis_url: str = ""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must start with https://")
        return v.rstrip("/")

    def token(self) -> str:
        if self.bearer_token_file is not None:
            return self.bearer_token_file.read_text(encoding="utf-8").strip()
        return self.bearer_token.get_secret_value()
