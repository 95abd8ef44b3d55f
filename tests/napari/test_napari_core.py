"""The napari plugin's Qt-free core: tiles, labels history, the stack annotator, COCO/labels round trips."""

from __future__ import annotations

import numpy as np
import pytest
from tinysam_napari.annotator import PlanePrompts, StackAnnotator, points_in_plane
from tinysam_napari.history import LabelsEdit, Recording
from tinysam_napari.labels_io import coco_to_labels, labels_to_coco
from tinysam_napari.planes import PlaneSource, guess_channel_axis, inside, is_blank, parse_channels
from tinysam_napari.tiles import TileGrid, filter_areas, paste_merged

from tinysam_annotate.amg import SamAutomaticMaskGenerator
from tinysam_annotate.errors import ChannelError, PromptError
from tinysam_annotate.io.prompt_record import PromptRecord
from tinysam_annotate.object_store import ObjectInfo, ObjectStore
from tinysam_annotate.predictor import SamPredictor
from tinysam_annotate.session import SessionError

from ..conftest import OracleGenerator


@pytest.fixture
def predictor(tiny_backend):
    return SamPredictor(tiny_backend)


def blob_stack(rng, planes=3, h=120, w=160):
    stack = (rng.random((planes, h, w)) * 4000).astype(np.uint16)
    stack[:, 30:70, 40:90] += 20000
    return stack


# ---------------------------------------------------------------------------------------------- tiles


def test_tile_grid_covers_the_plane_with_overlap():
    grid = TileGrid(2500, 3000, tile=1024, overlap=256)
    covered = np.zeros((2500, 3000), bool)
    for x0, y0, x1, y1 in grid.boxes:
        assert x1 - x0 == 1024 and y1 - y0 == 1024
        covered[y0:y1, x0:x1] = True
    assert covered.all() and len(grid) == 3 * 4
    assert len(TileGrid(500, 700, tile=1024)) == 1


def test_prompts_go_to_the_tile_where_they_sit_farthest_from_inner_edges():
    grid = TileGrid(2048, 2048, tile=1024, overlap=256)
    assert grid.tile_for(100, 100) == (0, 0, 1024, 1024)
    # 900 is inside tiles starting at 0 and at 768; it is 124 from the first's edge, 132 from the second's.
    assert grid.tile_for(900, 100)[0] == 768
    with pytest.raises(PromptError, match="does not fit"):
        grid.tile_for(100, 100, 1500, 200)


def test_tile_neighbours_are_the_surrounding_tiles_nearest_first():
    grid = TileGrid(700, 1000, tile=256, overlap=128)  # starts x 0, 128, ..., 640, 744; y 0, 128, 256, 384, 444
    middle = (256, 256, 512, 512)
    around = grid.neighbours(middle)
    assert len(around) == 8 and middle not in around
    assert set(around[:4]) == {(128, 256, 384, 512), (384, 256, 640, 512), (256, 128, 512, 384), (256, 384, 512, 640)}
    assert set(grid.neighbours((0, 0, 256, 256))) == {(128, 0, 384, 256), (0, 128, 256, 384), (128, 128, 384, 384)}
    assert grid.neighbours((744, 444, 1000, 700))[0] == (744, 384, 1000, 640)  # last row starts 60 px lower
    with pytest.raises(ValueError, match="not a tile"):
        grid.neighbours((1, 0, 257, 256))

def test_paste_merged_joins_an_object_cut_by_a_tile_border():
    labels = np.zeros((100, 200), np.uint32)
    left, right = (0, 0, 120, 100), (80, 0, 200, 100)
    # Object spans x 60..140: tile 1 sees it cut at x=120, tile 2 sees it whole.
    cut = np.zeros((100, 120), bool)
    cut[40:60, 60:120] = True
    whole = np.zeros((100, 120), bool)
    whole[40:60, 0:60] = True  # x 80..140 in the plane
    other = np.zeros((100, 120), bool)
    other[5:15, 100:110] = True
    ids, next_id = paste_merged(labels, left, [cut], 1)
    ids2, next_id = paste_merged(labels, right, [whole, other], next_id)
    assert ids == [1] and ids2 == [1, 2] and next_id == 3
    assert set(np.unique(labels[40:60, 60:140])) == {1} and (labels == 2).sum() == 100


def test_filter_areas_erases_objects_outside_the_range():
    labels = np.zeros((50, 50), np.uint32)
    labels[:2, :2], labels[10:20, 10:20], labels[30:50, :] = 1, 2, 3
    assert filter_areas(labels, [1, 2, 3], min_area=10, max_area=500) == [2]
    assert set(np.unique(labels)) == {0, 2}


# ---------------------------------------------------------------------------------------------- history


def test_labels_edit_undo_redo_restores_only_the_changed_box():
    labels = np.zeros((2, 30, 40), np.uint32)
    store: ObjectStore[ObjectInfo] = ObjectStore()
    recording = Recording(labels)
    recording.before((1,), None)
    labels[1, 5:10, 6:9] = 4
    (patch,) = recording.patches()
    assert patch.box == (6, 5, 9, 10) and patch.before.shape == (5, 3)
    store.add([ObjectInfo(4)], pixels=LabelsEdit(labels, [patch]))
    labels[1, 20, 20] = 7  # a hand edit elsewhere survives undo
    store.undo()
    assert labels[1, 5:10, 6:9].sum() == 0 and labels[1, 20, 20] == 7 and not store.objects
    store.redo()
    assert (labels[1] == 4).sum() == 15 and [o.object_id for o in store.objects] == [4]
    with pytest.raises(SessionError, match="nothing to redo"):
        store.redo()


# ---------------------------------------------------------------------------------------------- planes


def test_planes_of_a_channel_stack_and_an_rgb_image(rng):
    data = rng.random((2, 4, 30, 40)).astype(np.float32)  # Z, C, Y, X
    source = PlaneSource(data, channel_axis=1, channels=[0, 2])
    assert source.labels_shape == (2, 30, 40) and source.plane_keys() == [(0,), (1,)]
    view = source.model_view((1,))
    assert view.shape == (30, 40, 3) and view.dtype == np.uint8 and not view[..., 2].any()
    assert data.dtype == np.float32 and data.max() <= 1  # the layer data is not touched
    rgb = PlaneSource((rng.random((30, 40, 3)) * 255).astype(np.uint8), rgb=True)
    assert rgb.labels_shape == (30, 40) and rgb.plane_keys() == [()]
    with pytest.raises(ChannelError, match="choose one"):
        PlaneSource(data, channel_axis=1).model_view((0,))
    with pytest.raises(ChannelError, match="leading axes"):
        PlaneSource(data, channel_axis=2)  # Y cannot hold channels
    last = PlaneSource(np.moveaxis(data, 1, -1), channel_axis=-1, channels=[0, 2])  # Z, Y, X, C
    assert last.labels_shape == (2, 30, 40) and np.array_equal(last.model_view((1,)), view)
    with pytest.raises(IndexError, match="outside the stack"):
        source.model_view((5,))
    assert parse_channels(" 0, 2 ") == [0, 2] and parse_channels("") is None
    with pytest.raises(ChannelError, match="comma-separated"):
        parse_channels("red")


@pytest.mark.parametrize(("shape", "rgb", "axis"), [((512, 512, 2), False, 2), ((2, 512, 512), False, 0),
                                                    ((3, 512, 512), True, None), ((40, 512, 512), False, None),
                                                    ((5, 3, 64, 64), False, None), ((5, 64, 64, 3), False, 3),
                                                    ((512, 512), False, None)])
def test_the_channel_axis_is_guessed_from_the_shape(shape, rgb, axis):
    assert guess_channel_axis(shape, rgb) == axis


def test_blank_planes_and_clicks_outside_are_recognised():
    assert is_blank(np.zeros((8, 8))) and is_blank(np.full((8, 8), np.nan)) and not is_blank(np.eye(8))
    assert not is_blank(np.array([[1.0, np.nan], [2.0, np.inf]])) and is_blank(np.array([[3.0, np.nan], [3.0, np.inf]]))
    assert inside(np.array([[0, 0], [119.4, 159.4], [-0.6, 5], [5, 160]]), (120, 160)).tolist() == [True, True, False, False]
    assert inside(np.array([[2, 5, 5], [3, 5, 5]]), (3, 120, 160)).tolist() == [True, False]


def test_points_in_plane_flips_row_col_to_x_y_once():
    grouped = points_in_plane([[2, 10.0, 30.0], [1, 5, 6]], [True, False], plane_ndim=1)
    assert grouped == {(2,): [(30.0, 10.0, True)], (1,): [(6.0, 5.0, False)]}


# ---------------------------------------------------------------------------------------------- annotator


def test_points_preview_commit_undo_on_slice_two_leave_slice_one_alone(predictor, rng):
    annotator = StackAnnotator(predictor, PlaneSource(blob_stack(rng)))
    assert annotator.needs_embedding((2,))
    first = annotator.update(PlanePrompts((2,), ((60.0, 50.0, True),)))
    assert first.mask.shape == (120, 160) and first.mask.any() and first.key == (2,)
    refined = annotator.update(PlanePrompts((2,), ((60.0, 50.0, True), (5.0, 5.0, False))))
    assert refined.preview.low_res.shape[0] == 3
    object_id = annotator.commit()
    assert object_id == 1 and annotator.labels[2].max() == 1
    assert not annotator.labels[:2].any()
    record = annotator.object_prompts[1]
    assert record.points == ((60.0, 50.0), (5.0, 5.0)) and record.point_labels == (1, 0)
    assert record.source == "click" and record.plane == (2,) and annotator.object_scores[1] == refined.preview.score
    annotator.undo()  # the pixels and the object's record go back together
    assert not annotator.labels.any() and not annotator.object_prompts and not annotator.object_scores
    annotator.redo()
    assert (annotator.labels[2] == 1).sum() == refined.mask.sum() and annotator.object_prompts[1] == record
    with pytest.raises(SessionError, match="nothing to commit"):
        annotator.commit()
    with pytest.raises(PromptError, match="outside the 160 x 120 image"):
        annotator.update(PlanePrompts((0,), ((200.0, 50.0, True),)))


def test_commit_never_overwrites_earlier_objects(predictor, rng):
    annotator = StackAnnotator(predictor, PlaneSource(blob_stack(rng, planes=1)[0]))
    annotator.update(PlanePrompts((), (), (20.0, 10.0, 140.0, 110.0)))
    annotator.commit()
    before = annotator.labels.copy()
    annotator.update(PlanePrompts((), (), (20.0, 10.0, 140.0, 110.0)))
    with pytest.raises(SessionError, match="no unlabelled pixels"):
        annotator.commit()
    assert np.array_equal(annotator.labels, before)


def test_revisiting_a_plane_uses_the_cache(tiny_backend, rng):
    from tests.conftest import CountingBackend

    counting = CountingBackend(tiny_backend)
    annotator = StackAnnotator(SamPredictor(counting), PlaneSource(blob_stack(rng)))
    for key in [(0,), (1,), (0,), (1,)]:
        annotator.update(PlanePrompts(key, ((60.0, 50.0, True),)))
    assert counting.encodes == 2 and not annotator.needs_embedding((0,))


def test_large_plane_routes_prompts_to_a_tile(predictor, rng):
    image = (rng.random((600, 900)) * 50).astype(np.uint8)
    annotator = StackAnnotator(predictor, PlaneSource(image), tile_size=256, tile_overlap=64)
    assert annotator.tiled and len(annotator.grid) == 3 * 5
    preview = annotator.update(PlanePrompts((), ((700.0, 450.0, True),)))
    x0, y0, x1, y1 = preview.tile
    assert x0 <= 700 < x1 and y0 <= 450 < y1 and preview.mask.shape == (y1 - y0, x1 - x0)
    object_id = annotator.commit()
    ys, xs = np.nonzero(annotator.labels == object_id)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1


def test_prefetch_embeds_the_tiles_around_a_click_and_leaves_the_preview_alone(tiny_backend, rng):
    from tests.conftest import CountingBackend

    counting = CountingBackend(tiny_backend)
    image = (rng.random((600, 900)) * 50).astype(np.uint8)
    annotator = StackAnnotator(SamPredictor(counting), PlaneSource(image), tile_size=256, tile_overlap=64)
    preview = annotator.update(PlanePrompts((), ((400.0, 300.0, True),)))
    mask = preview.mask.copy()
    around = annotator.grid.neighbours(preview.tile)
    assert counting.encodes == 1 and all(annotator.needs_embedding((), t) for t in around)
    progress = list(annotator.prefetcher((), preview.tile))
    assert progress[-1] == (len(around), len(around)) and counting.encodes == 1 + len(around)
    assert not any(annotator.needs_embedding((), t) for t in around)
    far = [t for t in annotator.grid.boxes if t not in around and t != preview.tile]
    assert all(annotator.needs_embedding((), t) for t in far)  # only the neighbours
    assert np.array_equal(annotator.update(PlanePrompts((), ((400.0, 300.0, True),))).mask, mask)
    assert list(annotator.prefetcher((), preview.tile)) == [] and counting.encodes == 1 + len(around)

def test_tiled_everything_merges_an_object_across_tile_borders(predictor):
    image = np.zeros((700, 1000), np.uint8)
    image[300:360, 200:600] = 255  # crosses the borders of tiles starting at x=0, 192 and 384
    image[50:90, 50:90] = 255
    image[600:690, 900:990] = 255
    annotator = StackAnnotator(predictor, PlaneSource(image), tile_size=256, tile_overlap=64,
                               generator_factory=OracleGenerator)
    found = annotator.segment_everything([()], min_area=100)
    labels = annotator.labels
    assert len(found[()]) == 3 and len(np.unique(labels)) == 4
    bar = labels[300:360, 200:600]
    assert len(np.unique(bar)) == 1 and bar[0, 0] > 0  # one label for the whole bar
    annotator.undo()
    assert not annotator.labels.any()


def test_everything_on_every_slice_is_one_undo_step_and_cancellable(predictor, rng):
    annotator = StackAnnotator(predictor, PlaneSource(blob_stack(rng)), generator_factory=OracleGenerator)
    found = annotator.segment_everything(annotator.all_planes())
    assert sorted(found) == [(0,), (1,), (2,)] and all(annotator.labels[i].any() for i in range(3))
    annotator.undo()
    assert not annotator.labels.any()
    calls = iter([False, True])
    partial = annotator.segment_everything(annotator.all_planes(), should_stop=lambda: next(calls, True))
    assert list(partial) == [(0,)] and annotator.labels[0].any() and not annotator.labels[1:].any()
    records = annotator.object_prompts  # the objects kept by a cancelled run have their records
    assert sorted(records) == sorted(partial[(0,)]) and {r.source for r in records.values()} == {"everything"}


def test_everything_with_the_model_and_area_filter(predictor, rng):
    annotator = StackAnnotator(predictor, PlaneSource(blob_stack(rng, planes=1)[0]),
                               generator_factory=lambda p: SamAutomaticMaskGenerator(
                                   p, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0))
    found = annotator.segment_everything([()], min_area=10)
    assert found[()] and all((annotator.labels == i).sum() >= 10 for i in found[()])


def test_import_labels_shifts_ids_and_is_undoable(predictor, rng):
    annotator = StackAnnotator(predictor, PlaneSource(blob_stack(rng)))
    annotator.labels[0, :5, :5] = 1
    incoming = np.zeros((3, 120, 160), np.uint16)
    incoming[1, 10:20, 10:20], incoming[2, 30:40, 30:40] = 7, 9
    assert annotator.add_labels(incoming, {9: PromptRecord("click", ((35.0, 35.0),), (1,))}) == 2
    assert set(np.unique(annotator.labels)) == {0, 1, 2, 3}
    assert annotator.object_prompts[2].source == "import" and annotator.object_prompts[3].points == ((35.0, 35.0),)
    annotator.undo()
    assert set(np.unique(annotator.labels)) == {0, 1} and not annotator.object_prompts
    assert annotator.next_id() == 2  # the hand-painted 1 is never reused
    with pytest.raises(SessionError, match="shape"):
        annotator.add_labels(np.zeros((2, 120, 160), np.uint16))


# ---------------------------------------------------------------------------------------------- COCO


def test_stack_labels_round_trip_through_coco(rng, tmp_path):
    from tinysam_annotate.io.coco import validate_coco

    labels = np.zeros((3, 40, 50), np.uint32)
    labels[0, 5:15, 5:15], labels[2, 20:30, 10:40], labels[2, 0:3, 0:3] = 4, 2, 9
    coco = labels_to_coco(labels, "stack", {4: PromptRecord("click", ((10.0, 10.0),), (1,), plane=(0,))}, scores={4: 0.9})
    validate_coco(coco)
    assert [img["file_name"] for img in coco["images"]] == ["stack[0]", "stack[1]", "stack[2]"]
    first = next(a for a in coco["annotations"] if a["attributes"]["object_id"] == 4)
    assert first["score"] == 0.9 and first["attributes"]["prompts"]["points"] == [[10.0, 10.0]]
    back = coco_to_labels(coco)
    assert np.array_equal(back, labels)


# ---------------------------------------------------------------------------------------------- 3D objects


def _cylinders() -> np.ndarray:
    """12 x 64 x 64 labels: object 1 a disc of radius 10 on slices 3-9, object 2 a small disc (radius 4) at the
    same place on slices 10-11 (a neighbour the walk must not take for object 1)."""
    yy, xx = np.mgrid[:64, :64]
    disc = lambda r: (yy - 30) ** 2 + (xx - 30) ** 2 <= r * r  # noqa: E731
    labels = np.zeros((12, 64, 64), np.int32)
    labels[3:10][:, disc(10)] = 1
    labels[10:12][:, disc(4)] = 2
    return labels


def test_following_an_object_stops_where_it_ends_and_not_at_its_neighbour():
    from tinysam_napari.propagate import follow_object

    labels, asked = _cylinders(), []

    def oracle(key, box, point):  # the true object under the point, as a perfect model would answer
        asked.append((key, box, point))
        x, y = (int(round(v)) for v in point)
        plane = labels[key]
        return (plane == plane[y, x]) & (plane > 0), 0.95

    found = follow_object((6,), labels[6] == 1, 12, oracle)
    assert sorted(found) == [(z,) for z in range(3, 10)]
    assert all(np.array_equal(found[(z,)], labels[z] == 1) for z in range(3, 10))
    x0, y0, x1, y1 = asked[0][1]
    assert x0 < 20 and y0 < 20 and x1 > 40 and y1 > 40 and asked[0][2] == (30.0, 30.0)  # grown box, deepest pixel
    unsure = follow_object((6,), labels[6] == 1, 12, lambda *a: (oracle(*a)[0], 0.2))
    assert list(unsure) == [(6,)]  # the model was unsure on both neighbours


def test_commit_in_3d_writes_one_id_through_the_stack_as_one_undo_step(tiny_backend):
    from tinysam_napari.propagate import PropagationLimits

    stack = (_cylinders()[..., None].repeat(3, axis=-1) * 100).astype(np.uint8)
    annotator = StackAnnotator(SamPredictor(tiny_backend), PlaneSource(stack, rgb=True))
    annotator.update(PlanePrompts((6,), ((30.0, 30.0, True),)))
    everywhere = PropagationLimits(min_score=-1.0, min_overlap=0.0, min_area=1)  # the tiny model is random
    object_id, planes = annotator.commit_in_3d(everywhere)
    assert object_id == 1 and len(planes) >= 2 and (6,) in planes
    assert {z for z in range(12) if (annotator.labels[z] == 1).any()} == {key[0] for key in planes}
    assert annotator.object_prompts[1].plane == (6,)
    annotator.undo()
    assert not annotator.labels.any()
    with pytest.raises(SessionError, match="nothing to commit"):
        annotator.commit_in_3d()
