"""The Python SDK without a server: its SSE parser on handcrafted streams cut at every byte,
and its requests and error handling through httpx.MockTransport (a real transport that
answers from a function)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import infra_operator_client as sdk
import pytest
from infra_operator_client import ServerSentEvent, SSEDecoder

# Every way the standard lets a line end, comments, a field without a space after its colon,
# data over several lines, a retry field to ignore, and characters of two, three and four bytes.
HANDCRAFTED = (
    b": a comment, then an event with CRLF line ends\r\n"
    b"event: stdout\r\ndata: {\"data\": \"h\xc3\xa9llo \xe2\x9c\x93\"}\r\n\r\n"
    b"event: stderr\rdata:{\"data\": \"\xf0\x9f\x8e\x89\\n\"}\r\r"
    b"retry: 100\nid: 7\nevent: note\ndata: first line\ndata: second line\n\n"
    b"data: an event without a name\n\n"
    b"event: result\ndata: {\"stdout\": \"h\xc3\xa9llo\", \"stderr\": \"\", \"exit_code\": 0,"
    b" \"load_time\": \"1ms\", \"exec_time\": \"2ms\"}\n\n"
)
EXPECTED = [
    ServerSentEvent("stdout", '{"data": "héllo ✓"}'),
    ServerSentEvent("stderr", '{"data": "🎉\\n"}'),
    ServerSentEvent("note", "first line\nsecond line", "7"),
    ServerSentEvent("message", "an event without a name", "7"),
    ServerSentEvent("result", '{"stdout": "héllo", "stderr": "", "exit_code": 0, "load_time": "1ms", "exec_time": "2ms"}',
                    "7"),
]


def decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def test_sse_whole_stream() -> None:
    assert decode([HANDCRAFTED]) == EXPECTED


def test_sse_split_at_every_byte_in_two() -> None:
    """Cut anywhere: inside a line, between \\r and \\n, inside a UTF-8 character."""
    for cut in range(len(HANDCRAFTED) + 1):
        assert decode([HANDCRAFTED[:cut], HANDCRAFTED[cut:]]) == EXPECTED, f"cut at byte {cut}"


def test_sse_one_byte_at_a_time() -> None:
    assert decode([HANDCRAFTED[i:i + 1] for i in range(len(HANDCRAFTED))]) == EXPECTED


def test_sse_events_come_out_as_soon_as_their_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: stdout\ndata: {}\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent("stdout", "{}")]


def test_sse_a_carriage_return_at_a_chunk_end_is_one_line_end() -> None:
    """``\\r`` then ``\\n`` in the next chunk is one line end, not a line end and a blank line."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [ServerSentEvent("message", "a\nb")]


def test_sse_an_unfinished_event_at_the_end_is_dropped() -> None:
    assert decode([b"event: stdout\ndata: {\"data\": \"x\"}\n\nevent: result\ndata: {}"]) == [
        ServerSentEvent("stdout", '{"data": "x"}')]


# Through the client, with a transport that answers from a function.

RESULT: sdk.ExecuteResult = {"stdout": "1024\n", "stderr": "", "exit_code": 0, "load_time": "1ms", "exec_time": "2ms"}


def client_for(handler: Callable[[httpx.Request], httpx.Response], api_key: str | None = None,
               timeout: float = 60.0) -> sdk.Client:
    return sdk.Client("http://sdk.test", transport=httpx.MockTransport(handler), api_key=api_key, timeout=timeout)


def recorded() -> tuple[list[httpx.Request], Callable[[httpx.Request], httpx.Response]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=RESULT)

    return seen, handler


def test_execute_posts_the_seed_fields_and_returns_the_servers_dict() -> None:
    seen, handler = recorded()
    with client_for(handler) as client:
        result = client.execute("python", "print(2 ** 10)", 30)
    assert result["stdout"] == "1024\n" and result == RESULT
    assert (seen[0].method, seen[0].url.path) == ("POST", "/api/v1/execute")
    assert json.loads(seen[0].content) == {"language": "python", "code": "print(2 ** 10)", "timeout": 30}


def test_api_key_is_sent_as_bearer() -> None:
    seen, handler = recorded()
    with client_for(handler, api_key="k-123") as client:
        client.health()
    with client_for(handler) as client:
        client.health()
    assert seen[0].headers["authorization"] == "Bearer k-123"
    assert "authorization" not in seen[1].headers


def test_a_call_that_runs_code_waits_for_the_programs_own_timeout() -> None:
    seen, handler = recorded()
    with client_for(handler, timeout=5.0) as client:
        client.health()
        client.execute("python", "x", timeout=100)
        client.execute("python", "x")
    assert [request.extensions["timeout"]["read"] for request in seen] == [5.0, 130.0, 60.0]
    assert seen[1].extensions["timeout"]["connect"] == 5.0


def test_files_go_as_text_or_base64(tmp_path: Path) -> None:
    local = tmp_path / "data.bin"
    local.write_bytes(b"\x00\xff")
    seen, handler = recorded()
    with client_for(handler) as client:
        client.execute("python", files={"main.py": "print(1)", "raw.bin": b"\x01\x02", "data.bin": local})
    assert json.loads(seen[0].content)["files"] == [
        {"path": "main.py", "content": "print(1)"},
        {"path": "raw.bin", "content": base64.b64encode(b"\x01\x02").decode(), "encoding": "base64"},
        {"path": "data.bin", "content": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"},
    ]


@pytest.mark.parametrize(("status", "kind"), [
    (400, sdk.BadRequest), (401, sdk.Unauthorized), (404, sdk.NotFound), (409, sdk.Conflict),
    (413, sdk.PayloadTooLarge), (429, sdk.RateLimited), (500, sdk.ServerError), (502, sdk.ServerError),
    (503, sdk.ServiceUnavailable), (418, sdk.APIError),
])
def test_errors_carry_status_and_the_servers_message(status: int, kind: type[sdk.APIError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": f"it went wrong ({status})"},
                              headers={"retry-after": "2", "x-request-id": "req-1"})

    with client_for(handler) as client, pytest.raises(kind) as raised:
        client.execute("python", "x")
    assert type(raised.value) is kind
    assert (raised.value.status, raised.value.message, raised.value.request_id) == (status, f"it went wrong ({status})",
                                                                                   "req-1")
    if isinstance(raised.value, sdk.RateLimited | sdk.ServiceUnavailable):
        assert raised.value.retry_after == 2.0


def test_an_error_without_json_keeps_its_text() -> None:
    with client_for(lambda request: httpx.Response(502, text="bad gateway from a proxy")) as client, \
            pytest.raises(sdk.ServerError, match="bad gateway from a proxy"):
        client.health()


def sse_answer(body: list[bytes], asynchronous: bool = False) -> Callable[[httpx.Request], httpx.Response]:
    """An event stream sent in these chunks, each as its own piece of the body."""
    async def pieces() -> AsyncIterator[bytes]:
        for chunk in body:
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"] == "text/event-stream"
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=pieces() if asynchronous else iter(body))
    return handler


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_stream_yields_output_then_the_result_from_chunks_cut_anywhere() -> None:
    body = (b'event: stdout\ndata: {"data": "h\xc3\xa9"}\n\nevent: stderr\ndata: {"data": "oops"}\n\n'
            b"event: result\ndata: " + json.dumps(RESULT).encode() + b"\n\n")
    with client_for(sse_answer(chunks_of(body, 3))) as client, client.stream("python", "x") as events:
        assert list(events) == [sdk.Output("stdout", "hé"), sdk.Output("stderr", "oops"), sdk.Result(RESULT)]
        assert events.result == RESULT


def test_stream_without_result_or_with_an_error_event_raises() -> None:
    with client_for(sse_answer([b'event: stdout\ndata: {"data": "x"}\n\n'])) as client, \
            pytest.raises(sdk.StreamError, match="before its result"):
        list(client.stream("python", "x"))
    with client_for(sse_answer([b'event: error\ndata: {"error": "sandbox died"}\n\n'])) as client, \
            pytest.raises(sdk.StreamError, match="sandbox died"):
        list(client.stream("python", "x"))


def test_async_client_streams_and_maps_errors_the_same() -> None:
    body = b'event: stdout\r\ndata: {"data": "a"}\r\n\r\nevent: result\r\ndata: ' + json.dumps(RESULT).encode() + b"\r\n\r\n"

    async def main() -> None:
        transport = httpx.MockTransport(sse_answer(chunks_of(body, 1), asynchronous=True))
        async with sdk.AsyncClient("http://sdk.test", transport=transport) as client, \
                client.stream("python", "x") as events:
            assert [event async for event in events] == [sdk.Output("stdout", "a"), sdk.Result(RESULT)]
        failing = httpx.MockTransport(lambda request: httpx.Response(404, json={"error": "language not found: x"}))
        async with sdk.AsyncClient("http://sdk.test", transport=failing) as client:
            with pytest.raises(sdk.NotFound, match="language not found: x"):
                await client.execute("x", "y")

    asyncio.run(main())


def test_wait_polls_until_finished_and_gives_up_at_its_timeout() -> None:
    states = iter(["queued", "running", "done"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "s1", "status": next(states)})

    with client_for(handler) as client:
        assert client.wait("s1")["status"] == "done"
    with client_for(lambda request: httpx.Response(200, json={"id": "s2", "status": "queued"})) as client, \
            pytest.raises(sdk.WaitTimeout) as raised:
        client.wait("s2", timeout=0.2)
    assert raised.value.submission_id == "s2"


def test_transport_failures_are_the_sdks_exceptions() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with client_for(refuse) as client, pytest.raises(sdk.TransportError) as raised:
        client.health()
    assert isinstance(raised.value.__cause__, httpx.ConnectError) and not isinstance(raised.value, sdk.Timeout)
    with client_for(slow) as client, pytest.raises(sdk.Timeout):
        client.health()


def test_session_file_paths_are_percent_encoded_per_part() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(201, json={"id": "a b", "language": "python", "version": "3", "backend": "jail",
                                             "created_at": "", "expires_at": ""})
        return httpx.Response(201, json={"path": "x", "size": 1})

    with client_for(handler) as client, client.session("python") as session:
        session.write("dir one/ü?#.txt", b"1")
    assert seen[1].url.raw_path == b"/api/v1/sessions/a%20b/files/dir%20one/%C3%BC%3F%23.txt"
    assert seen[2].method == "DELETE"


def exported() -> Iterator[str]:
    for name in dir(sdk):
        if not name.startswith("_") and name != "annotations" and not isinstance(getattr(sdk, name), type(sdk)):
            yield name


def test_exported_members_are_the_declared_surface() -> None:
    assert sorted([*exported(), "__version__"]) == sorted(sdk.__all__)


def test_async_opening_awaited_or_as_a_context_manager() -> None:
    """``await client.session(...)`` leaves closing to the caller; ``async with`` deletes at the end."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(201, json={"id": "s", "language": "python", "version": "3", "backend": "jail",
                                         "created_at": "", "expires_at": ""})

    async def main() -> None:
        async with sdk.AsyncClient("http://sdk.test", transport=httpx.MockTransport(handler)) as client:
            session = await client.session("python")
            assert session.id == "s" and seen == ["POST"]
            async with client.session("python") as managed:
                assert managed.id == "s"
            assert seen == ["POST", "POST", "DELETE"]
            await session.aclose()
            assert seen == ["POST", "POST", "DELETE", "DELETE"]

    asyncio.run(main())


def test_a_server_that_answers_json_instead_of_events_is_a_stream_error_saying_so() -> None:
    with client_for(lambda request: httpx.Response(200, json=RESULT)) as client, \
            pytest.raises(sdk.StreamError, match="does not stream"):
        client.stream("python", "x")


def test_submit_with_wait_waits_as_long_as_the_server_may_hold_it() -> None:
    """``?wait=true`` may hold the answer for each run's timeout plus the server's 60 s grace."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "s", "status": "done"})

    with client_for(handler, timeout=5.0) as client:
        client.submit("python", "x", 10, wait=True, tests=[{"stdin": "", "expected_output": ""}])
        client.submit("python", "x")
    assert seen[0].url.params["wait"] == "true" and "wait" not in seen[1].url.params
    assert [request.extensions["timeout"]["read"] for request in seen] == [2 * 10 + 60 + 30, 5.0]


def test_async_session_writes_text_bytes_and_file_objects(tmp_path: Path) -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            bodies.append(request.content)
            return httpx.Response(201, json={"path": "f", "size": len(request.content)})
        return httpx.Response(201, json={"id": "s", "language": "python", "version": "3", "backend": "jail",
                                         "created_at": "", "expires_at": ""})

    local = tmp_path / "f.bin"
    local.write_bytes(b"\x00from a path")

    async def main() -> None:
        async with sdk.AsyncClient("http://sdk.test", transport=httpx.MockTransport(handler)) as client:
            session = await client.session("python")
            with local.open("rb") as opened:
                for source in ("tëxt", b"\xffbytes", local, opened):
                    await session.write("f", source)

    asyncio.run(main())
    assert bodies == ["tëxt".encode(), b"\xffbytes", b"\x00from a path", b"\x00from a path"]


def test_session_pause_posts_to_its_pause_path_and_keeps_the_answer() -> None:
    seen: list[httpx.Request] = []
    info = {"id": "s1", "language": "python", "version": "3", "backend": "qemu", "created_at": "", "expires_at": ""}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/pause"):
            if request.url.path.startswith("/api/v1/sessions/jailed"):
                return httpx.Response(409, json={"error": "the jail backend cannot pause a session"})
            return httpx.Response(200, json={**info, "state": "paused"})
        return httpx.Response(201, json={**info, "state": "idle"})

    with client_for(handler) as client, client.session("python") as session:
        assert session.pause()["state"] == "paused" and session.info["state"] == "paused"
        with pytest.raises(sdk.Conflict, match="cannot pause"):
            sdk.Session(client, {**info, "id": "jailed"}).pause()  # type: ignore[typeddict-item]
    assert [(r.method, r.url.path) for r in seen[:2]] == [("POST", "/api/v1/sessions"), ("POST", "/api/v1/sessions/s1/pause")]
