"""The JavaScript SDK in a real browser (Debian's Chromium, driven by Playwright), against the
session's real server: loaded as the ES module it is, from the server's own origin (as a page
served beside the API would load it), it runs code, streams output through a ReadableStream
read with ``getReader()`` and with ``for await``, keeps a session with bytes in and out, and raises the server's
errors as its own classes."""

from __future__ import annotations

from typing import Any

from conftest import Server, require_images

from .conftest import CLIENTS

USE_THE_SDK = """
async ({ source, base }) => {
  const sdk = await import(URL.createObjectURL(new Blob([source], { type: "text/javascript" })));
  const client = new sdk.Client({ baseUrl: base });
  const seen = { userAgent: navigator.userAgent };
  seen.stdout = (await client.execute("python", "print(6 * 7)")).stdout;
  const events = await client.stream("python", "import time\\nprint('a', flush=True)\\ntime.sleep(0.5)\\nprint('b', flush=True)");
  const reader = events.getReader();
  seen.events = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    seen.events.push(value.type === "result" ? ["result", value.result.stdout] : [value.type, value.text]);
  }
  const again = await client.stream("python", "print('c')");
  seen.iterated = [];
  for await (const event of again) seen.iterated.push([event.type, event.type === "result" ? null : event.text]);
  seen.iteratedResult = (await again.result).stdout;
  seen.session = await client.withSession("python", async (session) => {
    await session.execute("x = 41");
    await session.write("data.bin", new Uint8Array([1, 2, 250]));
    const bytes = Array.from(await session.read("data.bin"));
    return { next: (await session.execute("print(x + 1)")).stdout, bytes };
  });
  try {
    await client.execute("no-such-language", "x");
    seen.error = null;
  } catch (error) {
    seen.error = [error.constructor.name, error instanceof sdk.NotFound, error.status];
  }
  return seen;
}
"""


def test_the_js_sdk_runs_in_a_browser(browser: Any, server: Server) -> None:
    require_images("python")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.url}/health")  # the server's origin: the SDK's calls are same-origin
        seen = page.evaluate(USE_THE_SDK, {"source": (CLIENTS / "js" / "index.js").read_text(), "base": server.url})
    finally:
        context.close()
    assert "Chrome" in seen["userAgent"]
    assert seen["stdout"] == "42\n"
    *output, last = seen["events"]
    assert {kind for kind, _ in output} == {"stdout"} and "".join(text for _, text in output) == "a\nb\n", seen
    assert last == ["result", "a\nb\n"]
    # for await, as in the README; output may come in any number of chunks, as the contract allows
    *iterated, (last_kind, _) = seen["iterated"]
    assert last_kind == "result" and {kind for kind, _ in iterated} == {"stdout"}, seen
    assert "".join(text for _, text in iterated) == "c\n" and seen["iteratedResult"] == "c\n", seen
    assert seen["session"] == {"next": "42\n", "bytes": [1, 2, 250]}
    assert seen["error"] == ["NotFound", True, 404]
