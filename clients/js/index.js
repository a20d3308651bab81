// A client of infra.operator's HTTP API, on nothing but `fetch`: Node 18+ and browsers.
// Types: index.d.ts. The same surface as the Python SDK (clients/python).

export const VERSION = "1.0.0";
export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";
const DEFAULT_TIMEOUT_MS = 60_000;
// A call that runs a program waits at least its own timeout (seconds) plus this margin.
const TIMEOUT_MARGIN_SECONDS = 30;
// How long past a submission's own time limits `?wait=true` may hold the answer (the server's grace).
const WAIT_GRACE_SECONDS = 60;
const EVENT_STREAM = "text/event-stream";
const API = "/api/v1";
const FINISHED = new Set(["done", "failed"]);

// Errors: one hierarchy.
//   InfraOperatorError
//   ├── TransportError            no answer: connection refused or reset, DNS, TLS, CORS
//   │   └── Timeout               no answer within the client's timeout
//   ├── WaitTimeout               a submission did not finish within wait()'s timeout
//   ├── StreamError               a stream ended without its result, or carried an error event
//   └── APIError                  an error status: .status, .message (the server's), .requestId
//       ├── BadRequest 400, Unauthorized 401, NotFound 404, Conflict 409, PayloadTooLarge 413
//       ├── RateLimited 429 (.retryAfter)
//       └── ServerError 5xx
//           └── ServiceUnavailable 503 (.retryAfter)

export class InfraOperatorError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}
export class TransportError extends InfraOperatorError {}
export class Timeout extends TransportError {}
export class StreamError extends InfraOperatorError {}
export class WaitTimeout extends InfraOperatorError {
  constructor(message, submissionId) {
    super(message);
    this.submissionId = submissionId;
  }
}
export class APIError extends InfraOperatorError {
  constructor(message, status, headers) {
    super(message);
    this.status = status;
    this.requestId = headers?.get("x-request-id") ?? null;
    const retryAfter = Number(headers?.get("retry-after") ?? NaN);
    this.retryAfter = Number.isFinite(retryAfter) ? retryAfter : null;
  }
}
export class BadRequest extends APIError {}
export class Unauthorized extends APIError {}
export class NotFound extends APIError {}
export class Conflict extends APIError {}
export class PayloadTooLarge extends APIError {}
export class RateLimited extends APIError {}
export class ServerError extends APIError {}
export class ServiceUnavailable extends ServerError {}

const BY_STATUS = { 400: BadRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
  429: RateLimited, 503: ServiceUnavailable };

async function errorFor(response) {
  const text = await response.text();
  let message = text;
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    // not JSON: the text as it is (a proxy's page, say)
  }
  const Kind = BY_STATUS[response.status] ?? (response.status >= 500 ? ServerError : APIError);
  return new Kind(message || response.statusText || `status ${response.status}`, response.status, response.headers);
}

// Server-Sent Events, parsed incrementally by the WHATWG rules: chunks may end anywhere, inside a
// line, between "\r" and "\n" or inside a UTF-8 character; an event is dispatched at its blank line.
export class SSEDecoder {
  #text = new TextDecoder("utf-8");
  #pending = "";
  #event = "";
  #data = [];
  #id = null;

  /** The events these bytes complete. */
  feed(chunk) {
    this.#pending += this.#text.decode(chunk, { stream: true });
    return this.#lines(false);
  }

  /** At the end: a last line without its line end counts; an event without its blank line is dropped. */
  close() {
    this.#pending += this.#text.decode();
    return this.#lines(true);
  }

  #lines(final) {
    const events = [];
    const text = this.#pending;
    let start = 0;
    for (;;) {
      const cr = text.indexOf("\r", start);
      const lf = text.indexOf("\n", start);
      if (cr === -1 && lf === -1) break;
      let end, after;
      if (cr === -1 || (lf !== -1 && lf < cr)) {
        end = lf;
        after = lf + 1;
      } else if (cr + 1 === text.length && !final) {
        break; // a "\r" at the end of what came so far: its "\n" may be in the next chunk
      } else {
        end = cr;
        after = text[cr + 1] === "\n" ? cr + 2 : cr + 1;
      }
      this.#line(text.slice(start, end), events);
      start = after;
    }
    this.#pending = text.slice(start);
    if (final && this.#pending) {
      this.#line(this.#pending, events);
      this.#pending = "";
    }
    return events;
  }

  #line(line, events) {
    if (line === "") {
      if (this.#data.length) events.push({ event: this.#event || "message", data: this.#data.join("\n"), id: this.#id });
      this.#event = "";
      this.#data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.#event = value;
    else if (name === "data") this.#data.push(value);
    else if (name === "id" && !value.includes("\0")) this.#id = value;
  }
}

/** The client's events for the server's: output, the result; an `error` event throws StreamError. */
export function toEvents(serverEvents) {
  const found = [];
  for (const { event, data } of serverEvents) {
    if (event === "stdout" || event === "stderr") found.push({ type: event, text: JSON.parse(data).data });
    else if (event === "result") found.push({ type: "result", result: JSON.parse(data) });
    else if (event === "error") throw new StreamError(JSON.parse(data).error ?? data);
  }
  return found;
}

function asyncIterable(stream) {
  if (!(Symbol.asyncIterator in stream)) {
    // Browsers without async iteration of streams: the same through a reader.
    stream[Symbol.asyncIterator] = async function* iterate() {
      const reader = stream.getReader();
      let finished = false;
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            finished = true;
            return;
          }
          yield value;
        }
      } catch (error) {
        finished = true;
        throw error;
      } finally {
        if (!finished) await reader.cancel(); // left early: hang up, as native iteration does
        reader.releaseLock();
      }
    };
  }
  return stream;
}

// A stream of events from a response's body; `.result` is a promise of the result event's answer.
function eventStream(response, settle) {
  const reader = response.body.getReader();
  const decoder = new SSEDecoder();
  let resolveResult, rejectResult;
  const result = new Promise((resolve, reject) => { resolveResult = resolve; rejectResult = reject; });
  result.catch(() => {}); // a rejection nobody awaits must not end the process
  let seen = null;
  const stream = new ReadableStream({
    async pull(controller) {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          let events = done ? toEvents(decoder.close()) : toEvents(decoder.feed(value));
          for (const event of events) {
            if (event.type === "result") {
              seen = event.result;
              resolveResult(seen);
            }
            controller.enqueue(event);
          }
          if (done) {
            settle();
            if (seen === null) throw new StreamError("the stream ended before its result event");
            controller.close();
            return;
          }
          if (events.length) return;
        }
      } catch (error) {
        settle();
        const failure = error instanceof InfraOperatorError ? error : new TransportError(String(error), { cause: error });
        rejectResult(failure);
        controller.error(failure);
        await reader.cancel().catch(() => {});
      }
    },
    async cancel(reason) {
      settle();
      rejectResult(new StreamError("the stream was cancelled"));
      await reader.cancel(reason);
    },
  });
  stream.result = result;
  return asyncIterable(stream);
}

function encodeFile(path, content) {
  if (typeof content === "string") return { path, content };
  const bytes = content instanceof Uint8Array ? content : new Uint8Array(content);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return { path, content: btoa(binary), encoding: "base64" };
}

// The request's JSON: fields left out (undefined, null) are the server's defaults.
function body(fields) {
  const out = {};
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null || name === "signal" || name === "wait") continue;
    out[name] = name === "files" ? Object.entries(value).map(([path, content]) => encodeFile(path, content)) : value;
  }
  return out;
}

function runOptions(options) {
  return typeof options === "number" ? { timeout: options } : { ...(options ?? {}) };
}

function segment(value) {
  return encodeURIComponent(value);
}

// A session file's path, each part encoded. A "." or ".." part cannot travel: URLs (WHATWG) resolve it,
// "%2E" included, and the request would name another file or another endpoint. It is refused here.
function filePath(path) {
  const parts = path.split("/");
  if (parts.some((part) => part === "." || part === "..")) {
    throw new InfraOperatorError(`file path ${JSON.stringify(path)}: "." and ".." parts are not allowed`);
  }
  return parts.map(encodeURIComponent).join("/");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Client {
  #baseUrl;
  #headers;
  #timeoutMs;
  #fetch;

  /**
   * @param {{baseUrl?: string, apiKey?: string, timeoutMs?: number, headers?: Record<string, string>, fetch?: typeof fetch}} [options]
   */
  constructor({ baseUrl = DEFAULT_BASE_URL, apiKey, timeoutMs = DEFAULT_TIMEOUT_MS, headers = {}, fetch: fetcher } = {}) {
    this.#baseUrl = baseUrl.replace(/\/+$/, "");
    this.#headers = { ...headers };
    if (apiKey) this.#headers.authorization = `Bearer ${apiKey}`;
    this.#timeoutMs = timeoutMs;
    this.#fetch = fetcher ?? globalThis.fetch.bind(globalThis);
  }

  // One request. `runsFor`: the program's own time limit (seconds), when the call runs one.
  // `stream`: answer the response as it is, once its headers are in (the timeout then stops).
  async _request(method, path, { json, content, headers = {}, runsFor, signal, stream = false, query } = {}) {
    const timeoutMs = runsFor === undefined || this.#timeoutMs === null
      ? this.#timeoutMs : Math.max(this.#timeoutMs, (runsFor + TIMEOUT_MARGIN_SECONDS) * 1000);
    const controller = new AbortController();
    let timedOut = false;
    const timer = timeoutMs === null ? null : setTimeout(() => { timedOut = true; controller.abort(); }, timeoutMs);
    const onAbort = () => controller.abort(signal.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    const init = { method, headers: { ...this.#headers, ...headers }, signal: controller.signal };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["content-type"] = "application/json";
    } else if (content !== undefined) {
      init.body = content;
      init.headers["content-type"] = "application/octet-stream";
    }
    const url = `${this.#baseUrl}${path}${query ? `?${new URLSearchParams(query)}` : ""}`;
    try {
      const response = await this.#fetch(url, init);
      if (!response.ok) throw await errorFor(response);
      if (stream) {
        const type = response.headers.get("content-type") || "no content type";
        if (!type.startsWith(EVENT_STREAM)) {
          await response.body?.cancel();
          throw new StreamError(`the server answered ${type}, not ${EVENT_STREAM}: it does not stream`);
        }
        clearTimeout(timer);
        return { response, settle };
      }
      const type = response.headers.get("content-type") ?? "";
      if (response.status === 204) return undefined;
      if (type.includes("application/json")) return await response.json();
      return new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      settle();
      if (error instanceof InfraOperatorError) throw error;
      if (timedOut) throw new Timeout(`no answer within ${timeoutMs} ms: ${method} ${path}`, { cause: error });
      if (signal?.aborted) throw error;
      throw new TransportError(`${method} ${url}: ${error?.cause?.message ?? error}`, { cause: error });
    } finally {
      if (!stream) settle();
    }
  }

  async _stream(path, json, runsFor, signal) {
    const { response, settle } = await this._request("POST", path, {
      json, runsFor, signal, stream: true, headers: { accept: EVENT_STREAM } });
    return eventStream(response, settle);
  }

  health() {
    return this._request("GET", "/health");
  }

  languages() {
    return this._request("GET", `${API}/languages`);
  }

  language(name) {
    return this._request("GET", `${API}/languages/${segment(name)}`);
  }

  /** Runs code in a fresh sandbox; `options` is the program's timeout in seconds, or the request's other fields. */
  execute(language, code, options) {
    const fields = runOptions(options);
    return this._request("POST", `${API}/execute`, {
      json: body({ language, code, ...fields }), runsFor: fields.timeout ?? 30, signal: fields.signal });
  }

  /** As execute, as a ReadableStream of events: {type: "stdout"|"stderr", text}, then {type: "result", result}. */
  stream(language, code, options) {
    const fields = runOptions(options);
    return this._stream(`${API}/execute`, body({ language, code, ...fields }), fields.timeout ?? 30, fields.signal);
  }

  async session(language, options = {}) {
    return new Session(this, await this._request("POST", `${API}/sessions`, { json: body({ language, ...options }) }));
  }

  /** Opens a session, hands it to `work`, and deletes it when `work` is done, whatever happened. */
  async withSession(language, work, options = {}) {
    const session = await this.session(language, options);
    try {
      return await work(session);
    } finally {
      await session.close();
    }
  }

  async attach(sessionId) {
    return new Session(this, await this._request("GET", `${API}/sessions/${segment(sessionId)}`));
  }

  async sessions() {
    return (await this._request("GET", `${API}/sessions`)).sessions;
  }

  /** Queues a submission; with `wait: true`, answers once it has finished. */
  async submit(language, code, options = {}) {
    const fields = runOptions(options);
    const runs = 1 + (fields.tests?.length ?? 0);
    const found = await this._request("POST", `${API}/submissions`, {
      json: body({ language, code, ...fields }), query: fields.wait ? { wait: "true" } : undefined,
      runsFor: fields.wait ? runs * (fields.timeout ?? 30) + WAIT_GRACE_SECONDS : undefined });
    return fields.wait && !FINISHED.has(found.status) ? this.wait(found.id) : found;
  }

  async submitBatch(submissions) {
    return (await this._request("POST", `${API}/submissions/batch`, {
      json: { submissions: submissions.map((spec) => body(spec)) } })).ids;
  }

  submission(submissionId) {
    return this._request("GET", `${API}/submissions/${segment(submissionId)}`);
  }

  /** Polls until the submission is done or failed; WaitTimeout after `timeout` seconds. */
  async wait(submissionId, { timeout } = {}) {
    const deadline = timeout === undefined ? null : Date.now() + timeout * 1000;
    let interval = 50;
    for (;;) {
      const found = await this.submission(submissionId);
      if (FINISHED.has(found.status)) return found;
      let delay = interval;
      interval = Math.min(interval * 2, 1000);
      if (deadline !== null) {
        const left = deadline - Date.now();
        if (left <= 0) throw new WaitTimeout(`submission ${submissionId} is still ${found.status}`, submissionId);
        delay = Math.min(delay, left);
      }
      await sleep(delay);
    }
  }
}

/** A sandbox kept across calls; `close()` deletes it (`client.withSession` does that for you). */
export class Session {
  #client;

  constructor(client, info) {
    this.#client = client;
    this.info = info;
    this.id = info.id;
  }

  #path(rest = "") {
    return `${API}/sessions/${segment(this.id)}${rest}`;
  }

  async refresh() {
    this.info = await this.#client._request("GET", this.#path());
    return this.info;
  }

  /** Saves the session to disk and stops its VM (qemu, Firecracker; the jail answers 409, a
   * `Conflict`); its next call resumes it where it was, also after a server restart. */
  async pause() {
    // Saving a VM's memory takes seconds under emulation: waited for as a cell is.
    this.info = await this.#client._request("POST", this.#path("/pause"), { runsFor: 60 });
    return this.info;
  }

  execute(code, { stdin, timeout, signal } = {}) {
    return this.#client._request("POST", this.#path("/execute"), {
      json: body({ code, stdin, timeout }), runsFor: timeout ?? 30, signal });
  }

  stream(code, { stdin, timeout, signal } = {}) {
    return this.#client._stream(this.#path("/execute"), body({ code, stdin, timeout }), timeout ?? 30, signal);
  }

  /** Writes a file: a string is its text (UTF-8); Uint8Array, ArrayBuffer or Blob its bytes. */
  async write(path, content) {
    const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
    return this.#client._request("PUT", this.#path(`/files/${filePath(path)}`), { content: data });
  }

  /** A file's bytes. */
  async read(path) {
    return this.#client._request("GET", this.#path(`/files/${filePath(path)}`));
  }

  async files() {
    return (await this.#client._request("GET", this.#path("/files"))).files;
  }

  async deleteFile(path) {
    await this.#client._request("DELETE", this.#path(`/files/${filePath(path)}`));
  }

  /** Deletes the session; one already gone (expired, deleted) is no error. */
  async close() {
    try {
      await this.#client._request("DELETE", this.#path());
    } catch (error) {
      if (!(error instanceof NotFound)) throw error;
    }
  }
}

if (typeof Symbol.asyncDispose === "symbol") {
  // `await using session = await client.session("python")` where the runtime has it.
  Session.prototype[Symbol.asyncDispose] = Session.prototype.close;
}
