"""Managed runtimes size themselves from the host's memory and cores; under the
sandbox's default limits (512 MiB, 128 processes) each must still run a program that
allocates 200 MiB and starts many threads or processes, through the real API."""

from __future__ import annotations

import httpx
import pytest
from conftest import require_images

PROGRAMS = {
    "java": """
public class Main {
    public static void main(String[] args) throws Exception {
        byte[][] blocks = new byte[200][];
        for (int i = 0; i < blocks.length; i++) blocks[i] = new byte[1 << 20];
        Thread[] threads = new Thread[50];
        for (int i = 0; i < threads.length; i++) { threads[i] = new Thread(() -> {}); threads[i].start(); }
        for (Thread thread : threads) thread.join();
        System.out.println("ok " + blocks.length);
    }
}
""",
    "csharp": """
using System;
using System.Collections.Generic;
using System.Threading;
class Program {
    static void Main() {
        var blocks = new List<byte[]>();
        for (int i = 0; i < 200; i++) blocks.Add(new byte[1 << 20]);
        var threads = new List<Thread>();
        for (int i = 0; i < 50; i++) { var t = new Thread(() => {}); t.Start(); threads.Add(t); }
        threads.ForEach(t => t.Join());
        Console.WriteLine("ok " + blocks.Count);
    }
}
""",
    "haskell": "main = putStrLn (\"ok \" ++ show (length (show (sum [1 .. 10000000 :: Integer]))))\n",
    "erlang": """
-module(main).
-export([main/0]).
main() ->
    Pids = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 10000)],
    Blocks = [binary:copy(<<0>>, 1 bsl 20) || _ <- lists:seq(1, 200)],
    io:format("ok ~p~n", [length(Blocks) + length(Pids) - 10000]).
""",
}
EXPECTED = {"java": "ok 200\n", "csharp": "ok 200\n", "haskell": "ok 14\n", "erlang": "ok 200\n"}


@pytest.mark.parametrize("language", sorted(PROGRAMS))
def test_a_runtime_fits_the_default_limits(client: httpx.Client, language: str) -> None:
    require_images(language)
    request = {"language": language, "code": PROGRAMS[language], "timeout": 60}
    response = client.post("/api/v1/execute", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["stdout"], body["exit_code"]) == (EXPECTED[language], 0), body
