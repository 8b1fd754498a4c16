"""Rate limiting without I/O: a token bucket fed with the time by its caller.

The server keeps two per connection: one for messages (``max_rate`` per second,
bursts up to ``max_burst``) and one that counts refused messages, so that a
client that keeps ignoring ``rate-limited`` errors is disconnected.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` tokens per second; :meth:`take` spends one.

    Time comes from the caller (any monotonic clock in seconds), so tests need no sleeping.
    """

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one at time ``now``; return whether there was."""
        tokens = self.tokens + (now - self.updated) * self.rate
        self.updated = now
        if tokens >= 1.0:
            self.tokens = min(tokens, self.capacity) - 1.0
            return True
        self.tokens = tokens
        return False

    def __repr__(self) -> str:
        return f"<TokenBucket {self.tokens:.1f}/{self.capacity} +{self.rate}/s>"
