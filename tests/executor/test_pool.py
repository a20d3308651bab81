"""The pool's rules: a sandbox is served once, a dead one is replaced, the pool refills,
grows on demand within its memory budget, idles down, and leaves nothing behind.

The real jail backend where the rule is about real sandboxes (served once, dead ones
replaced, nothing left running); ``FakeBackend`` (a test double) where a failure has to
be made on demand, and a ``FakeClock`` where time has to pass: those are the unit tier.
Waits are bounded polls, never timing assertions.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import WAIT_SECONDS, require_images, wait_for
from fakes import FakeBackend, FakeClock

from infra_operator.backends import Backend, SandboxSpec
from infra_operator.config import PoolSettings, Settings
from infra_operator.executor import Pool, spec_key
from infra_operator.services import Services

CGROUP_PARENTS = [Path("/sys/fs/cgroup") / name / "infra-operator" for name in ("memory", "pids")] + [
    Path("/sys/fs/cgroup/infra-operator")
]


def ready(pool: Pool) -> int:
    return sum(int(entry["ready"]) for entry in pool.stats())


def ready_by_key(pool: Pool) -> dict[str, int]:
    return {str(entry["key"]): int(entry["ready"]) for entry in pool.stats()}


def held(pool: Pool) -> int:
    """Ready and starting: what the manager has decided to keep, as of its last tick."""
    return sum(int(entry["ready"]) + int(entry["starting"]) for entry in pool.stats())


def manager_ticks(clock: FakeClock, ticks: int) -> None:
    """Wait until the pool's manager has made ``ticks`` whole rounds from now. It reads the
    clock twice a round (to resize, then to refill), all under the pool's lock, so 2n+1 reads
    cover n whole rounds, and ``stats`` (which takes that lock) then shows their outcome."""
    start = clock.reads
    wait_for(lambda: clock.reads >= start + 2 * ticks + 1, f"{ticks} rounds of the pool's manager")


def our_cgroups() -> list[Path]:
    return [
        group for parent in CGROUP_PARENTS if parent.exists() for group in parent.glob(f"{os.getpid()}-*")
    ]


def our_sandbox_processes() -> list[int]:
    """Processes in a cgroup of a sandbox this test process started."""
    marker = f"infra-operator/{os.getpid()}-"
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cgroup").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def fake_spec(memory_mb: int = 256, **labels: str) -> SandboxSpec:
    return SandboxSpec(
        rootfs=Path("/nonexistent/rootfs.ext4"),
        rootfs_sha256="0" * 64,
        memory_mb=memory_mb,
        labels=labels or {"language": "fake"},
    )


@pytest.fixture
def jail() -> Iterator[tuple[Backend, SandboxSpec]]:
    require_images("python")
    services = Services(Settings())
    backend = services.backends.get("jail")
    if not backend.capabilities().usable:
        pytest.skip("the jail backend cannot run here: " + "; ".join(backend.capabilities().missing))
    yield backend, services.executor.default_spec(backend, "python")
    services.close()
    assert our_cgroups() == [], "a sandbox's cgroup outlived the test"
    assert our_sandbox_processes() == [], "a sandbox's process outlived the test"


# -- real sandboxes


def test_a_sandbox_is_served_once_and_each_one_works(jail: tuple[Backend, SandboxSpec]) -> None:
    backend, spec = jail
    served: list[str] = []
    with Pool(PoolSettings(size=2, workers=2)) as pool:
        pool.warm(backend, spec, 2)
        for _ in range(5):
            wait_for(lambda: ready(pool) >= 1, "a ready sandbox")
            sandbox = pool.take(backend, spec)
            assert sandbox is not None
            served.append(sandbox.id)
            assert sandbox.call({"op": "ping"}, time.monotonic() + 10)["ok"] is True
            pool.dispose(sandbox)
        assert len(set(served)) == len(served)
        taken = {entry["key"]: entry["takes"] for entry in pool.stats()}
        # Pools are per release: the spec's labels name it.
        assert taken == {f"language=python,release={spec.labels['release']}": 5}
    assert our_cgroups() == []


def test_a_sandbox_that_died_while_waiting_is_not_served_and_is_replaced(
    jail: tuple[Backend, SandboxSpec],
) -> None:
    backend, spec = jail
    with Pool(PoolSettings(workers=1)) as pool:
        pool.warm(backend, spec, 1)
        wait_for(lambda: ready(pool) == 1, "the pool to fill")
        victims = our_sandbox_processes()
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        # Dead, not dying: a kill takes effect a moment after it is sent, and the cgroup, which
        # the pool asks, may list a killed process a moment after /proc stopped showing it.
        wait_for(lambda: not set(victims) & set(our_sandbox_processes()), "the killed sandbox to be gone")
        wait_for(lambda: not any((group / "cgroup.procs").read_text().split() for group in our_cgroups()),
                 "its cgroup to list no process")
        # The dead one is tried and thrown away; the taker gets its replacement, or starts its own.
        sandbox = pool.take(backend, spec)
        if sandbox is None:
            wait_for(lambda: ready(pool) == 1, "a replacement")
            sandbox = pool.take(backend, spec)
        assert sandbox is not None
        assert sandbox.call({"op": "ping"}, time.monotonic() + 10)["ok"] is True
        assert not set(victims) & set(our_sandbox_processes())
        pool.dispose(sandbox)


def test_closing_leaves_nothing_running(jail: tuple[Backend, SandboxSpec]) -> None:
    backend, spec = jail
    pool = Pool(PoolSettings(workers=2))
    pool.start()
    pool.warm(backend, spec, 3)
    wait_for(lambda: ready(pool) >= 1, "a sandbox")
    taken = pool.take(backend, spec)
    assert taken is not None
    assert taken.call({"op": "ping"}, time.monotonic() + 10)["ok"] is True
    pool.dispose(taken)
    pool.close()  # with sandboxes ready and, likely, others still starting
    assert our_cgroups() == []
    assert our_sandbox_processes() == []


def test_closing_at_once_after_warming_leaves_nothing_running(jail: tuple[Backend, SandboxSpec]) -> None:
    backend, spec = jail
    pool = Pool(PoolSettings(workers=2))
    pool.start()
    pool.warm(backend, spec, 2)
    pool.close()
    assert our_cgroups() == []
    assert our_sandbox_processes() == []


def test_ready_jails_count_at_what_they_hold_not_at_their_limit(jail: tuple[Backend, SandboxSpec]) -> None:
    backend, spec = jail
    assert spec.memory_mb >= 256
    # Counted at their 256+ MiB limit, not one would fit in 24 MiB; a waiting jail holds about five.
    with Pool(PoolSettings(size=4, workers=2, memory_budget_mb=24)) as pool:
        pool.warm(backend, spec, 4)
        wait_for(lambda: ready(pool) == 4, "four ready jails within 24 MiB")
        assert [entry["memory_mb"] for entry in pool.stats()] == [backend.ready_memory_mb(spec)]


def test_other_limits_never_get_a_sandbox_made_for_the_defaults(jail: tuple[Backend, SandboxSpec]) -> None:
    backend, spec = jail
    bigger = SandboxSpec(**{**spec.__dict__, "memory_mb": spec.memory_mb * 2})
    assert spec_key(backend, bigger) != spec_key(backend, spec)
    with Pool(PoolSettings(workers=1)) as pool:
        pool.warm(backend, spec, 1)
        wait_for(lambda: ready(pool) == 1, "the pool to fill")
        assert pool.take(backend, bigger) is None
        # (target, ready, starting) of the warmed key, then the bigger one's: nothing is made for one miss.
        assert [(e["target"], e["ready"], e["starting"]) for e in pool.stats()] == [(1, 1, 0), (0, 0, 0)], (
            "one request with other limits pins no sandbox of its kind")
        assert pool.take(backend, bigger) is None
        # A second miss soon after shows demand: one of the bigger kind is made for the next request.
        wait_for(lambda: ready(pool) == 2, "a sandbox of the bigger kind")
        sandbox = pool.take(backend, bigger)
        assert sandbox is not None
        pool.dispose(sandbox)


# -- failures made on demand, with the test double (the unit tier)


@pytest.mark.unit
def test_every_field_of_the_spec_is_part_of_the_key() -> None:
    backend = FakeBackend()
    base = fake_spec()
    variants = [
        fake_spec(memory_mb=512),
        fake_spec(language="other"),
        SandboxSpec(**{**base.__dict__, "processes": 7}),
        SandboxSpec(**{**base.__dict__, "vcpus": 2}),
        SandboxSpec(**{**base.__dict__, "rootfs_sha256": "1" * 64}),
    ]
    keys = {spec_key(backend, spec) for spec in [base, *variants]}
    assert len(keys) == 1 + len(variants)
    assert spec_key(backend, fake_spec()) == spec_key(backend, base)


def failed_starts_settle_at(backend: FakeBackend, pool: Pool, attempts: int) -> None:
    wait_for(lambda: backend.start_attempts >= attempts and held(pool) == 0, f"failed start {attempts}")
    assert backend.start_attempts == attempts, "retried before its back-off passed"


@pytest.mark.unit
def test_failed_starts_are_retried_after_a_doubling_back_off_until_the_pool_is_full() -> None:
    backend = FakeBackend()
    backend.failures_to_come = 2
    clock = FakeClock()
    with Pool(PoolSettings(workers=1), clock=clock) as pool:
        pool.warm(backend, fake_spec(), 2)
        for attempts, back_off in ((1, 0.5), (2, 1.0)):
            failed_starts_settle_at(backend, pool, attempts)
            clock.advance(back_off - 0.1)
            manager_ticks(clock, 1)
            assert backend.start_attempts == attempts, "retried before its back-off passed"
            clock.advance(0.1)
        wait_for(lambda: ready(pool) == 2, "the pool to fill despite failed starts")
        assert backend.start_attempts == 4


@pytest.mark.unit
def test_the_pool_refills_after_takes() -> None:
    backend = FakeBackend()
    spec = fake_spec()
    with Pool(PoolSettings(workers=2)) as pool:
        pool.warm(backend, spec, 2)
        wait_for(lambda: ready(pool) == 2, "the pool to fill")
        first, second = pool.take(backend, spec), pool.take(backend, spec)
        assert first is not None and second is not None and first.id != second.id
        wait_for(lambda: ready(pool) == 2, "the pool to refill")
        assert len(backend.started) == 4


@pytest.mark.unit
def test_the_pool_starts_its_sandboxes_ahead_so_a_backend_may_warm_them() -> None:
    """Only what the pool starts is started ``ahead``: a request's own start is on its path,
    where a warm-up would only add time."""
    backend = FakeBackend()
    with Pool(PoolSettings(workers=2)) as pool:
        pool.warm(backend, fake_spec(), 2)
        wait_for(lambda: ready(pool) == 2, "the pool to fill")
        assert backend.ahead_starts == backend.start_attempts == 2
    backend.start(fake_spec())
    assert (backend.ahead_starts, backend.start_attempts) == (2, 3)


@pytest.mark.unit
def test_a_dead_sandbox_is_destroyed_and_the_next_is_served() -> None:
    backend = FakeBackend()
    spec = fake_spec()
    with Pool(PoolSettings(workers=1)) as pool:
        pool.warm(backend, spec, 2)
        wait_for(lambda: ready(pool) == 2, "the pool to fill")
        backend.started[0].dead = True
        sandbox = pool.take(backend, spec)
        assert sandbox is backend.started[1]
        wait_for(lambda: backend.started[0].destroyed == 1, "the dead sandbox to be destroyed")
        pool.dispose(sandbox)


@pytest.mark.unit
def test_a_taker_waits_for_a_start_under_way_instead_of_starting_its_own() -> None:
    backend = FakeBackend()
    backend.gate.clear()
    spec = fake_spec()
    taken: list[object] = []
    with Pool(PoolSettings(workers=1)) as pool:
        pool.warm(backend, spec, 1)
        wait_for(lambda: pool.stats()[0]["starting"] == 1, "a start under way")
        taker = threading.Thread(target=lambda: taken.append(pool.take(backend, spec)))
        taker.start()
        wait_for(lambda: pool.stats()[0]["misses"] == 1, "the taker to find the pool empty")
        backend.gate.set()
        taker.join(timeout=WAIT_SECONDS)
        assert taken == [backend.started[0]]


@pytest.mark.unit
def test_repeated_misses_raise_the_target_of_a_key_made_by_demand() -> None:
    backend = FakeBackend()
    backend.gate.clear()  # starts hang, so every take below finds the pool empty
    spec = fake_spec()
    taken: list[object] = []
    with Pool(PoolSettings(workers=2, max_size=8)) as pool:
        assert pool.take(backend, spec) is None  # unknown key: a miss, and nothing under way to wait for
        assert pool.stats()[0]["target"] == 0, "a single miss is no demand yet"
        assert pool.take(backend, spec) is None
        assert pool.stats()[0]["target"] == 1
        # The start the second miss asked for is under way (held at the gate) before the third
        # take, which waits for it rather than missing outright.
        wait_for(lambda: pool.stats()[0]["starting"] == 1, "the start the target asked for")
        taker = threading.Thread(target=lambda: taken.append(pool.take(backend, spec)))
        taker.start()  # misses too, then waits for the start under way
        wait_for(lambda: pool.stats()[0]["misses"] == 3, "the third miss")
        assert pool.stats()[0]["target"] == 2
        backend.gate.set()
        taker.join(timeout=WAIT_SECONDS)
        assert len(taken) == 1 and taken[0] in backend.started
        wait_for(lambda: ready(pool) == 2, "the pool to reach its new target")


@pytest.mark.unit
def test_the_memory_budget_caps_what_the_pool_holds() -> None:
    backend = FakeBackend()
    clock = FakeClock()
    with Pool(PoolSettings(workers=2, max_size=8, memory_budget_mb=300), clock=clock) as pool:
        pool.warm(backend, fake_spec(memory_mb=100), 8)
        wait_for(lambda: ready(pool) >= 3, "the pool to fill up to its memory budget")
        manager_ticks(clock, 1)  # a round with room in the target but none in the budget
        assert held(pool) == 3
        assert len(backend.started) == 3
        assert pool.stats()[0]["target"] == 8


@pytest.mark.unit
def test_ready_sandboxes_count_at_their_measured_cost_not_their_ram() -> None:
    backend = FakeBackend()
    backend.pss_mb = 30.0  # what a restored clone sharing its snapshot's pages holds
    clock = FakeClock()
    with Pool(PoolSettings(workers=2, max_size=8, memory_budget_mb=300), clock=clock) as pool:
        pool.warm(backend, fake_spec(memory_mb=256), 8)
        # At its 256 MiB of RAM one would fit in 300 MiB; at 30 MiB all eight do.
        wait_for(lambda: ready(pool) == 8, "eight measured sandboxes within 300 MiB")
        assert pool.stats()[0]["memory_mb"] == 30


@pytest.mark.unit
def test_an_unmeasurable_sandbox_counts_at_what_its_backend_expects() -> None:
    backend = FakeBackend()  # its sandboxes' memory() is None, as a Firecracker double's
    clock = FakeClock()
    with Pool(PoolSettings(workers=2, max_size=8, memory_budget_mb=300), clock=clock) as pool:
        pool.warm(backend, fake_spec(memory_mb=100), 8)
        wait_for(lambda: ready(pool) >= 3, "the pool to fill up to its memory budget")
        manager_ticks(clock, 1)
        assert held(pool) == 3
        assert pool.stats()[0]["memory_mb"] == 100


@pytest.mark.unit
def test_the_estimate_follows_measurements_taken_again() -> None:
    backend = FakeBackend()
    backend.pss_mb = 120.0  # the first clone, alone, holds every page it maps
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("infra_operator.executor._pool.MEASURE_SECONDS", 0.05)  # before the manager starts
        with Pool(PoolSettings(workers=1, max_size=8, memory_budget_mb=400)) as pool:
            pool.warm(backend, fake_spec(memory_mb=256), 8)
            wait_for(lambda: ready(pool) == 3, "three sandboxes at 120 MiB each")
            assert pool.stats()[0]["memory_mb"] == 120
            for sandbox in backend.alive():
                sandbox.pss_mb = 40.0  # more clones now share those pages
            backend.pss_mb = 40.0
            wait_for(lambda: ready(pool) == 8, "the pool to grow once measured again")
            assert pool.stats()[0]["memory_mb"] == 40


@pytest.mark.unit
def test_a_pre_warmed_key_takes_budget_back_from_demand_elsewhere() -> None:
    backend = FakeBackend()
    busy, quiet = fake_spec(memory_mb=100, language="busy"), fake_spec(memory_mb=100, language="quiet")
    with Pool(PoolSettings(workers=2, max_size=8, memory_budget_mb=200)) as pool:
        backend.gate.clear()  # starts hang: the takes below miss, and demand raises busy's target
        takers = [threading.Thread(target=lambda: pool.take(backend, busy)) for _ in range(3)]
        for taker in takers:
            taker.start()
        wait_for(lambda: pool.stats()[0]["target"] >= 2, "demand to raise the busy key's target")
        backend.gate.set()
        for taker in takers:
            taker.join(timeout=WAIT_SECONDS)
        wait_for(lambda: ready(pool) == 2, "busy's demand to fill the whole budget")
        pool.warm(backend, quiet, 1)  # a pre-warmed key, below its base, with no budget left
        wait_for(lambda: ready_by_key(pool).get("language=quiet") == 1, "the pre-warmed key to get its sandbox")
        assert ready_by_key(pool)["language=busy"] == 1, "one of busy's surplus sandboxes made room"


@pytest.mark.unit
def test_a_key_nobody_asks_for_idles_down() -> None:
    backend = FakeBackend()
    clock = FakeClock()
    with Pool(PoolSettings(workers=1, idle_seconds=300), clock=clock) as pool:
        pool.warm(backend, fake_spec(), 2)
        wait_for(lambda: ready(pool) == 2, "the pool to fill")
        clock.advance(299)
        manager_ticks(clock, 1)
        assert ready(pool) == 2 and len(backend.alive()) == 2, "emptied before it was idle"
        clock.advance(1)
        wait_for(lambda: ready(pool) == 0 and backend.alive() == [], "the idle pool to empty")
        assert len(backend.started) == 2


@pytest.mark.unit
def test_before_start_and_after_close_the_pool_serves_nothing_and_destroys_inline() -> None:
    backend = FakeBackend()
    spec = fake_spec()
    pool = Pool(PoolSettings())
    assert pool.take(backend, spec) is None
    sandbox = backend.start(spec)
    pool.dispose(sandbox)
    assert sandbox.destroyed == 1  # at once: nothing runs in the background of an unstarted pool
    pool.start()
    pool.warm(backend, spec, 2)
    wait_for(lambda: ready(pool) == 2, "the pool to fill")
    pool.close()
    assert backend.alive() == []
    assert pool.take(backend, spec) is None
