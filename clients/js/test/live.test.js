// The JavaScript SDK against a real server: INFRA_OPERATOR_URL names it, and
// INFRA_OPERATOR_KEYED_URL / INFRA_OPERATOR_KEY one with API keys (tests/clients/test_sdk_js.py
// starts both and runs this file).
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";

import * as sdk from "../index.js";

const { Client } = sdk;
const BASE_URL = process.env.INFRA_OPERATOR_URL;
const KEYED_URL = process.env.INFRA_OPERATOR_KEYED_URL;
const KEY = process.env.INFRA_OPERATOR_KEY;
const skip = BASE_URL ? false : "INFRA_OPERATOR_URL is not set: tests/clients/test_sdk_js.py runs this file against a live server";
const live = (name, body) => test(name, { skip }, body);
const client = new Client({ baseUrl: BASE_URL });

live("the seed's shape keeps working", async () => {
  assert.equal((await client.execute("nodejs", "console.log(2 ** 10)"))["stdout"], "1024\n");
  assert.equal((await client.execute("python", "print(2 ** 10)", 30)).stdout, "1024\n");
});

live("a failing program is a result", async () => {
  const result = await client.execute("nodejs", "console.log('out'); process.exit(3)", { stdin: "", args: ["a"] });
  assert.equal(result.exit_code, 3);
  assert.equal(result.stdout, "out\n");
  assert.equal(result.timed_out, false);
  assert.match(result.load_time, /^\d+ms$/);
});

live("server errors carry status and message", async () => {
  await assert.rejects(client.execute("ruby2", "puts 1"),
    (error) => error instanceof sdk.NotFound && error.status === 404 && /language not found: ruby2/.test(error.message));
  await assert.rejects(client.execute("python", "print(1)", 100000),
    (error) => error instanceof sdk.BadRequest && error.status === 400 && /timeout/.test(error.message));
});

live("languages", async () => {
  const listed = await client.languages();
  assert.equal(listed.count, listed.languages.length);
  assert.ok(listed.languages.some((entry) => entry.name === "nodejs"));
  assert.equal((await client.language("nodejs")).name, "nodejs");
});

live("files as text and bytes", async () => {
  const result = await client.execute("python", "print(open('a.txt').read(), list(open('b.bin','rb').read()))", {
    files: { "a.txt": "héllo", "b.bin": Uint8Array.of(0, 255) } });
  assert.equal(result.stdout, "héllo [0, 255]\n", result.stderr);
});

test("API keys as Bearer", { skip: skip || (KEYED_URL ? false : "INFRA_OPERATOR_KEYED_URL is not set") }, async () => {
  const anonymous = new Client({ baseUrl: KEYED_URL });
  assert.ok(["healthy", "degraded"].includes((await anonymous.health()).status));
  await assert.rejects(anonymous.execute("python", "print(1)"),
    (error) => error instanceof sdk.Unauthorized && error.status === 401 && /API key/.test(error.message));
  await assert.rejects(new Client({ baseUrl: KEYED_URL, apiKey: "wrong" }).languages(), sdk.Unauthorized);
  assert.equal((await new Client({ baseUrl: KEYED_URL, apiKey: KEY }).execute("python", "print(7)")).stdout, "7\n");
});

live("a closed port is a TransportError; a silent server past the timeout a Timeout", async () => {
  const silent = createServer(() => {});
  const sockets = [];
  silent.on("connection", (socket) => sockets.push(socket));
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const { port } = silent.address();
  try {
    await assert.rejects(new Client({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 300 }).health(),
      (error) => error instanceof sdk.Timeout);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
  await assert.rejects(new Client({ baseUrl: `http://127.0.0.1:${port}` }).health(),
    (error) => error instanceof sdk.TransportError && !(error instanceof sdk.Timeout));
});

// Streaming and sessions (api-contract.md, second release).

live("a one-shot execute as a stream", async () => {
  const events = await client.stream("nodejs", "console.log('to out'); console.error('to err'); console.log('more')");
  const seen = [];
  for await (const event of events) seen.push(event);
  assert.equal(seen.at(-1).type, "result");
  assert.equal(seen.filter((event) => event.type === "result").length, 1);
  assert.equal(seen.filter((e) => e.type === "stdout").map((e) => e.text).join(""), "to out\nmore\n");
  assert.equal(seen.filter((e) => e.type === "stderr").map((e) => e.text).join(""), "to err\n");
  const result = await events.result;
  assert.equal(result.stdout, "to out\nmore\n");
  assert.equal(result.exit_code, 0);
});

live("an error before any output is the API error", async () => {
  await assert.rejects(client.stream("ruby2", "x"), sdk.NotFound);
});

const CELL_TIMEOUT = 20;

live("output reaches the client while the program runs", async () => {
  // The cell prints, then loops until it is killed at its timeout: output seen before that timeout
  // can only have come while it ran. Leaving the loop hangs up, which interrupts the cell.
  await client.withSession("python", async (session) => {
    const started = Date.now();
    const events = await session.stream("import time\nprint('waiting', flush=True)\nwhile True: time.sleep(0.05)",
      { timeout: CELL_TIMEOUT });
    let first;
    for await (const event of events) {
      first = event;
      break;
    }
    const elapsed = (Date.now() - started) / 1000;
    assert.equal(first.type, "stdout");
    assert.equal(first.text.trimEnd(), "waiting");
    assert.ok(elapsed < CELL_TIMEOUT, `first output after ${elapsed}s`);
    await assert.rejects(events.result, sdk.StreamError);
  });
});

live("a session keeps names and files, and withSession deletes it", async () => {
  let id;
  await client.withSession("python", async (session) => {
    id = session.id;
    assert.equal(session.info.language, "python");
    assert.ok((await client.sessions()).some((entry) => entry.id === id));
    await session.execute("x = 41");
    const cell = await session.execute("x + 1");
    assert.equal(cell.results[0].text, "42");
    assert.deepEqual(await session.write("notes/a.txt", "héllo"), { path: "notes/a.txt", size: 6 });
    assert.equal((await session.write("raw.bin", Uint8Array.of(1, 2))).size, 2);
    assert.equal((await session.write("blob.bin", new Blob([Uint8Array.of(0, 255)]))).size, 2);
    assert.deepEqual(await session.read("notes/a.txt"), new TextEncoder().encode("héllo"));
    assert.equal((await session.execute("print(list(open('blob.bin','rb').read()))")).stdout, "[0, 255]\n");
    const listed = Object.fromEntries((await session.files()).map((entry) => [entry.path, entry.type]));
    assert.equal(listed.notes, "dir");
    assert.equal(listed["notes/a.txt"], "file");
    await session.deleteFile("raw.bin");
    await assert.rejects(session.read("raw.bin"), sdk.NotFound);
    // refused before it is sent: a URL would resolve the ".." (see the unit test)
    await assert.rejects(session.write("../escape.txt", "x"), (error) => error instanceof sdk.InfraOperatorError);
    await assert.rejects(session.write("/etc/passwd", "x"), sdk.BadRequest);
    assert.equal((await client.attach(id)).id, id);
    assert.equal((await session.refresh()).id, id);
    await assert.rejects(session.pause(), sdk.Conflict);  // this server's backend is the jail: it cannot pause
    const streamed = await session.stream("print(x * 2)");
    for await (const event of streamed) void event;
    assert.equal((await streamed.result).stdout, "82\n");
  });
  await assert.rejects(client.attach(id), sdk.NotFound);
});

// Submissions (api-contract.md, second release).

live("submit and wait", async () => {
  const queued = await client.submit("python", "print(6 * 7)");
  assert.ok(["queued", "running", "done"].includes(queued.status));
  const done = await client.wait(queued.id, { timeout: 120 });
  assert.equal(done.status, "done");
  assert.equal(done.result.stdout, "42\n");
  assert.equal((await client.submission(queued.id)).status, "done");
});

live("submit with tests waits for the verdicts", async () => {
  const judged = await client.submit("nodejs",
    "const n = Number(require('fs').readFileSync(0, 'utf8')); console.log(n * 2)",
    { wait: true, tests: [{ stdin: "2", expected_output: "4" }, { stdin: "3", expected_output: "7" }] });
  assert.equal(judged.status, "done");
  assert.equal(judged.result.verdict, "wrong_answer");
  assert.deepEqual(judged.result.tests.map((t) => t.verdict), ["accepted", "wrong_answer"]);
});

live("a batch keeps its order; an unknown submission is not found", async () => {
  const ids = await client.submitBatch([0, 1, 2, 3, 4].map((n) => ({ language: "python", code: `print(${n})` })));
  const outputs = [];
  for (const id of ids) outputs.push((await client.wait(id, { timeout: 120 })).result.stdout);
  assert.deepEqual(outputs, ["0\n", "1\n", "2\n", "3\n", "4\n"]);
  await assert.rejects(client.submission("no-such-submission"), sdk.NotFound);
});
