"""What the submission tests share, on a single server and through the cluster: programs
that earn each verdict, a rust program that shows how often it was compiled, and a real HTTP
server that receives callbacks and checks their signature."""

from __future__ import annotations

import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra_operator.submissions import SIGNATURE_HEADER, TIMESTAMP_HEADER

SECRET = "test-secret"

JUDGED = '''
import sys
t = sys.stdin.read().strip()
if t == "ok":
    print("yes  \\n\\n")
elif t == "wa":
    print("no")
elif t == "re":
    sys.exit(3)
elif t == "tle":
    while True:
        pass
elif t == "mle":
    block = bytearray(400 * 1024 * 1024)
    print(len(block))
elif t == "ole":
    while True:
        print("x" * 1000)
'''
JUDGED_TESTS = [{"stdin": case, "expected_output": "yes"} for case in ("ok", "wa", "re", "tle", "mle", "ole")]
JUDGED_LIMITS = {"timeout": 2, "memory_mb": 64, "output_kb": 4}
JUDGED_VERDICTS = ["accepted", "wrong_answer", "runtime_error", "time_limit_exceeded", "memory_limit_exceeded",
                   "output_limit_exceeded"]
"""What ``JUDGED`` earns for each of ``JUDGED_TESTS`` under ``JUDGED_LIMITS``."""

# Each run prints a value fixed when the program was compiled (a fresh UUID that
# include_str! reads from the kernel at compile time): one value across all tests means one compile.
RUST_STAMPED = '''
use std::io::*;
const STAMP: &str = include_str!("/proc/sys/kernel/random/uuid");
fn main() {
    let mut line = String::new();
    stdin().read_line(&mut line).unwrap();
    let n: i64 = line.trim().parse().unwrap();
    println!("{}", n * 2);
    eprint!("{}", STAMP);
}
'''


class Receiver:
    """A real HTTP server (on loopback unless told) that records what it is sent; it answers 500
    to the first ``failures`` requests."""

    def __init__(self, failures: int = 0, address: str = "127.0.0.1") -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if len(receiver.received) <= receiver.failures else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()




def signed(headers: dict[str, str], body: bytes) -> bool:
    """Whether a callback carries the HMAC-SHA256 of its timestamp and body under ``SECRET``."""
    expected = hmac.new(SECRET.encode(), headers[TIMESTAMP_HEADER.lower()].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], f"sha256={expected}")
