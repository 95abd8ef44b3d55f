"""Training configuration: one dataclass, loadable from YAML, every field documented."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass
class DistillConfig:
    """Full-stage distillation (teacher given) or ground-truth training (teacher None) of a TinySAM student."""

    data: str = "data/train"  # an SA-1B format folder
    out: str = "runs/distill"  # checkpoints, loss log, plot
    resolution: int = 1024  # training input size; TinyViT is resolution-flexible, the checkpoint runs at 1024
    crop: int | None = None  # train on crop x crop windows of the resolution frame (crop-in-frame); None = whole frame
    min_scale: float = 1.0  # scale augmentation: the scene's longest side is drawn from [min_scale, 1] x resolution
    phases: list[dict] | None = None  # progressive schedule: [{from_step: 0, crop: 256, batch_size: 8, ...}, ...]
    student_encoder: dict | None = None  # TinyViTConfig overrides (e.g. smaller dims for tests); None = TinySAM's
    student_init: str | None = None  # a checkpoint to start from (e.g. a lower-resolution phase)
    teacher: str | None = None  # a registry name or checkpoint path; None = ground-truth-only mode
    teacher_cache: str | None = None  # where precomputed teacher embeddings live (default: <out>/teacher_cache)
    steps: int = 1000
    batch_size: int = 2  # images per step
    prompts_per_image: int = 64  # the paper's 64
    box_fraction: float = 0.5  # share of prompts that start from a (jittered) box instead of a point
    max_rounds: int = 9  # hard prompt sampling: the trained round i is drawn from 0..max_rounds
    round0_fraction: float = 0.0  # extra probability of training round 0 (single prompt), on top of uniform
    rounds_from_step: int = 0  # corrective rounds only from this step on (before: round 0, the cheap first phase)
    optimizer: str = "adamw"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights (exported instead of the raw ones);
    #                         an open-ended run then has a good model at any step without annealing the learning rate
    # loss weights
    w_focal: float = 20.0
    w_dice: float = 1.0
    w_iou: float = 1.0
    w_embed: float = 1.0
    w_tokens: float = 1.0
    w_output: float = 1.0
    w_outside: float = 0.0  # box prompts: BCE towards 0 of all outputs outside the box (and outside the object)
    w_dense: float = 0.0  # training-only dense head on the image embedding: foreground, boundary, centre distance
    iou_loss: str = "l1"  # l1 | mse (SAM's) between predicted and true IoU of each output
    bf16: bool | None = None  # autocast to bfloat16; None = where the device has fast bf16 (CUDA, AVX-512 BF16/AMX CPUs)
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch intra-op threads on CPU
    seed: int = 0
    hflip: bool = True
    log_every: int = 1
    save_every: int = 100
    time_budget_s: float | None = None  # stop (and save) after this many seconds
    progress: bool = True

    def __post_init__(self) -> None:
        for phase in self.phases or []:
            unknown = set(phase) - set(PHASE_KEYS) - {"from_step"}
            if unknown or "from_step" not in phase:
                raise ValueError(f"a phase needs from_step and may set {', '.join(PHASE_KEYS)}; got {sorted(phase)}")
            dataclasses.replace(self, phases=None, **{k: v for k, v in phase.items() if k != "from_step"})  # validates
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.iou_loss not in ("l1", "mse"):
            raise ValueError(f"iou_loss must be l1 or mse, got {self.iou_loss!r}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must lie in (0, 1], got {self.min_scale}")
        if self.resolution % 64:
            raise ValueError(f"resolution must be a multiple of 64, got {self.resolution}")
        if self.crop is not None and (self.crop % 64 or not 64 <= self.crop <= self.resolution):
            raise ValueError(f"crop must be a multiple of 64 in [64, resolution], got {self.crop}")
        if not 0 <= self.box_fraction <= 1 or not 0 <= self.round0_fraction <= 1:
            raise ValueError("box_fraction and round0_fraction must lie in [0, 1]")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be adam or adamw, got {self.optimizer!r}")
        if self.max_rounds < 0 or self.prompts_per_image < 1 or self.batch_size < 1:
            raise ValueError("max_rounds >= 0, prompts_per_image >= 1 and batch_size >= 1 are required")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "DistillConfig":
        import yaml

        values = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def at_step(self, step: int) -> "DistillConfig":
        """The settings in force at ``step``: the last phase whose ``from_step`` <= step overrides the base."""
        active = [p for p in self.phases or [] if p["from_step"] <= step]
        if not active:
            return self
        phase = max(active, key=lambda p: p["from_step"])
        return dataclasses.replace(self, **{k: v for k, v in phase.items() if k != "from_step"})


# Fields a phase of a progressive schedule may change (everything that does not change the model or optimiser).
PHASE_KEYS = ("crop", "min_scale", "batch_size", "prompts_per_image", "box_fraction", "max_rounds", "round0_fraction",
              "w_outside", "w_dense")
