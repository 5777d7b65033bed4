"""Latency distributions for links and disks, parsed from short specs like ``uniform:0.001:0.005``.

Specs (all times in seconds):

* ``constant:D`` — always D;
* ``uniform:LO:HI`` — uniform in [LO, HI];
* ``exponential:MIN:MEAN`` — MIN plus an exponential tail, mean MEAN overall
  (a queueing delay above a floor);
* ``lognormal:MEDIAN:SIGMA`` — lognormal with that median and shape: the long
  tail measured on real data-centre links and disks.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass


class DistributionKind(enum.Enum):
    CONSTANT = "constant"
    UNIFORM = "uniform"
    EXPONENTIAL = "exponential"
    LOGNORMAL = "lognormal"


_ARITY = {
    DistributionKind.CONSTANT: 1,
    DistributionKind.UNIFORM: 2,
    DistributionKind.EXPONENTIAL: 2,
    DistributionKind.LOGNORMAL: 2,
}


class DistributionError(ValueError):
    """A latency spec could not be parsed or is out of range."""


@dataclass(frozen=True, slots=True)
class Latency:
    kind: DistributionKind
    a: float
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.a < 0 or self.b < 0:
            raise DistributionError(f"{self.spec()}: parameters must not be negative")
        if self.kind is DistributionKind.UNIFORM and self.b < self.a:
            raise DistributionError(f"{self.spec()}: HI must not be less than LO")
        if self.kind is DistributionKind.EXPONENTIAL and self.b < self.a:
            raise DistributionError(f"{self.spec()}: MEAN must not be less than MIN")
        if self.kind is DistributionKind.LOGNORMAL and self.a == 0:
            raise DistributionError(f"{self.spec()}: MEDIAN must be greater than 0")

    @staticmethod
    def parse(spec: str) -> Latency:
        kind_name, *params = spec.split(":")
        try:
            kind = DistributionKind(kind_name)
        except ValueError:
            known = ", ".join(k.value for k in DistributionKind)
            raise DistributionError(f"{spec!r}: unknown distribution (known: {known})") from None
        if len(params) != _ARITY[kind]:
            raise DistributionError(f"{spec!r}: {kind.value} takes {_ARITY[kind]} parameter(s)")
        try:
            values = [float(p) for p in params]
        except ValueError:
            raise DistributionError(f"{spec!r}: parameters must be numbers") from None
        return Latency(kind, *values)

    def spec(self) -> str:
        if self.kind is DistributionKind.CONSTANT:
            return f"constant:{self.a:g}"
        return f"{self.kind.value}:{self.a:g}:{self.b:g}"

    def mean(self) -> float:
        if self.kind is DistributionKind.CONSTANT:
            return self.a
        if self.kind is DistributionKind.UNIFORM:
            return (self.a + self.b) / 2
        if self.kind is DistributionKind.EXPONENTIAL:
            return self.b
        return self.a * math.exp(self.b * self.b / 2)

    def sample(self, rng: random.Random) -> float:
        kind = self.kind
        if kind is DistributionKind.CONSTANT:
            return self.a
        if kind is DistributionKind.UNIFORM:
            return rng.uniform(self.a, self.b)
        if kind is DistributionKind.EXPONENTIAL:
            tail = self.b - self.a
            return self.a + (rng.expovariate(1.0 / tail) if tail > 0 else 0.0)
        return rng.lognormvariate(math.log(self.a), self.b)
