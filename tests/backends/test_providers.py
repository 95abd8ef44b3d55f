"""Provider planning: TensorRT -> CUDA -> CPU, with fallbacks reported and strict mode (no GPU needed)."""

from __future__ import annotations

import pytest

from tinysam_annotate.backends.providers import CPU, CUDA, TENSORRT, canonical_provider, physical_cores, plan_providers
from tinysam_annotate.errors import ProviderError

ALL = [TENSORRT, CUDA, CPU]


def test_default_order_takes_what_exists():
    assert plan_providers(None, ALL).names == ALL
    assert plan_providers(None, [CUDA, CPU]).names == [CUDA, CPU]
    plan = plan_providers(None, [CPU])
    assert plan.names == [CPU] and plan.missing == []  # absent GPUs are not a fallback when nothing was asked


def test_requested_but_absent_falls_back_and_is_reported():
    plan = plan_providers(["tensorrt", "cuda"], [CPU])
    assert plan.names == [CPU] and plan.missing == [TENSORRT, CUDA]


def test_strict_mode_raises():
    with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
        plan_providers(["cuda"], [CPU], strict=True)
    assert plan_providers(["cuda"], [CUDA, CPU], strict=True).names == [CUDA]


def test_tensorrt_options_follow_precision_and_cache(tmp_path):
    plan = plan_providers(["tensorrt"], ALL, precision="int8", cache_dir=tmp_path / "trt")
    options = dict(plan.providers)[TENSORRT]
    assert options["trt_int8_enable"] and options["trt_fp16_enable"]
    assert options["trt_engine_cache_enable"] and options["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert options["trt_timing_cache_enable"] and (tmp_path / "trt").is_dir()
    assert dict(plan_providers(["tensorrt"], ALL, precision="fp32").providers)[TENSORRT]["trt_fp16_enable"] is False
    assert dict(plan.providers)[CPU] == {}


def test_aliases_and_unknown_names():
    assert canonical_provider("TRT") == TENSORRT and canonical_provider("gpu") == CUDA
    assert canonical_provider("OpenVINOExecutionProvider") == "OpenVINOExecutionProvider"
    with pytest.raises(ProviderError, match="unknown execution provider"):
        canonical_provider("quantum")


def test_physical_cores_is_sane():
    assert 1 <= physical_cores() <= 4096


def test_thread_cap_from_the_environment(monkeypatch):
    from tinysam_annotate.backends.providers import physical_cores

    monkeypatch.setenv("TINYSAM_ANNOTATE_THREADS", "1")
    assert physical_cores() == 1
    monkeypatch.setenv("TINYSAM_ANNOTATE_THREADS", "junk")
    assert physical_cores() >= 1
