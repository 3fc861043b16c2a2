from __future__ import annotations

import dataclasses

import pytest

import asynctrace.analysis as analysis


def test_all_is_alphabetical_and_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(analysis).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith(analysis.__name__)
    }

    assert analysis.__all__ == sorted(analysis.__all__)
    assert set(analysis.__all__) == public


@pytest.mark.parametrize(
    "result_type",
    [
        analysis.Bottleneck,
        analysis.Comparison,
        analysis.CriticalSegment,
        analysis.ErrorChain,
        analysis.ErrorHop,
        analysis.OperationDeviation,
    ],
)
def test_result_types_are_frozen_slotted_dataclasses(result_type: type) -> None:
    assert dataclasses.is_dataclass(result_type)
    assert result_type.__dataclass_params__.frozen  # type: ignore[attr-defined]  # set by @dataclass
    assert "__slots__" in vars(result_type)
