"""etcd's v2 keys API over the v3 store (in progress: answers nothing yet)."""

from __future__ import annotations

from real_net.backend import Backend
from real_net.gateway import HttpRequest, HttpResponse


class V2Keys:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def handle(self, req: HttpRequest) -> HttpResponse | None:
        return None
