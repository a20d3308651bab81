"""Settings from the environment as the README shows them."""

from __future__ import annotations

import pytest

from infra_operator.config import LimitRange, Limits, Settings

pytestmark = pytest.mark.unit


def test_one_nested_variable_changes_one_value_and_keeps_the_rest_of_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRA_OPERATOR_LIMITS__TIMEOUT_SECONDS__MAXIMUM", "600")
    limits = Settings().limits
    assert limits.timeout_seconds == LimitRange(default=30, minimum=1, maximum=600)
    assert limits.memory_mb == Limits().memory_mb
