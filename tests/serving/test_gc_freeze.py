"""The server moves what its start-up made out of the collector's sight, the shared state included.

A full collection walks every tracked object not frozen; with the loaded models, MLflow's
client and the modules in that set it took ~80 ms on the flights champion, every second or so
under load, and every request in flight waited behind it (p99 32 -> 105 ms at 64 connections,
bench/README.md). So ``Service.start`` freezes once everything it loads is loaded: after the
first refresh of the shared state too, which is where the registry client is first made.
"""

from __future__ import annotations

import gc
from typing import Any

from mlsd.serving.routing import Routing

_MADE = 20_000


def test_what_the_first_refresh_makes_is_frozen(make_client: Any, monkeypatch: Any) -> None:
    made: list[list[int]] = []
    refresh = Routing.refresh

    def refresh_and_allocate(self: Routing, *args: Any, **kwargs: Any) -> None:
        refresh(self, *args, **kwargs)
        if not made:  # the first refresh, at start-up: as the registry client's import would
            made.extend([i] for i in range(_MADE))

    monkeypatch.setattr(Routing, "refresh", refresh_and_allocate)
    with make_client() as (client, _log):
        assert client.get("/readyz").status_code == 200
        assert len(made) == _MADE
        ids = {id(x) for x in made}
        # gc.get_objects() lists the collector's generations, not the permanent (frozen) one
        still_collected = sum(id(o) in ids for o in gc.get_objects())
    assert still_collected == 0
