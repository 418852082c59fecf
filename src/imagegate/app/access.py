"""Who is calling and what they may do: API keys (cached for ``auth_cache_seconds``), the
models a key may use, and its submit rate: this process's bucket of the key (the whole limit in
``serve``), and in a fleet the key's bucket in the database as well, which the submit's own
transaction takes (``limits.py``)."""

from __future__ import annotations

import time

from imagegate.clock import Clock
from imagegate.errors import Forbidden, Unauthorized, quoted
from imagegate.keys import KeyCache, bearer_token, hash_key
from imagegate.limits import RateLimiter, rate_limited
from imagegate.routing import Routing
from imagegate.store.base import ApiKey, RateRequest, Store


class Access:
    def __init__(self, store: Store, routing: Routing, limiter: RateLimiter, clock: Clock, *,
                 shared_rates: bool, cache_s: float, default_rate: float,
                 default_burst: int) -> None:
        """``shared_rates``: the keys' rates are counted in the database too (a fleet)."""
        self.store = store
        self.routing = routing
        self.limiter = limiter
        self.clock = clock
        self.shared_rates = shared_rates
        self.key_cache: KeyCache[ApiKey] = KeyCache(cache_s)
        self.default_rate = default_rate
        self.default_burst = default_burst

    async def authenticate(self, authorization: str | None) -> ApiKey:
        """The active key of an ``Authorization: Bearer`` header; ``Unauthorized`` otherwise."""
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("missing or malformed Authorization: Bearer header")
        return await self.key(token)

    async def key(self, token: str) -> ApiKey:
        """The active key whose secret is ``token`` (however the request carried it: the
        Gemini facade takes ``x-goog-api-key`` and ``?key=``); ``Unauthorized`` otherwise."""
        key_hash = hash_key(token)
        now = time.monotonic()
        key = self.key_cache.get(key_hash, now)
        if key is None:
            key = await self.store.key_by_hash(key_hash)
            if key is None or not key.active:
                raise Unauthorized("invalid or revoked API key")
            self.key_cache.put(key_hash, key, now)
        return key

    def check_model(self, key: ApiKey, model_id: str) -> None:
        """``NotFound`` for a model the catalogue lacks, ``Forbidden`` for one the key may not
        use."""
        self.routing.model(model_id)
        if key.models is not None and model_id not in key.models:
            raise Forbidden(f"this API key may not use model {quoted(model_id)}")

    async def check_rate(self, key: ApiKey) -> RateRequest | None:
        """Take a submit token of this process's bucket of the key (``TooManyRequests`` with
        the wait when there is none); in a fleet, the request for a token of the key's shared
        bucket, for the submit to take with its task."""
        rate = key.submit_rate or self.default_rate
        burst = key.submit_burst or self.default_burst
        wait = await self.limiter.acquire(key.id, rate, burst)
        if wait > 0:
            raise rate_limited(rate, wait)
        return RateRequest(rate, burst, self.clock.now_ms()) if self.shared_rates else None
