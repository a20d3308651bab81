// The playground at GET /: pick a language, edit code, run it, watch its output arrive.
// Everything goes through the public HTTP API by way of the JavaScript SDK (clients/js), as
// any client's calls would: the languages list, execute as a stream of events, and sessions
// when "keep session" is on. Bundled with CodeMirror and the SDK by esbuild
// (scripts/build_playground.sh).

import { EditorView, basicSetup } from "codemirror";
import { keymap } from "@codemirror/view";
import { Compartment, Prec } from "@codemirror/state";
import { StreamLanguage } from "@codemirror/language";
import { APIError, Client, NotFound } from "../../clients/js/index.js";

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
let session = null; // the SDK's Session while "keep session" holds one
let running = false;
const drafts = new Map(); // language -> the code last edited for it, kept while the page lives
const samples = new Map();
let shown = null; // the language whose code the editor holds

// ---- the API -----------------------------------------------------------------------------

let leaving = false; // the page is going: its last call (closing the session) must outlive it

async function transport(url, init) {
  const response = await fetch(url, leaving ? { ...init, keepalive: true } : init);
  if (response.status === 401) {
    ui.keyBox.open = true;
    ui.key.focus();
  }
  return response;
}

// No time bound of the page's own: a run ends at its time limit, which the server enforces.
const connect = () => new Client({ baseUrl: location.origin, apiKey: apiKey || undefined, timeoutMs: null, fetch: transport });
let client = connect();

function describe(error) {
  return error instanceof APIError ? `${error.status}: ${error.message}` : error.message || String(error);
}

// ---- languages and releases -------------------------------------------------------------

let languages = [];

async function loadLanguages() {
  try {
    languages = (await client.languages()).languages;
  } catch (error) {
    setStatus(describe(error), "error");
    return;
  }
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
  if (!samples.has(name)) samples.set(name, await client.language(name).then((entry) => entry.sample || "", () => ""));
  return samples.get(name);
}

async function languageChanged() {
  const name = ui.language.value;
  if (shown) drafts.set(shown, editor.state.doc.toString());
  fillReleases(languages.find((entry) => entry.name === name));
  const code = drafts.has(name) ? drafts.get(name) : await sampleOf(name);
  shown = name;
  editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: code }, effects: mode.reconfigure([]) });
  if (session && session.info.language !== name) await closeSession();
  const highlighting = MODES[name] ? await MODES[name]() : [];
  if (shown === name) editor.dispatch({ effects: mode.reconfigure(highlighting) });
}

// ---- sessions ---------------------------------------------------------------------------

async function openSession() {
  session = await client.session(ui.language.value, { version: ui.release.value || undefined });
  const { id, version, backend } = session.info;
  ui.session.textContent = `session ${id} (${version} on ${backend}): names and files stay`;
  return session;
}

async function closeSession() {
  const closing = session;
  session = null;
  ui.session.textContent = "";
  if (closing) await closing.close();
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
  let events;
  if (ui.keep.checked) {
    const held = session || (await openSession()); // a failure to open is the run's, not an expiry
    try {
      events = await held.stream(code);
    } catch (error) {
      if (!(error instanceof NotFound)) throw error;
      await closeSession(); // the session expired: open another and say so
      setStatus("the session had expired: running in a new one");
      events = await (await openSession()).stream(code);
    }
  } else {
    events = await client.stream(ui.language.value, code, { version: ui.release.value || undefined });
  }
  for await (const event of events) {
    if (event.type === "result") showResult(event.result);
    else append(event.type === "stdout" ? ui.stdout : ui.stderr, event.text);
  }
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
    setStatus(describe(error), "error");
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
  client = connect();
  if (ui.remember.checked && apiKey) localStorage.setItem(KEY_STORE, apiKey);
  else localStorage.removeItem(KEY_STORE);
}
ui.key.addEventListener("change", () => { keyChanged(); if (!languages.length) loadLanguages(); });
ui.remember.addEventListener("change", keyChanged);
window.addEventListener("pagehide", () => {
  leaving = true;
  closeSession();
});

loadLanguages();
