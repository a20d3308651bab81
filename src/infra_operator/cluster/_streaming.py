"""Answers and output crossing Redis. A worker answers a call (a plain execute, a session call)
on ``reply:<call>``; a streamed one's output goes first, as the program writes it, to
``output:<call>`` (``pushing``). The API process that asked pops both (``receive``); when its
client goes away it sets ``cancel:<call>``, and the worker interrupts the run."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis

from ..errors import SandboxError
from ..executor import Listener
from . import _keys

log = logging.getLogger(__name__)
OUTPUT_TTL_SECONDS = 60
"""How long pushed output waits for its API process: it pops it at once while it lives."""
SILENCE_SECONDS = 1
"""While waiting for an answer, how often to look whether the client went away and whoever
answers still lives."""
CANCEL_POLL_SECONDS = 0.2
"""How often a worker looks whether a streamed run's client went away."""


def receive(client: redis.Redis, call_id: str, wait: float, listener: Listener | None,
            on_silence: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """The answer to ``call_id``, and before it, with a ``listener``, the output pushed for it,
    handed on as it comes. ``on_silence`` runs after each quiet second: it raises to give up
    (the worker that would answer is gone)."""
    deadline = time.monotonic() + wait
    # BLPOP takes from the first list that has something: all output comes before the answer.
    lists = [_keys.reply(call_id)] if listener is None else [_keys.output(call_id), _keys.reply(call_id)]
    cancelled = False
    while True:
        popped = cast("tuple[bytes, bytes] | None", client.blpop(lists, timeout=SILENCE_SECONDS))
        if popped is not None and listener is not None and popped[0].decode() == lists[0]:
            heard = json.loads(popped[1])
            listener.on_output(heard["stream"], base64.b64decode(heard["data"]))
            continue
        if popped is not None:
            answer: dict[str, Any] = json.loads(popped[1])
            return answer
        if listener is not None and listener.cancel.is_set() and not cancelled:
            client.set(_keys.cancel(call_id), 1, ex=int(wait) + OUTPUT_TTL_SECONDS)
            cancelled = True
        on_silence()
        if time.monotonic() > deadline:
            raise SandboxError(f"no worker answered within {wait:.0f}s")


@contextmanager
def pushing(client: redis.Redis, call_id: str) -> Iterator[Listener]:
    """A listener that pushes a run's output to ``output:<call>`` as it comes, cancelled once
    the API process sets ``cancel:<call>``."""
    key = _keys.output(call_id)

    def on_output(name: str, data: bytes) -> None:
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, json.dumps({"stream": name, "data": base64.b64encode(data).decode("ascii")}))
                pipe.expire(key, OUTPUT_TTL_SECONDS)
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # the answer still has it all
            log.warning("streamed output was not pushed: %s", exc)

    listener = Listener(on_output)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(CANCEL_POLL_SECONDS):
            try:
                if client.exists(_keys.cancel(call_id)):
                    listener.cancel.set()
                    return
            except (redis.ConnectionError, redis.TimeoutError):
                continue

    watcher = threading.Thread(target=watch, name="stream-cancel", daemon=True)
    watcher.start()
    try:
        yield listener
    finally:
        done.set()
        watcher.join()
