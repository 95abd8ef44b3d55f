"""TinySAM's full-stage distillation with hard mask weighting and hard prompt sampling.

One step: encode a batch of images with the student (and look up the teacher's cached embeddings);
for each image pick ``prompts_per_image`` objects, draw the round ``i`` to train, roll the student
forward ``i`` rounds without gradients (each adds a click from the error region and feeds the last
logits back as mask_input), then train on round ``i``:

    loss = w_embed * L1(E_S, E_T) + w_tokens * L1(tokens_S, tokens_T) + w_output * mean(H * L1(M_S, M_T))
         + w_focal * focal + w_dice * dice + w_iou * L1(IoU_pred, IoU_true)

The first three terms exist only with a teacher; without one (ground-truth mode) the last three train alone.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from tinysam_annotate.build import SamConfig, build_sam, infer_config, load_state_dict_strict, read_checkpoint
from tinysam_annotate.modeling import Sam, TinyViTConfig
from tinysam_annotate.registry import MODEL_SPECS, require_model_file

from ..data.sa1b import Sa1bFolder
from .config import DistillConfig
from .data import EMBED_STRIDE, LOW_RES_STRIDE, TrainSample, prepare_sample
from .dense import DenseHead, dense_loss, dense_targets
from .losses import distillation_losses, ground_truth_losses, mask_iou, outside_box_loss
from .prompts import initial_prompts, next_points
from .teacher import TeacherEmbeddings

CHECKPOINT_NAME = "last.pt"
LOG_NAME = "log.jsonl"


@dataclass
class DecoderOutput:
    logits: torch.Tensor  # K x 3 x h x w (multimask outputs)
    iou: torch.Tensor  # K x 3
    tokens: torch.Tensor  # K x 5 x C (IoU token + 4 mask tokens after the transformer)


def decode(
    sam: Sam,
    embedding: torch.Tensor,
    coords: torch.Tensor,
    labels: torch.Tensor,
    mask_input: torch.Tensor | None,
    offset: tuple[int, int] = (0, 0),
) -> DecoderOutput:
    """Prompt encoder + mask decoder on one image embedding (1 x C x g x g) for K prompts.

    ``coords`` are K x N x 2 (x, y) in the window; ``offset`` places the window in the model's frame so
    prompts and the dense positional encoding use frame positions (crop-in-frame training).
    """
    pe = sam.prompt_encoder
    sparse = pe.embed_labeled_points(coords + coords.new_tensor(offset), labels)
    grid_h, grid_w = embedding.shape[-2:]
    cx, cy = offset[0] // EMBED_STRIDE, offset[1] // EMBED_STRIDE
    dense_pe = pe.get_dense_pe()[..., cy : cy + grid_h, cx : cx + grid_w]
    if mask_input is not None:
        dense = pe.embed_masks(mask_input[:, None])
    else:  # one dense embedding for all prompts: the decoder broadcasts it (and shares the image-side work)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, grid_h, grid_w)
    logits, iou, tokens = sam.mask_decoder.predict_masks(embedding, dense_pe, sparse, dense)
    keep = slice(1, None)  # TinySAM always uses the three multimask outputs
    return DecoderOutput(logits[:, keep].float(), iou[:, keep].float(), tokens.float())


def build_student(resolution: int = 1024, init: str | None = None, encoder: dict | None = None) -> Sam:
    """A TinySAM whose frame is ``resolution``, fresh or from a checkpoint (the weights do not depend on it).

    ``encoder`` overrides TinyViTConfig fields (lists are fine); the default is TinySAM's TinyViT-5M.
    """
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in (encoder or {}).items()}
    config = SamConfig(TinyViTConfig(**{**overrides, "img_size": resolution}), always_multimask=True)
    sam = build_sam(config)
    if init:
        load_state_dict_strict(sam, read_checkpoint(init), source=f"student init {init}")
    return sam


def build_teacher(name_or_path: str, resolution: int) -> Sam:
    """Any model our registry loads, rebuilt at ``resolution`` when its encoder allows it (TinyViT does; ViT needs 1024)."""
    path = require_model_file(MODEL_SPECS[name_or_path]) if name_or_path in MODEL_SPECS else Path(name_or_path)
    state_dict = read_checkpoint(path)
    config = infer_config(state_dict)
    if isinstance(config.encoder, TinyViTConfig) and config.img_size != resolution:
        config = SamConfig(TinyViTConfig(**{**config.encoder.__dict__, "img_size": resolution}), config.always_multimask)
    elif config.img_size != resolution:
        raise ValueError(f"teacher {name_or_path} runs at {config.img_size} px; set resolution: {config.img_size}")
    sam = build_sam(config)
    load_state_dict_strict(sam, state_dict, source=f"teacher {name_or_path}")
    return sam.eval().requires_grad_(False)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up here: CUDA, or a CPU with AVX-512 BF16 / AMX. On an AVX2-only
    CPU oneDNN emulates bf16 and a 2048 x 2048 matmul measured 375x slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def lr_at(step: int, cfg: DistillConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def draw_round(cfg: DistillConfig, rng: random.Random) -> int:
    if rng.random() < cfg.round0_fraction:
        return 0
    return rng.randint(0, cfg.max_rounds)


class Trainer:
    """Owns the student, optimiser, data and teacher; ``run`` trains to ``cfg.steps`` and can resume.

    Batches come from the SA-1B folder ``cfg.data``, or from ``batches`` (an endless iterator of sample lists,
    e.g. scenes generated on the fly by DataLoader workers) when given.
    """

    def __init__(self, cfg: DistillConfig, batches: Iterator[list[TrainSample]] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.student = build_student(cfg.resolution, cfg.student_init, cfg.student_encoder).to(self.device).train()
        uses_dense = cfg.w_dense > 0 or any(p.get("w_dense", 0) > 0 for p in cfg.phases or [])
        channels = self.student.prompt_encoder.embed_dim
        self.dense_head = DenseHead(channels).to(self.device).train() if uses_dense else None
        params = list(self.student.parameters()) + (list(self.dense_head.parameters()) if self.dense_head else [])
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema: dict[str, torch.Tensor] | None = self._weights_copy() if cfg.ema_decay > 0 else None
        self.batches = batches
        self.data = Sa1bFolder(cfg.data) if batches is None else None
        self.teacher: Sam | None = None
        self.teacher_embeddings: TeacherEmbeddings | None = None
        if cfg.teacher:
            self.teacher = build_teacher(cfg.teacher, cfg.resolution).to(self.device)
            cache_dir = Path(cfg.teacher_cache) if cfg.teacher_cache else self.out / "teacher_cache"
            self.teacher_embeddings = TeacherEmbeddings(self.teacher, cache_dir)
        self.step = 0
        self.elapsed_s = 0.0  # wall seconds of training so far, over all sessions of this run
        self.rng = random.Random(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        bf16 = cfg.bf16 if cfg.bf16 is not None else fast_bf16(self.device)
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=bf16)

    # ---------------------------------------------------------------------------------------- state

    def save(self) -> Path:
        state = {
            "model": self.student.state_dict(),
            "dense_head": self.dense_head.state_dict() if self.dense_head else None,
            "ema": self.ema,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "config": self.cfg.to_dict(),
            "rng": self.rng.getstate(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        path = self.out / CHECKPOINT_NAME
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def resume(self) -> bool:
        path = self.out / CHECKPOINT_NAME
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.student.load_state_dict(state["model"])
        if self.dense_head is not None and state.get("dense_head"):
            self.dense_head.load_state_dict(state["dense_head"])
        if self.ema is not None:  # a run that switches the average on starts it from the resumed weights
            self.ema = state.get("ema") or self._weights_copy()
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        self.rng.setstate(state["rng"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        return True

    def _weights_copy(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone().float() if v.is_floating_point() else v.clone() for k, v in self.student.state_dict().items()}

    def update_ema(self) -> None:
        """ema = d * ema + (1 - d) * weights, with d ramping up from 0.5 over the first steps (as timm does);
        integer buffers (BatchNorm counters) are copied."""
        if self.ema is None:
            return
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for name, value in self.student.state_dict().items():
                if value.is_floating_point():
                    self.ema[name].mul_(decay).add_(value.float(), alpha=1 - decay)
                else:
                    self.ema[name].copy_(value)

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights to use: the moving average when the run keeps one, else the current ones."""
        return dict(self.ema) if self.ema is not None else self.student.state_dict()

    def export_weights(self, path: str | os.PathLike, half: bool = False) -> Path:
        """The student's state_dict (its moving average when kept) in the official checkpoint layout (fp16 optional)."""
        sd = {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in self.weights().items()}
        torch.save(sd, path)
        return Path(path)

    # ---------------------------------------------------------------------------------------- one step

    @property
    def phase(self) -> DistillConfig:
        """The configuration in force at the current step (progressive schedules change crop, batch, ...)."""
        return self.cfg.at_step(self.step)

    def next_batch(self) -> list[TrainSample]:
        if self.batches is not None:
            return next(self.batches)
        cfg = self.phase
        samples = []
        while len(samples) < cfg.batch_size:
            record = self.data[self.rng.randrange(len(self.data))]
            flip = cfg.hflip and self.rng.random() < 0.5
            scale = self.rng.uniform(cfg.min_scale, 1.0) if cfg.min_scale < 1 else 1.0
            sample = prepare_sample(record, cfg.resolution, cfg.crop, hflip=flip, rng=self.rng, scale=scale)
            if len(sample.gt):
                samples.append(sample)
        return samples

    def losses(self, batch: list[TrainSample]) -> dict[str, torch.Tensor]:
        cfg, sam = self.phase, self.student
        images = torch.stack([s.image for s in batch]).to(self.device)
        with self.timed("encoder"), torch.autocast(**self.autocast):
            embeddings = sam.image_encoder(images)
        terms: dict[str, list[torch.Tensor]] = {}
        if self.teacher_embeddings is not None:
            teacher_emb = torch.stack([self.teacher_embeddings.get(s) for s in batch]).to(self.device)
            terms["embed"] = [(embeddings.float() - teacher_emb).abs().mean()]
        if self.dense_head is not None and cfg.w_dense > 0:
            with self.timed("dense_head"), torch.autocast(**self.autocast):
                dense = self.dense_head(embeddings).float()
                targets = torch.stack([dense_targets(s.gt) for s in batch]).to(self.device)
                terms["dense"] = [dense_loss(dense, targets)]
        rounds = draw_round(cfg, self.rng) if self.step >= cfg.rounds_from_step else 0
        self.metrics["rounds"] = [rounds]
        for b, sample in enumerate(batch):
            pick = torch.randint(len(sample.gt), (cfg.prompts_per_image,), generator=self.generator)
            target = sample.gt[pick].to(self.device)
            binary = target > 0.5
            coords, labels = initial_prompts(binary.cpu(), cfg.box_fraction, self.generator)
            coords, labels = coords.to(self.device), labels.to(self.device)
            mask_input = None
            with self.timed("decoder_rounds"), torch.no_grad(), torch.autocast(**self.autocast):
                for _ in range(rounds):
                    out = decode(sam, embeddings[b : b + 1].detach(), coords, labels, mask_input, sample.offset)
                    best = out.logits[torch.arange(len(pick)), out.iou.argmax(dim=1)]
                    xy, lab = next_points(binary.cpu(), (best > 0).cpu(), self.generator)
                    coords = torch.cat([coords, xy.to(self.device)], dim=1)
                    labels = torch.cat([labels, lab.to(self.device)], dim=1)
                    mask_input = best
            with self.timed("decoder"), torch.autocast(**self.autocast):
                student = decode(sam, embeddings[b : b + 1], coords, labels, mask_input, sample.offset)
            gt_terms = ground_truth_losses(student.logits, student.iou, target, cfg.w_focal, cfg.w_dice, cfg.iou_loss)
            for name, value in gt_terms.items():
                terms.setdefault(name, []).append(value)
            is_box = labels[:, 0] == 2
            if cfg.w_outside > 0 and is_box.any():
                boxes = coords[is_box, :2].reshape(-1, 4)
                spill = outside_box_loss(student.logits[is_box], boxes, target[is_box], LOW_RES_STRIDE)
                terms.setdefault("outside", []).append(spill)
            self.metrics.setdefault("mask_iou", []).append(float(mask_iou(student.logits.detach(), target).max(dim=1).values.mean()))
            if self.teacher is not None:
                with torch.no_grad(), torch.autocast(**self.autocast):
                    teacher = decode(self.teacher, teacher_emb[b : b + 1], coords, labels, mask_input, sample.offset)
                student_d = {"logits": student.logits, "tokens": student.tokens}
                teacher_d = {"logits": teacher.logits, "tokens": teacher.tokens}
                for name, value in distillation_losses(student_d, teacher_d, target).items():
                    terms.setdefault(name, []).append(value)
        return {name: torch.stack(values).mean() for name, values in terms.items()}

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.phase
        weights = {"focal": cfg.w_focal, "dice": cfg.w_dice, "iou": cfg.w_iou, "embed": cfg.w_embed,
                   "tokens": cfg.w_tokens, "output": cfg.w_output, "outside": cfg.w_outside, "dense": cfg.w_dense}
        return sum(weights[name] * value for name, value in terms.items())

    @contextmanager
    def timed(self, section: str) -> Iterator[None]:
        """Add the wall time of the block to ``self.timings[section]`` (seconds; the step's time profile)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[section] = self.timings.get(section, 0.0) + time.perf_counter() - start

    def train_step(self, batch: list[TrainSample] | None = None) -> dict[str, float]:
        self.timings: dict[str, float] = {}
        if batch is None:
            with self.timed("data"):
                batch = self.next_batch()
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.cfg)
        self.metrics: dict[str, list[float]] = {}
        terms = self.losses(batch)
        loss = self.total(terms)
        self.optimizer.zero_grad(set_to_none=True)
        with self.timed("backward"):
            loss.backward()
        with self.timed("optimizer"):
            if self.cfg.grad_clip:
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            self.optimizer.step()
            self.update_ema()
        self.step += 1
        record = {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"], "loss": float(loss.detach())}
        record.update({name: float(value.detach()) for name, value in terms.items()})
        record.update({name: float(np.mean(values)) for name, values in self.metrics.items()})  # binary IoU, best output
        record.update({f"t_{name}": round(value, 3) for name, value in self.timings.items()})
        return record

    # ---------------------------------------------------------------------------------------- loop

    def run(self, should_stop: Callable[[], bool] | None = None) -> Path:
        """Train until ``cfg.steps`` (resuming from ``last.pt`` when present), the time budget, or ``should_stop``."""
        self.resume()
        started, elapsed_before = time.monotonic(), self.elapsed_s
        log_path = self.out / LOG_NAME
        (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        with open(log_path, "a") as log, tqdm(total=self.cfg.steps, initial=self.step, desc="distill",
                                              disable=not self.cfg.progress, unit="step") as bar:
            while self.step < self.cfg.steps:
                record = self.train_step()
                self.elapsed_s = elapsed_before + time.monotonic() - started
                record["elapsed_s"] = round(self.elapsed_s, 2)
                if self.step % self.cfg.log_every == 0:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                if self.step % self.cfg.save_every == 0:
                    self.save()
                    if self.data is not None:
                        self.data.refresh()
                over_time = self.cfg.time_budget_s is not None and time.monotonic() - started > self.cfg.time_budget_s
                if over_time or (should_stop is not None and should_stop()):
                    break
        return self.save()


def read_log(path: str | os.PathLike) -> list[dict]:
    """The JSON-lines loss log of a run."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
