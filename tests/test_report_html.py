"""`report.html`: one self-contained page that works offline, checked in headless Chromium as a
person would see it; data from the user (case ids, metadata) is escaped; case pictures in 2-D and
3-D, and a placeholder where a case's files cannot be read.

`SEG4SEG_UPDATE_SCREENSHOT=1` makes the browser test save its full-page screenshot of the report
as docs/report_screenshot.png.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import ENDING, REPO, SAMPLE, SAMPLE_DATA, make_dataset, sample_test_case_ids
from PIL import Image

from seg4seg_cli import console
from seg4seg_cli.cli import main
from seg4seg_cli.report_html import (
    FN_COLOR,
    FP_COLOR,
    case_tile_png,
    read_case_slice,
    render_html,
    write_html,
)

HOSTILE = "<script>alert(1)</script>"
HOSTILE_CASE_ID = "<script>alert(1)"  # a case id cannot hold "/" (it names files)
SCREENSHOT = REPO / "docs" / "report_screenshot.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def seg4seg(*args: object) -> None:
    """Run `seg4seg ARGS...` in-process, quietly; it must succeed."""
    console.settings.quiet = True
    try:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
    finally:
        console.settings.quiet = False
    assert exit_info.value.code == 0, args


@pytest.fixture(scope="module")
def sample_out(sample_run, tmp_path_factory) -> Path:
    """The whole sample run in a fresh out folder: predict (shared), features, kmeans discover."""
    out = tmp_path_factory.mktemp("report") / "out"
    shutil.copytree(sample_run, out)
    seg4seg("features", "-d", SAMPLE_DATA, "-o", out, "--metadata", SAMPLE / "metadata.csv")
    seg4seg("discover", out, "--method", "kmeans")
    return out


@pytest.fixture(scope="module")
def sample_report(sample_out) -> Path:
    return write_html(sample_out)


# --- the page as Chromium shows it -----------------------------------------------------------


def chromium_executable() -> str | None:
    """Debian's Chromium (installed by `make chromium`), or the browser SEG4SEG_CHROMIUM names."""
    candidates = [os.environ.get("SEG4SEG_CHROMIUM"), "chromium", "chromium-browser"]
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


@dataclass
class PageLoad:
    """What happened while Chromium loaded a page."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)


def load_in_chromium(page_file: Path, screenshot: Path, full_page: bool = True) -> PageLoad:
    """Open `page_file` in headless Chromium with the network off, record every request, failure
    and console error, read back each image's decoded size, and save a screenshot."""
    executable = chromium_executable()
    if executable is None:
        pytest.skip(
            "Chromium not found, so report.html was not checked in a browser: run `make chromium` "
            "(Debian package chromium) or set SEG4SEG_CHROMIUM"
        )
    from playwright.sync_api import sync_playwright

    load = PageLoad()
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            offline=True,
            viewport={"width": 1280, "height": 1600},
            timeout=60_000,
        )
        try:
            page = context.new_page()
            page.on("request", lambda request: load.requests.append(request.url))
            page.on("requestfailed", lambda request: load.failed.append(request.url))
            page.on(
                "console",
                lambda message: (
                    load.console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.on("pageerror", lambda error: load.console_errors.append(str(error)))
            page.goto(page_file.resolve().as_uri(), wait_until="load", timeout=60_000)
            load.images = page.evaluate(
                "Array.from(document.images, i => ({alt: i.alt, complete: i.complete,"
                " width: i.naturalWidth, height: i.naturalHeight}))"
            )
            page.screenshot(path=str(screenshot), full_page=full_page)
        finally:
            context.close()
    return load


def test_report_loads_offline_in_chromium_with_every_image_decoded(sample_report, tmp_path):
    screenshot = tmp_path / "report.png"
    load = load_in_chromium(sample_report, screenshot)
    page_url = sample_report.resolve().as_uri()
    assert [url for url in load.requests if url != page_url and not url.startswith("data:")] == []
    assert load.failed == []
    assert load.console_errors == []
    # every image in the file reached the page: the histogram, the embedding map, and per
    # subgroup a strip plot and its worst cases' tiles (one subgroup in the sample audit)
    assert len(load.images) == sample_report.read_text().count("<img ") >= 8
    undecoded = [i["alt"] for i in load.images if not (i["complete"] and i["width"] > 0)]
    assert undecoded == []
    with Image.open(screenshot) as shot:
        assert shot.width == 1280 and shot.height >= 1600
        # a blank page would be a single colour
        assert len(shot.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 50
    if os.environ.get("SEG4SEG_UPDATE_SCREENSHOT") == "1":
        shutil.copy(screenshot, SCREENSHOT)


# --- self-contained --------------------------------------------------------------------------


class _References(HTMLParser):
    """Every URL-valued attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "action", "poster", "data"} and value is not None:
                self.urls.append(value)


def test_sample_report_is_one_small_self_contained_file(sample_report):
    text = sample_report.read_text(encoding="utf-8")
    assert sample_report.stat().st_size < 2 * 1024 * 1024
    references = _References()
    references.feed(text)
    assert references.urls, "the report has no image"
    assert all(url.startswith(("data:", "#")) for url in references.urls), [
        u[:60] for u in references.urls
    ]
    assert "script" not in references.tags
    for remote in ("http://", "https://", "url(//", 'src="//', "@import"):
        assert remote not in text


def test_report_shows_the_run_and_one_card_per_subgroup(sample_out, sample_report):
    text = sample_report.read_text(encoding="utf-8")
    payload = json.loads((sample_out / "subgroups.json").read_text())
    assert payload["subgroups"], "kmeans found no subgroup on the sample; the report shows none"
    for group in payload["subgroups"]:
        assert f'id="subgroup-{group["rank"]}"' in text
        assert group["id"] in text
    assert "Not gated" in text and "Gate passed" not in text
    assert f"{payload['n_cases']}" in text and "kmeans" in text
    worst = payload["subgroups"][0]["case_ids"]
    assert any(f"{case_id}: contours and error map (2-D)" in text for case_id in worst)


def test_verdict_says_passed_or_failed_with_its_reasons(sample_out):
    failed = render_html(
        sample_out, {"passed": False, "reasons": [f"gap 0.2 > 0.1 in {HOSTILE}"]}, 1
    )
    assert "Gate failed" in failed and "gap 0.2 &gt; 0.1 in &lt;script&gt;" in failed
    passed = render_html(sample_out, {"passed": True, "reasons": []}, 1)
    assert "Gate passed" in passed and "Gate failed" not in passed
    no_rules = render_html(sample_out, {"passed": True, "reasons": [], "rules": {"applied": False}})
    assert "Not gated" in no_rules and "Gate passed" not in no_rules
    assert "Not gated" in render_html(sample_out, None)


def test_unreadable_case_files_show_a_placeholder(sample_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sample_out, out)
    payload = json.loads((out / "subgroups.json").read_text())
    for case_id in payload["subgroups"][0]["case_ids"]:
        (out / "predictions" / f"{case_id}{ENDING}").write_bytes(b"not an image")
    text = render_html(out)
    assert "cannot show this case" in text


# --- escaping --------------------------------------------------------------------------------


def _write_like(array: np.ndarray, template: Path, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(sitk.ReadImage(str(template)))
    sitk.WriteImage(image, str(path))


def test_case_ids_and_metadata_from_the_data_are_escaped(tmp_path):
    case_ids = sample_test_case_ids()[:8]
    data = make_dataset(tmp_path / "raw", case_ids)
    hostile_source = case_ids[0]
    for folder, suffix in (("imagesTs", "_0000"), ("labelsTs", "")):
        (data / folder / f"{hostile_source}{suffix}{ENDING}").rename(
            data / folder / f"{HOSTILE_CASE_ID}{suffix}{ENDING}"
        )
    predictions = tmp_path / "predictions"
    shutil.copytree(data / "labelsTs", predictions)
    hostile_label = predictions / f"{HOSTILE_CASE_ID}{ENDING}"
    # an empty prediction: the worst case of the run, so it is listed
    empty = np.zeros_like(sitk.GetArrayFromImage(sitk.ReadImage(str(hostile_label))))
    _write_like(empty, hostile_label, hostile_label)
    metadata = tmp_path / "metadata.csv"
    ids = [HOSTILE_CASE_ID, *case_ids[1:]]
    metadata.write_text("case_id,note\n" + "".join(f"{c},{HOSTILE}\n" for c in ids))
    out = tmp_path / "out"
    seg4seg("features", "-d", data, "-o", out, "-p", predictions, "--metadata", metadata)
    seg4seg("discover", out, "--method", "kmeans", "--min-size", "2")

    text = write_html(out).read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)" in text  # the case id
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the metadata value


# --- 3-D cases -------------------------------------------------------------------------------


def _png_colors(png: bytes) -> set[tuple[int, int, int]]:
    with Image.open(io.BytesIO(png)) as image:
        return {color for _, color in image.convert("RGB").getcolors(1 << 16)}


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def test_3d_case_shows_the_axial_slice_with_most_errors(tmp_path):
    shape, spacing = (9, 30, 24), (0.8, 0.8, 3.0)  # (z, y, x) array; (x, y, z) spacing
    rng = np.random.default_rng(0)
    reference = np.zeros(shape, np.uint8)
    reference[2:8, 8:20, 6:16] = 1
    reference[2:8, 10:14, 8:12] = 2
    prediction = reference.copy()
    prediction[3, 8:20, 6:9] = 0  # a few missed voxels on z=3
    prediction[6, 8:20, 6:16] = 0  # a whole missed slice: z=6
    prediction[6, 22:26, 2:6] = 1  # and extra voxels there
    files = []
    for name, array in (
        ("image", rng.normal(100, 20, shape).astype(np.int16)),
        ("reference", reference),
        ("prediction", prediction),
    ):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        files.append(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(image, str(files[-1]))

    view = read_case_slice(*files)
    assert view.where == "slice z=6" and view.image.shape == (30, 24)
    colors = _png_colors(case_tile_png(view))
    assert _hex(FN_COLOR) in colors and _hex(FP_COLOR) in colors


def test_case_without_reference_cannot_be_shown(tmp_path):
    image = tmp_path / "image.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4), np.int16)), str(image))
    with pytest.raises(ValueError, match="no reference"):
        read_case_slice(image, None, image)
