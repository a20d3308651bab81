// The JavaScript SDK without a server: its SSE parser on a handcrafted stream cut at every byte,
// and its requests and errors through a fetch function that answers from the test.
import assert from "node:assert/strict";
import { test } from "node:test";

import * as sdk from "../index.js";

const { Client, SSEDecoder } = sdk;
const utf8 = (text) => new TextEncoder().encode(text);
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
};

// Every way a line may end, comments, a field without its space, data over several lines,
// fields to ignore, and characters of two, three and four bytes.
const HANDCRAFTED = utf8(
  ": a comment, then an event with CRLF line ends\r\n"
  + 'event: stdout\r\ndata: {"data": "héllo ✓"}\r\n\r\n'
  + 'event: stderr\rdata:{"data": "🎉\\n"}\r\r'
  + "retry: 100\nid: 7\nevent: note\ndata: first line\ndata: second line\n\n"
  + "data: an event without a name\n\n"
  + 'event: result\ndata: {"stdout": "héllo", "stderr": "", "exit_code": 0, "load_time": "1ms", "exec_time": "2ms"}\n\n',
);
const EXPECTED = [
  { event: "stdout", data: '{"data": "héllo ✓"}', id: null },
  { event: "stderr", data: '{"data": "🎉\\n"}', id: null },
  { event: "note", data: "first line\nsecond line", id: "7" },
  { event: "message", data: "an event without a name", id: "7" },
  { event: "result", data: '{"stdout": "héllo", "stderr": "", "exit_code": 0, "load_time": "1ms", "exec_time": "2ms"}', id: "7" },
];

function decode(chunks) {
  const decoder = new SSEDecoder();
  return [...chunks.flatMap((chunk) => decoder.feed(chunk)), ...decoder.close()];
}

test("SSE: the whole stream", () => {
  assert.deepEqual(decode([HANDCRAFTED]), EXPECTED);
});

test("SSE: cut in two at every byte (inside lines, between \\r and \\n, inside UTF-8 characters)", () => {
  for (let cut = 0; cut <= HANDCRAFTED.length; cut++) {
    assert.deepEqual(decode([HANDCRAFTED.subarray(0, cut), HANDCRAFTED.subarray(cut)]), EXPECTED, `cut at ${cut}`);
  }
});

test("SSE: one byte at a time", () => {
  assert.deepEqual(decode([...HANDCRAFTED].map((byte) => Uint8Array.of(byte))), EXPECTED);
});

test("SSE: a \\r at a chunk's end and its \\n in the next are one line end", () => {
  const decoder = new SSEDecoder();
  assert.deepEqual(decoder.feed(utf8("data: a\r")), []);
  assert.deepEqual(decoder.feed(utf8("\ndata: b\r\n\r\n")), [{ event: "message", data: "a\nb", id: null }]);
});

test("SSE: an event without its blank line at the end is dropped", () => {
  assert.deepEqual(decode([utf8('event: stdout\ndata: {"data": "x"}\n\nevent: result\ndata: {}')]),
    [{ event: "stdout", data: '{"data": "x"}', id: null }]);
});

const RESULT = { stdout: "1024\n", stderr: "", exit_code: 0, load_time: "1ms", exec_time: "2ms" };

function recorder(answer = () => Response.json(RESULT)) {
  const seen = [];
  const fetch = async (url, init) => {
    seen.push({ url, ...init });
    return answer(url, init);
  };
  return { seen, fetch };
}

test("execute posts the seed's fields and answers the server's JSON", async () => {
  const { seen, fetch } = recorder();
  const client = new Client({ baseUrl: "http://sdk.test/", fetch });
  assert.equal((await client.execute("nodejs", "console.log(2 ** 10)", 30)).stdout, "1024\n");
  assert.equal(seen[0].url, "http://sdk.test/api/v1/execute");
  assert.equal(seen[0].method, "POST");
  assert.deepEqual(JSON.parse(seen[0].body), { language: "nodejs", code: "console.log(2 ** 10)", timeout: 30 });
  assert.equal(seen[0].headers["content-type"], "application/json");
});

test("the API key goes as Bearer", async () => {
  const { seen, fetch } = recorder();
  await new Client({ apiKey: "k-123", fetch }).health();
  await new Client({ fetch }).health();
  assert.equal(seen[0].headers.authorization, "Bearer k-123");
  assert.equal(seen[1].headers.authorization, undefined);
  assert.equal(seen[0].url, "http://127.0.0.1:8080/health");
});

test("files go as text or base64, in order", async () => {
  const { seen, fetch } = recorder();
  await new Client({ fetch }).execute("python", undefined, {
    files: { "main.py": "print(1)", "raw.bin": Uint8Array.of(1, 2, 255), "buf.bin": Uint8Array.of(0).buffer },
  });
  assert.deepEqual(JSON.parse(seen[0].body).files, [
    { path: "main.py", content: "print(1)" },
    { path: "raw.bin", content: "AQL/", encoding: "base64" },
    { path: "buf.bin", content: "AA==", encoding: "base64" },
  ]);
});

const STATUSES = [[400, "BadRequest"], [401, "Unauthorized"], [404, "NotFound"], [409, "Conflict"],
  [413, "PayloadTooLarge"], [429, "RateLimited"], [500, "ServerError"], [502, "ServerError"],
  [503, "ServiceUnavailable"], [418, "APIError"]];

test("errors carry status, the server's message, the request id and Retry-After", async () => {
  for (const [status, kind] of STATUSES) {
    const { fetch } = recorder(() => Response.json({ error: `went wrong (${status})` },
      { status, headers: { "retry-after": "2", "x-request-id": "req-1" } }));
    await assert.rejects(new Client({ fetch }).execute("python", "x"), (error) => {
      assert.equal(error.constructor.name, kind);
      assert.ok(error instanceof sdk.APIError && error instanceof sdk.InfraOperatorError);
      assert.equal(error.status, status);
      assert.equal(error.message, `went wrong (${status})`);
      assert.equal(error.requestId, "req-1");
      assert.equal(error.retryAfter, 2);
      return true;
    });
  }
});

test("an error that is not JSON keeps its text", async () => {
  const { fetch } = recorder(() => new Response("bad gateway from a proxy", { status: 502 }));
  await assert.rejects(new Client({ fetch }).health(), { name: "ServerError", message: "bad gateway from a proxy" });
});

function sseBody(bytes, size) {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.subarray(at, at + size));
      at += size;
    },
  });
}

function sseAnswer(text, size = 3) {
  return (url, init) => {
    assert.equal(init.headers.accept, "text/event-stream");
    return new Response(sseBody(utf8(text), size), { headers: { "content-type": "text/event-stream" } });
  };
}

test("stream: output then the result, from chunks cut anywhere", async () => {
  const text = 'event: stdout\ndata: {"data": "hé"}\n\nevent: stderr\r\ndata: {"data": "oops"}\r\n\r\n'
    + `event: result\ndata: ${JSON.stringify(RESULT)}\n\n`;
  for (const size of [1, 2, 3, 7, 1000]) {
    const events = await new Client({ fetch: recorder(sseAnswer(text, size)).fetch }).stream("python", "x");
    const seen = [];
    for await (const event of events) seen.push(event);
    assert.deepEqual(seen, [{ type: "stdout", text: "hé" }, { type: "stderr", text: "oops" }, { type: "result", result: RESULT }]);
    assert.deepEqual(await events.result, RESULT);
  }
});

test("stream: the events through a reader, as a browser reads them", async () => {
  const events = await new Client({ fetch: recorder(sseAnswer(`event: result\ndata: ${JSON.stringify(RESULT)}\n\n`)).fetch })
    .stream("python", "x");
  const reader = events.getReader();
  assert.deepEqual(await reader.read(), { done: false, value: { type: "result", result: RESULT } });
  assert.deepEqual(await reader.read(), { done: true, value: undefined });
});

test("stream: no result, or an error event, is a StreamError", async () => {
  const cut = await new Client({ fetch: recorder(sseAnswer('event: stdout\ndata: {"data": "x"}\n\n')).fetch }).stream("p", "x");
  await assert.rejects(async () => { for await (const event of cut) void event; }, { name: "StreamError", message: /before its result/ });
  await assert.rejects(cut.result, { name: "StreamError" });
  const failed = await new Client({ fetch: recorder(sseAnswer('event: error\ndata: {"error": "sandbox died"}\n\n')).fetch })
    .stream("p", "x");
  await assert.rejects(async () => { for await (const event of failed) void event; }, { name: "StreamError", message: "sandbox died" });
});

test("stream: an error answer before any event is the API error", async () => {
  const { fetch } = recorder(() => Response.json({ error: "language not found: x" }, { status: 404 }));
  await assert.rejects(new Client({ fetch }).stream("x", "y"), { name: "NotFound", message: "language not found: x" });
});

test("wait polls until finished, and gives up at its timeout", async () => {
  const states = ["queued", "running", "done"];
  const polls = recorder(() => Response.json({ id: "s1", status: states.shift() }));
  assert.equal((await new Client({ fetch: polls.fetch }).wait("s1")).status, "done");
  assert.equal(polls.seen.length, 3);
  const stuck = recorder(() => Response.json({ id: "s2", status: "queued" }));
  await assert.rejects(new Client({ fetch: stuck.fetch }).wait("s2", { timeout: 0.2 }),
    (error) => error instanceof sdk.WaitTimeout && error.submissionId === "s2");
});

test("a fetch that fails is a TransportError; one past the timeout a Timeout", async () => {
  const refused = async () => { throw new TypeError("fetch failed", { cause: new Error("connect ECONNREFUSED") }); };
  await assert.rejects(new Client({ fetch: refused }).health(),
    (error) => error instanceof sdk.TransportError && !(error instanceof sdk.Timeout) && /ECONNREFUSED/.test(error.message));
  const never = (url, init) => new Promise((resolve, reject) => {
    init.signal.addEventListener("abort", () => reject(init.signal.reason));
  });
  await assert.rejects(new Client({ fetch: never, timeoutMs: 50 }).health(), (error) => error instanceof sdk.Timeout);
});

test("a call that runs a program waits for the program's own timeout", async () => {
  let aborted = false;
  const slow = (url, init) => new Promise((resolve, reject) => {
    init.signal.addEventListener("abort", () => { aborted = true; reject(init.signal.reason); });
    // answers after the client's own timeout, within the program's
    setTimeout(() => resolve(Response.json(RESULT)), 120);
  });
  const client = new Client({ fetch: slow, timeoutMs: 50 });
  assert.deepEqual(await client.execute("python", "x", 1), RESULT);
  assert.equal(aborted, false);
});

test("session file paths: each part encoded; . and .. parts refused before anything is sent", async () => {
  const { seen, fetch } = recorder((url, init) => (init.method === "POST"
    ? Response.json({ id: "a b", language: "python", version: "3", backend: "jail", created_at: "", expires_at: "" }, { status: 201 })
    : Response.json({ path: "x", size: 1 }, { status: 201 })));
  const client = new Client({ baseUrl: "http://sdk.test", fetch });
  await client.withSession("python", async (session) => {
    await session.write("dir one/ü?#/...x.txt", Uint8Array.of(1));
    for (const path of ["../x", "a/./b", "a/.."]) {
      await assert.rejects(session.write(path, "x"), (error) => error instanceof sdk.InfraOperatorError && /not allowed/.test(error.message));
      await assert.rejects(session.read(path), sdk.InfraOperatorError);
      await assert.rejects(session.deleteFile(path), sdk.InfraOperatorError);
    }
  });
  assert.equal(seen[1].url, "http://sdk.test/api/v1/sessions/a%20b/files/dir%20one/%C3%BC%3F%23/...x.txt");
  assert.equal(seen[1].headers["content-type"], "application/octet-stream");
  assert.deepEqual(seen.map((request) => request.method), ["POST", "PUT", "DELETE"]);
});

test("session pause: POSTs to its pause path and keeps the answer; a 409 is a Conflict", async () => {
  const info = { id: "s1", language: "python", version: "3", backend: "qemu", created_at: "", expires_at: "" };
  const { seen, fetch } = recorder((url) => (url.endsWith("/jailed/pause")
    ? Response.json({ error: "the jail backend cannot pause a session" }, { status: 409 })
    : url.endsWith("/pause") ? Response.json({ ...info, state: "paused" })
    : Response.json({ ...info, state: "idle" }, { status: 201 })));
  const client = new Client({ baseUrl: "http://sdk.test", fetch });
  await client.withSession("python", async (session) => {
    assert.equal((await session.pause()).state, "paused");
    assert.equal(session.info.state, "paused");
  });
  assert.deepEqual(seen.slice(0, 2).map((request) => [request.method, request.url]),
    [["POST", "http://sdk.test/api/v1/sessions"], ["POST", "http://sdk.test/api/v1/sessions/s1/pause"]]);
  const jailed = await new sdk.Session(client, { ...info, id: "jailed" }).pause().catch((error) => error);
  assert.ok(jailed instanceof sdk.Conflict, String(jailed));
});

test("stream: a server that answers JSON instead of events is a StreamError saying so", async () => {
  const { fetch } = recorder(() => Response.json(RESULT));
  await assert.rejects(new Client({ fetch }).stream("python", "x"), { name: "StreamError", message: /does not stream/ });
});

test("submit: wait asks the server to hold the answer; without it, the id comes back queued", async () => {
  const { seen, fetch } = recorder((url) => Response.json({ id: "s", status: url.includes("wait=true") ? "done" : "queued" },
    { status: url.includes("wait=true") ? 200 : 202 }));
  const client = new Client({ baseUrl: "http://sdk.test", fetch });
  assert.equal((await client.submit("python", "x", { wait: true, tests: [{ stdin: "", expected_output: "" }] })).status, "done");
  assert.equal((await client.submit("python", "x")).status, "queued");
  assert.equal(seen[0].url, "http://sdk.test/api/v1/submissions?wait=true");
  assert.deepEqual(JSON.parse(seen[0].body), { language: "python", code: "x", tests: [{ stdin: "", expected_output: "" }] });
  assert.equal(seen[1].url, "http://sdk.test/api/v1/submissions");
});

test("stream: where streams are not async iterable (some browsers), iteration goes through a reader and hangs up when left", async () => {
  const saved = Object.getOwnPropertyDescriptor(ReadableStream.prototype, Symbol.asyncIterator);
  delete ReadableStream.prototype[Symbol.asyncIterator];
  let cancelled = false;
  const text = `event: stdout\ndata: {"data": "a"}\n\nevent: result\ndata: ${JSON.stringify(RESULT)}\n\n`;
  const fetch = async () => new Response(new ReadableStream({
    start(controller) { controller.enqueue(utf8(text.slice(0, text.indexOf("\n\n") + 2))); }, // the first event, then nothing
    cancel() { cancelled = true; },
  }), { headers: { "content-type": "text/event-stream" } });
  try {
    const whole = await new Client({ fetch: recorder(sseAnswer(text)).fetch }).stream("python", "x");
    assert.ok(Object.hasOwn(whole, Symbol.asyncIterator));
    const seen = [];
    for await (const event of whole) seen.push(event.type);
    assert.deepEqual(seen, ["stdout", "result"]);
    const left = await new Client({ fetch }).stream("python", "x");
    for await (const event of left) {
      assert.equal(event.type, "stdout");
      break;
    }
    assert.equal(cancelled, true);
  } finally {
    Object.defineProperty(ReadableStream.prototype, Symbol.asyncIterator, saved);
  }
});

test("the module exports exactly the values index.d.ts declares", async () => {
  const { readFile } = await import("node:fs/promises");
  const declarations = await readFile(new URL("../index.d.ts", import.meta.url), "utf8");
  const declared = [...declarations.matchAll(/^export declare (?:class|const|function) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual(Object.keys(sdk).sort(), declared.sort());
});
