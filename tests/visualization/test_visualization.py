"""Rendering: zero is neutral, signs are mirrored colours, outliers do not wash out maps, grids are uint8 CHW."""

from __future__ import annotations

import pytest
import torch

from lit_xai.visualization import (
    MASK_RGB,
    PALETTE,
    _font,
    _text_width,
    caption_lines,
    concept_grid,
    concept_label,
    dimmed,
    draw_text,
    explanation_grid,
    heatmap_to_rgb,
    legend_strip,
    line_plot,
    negative_share,
    overlay,
    symmetric_scale,
    table_image,
    timeline_grid,
)


def ramp(h: int = 24, w: int = 32) -> torch.Tensor:
    """Signed horizontal ramp from -1 to 1 (exactly 0 nowhere; see ``with_zero_column``)."""
    return torch.linspace(-1, 1, w).expand(h, w).clone()


def test_shapes_dtypes_and_range():
    heat = torch.randn(3, 24, 32, dtype=torch.float64)
    rgb = heatmap_to_rgb(heat)
    assert rgb.shape == (3, 3, 24, 32) and rgb.dtype == torch.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert heatmap_to_rgb(heat[0]).shape == (1, 3, 24, 32)
    with pytest.raises(ValueError, match="heatmaps must be"):
        heatmap_to_rgb(torch.randn(2, 1, 24, 32))
    with pytest.raises(ValueError, match="colour map"):
        heatmap_to_rgb(heat, cmap="viridis")


@pytest.mark.parametrize(("cmap", "neutral"), [("bwr", (1.0, 1.0, 1.0)), ("coldnhot", (0.0, 0.0, 0.0))])
def test_zero_is_the_neutral_colour(cmap, neutral):
    heat = ramp()
    heat[:, 5] = 0.0
    rgb = heatmap_to_rgb(torch.stack([heat, torch.zeros_like(heat)]), cmap=cmap)
    expected = torch.tensor(neutral)[:, None]
    torch.testing.assert_close(rgb[0, :, :, 5], expected.expand(3, 24))
    torch.testing.assert_close(rgb[1], expected[:, :, None].expand(3, 24, 32))  # an all-zero map, no NaN


def test_signs_get_mirrored_colours():
    heat = ramp()
    rgb, flipped = heatmap_to_rgb(heat)[0], heatmap_to_rgb(-heat)[0]
    positive, negative = heat > 0.05, heat < -0.05
    assert (rgb[0][positive] > rgb[2][positive]).all()  # red-ish
    assert (rgb[2][negative] > rgb[0][negative]).all()  # blue-ish
    # bwr is symmetric: negating the map swaps red and blue
    torch.testing.assert_close(flipped, rgb[[2, 1, 0]])
    hot = heatmap_to_rgb(heat, cmap="coldnhot")[0]
    assert (hot[0][positive] >= hot[2][positive]).all() and (hot[2][negative] >= hot[0][negative]).all()
    torch.testing.assert_close(rgb[:, 0, -1], torch.tensor([1.0, 0.0, 0.0]))  # the maximum saturates to red
    torch.testing.assert_close(rgb[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))


def test_outliers_do_not_wash_out_the_map():
    heat = ramp(32, 32)
    spiked = heat.clone()
    spiked[3, 3] = 1e6
    spiked[20, 7] = -1e5
    rgb, rgb_spiked = heatmap_to_rgb(heat)[0], heatmap_to_rgb(spiked)[0]
    keep = torch.ones(32, 32, dtype=torch.bool)
    keep[3, 3] = keep[20, 7] = False
    # two pixels of 1024 lie above the 99.5th percentile: the rest renders (nearly) as without them
    assert (rgb[:, keep] - rgb_spiked[:, keep]).abs().max() < 0.02
    torch.testing.assert_close(rgb_spiked[:, 3, 3], torch.tensor([1.0, 0.0, 0.0]))
    # plain max scaling would have flattened everything to white
    flat = heatmap_to_rgb(spiked, percentile=100)[0]
    assert (flat[:, keep] > 0.99).all()


def test_symmetric_scale_per_image_and_joint():
    heat = torch.stack([ramp(), 10 * ramp()])
    per_image = symmetric_scale(heat, percentile=100)
    torch.testing.assert_close(per_image, torch.tensor([1.0, 10.0]))
    torch.testing.assert_close(symmetric_scale(heat, percentile=100, per_image=False), torch.tensor([10.0, 10.0]))
    joint = heatmap_to_rgb(heat, percentile=100, per_image=False)
    separate = heatmap_to_rgb(heat, percentile=100)
    torch.testing.assert_close(joint[1], separate[1])
    assert (joint[0] - separate[0]).abs().max() > 0.5  # the weaker map is paler when scaled jointly


def test_draw_text_keeps_dtype_and_shape():
    img = torch.full((3, 20, 60), 0.25)
    out = draw_text(img, "p=0.93")
    assert out.shape == img.shape and out.dtype == torch.float32 and (out != img).any()
    as_uint8 = draw_text((img * 255).round().to(torch.uint8), "p=0.93")
    assert as_uint8.dtype == torch.uint8
    torch.testing.assert_close(as_uint8, (out * 255).round().to(torch.uint8))
    torch.testing.assert_close(draw_text(img, ""), img)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        draw_text(img[:1], "x")


def _colour_count(img: torch.Tensor, rgb: tuple[int, int, int], tol: int = 8) -> int:
    diff = (img.int() - torch.tensor(rgb)[:, None, None]).abs().amax(0)
    return int((diff <= tol).sum())


def test_line_plot_size_colours_and_legend():
    curves = {"lrp": [0.1, 0.3, 0.2, 0.4], "gradcam": [0.4, 0.2, float("nan"), 0.1], "flat": [0.25] * 4}
    img = line_plot(curves, x=[1, 2, 3, 4], title="drift", xlabel="epoch", ylabel="1 - rho", width=400, height=260)
    assert img.dtype == torch.uint8 and img.shape == (3, 260, 400)
    assert (img != 255).any(0).float().mean() > 0.02, "the plot is (nearly) blank"
    for k in range(3):  # every curve has its own colour, drawn as a line of many pixels
        assert _colour_count(img, PALETTE[k]) > 60, f"curve {k} colour missing"
    assert _colour_count(img, PALETTE[3]) == 0, "a fourth colour appeared for three curves"
    # the legend (below the axes) carries every curve colour
    legend = img[:, -40:]
    assert all(_colour_count(legend, PALETTE[k]) > 10 for k in range(3))
    # nothing is drawn outside the picture's 1-pixel margin, even with an overlong title
    long = line_plot({"a": [1, 2]}, title="a title far too long " * 10, xlabel="x " * 200, width=200, height=160)
    assert long.shape == (3, 160, 200)
    assert (long[:, :, 0] == 255).all() and (long[:, :, -1] == 255).all()
    with pytest.raises(ValueError, match="x has 3"):
        line_plot({"a": [1, 2]}, x=[0, 1, 2])
    with pytest.raises(ValueError, match="at least one curve"):
        line_plot({})


def test_line_plot_ticks_are_round_and_cover_the_data():
    from lit_xai.visualization import _nice_ticks

    ticks = _nice_ticks(0.03, 0.42)
    assert ticks[0] >= 0.03 and ticks[-1] <= 0.42 and len(ticks) >= 3
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and steps.pop() in {0.05, 0.1}
    # constant and single-point curves still get a range (no division by zero)
    assert line_plot({"c": [3.0, 3.0, 3.0]}).shape == (3, 320, 480)
    assert line_plot({"one": [1.0]}).shape == (3, 320, 480)


def test_table_image_columns_fit_their_text():
    header = ["method", "drift", "note"]
    rows = [["lrp", "0.12", "short"], ["gradcam", "0.30", "a much longer cell that must not be clipped"]]
    img = table_image(header, rows, title="epoch 3")
    assert img.dtype == torch.uint8 and img.shape[0] == 3
    font = _font(12)
    widest = [max(_text_width(r[j], font) for r in [header, *rows]) for j in range(3)]
    assert img.shape[2] >= sum(widest) + 3 * 16, "a column is narrower than its text"
    # the last column's text ends before the right border (ink in the cell, white margin before the frame)
    ink = (img[:, 20:, :] < 128).any(0).any(0).nonzero().flatten()
    assert ink.max() == img.shape[2] - 1  # the frame
    strip = (img[:, 20:-1, -7:-1] < 128).any(0)  # the last 6 pixels before the frame: rules only, no glyphs
    assert not (strip.any(1) & ~strip.all(1)).any(), "text touches the right border"
    multi = table_image(["a"], [["line 1\nline 2"]])
    assert multi.shape[1] > table_image(["a"], [["line 1"]]).shape[1]
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        table_image(["a", "b"], [["x"]])


# ---------------------------------------------------------------------------------------------------------------
# the grids, tested on the pictures themselves

MARGIN, GAP = 4, 2  # the grid builder's outer margin and the gap between tiles
FONT = _font(11)


def _find_colour_box(grid: torch.Tensor, rgb: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Bounding box ``(top, left, bottom, right)`` (exclusive) of the pixels with exactly this colour."""
    hit = (grid == torch.tensor(rgb, dtype=torch.uint8)[:, None, None]).all(0)
    ys, xs = hit.any(1).nonzero().flatten(), hit.any(0).nonzero().flatten()
    assert len(ys), f"colour {rgb} not found"
    return int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1


def _solid(colours: list[tuple[int, int, int]], size: int) -> torch.Tensor:
    """Images of one solid colour each (float [0, 1]), so their tiles can be found in a grid."""
    return torch.stack(
        [torch.tensor(c, dtype=torch.float32)[:, None, None].expand(3, size, size) / 255 for c in colours]
    )


def _is_one_colour(tile: torch.Tensor) -> bool:
    return bool((tile == tile[:, :1, :1]).all())


def _white_run(column: torch.Tensor) -> int:
    """Longest run of all-white pixel rows in a ``(3, H, w)`` strip."""
    white = (column == 255).all(0).all(1).tolist()
    best = run = 0
    for w in white:
        run = run + 1 if w else 0
        best = max(best, run)
    return best


COLOURS = [(30, 160, 90), (160, 30, 200), (200, 120, 20)]


def test_explanation_grid_layout_and_no_blank_tiles():
    torch.manual_seed(0)
    images, heat = _solid(COLOURS, 48), torch.randn(3, 48, 48)
    grid = explanation_grid(images, heat, ["a", "b", "c"], tile=48, method="LRP")
    assert grid.dtype == torch.uint8 and grid.shape[0] == 3
    assert grid.shape[2] == 2 * MARGIN + 3 * 48 + 2 * GAP
    tops = []
    for colour in COLOURS:
        top, left, bottom, right = _find_colour_box(grid, colour)
        assert (bottom - top, right - left) == (48, 48) and left == MARGIN, "the input tile is not where expected"
        tops.append(top)
        for j in range(3):  # input | heatmap | overlay: none of them blank or one colour, except the solid input
            x = MARGIN + j * (48 + GAP)
            tile = grid[:, top : top + 48, x : x + 48]
            assert j == 0 or not _is_one_colour(tile), f"tile {j} is blank"
    assert tops == sorted(tops) and tops[1] - tops[0] > 48  # rows in order, caption between them
    assert (grid[:, :, :MARGIN] == 255).all() and (grid[:, :, -MARGIN:] == 255).all()  # nothing drawn in the margin
    no_legend = explanation_grid(images, heat, ["a", "b", "c"], tile=48, legend=False)
    assert no_legend.shape[1] < grid.shape[1] and no_legend.shape[2] == grid.shape[2]
    with pytest.raises(ValueError, match="one caption per row"):
        explanation_grid(images, heat, ["a"])
    with pytest.raises(ValueError, match="2 maps"):
        explanation_grid(images, heat[:2], ["a", "b", "c"])


def test_tiles_keep_the_aspect_ratio():
    grid = explanation_grid(torch.rand(1, 3, 20, 40), torch.randn(1, 20, 40), ["wide"], tile=32, legend=False)
    assert grid.shape[2] == 2 * MARGIN + 3 * 64 + 2 * GAP


def test_caption_lines_wrap_within_width_and_never_lose_words():
    text = "#55 true melanoma | pred nevus (p=0.61) | artifact: ruler | a rather long note about this probe"
    lines = caption_lines(text, 120, FONT)
    assert len(lines) > 1 and all(_text_width(line, FONT) <= 120 for line in lines)
    assert " ".join(lines).split() == text.split()  # wrapping only, nothing dropped
    assert caption_lines("a\nb", 100, FONT) == ["a", "b"]
    word = caption_lines("x" * 200, 60, FONT)
    assert len(word) == 1 and word[0].endswith("…") and _text_width(word[0], FONT) <= 60
    capped = caption_lines(text, 80, FONT, max_lines=2)
    assert len(capped) == 2 and capped[-1].endswith("…") and all(_text_width(t, FONT) <= 80 for t in capped)
    with pytest.raises(ValueError, match="positive"):
        caption_lines("a", 0, FONT)


def test_long_captions_wrap_instead_of_clipping():
    images, heat = _solid(COLOURS[:1], 56), torch.randn(1, 56, 56)
    short = explanation_grid(images, heat, ["#1 nevus"], tile=56, legend=False, report_negative=False)
    long_text = "#1 true melanoma | pred nevus (p=0.61) | concepts ch 12, ch 301, ch 77, ch 5 | artifact ruler"
    long = explanation_grid(images, heat, [long_text], tile=56, legend=False, report_negative=False)
    row_w = 3 * 56 + 2 * GAP
    lines = caption_lines(long_text, row_w - 4, FONT, max_lines=4)
    assert len(lines) >= 2 and all(_text_width(t, FONT) <= row_w - 4 for t in lines)
    assert " ".join(lines).split() == long_text.split(), "the concept ids must survive (wrapped, not cut)"
    assert long.shape[1] >= short.shape[1] + (len(lines) - 1) * 12, "extra caption lines add height"
    assert long.shape[2] == short.shape[2]
    assert (long[:, :, -MARGIN:] == 255).all(), "caption text ran into the right margin"


def test_legend_strip_colour_bar_runs_blue_white_red():
    strip = legend_strip(300, "LRP (EpsilonPlusFlat)", note="explained class: predicted")
    assert strip.dtype == torch.uint8 and strip.shape[0] == 3 and strip.shape[2] == 300
    s = strip.int()
    saturation = (s.amax(0) - s.amin(0)).sum(1)
    y = int(saturation.argmax())  # the colour bar is the most colourful row
    row = s[:, y]
    coloured = ((row.amax(0) - row.amin(0)) > 0).nonzero().flatten()
    left, right = int(coloured[0]), int(coloured[-1])
    assert row[2, left] > 200 and row[0, left] < 60, "the bar should start blue (negative)"
    assert row[0, right] > 200 and row[2, right] < 60, "the bar should end red (positive)"
    mid = row[:, (left + right) // 2]
    assert (mid > 230).all(), "zero is white"
    one_sided = legend_strip(300, "Grad-CAM", signed=False).int()
    y = int((one_sided.amax(0) - one_sided.amin(0)).sum(1).argmax())
    assert (one_sided[:, y, 3] > 230).all(), "an unsigned bar starts white"
    # the grid carries the very same strip on top
    images, heat = _solid(COLOURS[:1], 48), torch.randn(1, 48, 48)
    grid = explanation_grid(images, heat, ["a"], tile=48, method="LRP")
    top = legend_strip(
        3 * 48 + 2 * GAP, "LRP", note="columns: input | heatmap | overlay (colour opacity grows with |R|, image greyed)"
    )
    torch.testing.assert_close(grid[:, MARGIN : MARGIN + top.shape[1], MARGIN:-MARGIN], top)


def test_mask_is_outlined_on_input_and_overlay_only():
    images, heat = _solid(COLOURS[:1], 48), torch.randn(1, 48, 48)
    masks = torch.zeros(1, 48, 48, dtype=torch.bool)
    masks[0, 10:30, 20:40] = True
    grid = explanation_grid(images, heat, ["flagged"], tile=48, masks=masks, legend=False)
    top, _, _, _ = _find_colour_box(grid, COLOURS[0])
    mask_rgb = torch.tensor(MASK_RGB, dtype=torch.uint8)
    for j, outlined in [(0, True), (1, False), (2, True)]:
        tile = grid[:, top : top + 48, MARGIN + j * 50 : MARGIN + j * 50 + 48]
        is_mask = (tile == mask_rgb[:, None, None]).all(0)
        if not outlined:
            assert not is_mask.any(), "the heatmap tile must stay unpainted"
            continue
        for y, x in [(10, 30), (29, 30), (20, 20), (20, 39)]:  # on each edge of the rectangle
            assert is_mask[y, x], f"no outline at ({y}, {x}) in tile {j}"
        assert not is_mask[20, 30] and not is_mask[2, 2], "outline must be a contour, not a fill"
        assert not is_mask[:8].any() and not is_mask[32:].any()


def test_relevance_on_dark_regions_is_visible():
    images = torch.full((1, 3, 48, 48), 0.9)
    images[:, :, :, :24] = 0.02  # dark left half (a dark lesion ring in the demo)
    heat = torch.zeros(1, 48, 48)
    heat[0, 16:32, 4:12] = 0.3  # weak positive relevance on the dark part
    heat[0, 16:32, 14:20] = -0.3  # weak negative relevance on the dark part
    heat[0, 0:4, 40:48] = 1.0  # a strong spot elsewhere sets the scale
    out = overlay(images, heat)
    base = images[0, :, 16:32, 4:12]
    red = out[0, :, 16:32, 4:12]
    assert (red[0] - base[0]).min() > 0.3, "positive relevance on black must light up"
    assert (red[0] - red[1]).min() > 0.25, "and read as red"
    blue = out[0, :, 16:32, 14:20]
    assert (blue[2] - blue[0]).min() > 0.25, "negative relevance reads as blue"
    # without relevance the overlay is the image dimmed to greyscale (contrast kept, colour dropped)
    torch.testing.assert_close(out[0, :, 40:, 30:], dimmed(images)[0, :, 40:, 30:])
    assert out[0, 0, 40:, :20].mean() < out[0, 0, 40:, 30:].mean()


def test_negative_share():
    maps = torch.tensor([[[1.0, -3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[2.0, 2.0], [0.0, 0.0]]])
    torch.testing.assert_close(negative_share(maps), torch.tensor([0.75, 0.0, 0.0]))
    torch.manual_seed(0)
    r = torch.randn(4, 8, 8)
    torch.testing.assert_close(negative_share(r) + negative_share(-r), torch.ones(4))
    manual = torch.stack([(-m[m < 0]).sum() / m.abs().sum() for m in r])
    torch.testing.assert_close(negative_share(r), manual)


def test_concept_grid_labels_references_and_no_blank_tiles():
    torch.manual_seed(0)
    n, k, tile = 2, 3, 48
    images = _solid(COLOURS[:n], 64)
    maps = torch.zeros(n, k, 64, 64)
    maps[:, :, 20:40, 20:40] = (torch.rand(n, k, 20, 20) < 0.1).float()  # sparse dots: faint unless smoothed
    channels = torch.tensor([[12, 301, 7], [5, 12, 44]])
    shares = torch.tensor([[0.34, 0.2, 0.004], [0.5, 0.1, 0.05]])
    references = {12: torch.rand(3, 20, 20), 301: torch.rand(2, 3, 20, 20), 5: torch.rand(3, 20, 20)}  # 7, 44 missing
    grid = concept_grid(
        images,
        maps,
        channels,
        ["#1 melanoma", "#2 nevus"],
        shares=shares,
        references=references,
        tile=tile,
        layer="layer3",
    )
    assert grid.dtype == torch.uint8 and grid.shape[2] == 2 * MARGIN + (k + 1) * tile + k * GAP
    for j in range(k + 1):  # no tile column holds a blank (white) tile anywhere: placeholders are grey and labelled
        x = MARGIN + j * (tile + GAP)
        assert _white_run(grid[:, :, x : x + tile]) < tile, f"a blank tile in column {j}"
    for i, colour in enumerate(COLOURS[:n]):
        top, _, _, _ = _find_colour_box(grid, colour)
        for j in range(1, k + 1):  # concept maps: a clearly red blob, not faint dots
            tile_img = grid[:, top : top + tile, MARGIN + j * (tile + GAP) : MARGIN + j * (tile + GAP) + tile].int()
            blob = tile_img[:, 17:28, 17:28]  # the dots' region at tile scale
            assert ((blob[0] - blob[1]) > 80).float().mean() > 0.5, f"concept {j} of probe {i} is not visible"
    nb = "\u00a0"  # no-break spaces keep the id and the percentage whole when a label wraps
    assert concept_label(12, 0.34) == f"ch{nb}12 · 34{nb}%" and concept_label(7, 0.004) == f"ch{nb}7 · <1{nb}%"
    assert concept_label(5, 0.05) == f"ch{nb}5 · 5.0{nb}%" and concept_label(3, None) == f"ch{nb}3"
    assert caption_lines(concept_label(301, 0.25), 50, FONT) == [f"ch{nb}301 ·", f"25{nb}%"]
    with pytest.raises(ValueError, match="channels must be"):
        concept_grid(images, maps, channels[:, :2], ["a", "b"])


def test_timeline_grid_rows_columns_and_wrapped_labels():
    torch.manual_seed(0)
    frames = [torch.randn(3, 16, 16) for _ in range(4)]
    labels = ["#12 melanoma → melanoma [ruler]", "#55 nevus → melanoma", "#7 a very long row label " * 3]
    grid = timeline_grid(frames, [f"epoch {e}" for e in range(4)], labels, tile=32, method="LRP")
    assert grid.dtype == torch.uint8
    label_w = grid.shape[2] - 2 * MARGIN - GAP - 4 * 32 - 3 * GAP
    assert 60 <= label_w <= 140
    for line in caption_lines(labels[2], label_w - 4, FONT):
        assert _text_width(line, FONT) <= label_w - 4
    short = timeline_grid(frames, [f"epoch {e}" for e in range(4)], ["a", "b", "c"], tile=32, legend=False)
    assert short.shape[2] == 2 * MARGIN + 60 + GAP + 4 * 32 + 3 * GAP
    # the heatmap tiles: the rightmost column holds 3 non-blank tiles
    right = short[:, -MARGIN - 3 * 32 - 2 * GAP : -MARGIN, -MARGIN - 32 : -MARGIN]
    assert _white_run(right) <= GAP
    # a label longer than the tile makes its row taller instead of being cut
    assert grid.shape[1] - short.shape[1] > legend_strip(grid.shape[2] - 2 * MARGIN, "LRP").shape[1]
    with pytest.raises(ValueError, match="one column label per frame"):
        timeline_grid(frames, ["e0"], labels)


def test_grids_say_how_each_map_is_scaled_and_name_a_map_that_is_zero_everywhere():
    from lit_xai.visualization.grids import magnitude_label, near_zero_maps

    real = torch.randn(16, 16)
    tiny = real * 1e-9  # per-map scaling alone would draw it exactly like `real`
    maps = torch.stack([real, tiny, torch.zeros(16, 16)])
    assert near_zero_maps(maps).tolist() == [False, True, True]
    assert near_zero_maps(maps[1:2]).tolist() == [False]  # alone, a tiny map is its own reference: not ~0
    assert magnitude_label(maps[:1]).startswith("per-map scale, max |R| ")
    assert magnitude_label(maps[:1], shared=True).startswith("shared scale")
    images = torch.rand(3, 3, 16, 16)
    grid = explanation_grid(images, maps, ["a", "b", "c"], tile=64)
    same = explanation_grid(images, torch.stack([real, real, real]), ["a", "b", "c"], tile=64)
    # the ~0 rows are labelled on the tile (an orange label box), the real one is not
    label_bg = (255, 236, 200)
    assert _colour_count(grid, label_bg, tol=0) > 0 and _colour_count(same, label_bg, tol=0) == 0
    timeline = timeline_grid([maps, maps], ["epoch 1", "epoch 2"], ["p0", "p1", "p2"], tile=48)
    assert _colour_count(timeline, label_bg, tol=0) > 0
