"""etcd's simple tokens (auth/simple_token.go): what Authenticate hands out.

A token is ``<16 random letters>.<log index of the Authenticate>``. Authenticate
is applied from the log on every member, so every member knows every token,
as in etcd. Tokens are kept in memory only (not in snapshots: a restarted
member forgets them, as etcd does) and expire ``SIMPLE_TOKEN_TTL`` seconds after
their last use, on the member's clock passed in as ``now``.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from kv.auth import AuthInfo

# etcd's simpleTokenTTLDefault: a simple token lives 5 minutes after its last use.
SIMPLE_TOKEN_TTL = 300.0
# etcd's token prefix: 16 random letters.
SIMPLE_TOKEN_PREFIX_LEN = 16
_LETTERS = string.ascii_letters


def new_simple_token_prefix(rng: random.Random) -> str:
    return "".join(rng.choice(_LETTERS) for _ in range(SIMPLE_TOKEN_PREFIX_LEN))


@dataclass(slots=True)
class _Token:
    username: str
    revision: int  # the auth revision when it was assigned
    deadline: float


class SimpleTokens:
    """etcd's simple token provider: token -> user, one member's copy, in memory.

    As etcd's, a token's AuthInfo carries the auth store's *current* revision, not
    the one it was assigned at (``info(..., current_revision)``): a simple token
    stays good across auth changes, and "revision of auth store is old" only
    answers a request that raced an auth change between check and apply."""

    def __init__(self, ttl: float = SIMPLE_TOKEN_TTL) -> None:
        self.ttl = ttl
        self._tokens: dict[str, _Token] = {}

    def assign(self, token: str, username: str, revision: int, now: float) -> None:
        self._tokens[token] = _Token(username, revision, now + self.ttl)

    def info(self, token: str, now: float, current_revision: int) -> AuthInfo | None:
        t = self._tokens.get(token)
        if t is None:
            return None
        if t.deadline <= now:
            del self._tokens[token]
            return None
        t.deadline = now + self.ttl  # etcd resets a simple token's TTL on every use
        return AuthInfo(t.username, current_revision)

    def invalidate_user(self, username: str) -> None:
        for tok in [k for k, t in self._tokens.items() if t.username == username]:
            del self._tokens[tok]

    def clear(self) -> None:
        self._tokens.clear()

    def usernames(self) -> set[str]:
        return {t.username for t in self._tokens.values()}

    def __len__(self) -> int:
        return len(self._tokens)
