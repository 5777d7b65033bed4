"""One seed decides everything: every actor gets its own ``random.Random`` derived from it.

A child generator is seeded with the string ``"<seed>/<name>"`` (Python hashes a
str seed with SHA-512, independently of PYTHONHASHSEED), so adding a new actor
never shifts the random stream of an existing one, and the same seed and
options always give the same run (TigerBeetle's VOPR does the same).
"""

from __future__ import annotations

import random


def child_rng(seed: int, *names: object) -> random.Random:
    """The generator owned by the actor called `names` (e.g. ``child_rng(7, "network")``)."""
    return random.Random("/".join([str(seed), *map(str, names)]))
