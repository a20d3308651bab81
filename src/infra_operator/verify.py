"""Proving the catalog: build each release's image when missing, run the language's sample
and each of its other forms through the executor (the path every API request takes, the
release chosen by its suite) and compare their stdout with what the catalog expects."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from .errors import OperatorError
from .executor import ExecutionRequest
from .images import release_states
from .languages import Form

if TYPE_CHECKING:
    from .executor import ExecutionResult
    from .languages import Language, Release
    from .services import Services

Progress = Callable[[str], None]
# A sample's budget: the first run of a JVM or GHC compile on a busy 2-core host is
# slow, and verification is about whether the language works, not how fast.
DEFAULT_TIMEOUT_SECONDS = 120
_TAIL_CHARS = 400


@dataclass(frozen=True)
class Verdict:
    language: str
    passed: bool
    version: str = ""
    suite: str = ""
    """The Debian suite of the release proved."""
    release: str | None = None
    """Its number, read from its image."""
    default: bool = False
    offered: bool = True
    """False for a release built but not offered: the default's version again, or unstable's not newer."""
    image_bytes: int | None = None
    build_seconds: float | None = None
    built_now: bool = False
    load_ms: float | None = None
    exec_ms: float | None = None
    backend: str | None = None
    problem: str | None = None
    forms: tuple[str, ...] = ()
    """The forms besides the sample that ran as expected (all of the language's, when it passed)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]


def mismatch(expected: str, result: ExecutionResult) -> str | None:
    """What is wrong with a program's result, or ``None`` when it printed ``expected`` and succeeded."""
    if result.compile_exit_code not in (None, 0):
        return f"compile failed (exit {result.compile_exit_code}): {_tail(result.compile_output or '')}"
    if result.timed_out:
        return f"timed out; stderr: {_tail(result.stderr)}"
    if result.stdout == expected and result.exit_code == 0:
        return None
    problem = f"exit {result.exit_code}" + (f" ({result.signal})" if result.signal else "")
    problem += " after OOM kill" if result.oom_killed else ""
    if result.stdout != expected:
        problem += f"; stdout {result.stdout[:200]!r}, expected {expected!r}"
    return problem + (f"; stderr: {_tail(result.stderr)}" if result.stderr.strip() else "")


def chosen_releases(services: Services, language: Language, all_releases: bool) -> list[Release]:
    """What ``verify`` proves of a language: every release the catalog plans with
    ``all_releases``; else the default one (built when missing) and every other already built."""
    states = release_states(services.catalog, language, services.rootfs)
    return [state.release for state in states if all_releases or state.default or state.rootfs is not None]


def verify_language(services: Services, language: Language, *, build: bool = True, backend: str | None = None,
                    timeout: int = DEFAULT_TIMEOUT_SECONDS, release: Release | None = None,
                    progress: Progress = lambda line: None) -> Verdict:
    """Prove one release (default: the language's default release) with the sample and every form."""
    built_now = False
    release = release or services.catalog.releases(language)[0]
    name, suite = release.image, release.suite.name
    rootfs = services.rootfs.find(name)
    if rootfs is None:
        if not build:
            return Verdict(language.name, passed=False, suite=suite, problem="image not built (run without --no-build)")
        progress(f"{name}: building its image")
        try:
            rootfs = services.build_rootfs(language.name, None, lambda line: progress(f"{name}: {line}"), suite)
        except OperatorError as error:
            return Verdict(language.name, passed=False, suite=suite, problem=f"build failed: {error.message}")
        built_now = True
    state = next(state for state in release_states(services.catalog, language, services.rootfs)
                 if state.suite == suite)
    verdict = Verdict(language.name, passed=False, version=rootfs.version, suite=suite, release=rootfs.number,
                      default=state.default, offered=state.offered, image_bytes=rootfs.size,
                      build_seconds=rootfs.build_seconds, built_now=built_now)
    progress(f"{name}: running its sample" + (f" and {len(language.forms)} other forms" if language.forms else ""))
    sample = Form(name="sample", code=language.sample, expected=language.expected)
    for form in (sample, *language.forms):
        where = "" if form is sample else f"form {form.name!r}: "
        try:
            result = services.executor.execute(
                # By suite: the one release, even one not offered (the default's version again).
                ExecutionRequest(language=language.name, code=form.code, timeout=timeout, backend=backend,
                                 version=suite))
        except OperatorError as error:
            return replace(verdict, problem=f"{where}execution failed: {error.message}")
        if form is sample:  # the sample's times stand for the language's
            verdict = replace(verdict, load_ms=round(result.load_ms, 1), exec_ms=round(result.exec_ms, 1),
                              backend=result.backend)
        problem = mismatch(form.expected, result)
        if problem is not None:
            return replace(verdict, problem=where + problem)
        if form is not sample:
            verdict = replace(verdict, forms=(*verdict.forms, form.name))
    return replace(verdict, passed=True)


def verify(services: Services, languages: Iterable[Language], *, build: bool = True,
           backend: str | None = None, timeout: int = DEFAULT_TIMEOUT_SECONDS, all_releases: bool = False,
           progress: Progress = lambda line: None,
           on_verdict: Callable[[Verdict], None] = lambda verdict: None) -> list[Verdict]:
    """Verify each language's releases in turn (see ``chosen_releases``); one failure never
    stops the others."""
    verdicts = []
    for language in languages:
        for release in chosen_releases(services, language, all_releases):
            started = time.monotonic()
            verdict = verify_language(services, language, build=build, backend=backend, timeout=timeout,
                                      release=release, progress=progress)
            outcome = "passed" if verdict.passed else "FAILED"
            progress(f"{release.image}: {outcome} in {time.monotonic() - started:.1f}s")
            on_verdict(verdict)
            verdicts.append(verdict)
    return verdicts


__all__ = ["DEFAULT_TIMEOUT_SECONDS", "Verdict", "chosen_releases", "mismatch", "verify", "verify_language"]
