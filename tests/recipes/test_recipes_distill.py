"""Distillation recipe at toy scale: losses, hard prompt sampling, hardness weights, resuming."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from recipes.data.sa1b import generate_folder
from recipes.data.scenes import SceneConfig
from recipes.distill.config import DistillConfig
from recipes.distill.data import prepare_sample
from recipes.distill.losses import dice_loss, focal_loss, hardness_weight, mask_iou
from recipes.distill.prompts import initial_prompts, mask_boxes, next_points, to_input_frame
from recipes.distill.train import LOG_NAME, Trainer, build_student, decode, read_log

from ..conftest import TINY_TINYVIT

pytestmark = pytest.mark.slow

TINY_ENCODER = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(TINY_TINYVIT).items() if k != "img_size"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    generate_folder(folder, range(6), SceneConfig(min_size=128, max_size=192, kinds={"fluorescence": 1, "coins": 1}), progress=False)
    return folder


def tiny_config(corpus, out, **overrides) -> DistillConfig:
    values = dict(data=str(corpus), out=str(out), resolution=256, student_encoder=TINY_ENCODER, batch_size=2,
                  prompts_per_image=8, max_rounds=2, lr=3e-3, warmup_steps=1, steps=40, bf16=False, progress=False,
                  save_every=1000, hflip=False)
    values.update(overrides)
    return DistillConfig(**values)


def test_hardness_weight_follows_the_formula():
    t, s = torch.tensor([0.9, 0.5, 0.2]), torch.tensor([0.3, 0.5, 0.8])
    expected = 1 / (1 + torch.exp(-(t / (s + 1e-3) - 1)))
    assert torch.allclose(hardness_weight(t, s), expected)
    # harder masks (student far behind the teacher) weigh more; 0.5 when they are equal
    w = hardness_weight(t, s)
    assert w[0] > w[1] > w[2]
    assert torch.isclose(hardness_weight(torch.tensor(0.5), torch.tensor(0.5 - 1e-3)), torch.tensor(0.5), atol=1e-4)


def test_mask_losses_on_known_cases():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    perfect = (target * 40 - 20)[:, None]
    wrong = -perfect
    assert focal_loss(perfect, target)[0, 0] < 1e-6 < focal_loss(wrong, target)[0, 0]
    assert dice_loss(perfect, target)[0, 0] < 0.05 and dice_loss(wrong, target)[0, 0] > 0.9
    assert mask_iou(perfect, target)[0, 0] == 1.0 and mask_iou(wrong, target)[0, 0] == 0.0


def test_hard_prompt_sampling_draws_only_from_the_error_region():
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    gt = torch.from_numpy(rng.random((64, 32, 32)) > 0.6)
    pred = torch.from_numpy(rng.random((64, 32, 32)) > 0.6)
    pred[0] = gt[0]  # a perfect prediction has no error: its click is padding
    for _ in range(5):
        coords, labels = next_points(gt, pred, gen)
        assert coords.shape == (64, 1, 2) and labels.shape == (64, 1)
        assert labels[0, 0] == -1
        cols = ((coords[1:, 0, 0] + 0.5) / 4 - 0.5).round().long()
        rows = ((coords[1:, 0, 1] + 0.5) / 4 - 0.5).round().long()
        k = torch.arange(1, 64)
        error = gt ^ pred
        assert error[k, rows, cols].all()
        assert torch.equal(labels[1:, 0], gt[k, rows, cols].long())  # missed object -> positive, spill -> negative


def test_initial_prompts_are_inside_masks_or_their_boxes():
    gen = torch.Generator().manual_seed(1)
    gt = torch.zeros(40, 16, 16, dtype=torch.bool)
    for i in range(40):
        gt[i, i % 8 : i % 8 + 5, (i * 3) % 10 : (i * 3) % 10 + 6] = True
    coords, labels = initial_prompts(gt, box_fraction=0.5, generator=gen)
    points = labels[:, 0] == 1
    assert 5 < points.sum() < 35 and torch.equal(labels[points, 1], torch.full((int(points.sum()),), -1))
    assert torch.equal(labels[~points], torch.tensor([2, 3]).expand(int((~points).sum()), 2))
    cols = ((coords[points, 0, 0] + 0.5) / 4 - 0.5).round().long()
    rows = ((coords[points, 0, 1] + 0.5) / 4 - 0.5).round().long()
    assert gt[points][torch.arange(int(points.sum())), rows, cols].all()
    boxes = mask_boxes(gt[~points])
    assert (coords[~points].reshape(-1, 4) - boxes).abs().max() <= 20  # jitter is bounded
    assert torch.allclose(to_input_frame(torch.tensor([0]), torch.tensor([0])), torch.tensor([[1.5, 1.5]]))


def test_crop_in_frame_samples(corpus):
    import random

    from recipes.data.sa1b import Sa1bFolder

    record = Sa1bFolder(corpus)[0]
    whole = prepare_sample(record, 256)
    cropped = prepare_sample(record, 256, crop=128, rng=random.Random(3))
    assert whole.image.shape == (3, 256, 256) and whole.gt.shape[1:] == (64, 64)
    assert cropped.image.shape == (3, 128, 128) and cropped.gt.shape[1:] == (32, 32)
    ox, oy = cropped.offset
    assert ox % 16 == 0 and oy % 16 == 0
    assert torch.equal(cropped.image, whole.image[:, oy : oy + 128, ox : ox + 128])


def test_decode_with_offset_uses_the_frame_positional_encoding():
    """A window at offset (0, 0) covering the whole frame is exactly the plain decoder call."""
    torch.manual_seed(0)
    sam = build_student(256, encoder=TINY_ENCODER).eval()
    emb = torch.randn(1, 256, 16, 16)
    coords, labels = torch.tensor([[[100.0, 60.0], [0.0, 0.0]]]), torch.tensor([[1, -1]])
    with torch.no_grad():
        ours = decode(sam, emb, coords, labels, None)
        sparse, dense = sam.prompt_encoder((coords[:, :1], labels[:, :1]), None, None)
        ref, _ = sam.mask_decoder(emb, sam.prompt_encoder.get_dense_pe(), sparse, dense)
        shifted = decode(sam, emb[..., 4:, 4:], coords - 64, labels, None, offset=(64, 64))
    assert torch.allclose(ours.logits, ref, atol=1e-5)
    assert shifted.logits.shape == (1, 3, 48, 48)


def _fixed_batch_run(trainer: Trainer, steps: int) -> list[dict]:
    batch = trainer.next_batch()
    return [trainer.train_step(batch) for _ in range(steps)]


def test_ground_truth_mode_losses_decrease_on_a_fixed_batch(corpus, tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(corpus, tmp_path, max_rounds=0))
    log = _fixed_batch_run(trainer, 30)
    assert set(log[0]) >= {"focal", "dice", "iou"} and "embed" not in log[0]
    for term in ("loss", "focal", "dice"):
        first, last = np.mean([r[term] for r in log[:3]]), np.mean([r[term] for r in log[-3:]])
        assert last < first, term


def test_distillation_mode_computes_every_term_and_they_decrease(corpus, tmp_path):
    torch.manual_seed(1)
    teacher = build_student(256, encoder=TINY_ENCODER)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pth")
    trainer = Trainer(tiny_config(corpus, tmp_path / "run", teacher=str(tmp_path / "teacher.pth"), max_rounds=0))
    log = _fixed_batch_run(trainer, 30)
    assert set(log[0]) >= {"focal", "dice", "iou", "embed", "tokens", "output"}
    for term in ("embed", "tokens", "output", "loss"):
        first, last = np.mean([r[term] for r in log[:3]]), np.mean([r[term] for r in log[-3:]])
        assert last < first, term
    # one teacher pass per distinct image of the fixed batch; the other 29 steps were cache hits
    files = list(trainer.teacher_embeddings.folder.glob("*.npy"))
    assert trainer.teacher_embeddings.computed == len(files) in (1, 2)


def test_training_resumes_where_it_stopped_and_logs(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path, steps=3, prompts_per_image=4, max_rounds=1)
    Trainer(cfg).run()
    again = Trainer(dataclasses.replace(cfg, steps=5))
    assert again.resume() and again.step == 3
    again.run()
    log = read_log(tmp_path / LOG_NAME)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 5
    from recipes.distill.plot import plot_losses

    png = plot_losses(tmp_path / LOG_NAME, tmp_path / "curves.png")
    assert png.stat().st_size > 1000


def test_stop_request_and_time_budget_end_training_with_a_checkpoint(corpus, tmp_path):
    trainer = Trainer(tiny_config(corpus, tmp_path, steps=50, prompts_per_image=2, max_rounds=0))
    path = trainer.run(should_stop=lambda: trainer.step >= 2)
    assert trainer.step == 2 and path.exists()
    exported = trainer.export_weights(tmp_path / "student.pth", half=True)
    from tinysam_annotate.build import read_checkpoint

    sd = read_checkpoint(exported)
    assert sd["mask_decoder.iou_token.weight"].dtype == torch.float16


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(ValueError, match="crop"):
        DistillConfig(resolution=256, crop=320)
    with pytest.raises(ValueError, match="multiple of 64"):
        DistillConfig(resolution=250)
    (tmp_path / "c.yaml").write_text("steps: 7\nbatch_size: 3\n")
    assert DistillConfig.from_yaml(tmp_path / "c.yaml", lr=0.5).steps == 7
    (tmp_path / "bad.yaml").write_text("stepz: 7\n")
    with pytest.raises(ValueError, match="stepz"):
        DistillConfig.from_yaml(tmp_path / "bad.yaml")


def test_command_line_trains_exports_and_plots(corpus, tmp_path):
    from recipes.distill.__main__ import main

    (tmp_path / "c.yaml").write_text(
        f"data: {corpus}\nout: {tmp_path / 'run'}\nresolution: 256\nbatch_size: 1\nprompts_per_image: 2\nmax_rounds: 1\n"
        "bf16: false\nprogress: false\nhflip: false\n"
    )
    encoder = "{" + ", ".join(f"{k}: {v}" for k, v in TINY_ENCODER.items()) + "}"
    main([str(tmp_path / "c.yaml"), "--steps", "2", "--student-encoder", encoder, "--export", str(tmp_path / "s.pth")])
    assert (tmp_path / "run" / "loss_curves.png").exists() and (tmp_path / "s.pth").exists()
    assert [r["step"] for r in read_log(tmp_path / "run" / LOG_NAME)] == [1, 2]


def test_dense_targets_separate_touching_objects():
    from recipes.distill.dense import dense_targets

    gt = torch.zeros(2, 12, 12)
    gt[0, 2:8, 1:6] = 1
    gt[1, 2:8, 6:11] = 1  # touches object 0 along column 5 | 6
    fg, boundary, centre = dense_targets(gt)
    assert torch.equal(fg, (gt > 0.5).any(dim=0).float())
    assert boundary[4, 5] == 1 and boundary[4, 6] == 1  # the shared border is boundary on both sides
    assert boundary[4, 3] == 0 and boundary[0, 0] == 0
    assert centre.max() == 1 and centre[0, 0] == 0 and centre[2, 1] < centre[4, 3]
    assert dense_targets(torch.zeros(0, 12, 12)).shape == (3, 12, 12)


def test_outside_box_loss_penalises_spill_only_outside_box_and_object():
    from recipes.distill.losses import outside_box_loss

    target = torch.zeros(1, 16, 16)
    target[0, 4:12, 4:12] = 1
    box = torch.tensor([[16.0, 16.0, 48.0, 48.0]])  # pixels 4..11 in the low-res frame at stride 4
    inside = torch.full((1, 3, 16, 16), -20.0)
    inside[..., 4:12, 4:12] = 20.0
    spilling = inside.clone()
    spilling[..., :, 13:] = 20.0
    assert outside_box_loss(inside, box, target, 4) < 1e-6
    assert outside_box_loss(spilling, box, target, 4) > 1.0
    tight = torch.tensor([[24.0, 24.0, 40.0, 40.0]])  # a jittered box that cuts the object: object pixels are free
    assert outside_box_loss(inside, tight, target, 4) < 1e-6


def test_phases_change_crop_and_batch_at_their_steps(corpus, tmp_path):
    phases = [{"from_step": 0, "crop": 128, "batch_size": 3}, {"from_step": 2, "crop": 256, "batch_size": 1}]
    cfg = tiny_config(corpus, tmp_path, phases=phases, prompts_per_image=2, max_rounds=0)
    assert cfg.at_step(1).crop == 128 and cfg.at_step(2).crop == 256 and cfg.at_step(9).batch_size == 1
    trainer = Trainer(cfg)
    first = trainer.next_batch()
    assert len(first) == 3 and first[0].image.shape[-1] == 128
    trainer.step = 2
    later = trainer.next_batch()
    assert len(later) == 1 and later[0].image.shape[-1] == 256
    with pytest.raises(ValueError, match="from_step"):
        tiny_config(corpus, tmp_path, phases=[{"crop": 128}])
    with pytest.raises(ValueError, match="crop"):
        tiny_config(corpus, tmp_path, phases=[{"from_step": 0, "crop": 100}])
    with pytest.raises(ValueError, match="lr"):
        tiny_config(corpus, tmp_path, phases=[{"from_step": 0, "lr": 1.0}])


def test_scale_augmentation_shrinks_the_content_inside_the_frame(corpus):
    from recipes.data.sa1b import Sa1bFolder

    record = Sa1bFolder(corpus)[0]
    whole, half = prepare_sample(record, 256), prepare_sample(record, 256, scale=0.5)
    assert half.image.shape == whole.image.shape
    assert (half.gt > 0.5).sum() < 0.4 * (whole.gt > 0.5).sum()  # a quarter of the area, give or take resampling
    assert torch.all(half.image[:, 130:, 130:] == 0)  # padding beyond the half-size content


def test_new_loss_terms_train_and_the_dense_head_is_saved_but_not_exported(corpus, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(corpus, tmp_path, max_rounds=0, w_dense=1.0, w_outside=1.0, iou_loss="mse", box_fraction=1.0)
    trainer = Trainer(cfg)
    log = _fixed_batch_run(trainer, 25)
    assert {"dense", "outside", "t_encoder", "t_decoder", "t_backward"} <= set(log[0])
    for term in ("dense", "outside", "loss"):
        first, last = np.mean([r[term] for r in log[:3]]), np.mean([r[term] for r in log[-3:]])
        assert last < first, term
    trainer.save()
    again = Trainer(cfg)
    assert again.resume()
    for a, b in zip(trainer.dense_head.parameters(), again.dense_head.parameters(), strict=True):
        assert torch.equal(a, b)
    exported = torch.load(trainer.export_weights(tmp_path / "s.pth"), weights_only=True)
    assert not any(k.startswith("dense") for k in exported) and set(exported) == set(trainer.student.state_dict())


def test_bf16_is_chosen_only_where_it_is_fast(corpus, tmp_path, monkeypatch):
    from recipes.distill import train

    monkeypatch.setattr(train, "fast_bf16", lambda device: False)
    assert Trainer(tiny_config(corpus, tmp_path, bf16=None)).autocast["enabled"] is False
    monkeypatch.setattr(train, "fast_bf16", lambda device: True)
    assert Trainer(tiny_config(corpus, tmp_path, bf16=None)).autocast["enabled"] is True
    assert Trainer(tiny_config(corpus, tmp_path, bf16=False)).autocast["enabled"] is False


def test_stop_file_ends_a_command_line_run_cleanly(corpus, tmp_path):
    from recipes.distill.__main__ import _stop_requests

    with _stop_requests(tmp_path) as stop:
        assert not stop()
        (tmp_path / "STOP").touch()
        assert stop()


def test_moving_average_is_exported_and_resumed(corpus, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(corpus, tmp_path, max_rounds=0, ema_decay=0.9, steps=4, prompts_per_image=2)
    trainer = Trainer(cfg)
    trainer.run()
    name = "mask_decoder.iou_token.weight"
    raw, ema = trainer.student.state_dict()[name], trainer.ema[name]
    assert not torch.equal(raw, ema)
    exported = torch.load(trainer.export_weights(tmp_path / "s.pth"), weights_only=True)
    assert torch.equal(exported[name], ema)
    again = Trainer(cfg)
    assert again.resume() and torch.equal(again.ema[name], ema)
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_config(corpus, tmp_path, ema_decay=1.0)


def test_pilots_forked_from_a_run_count_their_cost_from_the_fork_and_score_calibrated_heads(corpus, tmp_path):
    from recipes.bench.pilots import quality, run_summary, start_point, with_calibrated_head
    from recipes.data.sa1b import Sa1bFolder

    cfg = tiny_config(corpus, tmp_path / "run", steps=2, prompts_per_image=2, max_rounds=0, ema_decay=0.9)
    Trainer(cfg).run()
    fork = tmp_path / "fork.pt"
    fork.write_bytes((tmp_path / "run" / "last.pt").read_bytes())
    Trainer(dataclasses.replace(cfg, steps=5)).run()
    weights, since = start_point(fork)
    assert since["step"] == 2 and since["elapsed_s"] > 0
    _, cost = run_summary(tmp_path / "run", since)
    _, whole = run_summary(tmp_path / "run")
    assert cost["steps"] == 3 and cost["images"] == 3 * cfg.batch_size and whole["steps"] == 5
    assert 0 < cost["core_hours"] < whole["core_hours"]
    fitted = with_calibrated_head(weights, corpus, 3, tmp_path, "fork")
    changed = {k for k in weights if not torch.equal(weights[k].float(), fitted[k].float())}
    assert changed and all(k.startswith("mask_decoder.iou_prediction_head.") for k in changed)
    scores = quality(fitted, Sa1bFolder(corpus), scenes=2, objects=2, encoder=TINY_ENCODER, resolution=256,
                     click_scenes=1, clicks=3)
    assert len(scores["clicks"]) == 3 and all(0.0 <= v <= 1.0 for v in scores["clicks"])
    assert 0.0 <= scores["box"] <= 1.0 and 0.0 <= scores["nuclei_box"] <= 1.0
