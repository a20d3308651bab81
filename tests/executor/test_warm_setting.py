"""``pool.warm`` decides whether a spec carries a warm-up a backend may run in what it starts ahead.

Not the unit tier: the jail backend it prepares the spec with wants root."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra_operator.config import PoolSettings, Settings
from infra_operator.executor import _limits
from infra_operator.images import RootfsInfo
from infra_operator.services import Services


@pytest.mark.parametrize("warm", [True, False])
def test_the_warm_setting_gives_or_withholds_the_samples_warm_up(tmp_path: Path, warm: bool) -> None:
    settings = Settings(data_dir=tmp_path, pool=PoolSettings(warm=warm))
    services = Services(settings)
    python = services.catalog.get("python")
    rootfs = RootfsInfo(language="python", path=tmp_path / "rootfs-python.squashfs", size=1, sha256="0" * 64,
                        version="Python 3", packages=("python3",), built_at=0.0, build_seconds=0.0)
    spec = services.executor.spec_for(services.backends.choose("jail"), python, rootfs, _limits.resolve(settings.limits))
    if warm:
        assert spec.warmup is not None and spec.warmup.run == tuple(python.run)
    else:
        assert spec.warmup is None
