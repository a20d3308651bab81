// Compiled by `tsc -p test/tsconfig.json` (strict, no emit): the declarations describe the
// surface as a TypeScript user writes against it; each @ts-expect-error is a misuse they reject.
import {
  APIError, Client, NotFound, RateLimited, Session, WaitTimeout,
  type CellResult, type Event, type EventStream, type ExecuteResult, type SessionInfo, type Submission,
} from "../index.js";

export async function surface(): Promise<void> {
  const client = new Client({ baseUrl: "http://127.0.0.1:8080", apiKey: "key", timeoutMs: 5000 });
  const seed: string = (await client.execute("nodejs", "console.log(2 ** 10)"))["stdout"];
  const timed: ExecuteResult = await client.execute("python", "print(1)", 30);
  const code: number = timed.exit_code;
  await client.execute("python", null, { files: { "main.py": "print(1)", "data.bin": new Uint8Array([1]) }, stdin: "x" });
  // @ts-expect-error exit_code is a number
  const wrong: string = timed.exit_code;
  // @ts-expect-error a language is required
  await client.execute();

  const events: EventStream = await client.stream("python", "print(1)");
  for await (const event of events) {
    if (event.type === "result") {
      const result: ExecuteResult = event.result;
      void result;
    } else {
      const text: string = event.text;
      void text;
    }
  }
  const reader = events.getReader();
  const read: ReadableStreamReadResult<Event> = await reader.read();
  const finalResult: ExecuteResult = await events.result;

  const session: Session = await client.session("python", { idle_timeout: 60 });
  const cell: CellResult = await session.execute("x = 1", { timeout: 5 });
  const shown: string | null | undefined = cell.results[0]?.text;
  await session.write("a.txt", "text");
  await session.write("b.bin", new Uint8Array([0, 1]));
  const bytes: Uint8Array = await session.read("a.txt");
  const paused: SessionInfo = await session.pause();
  const value: number = await client.withSession("python", async (s) => (await s.files()).length);
  // @ts-expect-error files are text or bytes, not numbers
  await session.write("c.txt", 42);
  await session.close();

  const submission: Submission = await client.submit("python", "print(input())", {
    tests: [{ stdin: "1", expected_output: "1" }], wait: true });
  const verdict: string | undefined = submission.result?.verdict;
  const ids: string[] = await client.submitBatch([{ language: "python", code: "print(1)" }]);
  await client.wait(ids[0]!, { timeout: 10 });

  try {
    await client.health();
  } catch (error) {
    if (error instanceof RateLimited) {
      const after: number | null = error.retryAfter;
      void after;
    }
    if (error instanceof APIError) {
      const status: number = error.status;
      void status;
    }
    if (error instanceof WaitTimeout) void error.submissionId;
    if (error instanceof NotFound) void error.message;
  }
  void [seed, code, wrong, read, finalResult, shown, bytes, value, verdict];
}
