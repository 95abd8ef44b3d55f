"""Checkpoint loading: wrappers, strictness, and clear errors for bad files."""

from __future__ import annotations

import collections

import pytest
import torch

from tinysam_annotate import sam_model_registry
from tinysam_annotate.build import SamConfig, build_sam, filter_checkpoint, sam_from_checkpoint
from tinysam_annotate.errors import CheckpointError

from ..conftest import TINY_TINYVIT, TINY_VIT, make_tiny_sam


@pytest.fixture(scope="module")
def tiny_state():
    return make_tiny_sam().state_dict()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"state_dict": sd},
        lambda sd: {"module." + k: v for k, v in sd.items()},
        lambda sd: {"model": {"module." + k: v for k, v in sd.items()}},
    ],
    ids=["plain", "model", "state_dict", "module-prefix", "nested"],
)
def test_wrapped_checkpoints_load(tmp_path, tiny_state, wrap):
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(tiny_state), path)
    sam = sam_from_checkpoint(path, SamConfig(TINY_TINYVIT, always_multimask=True))
    for key, value in sam.state_dict().items():
        assert torch.equal(value, tiny_state[key])


def test_truncated_checkpoint_is_a_clear_error(tmp_path, tiny_state):
    path = tmp_path / "ckpt.pth"
    torch.save(tiny_state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupted"):
        sam_from_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"hello world", bytes(range(256)) * 20])
def test_empty_or_garbage_file(tmp_path, content):
    """Any bytes: a CheckpointError, never the unpickler's raw KeyError / IndexError."""
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        sam_from_checkpoint(path)


def test_missing_file():
    with pytest.raises(CheckpointError, match="not found"):
        sam_from_checkpoint("/nonexistent/model.pth")


def test_wrong_architecture_names_the_keys(tmp_path, tiny_state):
    path = tmp_path / "tinyvit.pth"
    torch.save(tiny_state, path)
    with pytest.raises(CheckpointError) as info:
        sam_model_registry["vit_b"](checkpoint=path)
    message = str(info.value)
    assert "missing keys" in message and "image_encoder.blocks.0" in message
    assert "unexpected keys" in message and "image_encoder.layers" in message


def test_shape_mismatch_is_named(tmp_path):
    small = make_tiny_sam("vit").state_dict()
    path = tmp_path / "vit.pth"
    torch.save(small, path)
    wider = SamConfig(TINY_VIT.__class__(**{**TINY_VIT.__dict__, "embed_dim": 64}))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        sam_from_checkpoint(path, wider)


def test_missing_keys_from_partial_checkpoint(tmp_path, tiny_state):
    partial = collections.OrderedDict((k, v) for k, v in tiny_state.items() if not k.startswith("mask_decoder"))
    path = tmp_path / "partial.pth"
    torch.save(partial, path)
    with pytest.raises(CheckpointError, match="missing keys.*mask_decoder"):
        sam_from_checkpoint(path, SamConfig(TINY_TINYVIT))


class _Evil:
    def __reduce__(self):
        return (print, ("executed",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _Evil()}, path)
    with pytest.raises(CheckpointError):
        sam_from_checkpoint(path)


def test_filter_rejects_non_mapping():
    with pytest.raises(CheckpointError):
        filter_checkpoint([1, 2, 3])


def test_registry_builds_untrained_models():
    assert set(sam_model_registry) >= {"vit_t", "vit_b", "vit_l", "vit_h"}
    sam = build_sam(SamConfig(TINY_TINYVIT))
    assert not sam.training
