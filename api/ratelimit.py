"""Rate limits on cheque checking and redemption: in-memory token buckets per user and address.

Why the limits make guessing serials hopeless
---------------------------------------------
A serial carries 60 random bits (`pass_.codes`): 2⁶⁰ ≈ 1.15 × 10¹⁸ possible serials. The scheme
holds at most about 4 × 10⁷ live cheques (2 × 10⁷ issued a year, valid up to 13 months), so one
guess hits a live cheque with probability p ≤ 4 × 10⁷ / 1.15 × 10¹⁸ ≈ 3.5 × 10⁻¹¹ (the check
character is public: it filters typos, not guesses). Tokens (QR codes) cannot be guessed at all:
they are Ed25519 signatures.

With the default limits — per user 120 attempts a minute sustained, per address 300 — a single
account can make at most 120 × 60 × 24 × 365 ≈ 6.3 × 10⁷ attempts a year, hence
6.3 × 10⁷ × 3.5 × 10⁻¹¹ ≈ 2.2 × 10⁻³ expected hits a year: one 10 € cheque every ~450 years,
per stolen site account, while hammering the service non-stop (and every miss is logged and
counted as `cheque_not_found`). Accounts are created by the operator for qualified sites, not
self-service, so an attacker cannot multiply them. Meanwhile a busy site is never hindered:
a mediator scans at most a few cheques a minute; the burst (60) absorbs a queue at opening time.

Offline batches are charged one token per typed serial (a signed QR code needs no protection),
and a batch may overdraw the bucket once: the bucket must hold min(cost, burst) tokens, then the
whole cost is taken, possibly going negative, so a large batch passes and the following requests
wait. The long-run rate stays bounded by the sustained rate (plus one batch of at most 500).

Several workers
---------------
Buckets live in each worker process's memory, so with W workers (`passnum serve --workers W`) a
client spread over them gets up to W × the configured limit (connections are not pinned to a
worker). The arithmetic above stays hopeless for any sensible W (×8 is still one hit every ~55
years per account). If a strict global limit were ever needed, the path is a shared store: a
PostgreSQL table updated with one `INSERT … ON CONFLICT DO UPDATE` per attempt, or Redis
(`INCR` with expiry, or a GCRA script) — at the price of one more round trip per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from api.security import Principal
from kit.settings import Settings

__all__ = ["RateLimits", "TokenBucketLimiter", "enforce", "rate_limits"]


class TokenBucketLimiter:
    """Token buckets keyed by a string: `rate_per_minute` sustained, `burst` capacity.

    Single-threaded use (one asyncio loop): `take` has no await, so it is atomic.
    """

    def __init__(
        self,
        *,
        rate_per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("rate and burst must be positive")
        self.rate = rate_per_minute / 60.0  # tokens per second
        self.capacity = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        # key → (tokens, instant of last update)
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def wait_for(self, key: str, cost: float = 1.0) -> float:
        """Seconds until `cost` may be taken from `key` (0.0 when it may be taken now)."""
        need = min(cost, self.capacity)
        level = self._level(key, self.clock())
        return 0.0 if level >= need else (need - level) / self.rate

    def consume(self, key: str, cost: float = 1.0) -> None:
        """Take `cost` tokens (the bucket may go negative: see the module docstring)."""
        now = self.clock()
        self._buckets[key] = (self._level(key, now) - cost, now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens if allowed and return 0.0, else return the seconds to wait."""
        wait = self.wait_for(key, cost)
        if wait == 0.0:
            self.consume(key, cost)
        return wait

    def _prune(self, now: float) -> None:
        # A full bucket carries no information: forget it. If every bucket is in use (a flood of
        # addresses), forget the oldest half rather than grow without bound.
        full = [k for k in self._buckets if self._level(k, now) >= self.capacity]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) > self.max_keys:
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for k in oldest[: len(oldest) // 2]:
                del self._buckets[k]


@dataclass
class RateLimits:
    """The two limits every checking or redeeming request passes: per user and per address."""

    per_user: TokenBucketLimiter
    per_address: TokenBucketLimiter

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> RateLimits:
        return cls(
            per_user=TokenBucketLimiter(
                rate_per_minute=settings.rate_limit_per_user_per_minute,
                burst=settings.rate_limit_burst,
                clock=clock,
            ),
            per_address=TokenBucketLimiter(
                rate_per_minute=settings.rate_limit_per_ip_per_minute,
                burst=settings.rate_limit_burst,
                clock=clock,
            ),
        )

    def take(self, *, user_id: int, address: str, cost: float = 1.0) -> float:
        """Take from both buckets, or from neither; returns the seconds to wait (0.0 if taken)."""
        user_key, address_key = f"u:{user_id}", f"a:{address}"
        wait = max(
            self.per_user.wait_for(user_key, cost), self.per_address.wait_for(address_key, cost)
        )
        if wait == 0.0:
            self.per_user.consume(user_key, cost)
            self.per_address.consume(address_key, cost)
        return wait


def rate_limits(request: Request) -> RateLimits:
    """The application's limits, built from its settings on first use (one set per process)."""
    limits = getattr(request.app.state, "rate_limits", None)
    if limits is None:
        limits = RateLimits.from_settings(request.app.state.settings)
        request.app.state.rate_limits = limits
    return limits  # type: ignore[no-any-return]


def enforce(request: Request, principal: Principal, cost: float = 1.0) -> None:
    """Raise 429 `rate_limited` with `Retry-After` when the user or the address is over limit."""
    address = request.client.host if request.client else "unknown"
    wait = rate_limits(request).take(user_id=principal.user_id, address=address, cost=cost)
    refuse_if_waiting(wait)


def refuse_if_waiting(wait: float) -> None:
    """Raise 429 `rate_limited` with `Retry-After` when a bucket asks to wait `wait` seconds."""
    if wait > 0.0:
        seconds = max(1, math.ceil(wait))
        raise HTTPException(
            status_code=429,
            detail={
                "code": "rate_limited",
                "message": f"Trop de tentatives : réessayez dans {seconds} seconde(s).",
            },
            headers={"Retry-After": str(seconds)},
        )
