// The playground at GET /: pick a language, edit code, run it, watch its output arrive.
// Everything goes through the public HTTP API, as any client's calls would: the languages
// list, execute with `Accept: text/event-stream`, and the session endpoints when "keep
// session" is on. Bundled with CodeMirror by esbuild (scripts/build_playground.sh).

import { EditorView, basicSetup } from "codemirror";
import { keymap } from "@codemirror/view";
import { Compartment, Prec } from "@codemirror/state";
import { StreamLanguage } from "@codemirror/language";

// Each grammar is a chunk of its own, fetched (from this server) the first time its language is chosen.
const legacy = (load) => async () => StreamLanguage.define(await load());
const MODES = {
  python: async () => (await import("@codemirror/lang-python")).python(),
  nodejs: async () => (await import("@codemirror/lang-javascript")).javascript(),
  javascript: async () => (await import("@codemirror/lang-javascript")).javascript(),
  typescript: async () => (await import("@codemirror/lang-javascript")).javascript({ typescript: true }),
  rust: async () => (await import("@codemirror/lang-rust")).rust(),
  c: async () => (await import("@codemirror/lang-cpp")).cpp(),
  cpp: async () => (await import("@codemirror/lang-cpp")).cpp(),
  java: async () => (await import("@codemirror/lang-java")).java(),
  go: async () => (await import("@codemirror/lang-go")).go(),
  bash: legacy(async () => (await import("@codemirror/legacy-modes/mode/shell")).shell),
  ruby: legacy(async () => (await import("@codemirror/legacy-modes/mode/ruby")).ruby),
};
const KEY_STORE = "infra.operator.apiKey";
const $ = (id) => document.getElementById(id);
const ui = {
  language: $("language"), release: $("release"), keep: $("keep-session"), run: $("run"),
  key: $("api-key"), remember: $("remember-key"), keyBox: $("key-box"), status: $("status"),
  stdout: $("stdout"), stderr: $("stderr"), results: $("results"), summary: $("summary"),
  session: $("session"),
};

let apiKey = localStorage.getItem(KEY_STORE) || "";
let session = null; // {id, language, version} while "keep session" holds one
let running = false;
const drafts = new Map(); // language -> the code last edited for it, kept while the page lives
const samples = new Map();
let shown = null; // the language whose code the editor holds

// ---- the API ----------------------------------------------------------------------------

async function api(path, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) {
    ui.keyBox.open = true;
    ui.key.focus();
  }
  return response;
}

async function failure(response) {
  let message = response.statusText;
  try { message = (await response.json()).error || message; } catch { /* not JSON */ }
  return `${response.status}: ${message}`;
}

async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// ---- languages and releases -------------------------------------------------------------

let languages = [];

async function loadLanguages() {
  const response = await api("/api/v1/languages");
  if (!response.ok) {
    setStatus(await failure(response), "error");
    return;
  }
  languages = (await response.json()).languages;
  const built = languages.filter((entry) => entry.rootfs_built);
  const missing = languages.filter((entry) => !entry.rootfs_built);
  ui.language.replaceChildren(...built.map((entry) => new Option(entry.name, entry.name)));
  if (missing.length) {
    const group = document.createElement("optgroup");
    group.label = "not built on this server";
    group.append(...missing.map((entry) => Object.assign(new Option(entry.name, entry.name), { disabled: true })));
    ui.language.append(group);
  }
  const wanted = new URLSearchParams(location.search).get("language");
  ui.language.value = built.some((entry) => entry.name === wanted) ? wanted : (built.some((e) => e.name === "python") ? "python" : built[0]?.name || "");
  await languageChanged();
  setStatus(built.length ? "ready" : "no language is built on this server", built.length ? "" : "error");
  performance.mark("ready");
}

function fillReleases(entry) {
  // Each release the server reports; until languages have several (`versions`), the one it runs.
  const versions = entry && Array.isArray(entry.versions) && entry.versions.length ? entry.versions : null;
  const options = versions
    ? versions.map((version, index) => new Option(index === 0 ? `${version} (default)` : version, index === 0 ? "" : version))
    : [new Option(entry && entry.version ? entry.version : "default", "")];
  ui.release.replaceChildren(...options);
}

async function sampleOf(name) {
  if (!samples.has(name)) {
    const response = await api(`/api/v1/languages/${encodeURIComponent(name)}`);
    samples.set(name, response.ok ? (await response.json()).sample || "" : "");
  }
  return samples.get(name);
}

async function languageChanged() {
  const name = ui.language.value;
  if (shown) drafts.set(shown, editor.state.doc.toString());
  fillReleases(languages.find((entry) => entry.name === name));
  const code = drafts.has(name) ? drafts.get(name) : await sampleOf(name);
  shown = name;
  editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: code }, effects: mode.reconfigure([]) });
  if (session && session.language !== name) await closeSession();
  const highlighting = MODES[name] ? await MODES[name]() : [];
  if (shown === name) editor.dispatch({ effects: mode.reconfigure(highlighting) });
}

// ---- sessions ---------------------------------------------------------------------------

async function openSession() {
  const body = { language: ui.language.value };
  if (ui.release.value) body.version = ui.release.value;
  const response = await api("/api/v1/sessions", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await failure(response));
  const opened = await response.json();
  session = { id: opened.id, language: opened.language, version: opened.version };
  ui.session.textContent = `session ${opened.id} (${opened.version} on ${opened.backend}): names and files stay`;
  return session;
}

async function closeSession() {
  const closing = session;
  session = null;
  ui.session.textContent = "";
  if (closing) await api(`/api/v1/sessions/${closing.id}`, { method: "DELETE", keepalive: true });
}

// ---- running ----------------------------------------------------------------------------

function setStatus(text, kind = "") {
  ui.status.textContent = text;
  ui.status.className = kind;
}

function clearOutput() {
  for (const element of [ui.stdout, ui.stderr, ui.results, ui.summary]) element.replaceChildren();
}

const SUMMARY = [
  ["exit code", "exit_code"], ["load time", "load_time"], ["exec time", "exec_time"], ["cpu time", "cpu_time_ms", "ms"],
  ["memory", "memory_kb", "KiB"], ["signal", "signal"], ["timed out", "timed_out"], ["out of memory", "oom_killed"],
  ["output limit", "output_limit_exceeded"], ["stdout truncated", "stdout_truncated"],
  ["stderr truncated", "stderr_truncated"], ["compile exit code", "compile_exit_code"], ["session reset", "reset"],
  ["language", "language"], ["version", "version"], ["backend", "backend"], ["sandbox", "sandbox_start"],
];

function verdict(result) {
  if (result.timed_out) return "time limit exceeded";
  if (result.oom_killed) return "memory limit exceeded";
  if (result.output_limit_exceeded) return "output limit exceeded";
  if (result.compile_exit_code) return "compile error";
  if (result.signal) return `killed by ${result.signal}`;
  return result.exit_code === 0 ? "ok" : `exit ${result.exit_code}`;
}

function showResult(result) {
  const rows = [["verdict", verdict(result), "verdict"]];
  for (const [label, field, unit] of SUMMARY) {
    const value = result[field];
    if (value === undefined || value === null || value === false) continue;
    rows.push([label, unit ? `${value} ${unit}` : String(value), field]);
  }
  ui.summary.replaceChildren(...rows.flatMap(([label, value, field]) => {
    const term = document.createElement("dt");
    term.textContent = label;
    const detail = document.createElement("dd");
    detail.textContent = value;
    detail.dataset.field = field;
    return [term, detail];
  }));
  if (result.compile_output) append(ui.stderr, result.compile_output);
  if ((result.results || []).length) {
    const heading = document.createElement("h2");
    heading.textContent = "result";
    ui.results.append(heading);
  }
  (result.results || []).forEach((entry, index) => {
    if (entry.type === "image/png" && entry.data) {
      const image = new Image();
      image.alt = `figure ${index + 1}`;
      image.src = `data:image/png;base64,${entry.data}`;
      ui.results.append(image);
    } else if (entry.type === "text") {
      const text = document.createElement("pre");
      text.className = "value";
      text.textContent = entry.text;
      ui.results.append(text);
    }
  });
  setStatus(verdict(result), result.exit_code === 0 && !result.timed_out ? "ok" : "failed");
}

let firstOutput = false;

function append(element, text) {
  if (!firstOutput) {
    firstOutput = true;
    performance.mark("first-output");
  }
  element.append(text);
}

async function execute() {
  const code = editor.state.doc.toString();
  const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
  let url = "/api/v1/execute";
  let body = { language: ui.language.value, code };
  if (ui.release.value) body.version = ui.release.value;
  if (ui.keep.checked) {
    const held = session || (await openSession());
    url = `/api/v1/sessions/${held.id}/execute`;
    body = { code };
  }
  let response = await api(url, { method: "POST", headers, body: JSON.stringify(body) });
  if (ui.keep.checked && response.status === 404) { // the session expired: open another and say so
    await closeSession();
    const held = await openSession();
    setStatus("the session had expired: running in a new one");
    response = await api(`/api/v1/sessions/${held.id}/execute`, { method: "POST", headers, body: JSON.stringify(body) });
  }
  if (!response.ok) throw new Error(await failure(response));
  let ended = false;
  await readEvents(response, (name, data) => {
    if (name === "stdout") append(ui.stdout, data.data);
    else if (name === "stderr") append(ui.stderr, data.data);
    else if (name === "result") { ended = true; showResult(data); }
    else if (name === "error") { ended = true; setStatus(data.error, "error"); }
  });
  if (!ended) setStatus("the answer broke off before its result", "error");
}

async function run() {
  if (running || !ui.language.value) return;
  running = true;
  ui.run.disabled = true;
  clearOutput();
  firstOutput = false;
  performance.clearMarks("first-output");
  performance.mark("run");
  setStatus("running…", "running");
  try {
    await execute();
  } catch (error) {
    setStatus(error.message || String(error), "error");
  } finally {
    running = false;
    ui.run.disabled = false;
  }
}

// ---- the page ---------------------------------------------------------------------------

const mode = new Compartment();
const editor = new EditorView({
  parent: $("editor"),
  extensions: [
    Prec.highest(keymap.of([{ key: "Mod-Enter", run: () => { run(); return true; } }])),
    basicSetup,
    mode.of([]),
    EditorView.theme({ "&": { height: "100%" }, ".cm-scroller": { fontFamily: "ui-monospace, monospace" } }),
  ],
});

ui.run.addEventListener("click", run);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && !editor.hasFocus) {
    event.preventDefault();
    run();
  }
});
ui.language.addEventListener("change", () => languageChanged());
ui.keep.addEventListener("change", () => { if (!ui.keep.checked) closeSession(); });
ui.release.addEventListener("change", () => { if (session) closeSession(); });
ui.key.value = apiKey;
ui.remember.checked = Boolean(localStorage.getItem(KEY_STORE));
function keyChanged() {
  apiKey = ui.key.value.trim();
  if (ui.remember.checked && apiKey) localStorage.setItem(KEY_STORE, apiKey);
  else localStorage.removeItem(KEY_STORE);
}
ui.key.addEventListener("change", () => { keyChanged(); if (!languages.length) loadLanguages(); });
ui.remember.addEventListener("change", keyChanged);
window.addEventListener("pagehide", () => { closeSession(); });

loadLanguages();
