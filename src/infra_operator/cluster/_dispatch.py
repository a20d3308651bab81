"""Plain executes through the cluster: the API process adds the request to a stream and
waits on a list of its own for the worker's answer."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, cast

from ..errors import InvalidRequest, OperatorError, Overloaded, SandboxError
from ..executor import ExecutionResult
from . import _keys

if TYPE_CHECKING:
    import redis

    from ..executor import ExecutionRequest
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


def streaming_refused() -> InvalidRequest:
    """A worker's answer comes whole: executes and cells through a cluster do not stream."""
    return InvalidRequest("streaming is not served by a cluster yet: leave out `Accept: text/event-stream`, "
                          "or use a server without INFRA_OPERATOR_REDIS_URL")


class Dispatcher:
    def __init__(self, client: redis.Redis, router: Router, default_timeout: int, max_waiting: int) -> None:
        self.client = client
        self.router = router
        self.default_timeout = default_timeout
        self.max_waiting = max_waiting
        """Executes the whole cluster lets wait for a worker; one more is a 503, as on a single server."""

    def execute(self, request: ExecutionRequest) -> ExecutionResult:
        execution_id = uuid.uuid4().hex
        wait = (request.timeout or self.default_timeout) + ANSWER_GRACE_SECONDS
        deadline = time.time() + wait
        with _keys.unavailable_as_503():
            stream = self.router.execute_stream(request.language)
            self._admit(execution_id, deadline)
            self.client.xadd(stream, {"kind": "execute", "id": execution_id, "request": json.dumps(request.to_json()),
                                      "deadline": str(deadline)})
            popped = cast("tuple[bytes, bytes] | None", self.client.blpop([_keys.reply(execution_id)], timeout=wait))
        if popped is None:
            raise SandboxError(f"no worker answered within {wait}s")
        reply = json.loads(popped[1])
        if "error" in reply:
            raise WorkerRefused(reply["error"], int(reply["status"]), reply["headers"])
        return ExecutionResult(**reply["result"])

    def _admit(self, execution_id: str, deadline: float) -> None:
        """Count the execute among those waiting, or refuse it when the cluster has enough.
        Counting itself in first and backing out past the cap means two API processes at the
        cap may both refuse, but never both admit."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(_keys.WAITING_EXECUTES, "-inf", time.time())
            pipe.zadd(_keys.WAITING_EXECUTES, {execution_id: deadline})
            pipe.zcard(_keys.WAITING_EXECUTES)
            waiting = int(pipe.execute()[-1])
        if waiting > self.max_waiting:
            self.client.zrem(_keys.WAITING_EXECUTES, execution_id)
            raise Overloaded(f"too many executions waiting for a worker ({waiting - 1}): try again shortly")
