"""Rendering: zero is neutral, signs are mirrored colours, outliers do not wash out maps, grids are uint8 CHW."""

from __future__ import annotations

import pytest
import torch

from lit_xai.visualization import (
    PALETTE,
    draw_text,
    explanation_grid,
    heatmap_to_rgb,
    line_plot,
    make_grid_uint8,
    overlay,
    symmetric_scale,
    table_image,
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


def test_overlay_keeps_the_image_where_there_is_no_relevance():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 24, 32)
    heat = ramp().expand(2, 24, 32).clone()
    heat[:, :, :10] = 0.0
    out = overlay(images, heat, alpha=0.6)
    assert out.shape == (2, 3, 24, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, :, :, :10], images[:, :, :, :10])
    torch.testing.assert_close(overlay(images, heat, alpha=0.0), images)
    # at the saturated pixel the colour is blended with weight alpha
    expected = 0.4 * images[:, :, 0, -1] + 0.6 * torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(out[:, :, 0, -1], expected)
    grey = overlay(images[:, :1], heat)  # single-channel images are repeated to RGB
    assert grey.shape == (2, 3, 24, 32)
    with pytest.raises(ValueError, match="do not match"):
        overlay(images, heat[:, :10])


def test_grid_layout_uint8():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 20)
    heat_rgb = heatmap_to_rgb(torch.randn(2, 16, 20))
    grid = make_grid_uint8([images, heat_rgb], padding=2)
    assert grid.dtype == torch.uint8 and grid.shape == (3, 2 * 16 + 3 * 2, 2 * 20 + 3 * 2)
    # row 1, column 1 holds the heatmap of image 1
    torch.testing.assert_close(grid[:, 20:36, 24:44], (heat_rgb[1] * 255).round().to(torch.uint8))
    assert (grid[:, :2] == 255).all() and (grid[:, :, 22:24] == 255).all()  # padding
    uint8_images = (images * 255).round().to(torch.uint8)
    torch.testing.assert_close(make_grid_uint8([uint8_images, heat_rgb]), grid)
    with pytest.raises(ValueError, match="same shape|must have shape"):
        make_grid_uint8([images, heat_rgb[:, :, :8]])


def test_captions_are_drawn_inside_their_row_only():
    images = torch.full((2, 3, 24, 40), 0.5)
    plain = make_grid_uint8([images, images])
    captioned = make_grid_uint8([images, images], captions=["true 1 | pred 0 | p=0.93", None])
    changed = (captioned != plain).any(0)
    assert changed[2:26].any(), "the caption left no pixels"
    assert not changed[26:].any(), "the caption spilled into another row or the uncaptioned row"
    assert changed[2:26, 44:].any(), "a long caption runs on across the row's tiles"


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


def test_explanation_grid_is_input_heatmap_overlay():
    torch.manual_seed(0)
    images, heat = torch.rand(3, 3, 16, 16), torch.randn(3, 16, 16)
    grid = explanation_grid(images, heat, captions=["a", "b", "c"])
    expected = make_grid_uint8([images, heatmap_to_rgb(heat), overlay(images, heat)], captions=["a", "b", "c"])
    torch.testing.assert_close(grid, expected)
    assert grid.shape == (3, 3 * 16 + 4 * 2, 3 * 16 + 4 * 2)


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
    from lit_xai.visualization import _font, _text_width

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
