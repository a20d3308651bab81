"""Which backends exist, and which one serves a request.

``auto`` picks the strongest backend that works here, by its capabilities: a
Firecracker microVM, else a QEMU microVM with KVM, else the jail. A request that
names a backend gets that one or a clear error, never a silent substitute.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from ..config import Settings
from ..errors import BackendUnavailable, InvalidRequest
from .base import Backend, Capabilities, GuestImages
from .firecracker import FirecrackerBackend
from .jail import JailBackend
from .qemu import QemuBackend

BackendFactory = Callable[[Settings], Backend]


def factories(guest_images: Callable[[Settings], GuestImages]) -> dict[str, BackendFactory]:
    """Every backend this build knows; ``guest_images`` finds what the microVMs boot."""
    return {
        "jail": lambda settings: JailBackend(settings.run_dir, settings.runtime_dir),
        "qemu": lambda settings: QemuBackend(settings, guest_images(settings)),
        "firecracker": lambda settings: FirecrackerBackend(settings, guest_images(settings)),
    }


def _strong_enough_for_auto(capabilities: Capabilities) -> bool:
    if not capabilities.usable:
        return False
    # QEMU under TCG is a real microVM but far slower than the jail; auto wants it only with KVM.
    return not (capabilities.name == "qemu" and capabilities.accelerator != "kvm")


AUTO_ORDER = ("firecracker", "qemu", "jail")


class BackendSet:
    def __init__(self, settings: Settings, factories: dict[str, BackendFactory]) -> None:
        self.settings = settings
        self._factories = factories
        self._backends: dict[str, Backend] = {}
        self._usable: dict[str, Backend] = {}

    def names(self) -> list[str]:
        return list(self._factories)

    def get(self, name: str) -> Backend:
        if name not in self._factories:
            raise InvalidRequest(f"unknown backend {name!r}: choose one of auto, {', '.join(self._factories)}")
        if name not in self._backends:
            self._backends[name] = self._factories[name](self.settings)
        return self._backends[name]

    @cached_property
    def default(self) -> Backend:
        """The server's backend: the configured one, or auto's choice; checked once at start-up."""
        return self._resolve(self.settings.backend)

    def _resolve(self, name: str) -> Backend:
        if name == "auto":
            for candidate in AUTO_ORDER:
                if candidate in self._factories and _strong_enough_for_auto(self.get(candidate).capabilities()):
                    return self.get(candidate)
            raise BackendUnavailable("no backend works on this host: run `infra.operator setup` to see why")
        if name in self._usable:
            return self._usable[name]
        backend = self.get(name)
        capabilities = backend.capabilities()  # probes the host: once per backend, not per request
        if not capabilities.usable:
            why = "; ".join(capabilities.missing) or "it is not usable here"
            raise BackendUnavailable(f"backend {name} cannot run on this host: {why}")
        self._usable[name] = backend
        return backend

    def choose(self, requested: str | None) -> Backend:
        if requested is None or requested == "auto":
            return self.default
        return self._resolve(requested)

    def for_snapshots(self, requested: str | None) -> Backend:
        """The named backend; else the server's, when it can make snapshots; else the strongest
        microVM backend that works here (QEMU under TCG counts: its snapshots are real)."""
        if requested is not None and requested != "auto":
            return self._resolve(requested)
        candidates = [self.default] if self.default.capabilities().snapshots else []
        candidates += [self.get(name) for name in AUTO_ORDER if name in self._factories]
        for backend in candidates:
            capabilities = backend.capabilities()
            if capabilities.usable and capabilities.snapshots:
                return backend
        raise BackendUnavailable("no backend on this host can make snapshots: run `infra.operator setup` to see why")

    def capabilities(self) -> list[Capabilities]:
        return [self.get(name).capabilities() for name in self._factories]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()

    def sweep(self) -> list[str]:
        return [line for name in self._factories for line in self.get(name).sweep()]
