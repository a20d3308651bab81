"""The Model Context Protocol, driven by the official client from the ``mcp`` package over both
transports: stdio (``infra.operator mcp`` as a subprocess, in process or with ``--url``) and
Streamable HTTP at ``/mcp`` of a real server. Real sandboxes (the server's default backend)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from agentkit import FIGURE_CELL, PNG
from conftest import DATA_DIR, Server, require_images, start_server, stop_server
from hostcheck import cgroups_of, descendants, processes_with, run_folders_of
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ImageContent, TextContent

Connect = Callable[[], AbstractAsyncContextManager[Client]]
TOOLS = {"list_languages", "execute", "create_session", "execute_in_session", "write_file", "read_file",
         "list_files", "close_session"}


@pytest.fixture(autouse=True)
def _images() -> None:
    require_images("python")


def stdio(*args: str, env: dict[str, str] | None = None, mode: str = "auto", cwd: Path | None = None) -> Connect:
    """``infra.operator mcp`` as the subprocess an agent's host would start."""
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "infra_operator", "mcp", *args],
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "INFRA_OPERATOR_DATA_DIR": str(DATA_DIR),
             "INFRA_OPERATOR_POOL__SIZE": "0", **(env or {})}, cwd=cwd)

    @asynccontextmanager
    async def connect() -> AsyncIterator[Client]:
        async with Client(parameters, mode=mode) as client:
            yield client
    return connect


def http(server: Server, key: str | None = None, mode: str = "auto") -> Connect:
    @asynccontextmanager
    async def connect() -> AsyncIterator[Client]:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers, timeout=120) as session, \
                Client(streamable_http_client(f"{server.url}/mcp", http_client=session), mode=mode) as client:
            yield client
    return connect


@pytest.fixture(params=["stdio", "http"])
def connect(request: pytest.FixtureRequest, server: Server) -> Connect:
    return stdio() if request.param == "stdio" else http(server)


def run(scenario: Callable[[Client], Any], connect: Connect) -> Any:
    async def main() -> Any:
        async with connect() as client:
            return await scenario(client)
    return anyio.run(main)


def answer(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.content[0], TextContent)
    body: dict[str, Any] = json.loads(result.content[0].text)
    assert result.structured_content == body
    return body


def error(result: CallToolResult) -> str:
    assert result.is_error, result.content
    assert isinstance(result.content[0], TextContent)
    text = result.content[0].text
    assert "Traceback" not in text
    return text


def test_the_tools_are_listed_with_the_api_field_names_and_descriptions(connect: Connect) -> None:
    async def scenario(client: Client) -> None:
        assert client.protocol_version >= "2026"  # the SDK's own era, found by server/discover
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 40, tool.name
            assert tool.input_schema["type"] == "object"
        assert {"language", "code", "version", "stdin", "timeout", "files"} <= set(tools["execute"].input_schema["properties"])
        assert tools["execute"].input_schema["required"] == ["language"]
        assert {"session_id", "code", "stdin", "timeout"} <= set(tools["execute_in_session"].input_schema["properties"])
        assert {"language", "version", "idle_timeout"} <= set(tools["create_session"].input_schema["properties"])
        assert set(tools["write_file"].input_schema["required"]) == {"session_id", "path", "content"}
        assert tools["list_languages"].annotations and tools["list_languages"].annotations.read_only_hint
    run(scenario, connect)


def test_execute_and_list_languages(connect: Connect) -> None:
    async def scenario(client: Client) -> None:
        languages = answer(await client.call_tool("list_languages", {}))
        python = next(entry for entry in languages["languages"] if entry["name"] == "python")
        assert python["rootfs_built"] and languages["count"] == len(languages["languages"])
        ran = answer(await client.call_tool("execute", {"language": "python", "code": "print(input() * 2)",
                                                        "stdin": "ab\n", "version": "*"}))
        assert ran["stdout"] == "abab\n" and ran["exit_code"] == 0 and ran["exec_time"].endswith("ms")
        failed = answer(await client.call_tool("execute", {"language": "python", "code": "raise SystemExit(3)"}))
        assert failed["exit_code"] == 3  # the program's failure is a result, not a tool error
    run(scenario, connect)


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_client_of_the_handshake_era_is_served_too(transport: str, server: Server) -> None:
    """``mode="legacy"``: the ``initialize`` handshake of protocol versions before 2026-07-28."""
    async def scenario(client: Client) -> None:
        assert client.protocol_version < "2026"
        assert client.instructions and "list_languages" in client.instructions
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
        ran = answer(await client.call_tool("execute", {"language": "python", "code": "print('old')"}))
        assert ran["stdout"] == "old\n"
    run(scenario, stdio(mode="legacy") if transport == "stdio" else http(server, mode="legacy"))


def test_bad_input_is_an_error_result_with_the_apis_message(connect: Connect) -> None:
    async def scenario(client: Client) -> None:
        assert error(await client.call_tool("execute", {"language": "ruby2", "code": "1"})) == \
            "404: language not found: ruby2"
        assert "unknown field cod" in error(await client.call_tool("execute", {"language": "python", "cod": "1"}))
        assert error(await client.call_tool("execute", {"language": "python", "code": "1", "timeout": "soon"})) \
            .startswith("400: ")
        assert "session_id is required" in error(await client.call_tool("execute_in_session", {"code": "1"}))
        assert error(await client.call_tool("execute_in_session", {"session_id": "nope", "code": "1"})) == \
            "404: session not found: nope"
        assert "unknown tool 'rm'" in error(await client.call_tool("rm", {}))
        assert "not base64" in error(await client.call_tool(
            "write_file", {"session_id": "x", "path": "a", "content": "%%", "encoding": "base64"}))
    run(scenario, connect)


def test_a_session_keeps_names_and_files_shows_figures_and_closes(connect: Connect) -> None:
    async def scenario(client: Client) -> None:
        opened = answer(await client.call_tool("create_session", {"language": "python", "idle_timeout": 120}))
        session_id = opened["id"]
        try:
            answer(await client.call_tool("execute_in_session", {"session_id": session_id, "code": "x = 41"}))
            cell = answer(await client.call_tool("execute_in_session", {"session_id": session_id, "code": "x + 1"}))
            assert cell["results"] == [{"type": "text", "text": "42", "data": None}]

            figure = await client.call_tool("execute_in_session", {"session_id": session_id, "code": FIGURE_CELL})
            assert answer(figure)["stdout"] == "drew a figure\n"
            images = [block for block in figure.content if isinstance(block, ImageContent)]
            assert len(images) == 1 and images[0].mime_type == "image/png"
            assert base64.b64decode(images[0].data) == PNG

            written = answer(await client.call_tool("write_file", {"session_id": session_id, "path": "data/in.txt",
                                                                   "content": "héllo\n"}))
            assert written == {"path": "data/in.txt", "size": len("héllo\n".encode())}
            binary = bytes(range(256))
            answer(await client.call_tool("write_file", {"session_id": session_id, "path": "blob.bin",
                                                         "content": base64.b64encode(binary).decode(),
                                                         "encoding": "base64"}))
            cell = answer(await client.call_tool("execute_in_session", {
                "session_id": session_id, "code": "open('out.txt', 'w').write(open('data/in.txt').read().upper())"}))
            assert cell["exit_code"] == 0, cell
            assert answer(await client.call_tool("read_file", {"session_id": session_id, "path": "out.txt"})) == \
                {"path": "out.txt", "size": len("HÉLLO\n".encode()), "content": "HÉLLO\n", "encoding": "utf8"}
            read = answer(await client.call_tool("read_file", {"session_id": session_id, "path": "blob.bin"}))
            assert read["encoding"] == "base64" and base64.b64decode(read["content"]) == binary
            files = {entry["path"] for entry in answer(await client.call_tool(
                "list_files", {"session_id": session_id}))["files"]}
            assert {"data", "data/in.txt", "blob.bin", "out.txt"} <= files
            assert error(await client.call_tool("read_file", {"session_id": session_id, "path": "../etc/passwd"})) \
                .startswith("400: ")
        finally:
            closed = await client.call_tool("close_session", {"session_id": session_id})
        assert answer(closed) == {"closed": session_id}
        assert error(await client.call_tool("execute_in_session", {"session_id": session_id, "code": "1"})) == \
            f"404: session not found: {session_id}"
    run(scenario, connect)


def test_mcp_and_the_http_api_share_one_service(server: Server, client: httpx.Client) -> None:
    """A session opened over /mcp is the API's session: its names are there for a REST call, and
    ``infra.operator mcp --url`` sends its calls to that same server."""
    async def scenario(mcp: Client) -> str:
        session_id: str = answer(await mcp.call_tool("create_session", {"language": "python"}))["id"]
        answer(await mcp.call_tool("execute_in_session", {"session_id": session_id, "code": "shared = 'yes'"}))
        return session_id

    session_id = run(scenario, http(server))
    try:
        assert session_id in [entry["id"] for entry in client.get("/api/v1/sessions").json()["sessions"]]
        cell = client.post(f"/api/v1/sessions/{session_id}/execute", json={"code": "shared"}).json()
        assert cell["results"] == [{"type": "text", "text": "'yes'", "data": None}]

        async def through_url(mcp: Client) -> None:
            cell = answer(await mcp.call_tool("execute_in_session", {"session_id": session_id, "code": "shared * 2"}))
            assert cell["results"][0]["text"] == "'yesyes'"
        run(through_url, stdio("--url", server.url))
    finally:
        client.delete(f"/api/v1/sessions/{session_id}")


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, env={"INFRA_OPERATOR_API_KEYS": '["key-a", "key-b"]'})
    try:
        yield running
    finally:
        stop_server(running)


def test_mcp_obeys_api_keys_and_sessions_belong_to_the_key(keyed: Server) -> None:
    refused = httpx.post(f"{keyed.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                         headers={"accept": "application/json, text/event-stream"})
    assert refused.status_code == 401 and refused.json()["error"].startswith("a valid API key is required")
    wrong = httpx.post(f"{keyed.url}/mcp", json={}, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401

    async def scenario(mcp: Client) -> str:
        ran = answer(await mcp.call_tool("execute", {"language": "python", "code": "print('keyed')"}))
        assert ran["stdout"] == "keyed\n"
        session_id: str = answer(await mcp.call_tool("create_session", {"language": "python"}))["id"]
        return session_id

    session_id = run(scenario, http(keyed, "key-a"))
    with keyed.client(headers={"authorization": "Bearer key-a"}) as owner, \
            keyed.client(headers={"x-api-key": "key-b"}) as other:
        assert session_id in [entry["id"] for entry in owner.get("/api/v1/sessions").json()["sessions"]]
        assert other.get(f"/api/v1/sessions/{session_id}").status_code == 404

        async def as_other(mcp: Client) -> None:
            assert error(await mcp.call_tool("close_session", {"session_id": session_id})) == \
                f"404: session not found: {session_id}"
        run(as_other, http(keyed, "key-b"))
        assert owner.delete(f"/api/v1/sessions/{session_id}").status_code == 204


def test_stdio_with_url_says_when_the_server_cannot_be_reached(tmp_path: Path) -> None:
    async def scenario(mcp: Client) -> None:
        text = error(await mcp.call_tool("list_languages", {}))
        assert text.startswith("the API at http://127.0.0.1:9 could not be reached: ConnectError")
    run(scenario, stdio("--url", "http://127.0.0.1:9"))


@pytest.mark.parametrize(("args", "message"), [
    (["--api-key", "k"], "error: --api-key goes with --url: in process, API keys do not apply"),
    (["--url", "ftp://x"], "error: --url ftp://x: give the server's address, e.g. http://127.0.0.1:8080"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "infra_operator", "mcp", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr.strip()) == (2, "", message)


def test_mcp_is_post_only_and_a_malformed_message_is_a_json_rpc_error(server: Server) -> None:
    """Stateless: no stream left open for server-initiated messages (GET), no session to end (DELETE)."""
    for method in ("GET", "DELETE"):
        answered = httpx.request(method, f"{server.url}/mcp", headers={"accept": "text/event-stream"}, timeout=10)
        assert (answered.status_code, answered.json()) == (405, {"error": "Method Not Allowed"})
    garbled = httpx.post(f"{server.url}/mcp", content=b"{not json", timeout=10, headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream"})
    assert garbled.status_code == 400 and garbled.json()["error"]["code"] == -32700


@pytest.mark.parametrize("ending", ["stdin closed", "SIGTERM"])
def test_stdio_in_process_leaves_nothing_when_its_client_goes(ending: str, tmp_path: Path) -> None:
    """The sessions ``infra.operator mcp`` opens in process end with it: their sandboxes, cgroups
    and run folders go when the agent's host closes the pipe or terminates it, without a close_session."""
    def the_server() -> int:
        found = [pid for pid in processes_with("infra_operator mcp")
                 if Path(f"/proc/{pid}/cwd").resolve() == tmp_path.resolve()]
        assert len(found) == 1, found
        return found[0]

    async def scenario(client: Client) -> tuple[int, set[int]]:
        session_id = answer(await client.call_tool("create_session", {"language": "python"}))["id"]
        answer(await client.call_tool("execute_in_session", {"session_id": session_id, "code": "x = 1"}))
        pid = the_server()
        held = descendants(pid)
        assert held and cgroups_of(pid) and run_folders_of(pid)
        if ending == "SIGTERM":
            os.kill(pid, signal.SIGTERM)
            with anyio.fail_after(30):
                while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
                    await anyio.sleep(0.05)
        return pid, held

    pid, held = run(scenario, stdio(cwd=tmp_path))
    assert not Path(f"/proc/{pid}").exists()
    assert not {child for child in held if Path(f"/proc/{child}").exists()}, "the session outlived the command"
    assert not cgroups_of(pid) and not run_folders_of(pid)
