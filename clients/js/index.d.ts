// Types of infra-operator-client (index.js). Answers are the server's JSON as it comes: the
// fields the contract names are typed, and fields a newer server adds are there too.

export declare const VERSION: string;
export declare const DEFAULT_BASE_URL: string;

export interface ExecuteResult {
  stdout: string;
  stderr: string;
  exit_code: number;
  /** Time to get a sandbox ready, as "125ms". */
  load_time: string;
  exec_time: string;
  load_time_ms?: number;
  exec_time_ms?: number;
  cpu_time_ms?: number | null;
  memory_kb?: number | null;
  language?: string;
  version?: string;
  backend?: string;
  sandbox_start?: string;
  signal?: string | null;
  timed_out?: boolean;
  oom_killed?: boolean;
  stdout_truncated?: boolean;
  stderr_truncated?: boolean;
  output_limit_exceeded?: boolean;
  compile_output?: string | null;
  compile_exit_code?: number | null;
  [field: string]: unknown;
}

export interface RichResult {
  type: "text" | "image/png" | (string & {});
  text?: string | null;
  /** For image/png: the PNG, base64. */
  data?: string | null;
}

export interface CellResult extends ExecuteResult {
  results: RichResult[];
  reset?: boolean;
}

export interface SessionInfo {
  id: string;
  language: string;
  version: string;
  backend: string;
  created_at: string;
  expires_at: string;
  idle_timeout?: number;
  file_mb?: number;
  state?: string;
  [field: string]: unknown;
}

export interface WrittenFile { path: string; size: number }
export interface FileEntry { path: string; size: number; type: "file" | "dir" }

export interface TestCase { expected_output: string; stdin?: string }
export interface TestResult {
  verdict: string;
  stdout: string;
  exit_code: number | null;
  time_ms: number | null;
  memory_kb: number | null;
  [field: string]: unknown;
}

/** Without tests, an execute's answer; with tests, the verdict and one entry per test. */
export interface SubmissionResult extends Partial<ExecuteResult> {
  verdict?: string;
  tests?: TestResult[];
  error?: string;
}

export type SubmissionStatus = "queued" | "running" | "done" | "failed";

export interface Submission {
  id: string;
  status: SubmissionStatus;
  result?: SubmissionResult;
  /** When failed: why. */
  error?: string;
  created_at?: number;
  started_at?: number;
  finished_at?: number;
  attempts?: number;
  worker?: string;
  [field: string]: unknown;
}

export interface Health {
  status: string;
  version: string;
  backend?: string | null;
  [field: string]: unknown;
}

export interface LanguageSummary {
  name: string;
  extension: string;
  aliases?: string[];
  family?: string;
  version?: string | null;
  versions?: string[];
  rootfs_built?: boolean;
  [field: string]: unknown;
}

export interface Languages { languages: LanguageSummary[]; count: number }

/** A file's content: a string is its text (UTF-8); bytes as they are. */
export type FileContent = string | Uint8Array | ArrayBuffer;

export interface Limits {
  backend?: string;
  memory_mb?: number;
  cpu_seconds?: number;
  processes?: number;
  output_kb?: number;
  file_mb?: number;
}

export interface RunOptions extends Limits {
  /** The program's time limit, in seconds (the server's default: 30). */
  timeout?: number;
  stdin?: string;
  args?: string[];
  version?: string;
  /** Files for the working folder by relative path, in order; without code, the first is the program. */
  files?: Record<string, FileContent>;
  signal?: AbortSignal;
}

export interface SessionOptions extends Limits {
  version?: string;
  idle_timeout?: number;
}

export interface CellOptions {
  stdin?: string;
  timeout?: number;
  signal?: AbortSignal;
}

export interface SubmitOptions extends RunOptions {
  tests?: TestCase[];
  callback_url?: string;
  /** Answer once the submission has finished. */
  wait?: boolean;
}

export interface SubmissionSpec extends Omit<SubmitOptions, "wait" | "signal"> {
  language: string;
  code?: string;
}

export type Event =
  | { type: "stdout" | "stderr"; text: string }
  | { type: "result"; result: ExecuteResult };

/** Events as they come; `result` settles with the result event's answer (or the stream's failure). */
export interface EventStream<R extends ExecuteResult = ExecuteResult>
  extends ReadableStream<Event>, AsyncIterable<Event> {
  result: Promise<R>;
}

export interface ClientOptions {
  /** Default http://127.0.0.1:8080. */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer KEY`. */
  apiKey?: string;
  /** Bounds every call (default 60000; null: none). A call that runs a program waits at least
   * its own timeout plus 30 seconds; a stream, until its first event. */
  timeoutMs?: number | null;
  headers?: Record<string, string>;
  /** The transport: any function with fetch's signature. */
  fetch?: typeof fetch;
}

export declare class Client {
  constructor(options?: ClientOptions);
  health(): Promise<Health>;
  languages(): Promise<Languages>;
  language(name: string): Promise<Record<string, unknown>>;
  /** Runs code in a fresh sandbox; a number is the program's timeout in seconds. A program that fails is a result. */
  execute(language: string, code?: string | null, options?: number | RunOptions): Promise<ExecuteResult>;
  stream(language: string, code?: string | null, options?: number | RunOptions): Promise<EventStream>;
  session(language: string, options?: SessionOptions): Promise<Session>;
  withSession<T>(language: string, work: (session: Session) => Promise<T> | T, options?: SessionOptions): Promise<T>;
  attach(sessionId: string): Promise<Session>;
  sessions(): Promise<SessionInfo[]>;
  submit(language: string, code?: string | null, options?: SubmitOptions): Promise<Submission>;
  submitBatch(submissions: SubmissionSpec[]): Promise<string[]>;
  submission(submissionId: string): Promise<Submission>;
  wait(submissionId: string, options?: { timeout?: number }): Promise<Submission>;
}

export declare class Session {
  readonly id: string;
  info: SessionInfo;
  refresh(): Promise<SessionInfo>;
  /** Saves the session to disk and stops its VM; its next call resumes it (409 on the jail). */
  pause(): Promise<SessionInfo>;
  execute(code: string, options?: CellOptions): Promise<CellResult>;
  stream(code: string, options?: CellOptions): Promise<EventStream<CellResult>>;
  write(path: string, content: FileContent | Blob): Promise<WrittenFile>;
  read(path: string): Promise<Uint8Array>;
  files(): Promise<FileEntry[]>;
  deleteFile(path: string): Promise<void>;
  /** Deletes the session; one already gone is no error. */
  close(): Promise<void>;
}

export interface ServerSentEvent { event: string; data: string; id: string | null }

export declare class SSEDecoder {
  feed(chunk: Uint8Array): ServerSentEvent[];
  close(): ServerSentEvent[];
}

export declare function toEvents(events: Iterable<ServerSentEvent>): Event[];

export declare class InfraOperatorError extends Error {}
export declare class TransportError extends InfraOperatorError {}
export declare class Timeout extends TransportError {}
export declare class StreamError extends InfraOperatorError {}
export declare class WaitTimeout extends InfraOperatorError {
  readonly submissionId: string;
}
export declare class APIError extends InfraOperatorError {
  readonly status: number;
  readonly requestId: string | null;
  /** Seconds the server asked to wait (429, 503), when it said. */
  readonly retryAfter: number | null;
}
export declare class BadRequest extends APIError {}
export declare class Unauthorized extends APIError {}
export declare class NotFound extends APIError {}
export declare class Conflict extends APIError {}
export declare class PayloadTooLarge extends APIError {}
export declare class RateLimited extends APIError {}
export declare class ServerError extends APIError {}
export declare class ServiceUnavailable extends ServerError {}
