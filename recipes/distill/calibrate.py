"""Re-fit a trained model's IoU head to the prompts people give, with everything else frozen.

    python -m recipes.distill.calibrate WEIGHTS.pth --data ../runs/data/calib --out CALIBRATED.pth

Why: the head that ranks TinySAM's three outputs is trained beside the masks, on 256-pixel windows of the
training scenes, where half the prompts are boxes and most carry corrective clicks and a mask input. On
whole images prompted with one click it is far off (measured on the restarted v2 run's EMA at step 2,300: it
predicts 0.70 for the first output, whose true IoU is 0.32, and never picks the second, which is the best
output for 47% of the objects), so the 1-point answer is 0.14 IoU below the best of the three masks.

How: each scene is embedded once at the model's whole frame, as the predictor does. Every object is
prompted as a user would (the deepest interior point, a random interior point, the tight box, a jittered
box, and a corrective click with the previous mask as input), through :class:`SamPredictor`; the IoU
token entering the head and the true IoU of each returned mask against the object are recorded. The head
alone is then fitted to them (MSE, Adam), the output it does not rank (the single-mask token) held to its
old predictions; the epoch with the lowest loss on held-back scenes is kept. The masks are untouched: only
which output is chosen, and the scores "everything" mode thresholds, change.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from tinysam_annotate.backends.torch_backend import TorchBackend
from tinysam_annotate.build import read_checkpoint, sam_from_checkpoint
from tinysam_annotate.hashing import file_sha256
from tinysam_annotate.mask_geometry import interior_point, iou, mask_box
from tinysam_annotate.modeling.sam import Sam
from tinysam_annotate.predictor import SamPredictor

from ..bench.metrics import next_click
from ..data.sa1b import Sa1bFolder

PROMPT_KINDS = ("center", "random", "box", "jittered_box", "click")


@dataclass
class Observations:
    """What the head saw and what it should have said: ``tokens`` N x C (the IoU token entering the head),
    ``true`` N x M (IoU of each returned mask), ``scene`` N (scene index, for the held-back split) and
    ``kind`` N (index into PROMPT_KINDS)."""

    tokens: torch.Tensor
    true: torch.Tensor
    scene: np.ndarray
    kind: np.ndarray


class _HeadInputs:
    """Records the input of ``head`` on every call (a forward pre-hook) while active."""

    def __init__(self, head: torch.nn.Module) -> None:
        self.seen: list[torch.Tensor] = []
        self._handle = head.register_forward_pre_hook(lambda module, args: self.seen.append(args[0].detach().float().clone()))

    def pop(self) -> torch.Tensor:
        (token,) = self.seen
        self.seen.clear()
        return token

    def close(self) -> None:
        self._handle.remove()


def jittered(box: np.ndarray, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A box with its corners moved by noise of 10% of its side (at most 20 pixels), as SAM trains with."""
    side = np.array([box[2] - box[0], box[3] - box[1]] * 2, dtype=np.float32)
    moved = box + rng.normal(size=4).astype(np.float32) * np.minimum(0.1 * side, 20.0)
    h, w = shape
    return np.clip(moved, 0, [w, h, w, h]).astype(np.float32)


def observe(sam: Sam, scenes: Sequence, objects_per_scene: int = 16, seed: int = 0, progress: bool = True) -> Observations:
    """Prompt every scene's objects (up to ``objects_per_scene``, drawn at random) as in PROMPT_KINDS and record
    the head's input and the true IoU of each output. ``scenes`` holds records with ``.image`` (H x W x 3 uint8)
    and ``.masks`` (K x H x W bool)."""
    predictor = SamPredictor(TorchBackend(sam, model_id="calibrate"))
    inputs = _HeadInputs(sam.mask_decoder.iou_prediction_head)
    rng = np.random.default_rng(seed)
    tokens, true, scene_of, kind_of = [], [], [], []
    try:
        for index in tqdm(range(len(scenes)), desc="calibration scenes", disable=not progress):
            record = scenes[index]
            drawn = rng.permutation(len(record.masks))[:objects_per_scene]
            gts = [gt for gt in (np.asarray(record.masks[k], dtype=bool) for k in drawn) if gt.any()]
            if not gts:
                continue
            predictor.set_image(record.image)
            inputs.seen.clear()
            for kind, objects, masks in _prompted(predictor, gts, rng):
                tokens.append(inputs.pop())
                true.extend([iou(m, gts[k]) for m in masks[i]] for i, k in enumerate(objects))
                scene_of.extend([index] * len(objects))
                kind_of.extend([PROMPT_KINDS.index(kind)] * len(objects))
    finally:
        inputs.close()
    return Observations(torch.cat(tokens), torch.tensor(true, dtype=torch.float32), np.array(scene_of), np.array(kind_of))


def _prompted(predictor: SamPredictor, gts: list[np.ndarray], rng: np.random.Generator) -> Iterable[tuple[str, list[int], np.ndarray]]:
    """(kind, the objects prompted, their masks B x M x H x W) for each prompt kind, all objects in one call."""
    def interior_random(gt: np.ndarray) -> tuple[float, float]:
        ys, xs = np.nonzero(gt)
        pick = int(rng.integers(len(xs)))
        return float(xs[pick]), float(ys[pick])

    everyone = list(range(len(gts)))
    ones = np.ones((len(gts), 1), dtype=np.int64)
    boxes = np.stack([mask_box(gt) for gt in gts])
    for kind, call in (
        ("center", dict(point_coords=np.array([[interior_point(gt)] for gt in gts]), point_labels=ones)),
        ("random", dict(point_coords=np.array([[interior_random(gt)] for gt in gts]), point_labels=ones)),
        ("box", dict(box=boxes)),
        ("jittered_box", dict(box=np.stack([jittered(b, rng, gts[0].shape) for b in boxes]))),
    ):
        masks, scores, low_res = predictor.predict(**call)
        if masks.ndim == 3:  # one box: the predictor answers without the batch axis
            masks, scores, low_res = masks[None], scores[None], low_res[None]
        yield kind, everyone, masks
        if kind == "random":  # the user's next click corrects the answer the current head picked
            yield from _corrected(predictor, gts, call["point_coords"], masks, scores, low_res)


def _corrected(predictor: SamPredictor, gts: list[np.ndarray], first: np.ndarray, masks: np.ndarray, scores: np.ndarray,
               low_res: np.ndarray) -> Iterable[tuple[str, list[int], np.ndarray]]:
    """The second click of each object whose chosen answer is not perfect, with that answer's logits as mask input."""
    chosen = scores.argmax(axis=1)
    objects, points, labels, previous = [], [], [], []
    for k, gt in enumerate(gts):
        click = next_click(gt, masks[k, chosen[k]])
        if click is not None:
            (x, y), label = click
            objects.append(k)
            points.append([first[k, 0], [x, y]])
            labels.append([1, label])
            previous.append(low_res[k, chosen[k]][None])
    if objects:
        masks2, _, _ = predictor.predict(np.array(points, dtype=np.float32), np.array(labels), mask_input=np.stack(previous))
        yield "click", objects, masks2


@dataclass
class HeadReport:
    """Held-back quality of a head: MSE of its predictions, Pearson r, how often it picks the best output,
    and the mean IoU of the output it picks against the best of them (the ceiling), per prompt kind too."""

    mse: float
    r: float
    picks_best: float
    chosen_iou: float
    best_iou: float
    chosen_by_kind: dict[str, float]

    def row(self) -> str:
        kinds = " / ".join(f"{self.chosen_by_kind[k]:.3f}" for k in PROMPT_KINDS if k in self.chosen_by_kind)
        return (f"| {self.mse:.4f} | {self.r:.3f} | {self.picks_best:.2f} | {self.chosen_iou:.3f} | {self.best_iou:.3f} | {kinds} |")


def assess(predicted: torch.Tensor, obs: Observations) -> HeadReport:
    """Compare N x M predicted IoUs with the observed ones."""
    pred, true = predicted.detach().numpy(), obs.true.numpy()
    chosen = true[np.arange(len(true)), pred.argmax(1)]
    by_kind = {PROMPT_KINDS[k]: float(chosen[obs.kind == k].mean()) for k in np.unique(obs.kind)}
    return HeadReport(mse=float(((pred - true) ** 2).mean()), r=float(np.corrcoef(pred.ravel(), true.ravel())[0, 1]),
                      picks_best=float((pred.argmax(1) == true.argmax(1)).mean()), chosen_iou=float(chosen.mean()),
                      best_iou=float(true.max(1).mean()), chosen_by_kind=by_kind)


def _subset(obs: Observations, keep: np.ndarray) -> Observations:
    rows = torch.from_numpy(np.nonzero(keep)[0])
    return Observations(obs.tokens[rows], obs.true[rows], obs.scene[keep], obs.kind[keep])


def fit_head(head: torch.nn.Module, ranked: slice, fit: Observations, held: Observations, epochs: int = 100,
             lr: float = 3e-4, batch: int = 512, seed: int = 0) -> tuple[torch.nn.Module, list[dict]]:
    """A copy of ``head`` fitted to ``fit``: MSE on the ``ranked`` outputs, the other outputs held to the old
    head's predictions. Returns the epoch with the lowest held-back MSE and the per-epoch log."""
    with torch.no_grad():
        target = head(fit.tokens)  # the old predictions, kept for the outputs that are not ranked
    target[:, ranked] = fit.true
    fitted = copy.deepcopy(head).train()
    optimizer = torch.optim.Adam(fitted.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)

    def held_mse() -> float:
        with torch.no_grad():
            return float((fitted(held.tokens)[:, ranked] - held.true).pow(2).mean())

    best, best_state, log = held_mse(), copy.deepcopy(fitted.state_dict()), []
    for epoch in range(epochs):
        order = torch.randperm(len(fit.tokens), generator=generator)
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            loss = (fitted(fit.tokens[rows]) - target[rows]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        score = held_mse()
        log.append({"epoch": epoch + 1, "held_mse": score})
        if score < best:
            best, best_state = score, copy.deepcopy(fitted.state_dict())
    fitted.load_state_dict(best_state)
    return fitted.eval(), log


def observations_of(sam: Sam, weights: str | Path, scenes: Sequence, objects_per_scene: int, seed: int, progress: bool,
                    cache: str | Path | None = None) -> Observations:
    """:func:`observe`, kept in ``cache`` when given: prompting is the slow part (~5 s a scene on 2 cores), fitting
    takes seconds, so a re-fit with other settings reuses the observations of the same weights, scenes and seed.
    The file keeps one entry per (weights, scenes, objects, seed): another model's observations are added beside
    the ones it holds, not written over them."""
    key = json.dumps({"weights": file_sha256(weights), "scenes": len(scenes), "objects": objects_per_scene, "seed": seed},
                     sort_keys=True)
    kept = _kept_observations(cache)
    if key in kept:
        return kept[key]
    if kept:
        print(f"{cache} holds no observations of these weights and scenes; prompting and adding them")
    obs = observe(sam, scenes, objects_per_scene, seed, progress)
    if cache is not None:
        kept[key] = obs
        # Plain fields, not the dataclass: a pickled class is found by its module, which is __main__ under `python -m`.
        torch.save({"observations_by_key": {k: asdict(v) for k, v in kept.items()}}, cache)
    return obs


def _kept_observations(cache: str | Path | None) -> dict[str, Observations]:
    """The entries of an observations file (none when there is no file); a file of one entry, as the eleventh
    session wrote them ({"key": dict, "observations": Observations}), reads as that entry. A file that cannot be
    read raises ValueError, so that nothing overwrites it."""
    if cache is None or not Path(cache).exists():
        return {}
    try:
        saved = torch.load(cache, weights_only=False)
    except (AttributeError, ModuleNotFoundError, EOFError, RuntimeError) as error:
        raise ValueError(f"cannot read the observations file {cache} ({error}); give another --observations path") from error
    if "observations_by_key" in saved:
        return {k: Observations(**fields) for k, fields in saved["observations_by_key"].items()}
    return {json.dumps(saved["key"], sort_keys=True): saved["observations"]}


def calibrate(weights: str | Path, scenes: Sequence, out: str | Path, objects_per_scene: int = 16, held_fraction: float = 0.2,
              epochs: int = 100, seed: int = 0, progress: bool = True, cache: str | Path | None = None) -> dict:
    """Fit the IoU head of the checkpoint ``weights`` on ``scenes`` and write the result to ``out`` (same layout
    and dtypes). Returns the before/after report on the held-back scenes; ``cache`` keeps the observations."""
    sam = sam_from_checkpoint(weights).float().eval()
    decoder = sam.mask_decoder
    ranked = decoder.output_slice(True)
    obs = observations_of(sam, weights, scenes, objects_per_scene, seed, progress, cache)
    held_scenes = np.random.default_rng(seed).permutation(len(scenes))[: max(1, int(round(held_fraction * len(scenes))))]
    is_held = np.isin(obs.scene, held_scenes)
    fit, held = _subset(obs, ~is_held), _subset(obs, is_held)
    with torch.no_grad():
        before = assess(decoder.iou_prediction_head(held.tokens)[:, ranked], held)
    fitted, log = fit_head(decoder.iou_prediction_head, ranked, fit, held, epochs=epochs, seed=seed)
    with torch.no_grad():
        after = assess(fitted(held.tokens)[:, ranked], held)
    original = read_checkpoint(weights)
    prefix = "mask_decoder.iou_prediction_head."
    state = dict(original)
    for name, value in fitted.state_dict().items():
        state[prefix + name] = value.to(original[prefix + name].dtype)
    torch.save(state, out)
    return {"observations": {"fit": len(fit.tokens), "held": len(held.tokens)}, "scenes": len(scenes),
            "before": before, "after": after, "epochs": log}


class SceneSubset(Sequence):
    """The records of ``folder`` at ``indices``, read when asked for (a corpus does not fit in memory)."""

    def __init__(self, folder: Sa1bFolder, indices: range) -> None:
        self.folder, self.indices = folder, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):  # type: ignore[override]
        return self.folder[self.indices[index]]


def markdown(report: dict, weights: str) -> str:
    header = ("| head | MSE | r | picks the best | chosen IoU | best of 3 | chosen IoU by prompt ("
              + " / ".join(PROMPT_KINDS) + ") |\n|---|---|---|---|---|---|---|")
    return (f"### IoU-head calibration of `{weights}`: {report['scenes']} scenes, {report['observations']['fit']} prompts "
            f"fitted, {report['observations']['held']} held back (rows: held-back scenes)\n\n{header}\n"
            f"| before {report['before'].row()}\n| after {report['after'].row()}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recipes.distill.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="checkpoint (official layout) whose IoU head is re-fitted")
    parser.add_argument("--data", required=True, help="SA-1B folder of scenes the model was not trained on")
    parser.add_argument("--scenes", type=int, default=None, help="use the first N scenes (default: all)")
    parser.add_argument("--objects", type=int, default=16, help="objects prompted per scene")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--observations", help="keep the prompts' observations in this file (one entry per weights and "
                        "scenes) and reuse them when it holds those of the same weights and scenes (re-fits take seconds)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True, help="where to write the calibrated checkpoint")
    parser.add_argument("--report", help="append the before/after table (markdown) to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Sa1bFolder(args.data)
    scenes = range(len(folder)) if args.scenes is None else range(min(args.scenes, len(folder)))
    report = calibrate(args.weights, SceneSubset(folder, scenes), args.out, args.objects, epochs=args.epochs,
                       cache=args.observations)
    table = markdown(report, args.weights)
    print(table)
    print(json.dumps(report["epochs"][-3:]))
    if args.report:
        with open(args.report, "a") as fh:
            fh.write(table + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
