"""Plain executes through the cluster: the API process adds the request to a stream and
waits on a list of its own for the worker's answer (and, streamed, its output: ``_streaming``)."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

from ..errors import OperatorError, Overloaded
from ..executor import ExecutionResult
from . import _keys
from ._streaming import receive

if TYPE_CHECKING:
    import redis

    from ..executor import ExecutionRequest, Listener
    from ._router import Router

# Past the program's own time limit, how long to wait for a worker's answer: its sandbox
# start, its queue, the compile step.
ANSWER_GRACE_SECONDS = 60


class WorkerRefused(OperatorError):
    """An error the worker raised, carried back with its status (a 404 for an image it lacks)."""

    def __init__(self, message: str, status: int, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status = status
        self._headers = headers

    def headers(self) -> dict[str, str]:
        return self._headers


_SEND = """
-- Add an execute to its stream unless the cluster already has as many unanswered as it may.
-- KEYS: the unanswered executes (a sorted set), the stream.
-- ARGV: now, deadline, most, id, request, whether its output streams (1 or 0).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local unanswered = redis.call('ZCARD', KEYS[1])
if unanswered >= tonumber(ARGV[3]) then
    return {0, unanswered}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('XADD', KEYS[2], '*', 'kind', 'execute', 'id', ARGV[4], 'request', ARGV[5], 'deadline', ARGV[2],
           'stream', ARGV[6])
return {1, unanswered + 1}
"""
"""One script, so the count, the check and the send are one step for every API process, and
cost Redis one write (with ``appendfsync always``, one fsync) as the send alone did."""


class Dispatcher:
    def __init__(self, client: redis.Redis, router: Router, default_timeout: int, max_waiting: int) -> None:
        self.client = client
        self.router = router
        self.default_timeout = default_timeout
        self.max_waiting = max_waiting
        """Executes the whole cluster lets wait beyond what its workers run at once; one more is a
        503, as on a single server."""
        self._send = client.register_script(_SEND)

    def execute(self, request: ExecutionRequest, listener: Listener | None = None) -> ExecutionResult:
        """Run ``request`` on a worker; with a ``listener``, its output comes there as the worker hears it."""
        execution_id = uuid.uuid4().hex
        wait = (request.timeout or self.default_timeout) + ANSWER_GRACE_SECONDS
        with _keys.unavailable_as_503():
            stream = self.router.execute_stream(request.language)
            # Counted until answered, which its worker does in the same step as the answer: a
            # count of the waiting alone would cost one more write before each run.
            most = self.router.capacity(request.language) + self.max_waiting
            now = time.time()
            sent, unanswered = self._send(keys=[_keys.UNANSWERED_EXECUTES, stream],
                                          args=[repr(now), repr(now + wait), most, execution_id,
                                                json.dumps(request.to_json()), int(listener is not None)])
            if not sent:
                raise Overloaded(f"too many executions waiting for a worker ({unanswered} sent and not answered, "
                                 f"at most {most}): try again shortly")
            reply = receive(self.client, execution_id, wait, listener)
        if "error" in reply:
            raise WorkerRefused(reply["error"], int(reply["status"]), reply["headers"])
        return ExecutionResult(**reply["result"])
