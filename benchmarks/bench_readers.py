"""Readers of `.nii.gz` side by side on a CT-sized case: is there a faster one than SimpleITK?

`features` reads three files per case (image, reference, prediction); on a CT-sized case the read
alone is about half of its time, so a faster reader would lower the floor. Compared, in one run,
on the same files (512×512×200 int16 image and two uint8 label maps, 0.8×0.8×2.5 mm, gzip level
as SimpleITK writes it):

- SimpleITK `ReadImage` + `GetArrayViewFromImage` (what seg4seg uses);
- nibabel `load` + `dataobj` (gzip through Python's zlib);
- the file decompressed by `zlib` / by python-isal's `igzip` (Intel ISA-L), then
  `nibabel.Nifti1Image.from_bytes`.

Every reader's arrays are checked equal to SimpleITK's (axis order z, y, x) and its geometry
(spacing, origin, direction, converted from nibabel's RAS affine to ITK's LPS) equal to 1e-6.
Times are medians of 5 alternating rounds after one warm-up.

    pip install isal nibabel    # for this benchmark only
    python benchmarks/bench_readers.py
"""

from __future__ import annotations

import gzip
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROUNDS = 5
SHAPE_ZYX = (200, 512, 512)
SPACING_XYZ = (0.8, 0.8, 2.5)


def write_case(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[: SHAPE_ZYX[0], : SHAPE_ZYX[1], : SHAPE_ZYX[2]]
    body = ((y - 256) / 200.0) ** 2 + ((x - 256) / 230.0) ** 2 <= 1.0
    image = np.where(body, 40, -1000).astype(np.int16)
    image = (image + rng.normal(0, 20, SHAPE_ZYX)).astype(np.int16)
    organ = ((z - 100) / 40.0) ** 2 + ((y - 240) / 60.0) ** 2 + ((x - 300) / 50.0) ** 2 <= 1.0
    reference = organ.astype(np.uint8)
    prediction = np.roll(organ, 3, axis=2).astype(np.uint8)
    paths = []
    for name, array in (("image", image), ("reference", reference), ("prediction", prediction)):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing(SPACING_XYZ)
        itk.SetOrigin((-204.0, -180.5, 12.25))
        path = folder / f"{name}.nii.gz"
        sitk.WriteImage(itk, str(path), True)
        paths.append(path)
    return paths


def read_sitk(path: Path):
    image = sitk.ReadImage(str(path))
    # the view needs its image alive: it travels along (a dangling view crashes)
    return (
        sitk.GetArrayViewFromImage(image),
        image.GetSpacing(),
        image.GetOrigin(),
        image.GetDirection(),
        image,
    )


def _geometry_from_nifti(image):
    """nibabel's RAS affine as ITK's LPS spacing, origin and direction."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    return (
        np.asanyarray(image.dataobj).transpose(2, 1, 0),
        tuple(spacing),
        tuple(affine[:3, 3]),
        tuple(direction.ravel()),
    )


def read_nibabel(path: Path):
    import nibabel

    return _geometry_from_nifti(nibabel.load(str(path)))


def read_zlib_bytes(path: Path):
    import nibabel

    return _geometry_from_nifti(nibabel.Nifti1Image.from_bytes(gzip.decompress(path.read_bytes())))


def read_isal_bytes(path: Path):
    import nibabel
    from isal import igzip

    return _geometry_from_nifti(nibabel.Nifti1Image.from_bytes(igzip.decompress(path.read_bytes())))


READERS = {
    "SimpleITK (seg4seg)": read_sitk,
    "nibabel load": read_nibabel,
    "gzip + nibabel from_bytes": read_zlib_bytes,
    "isal igzip + nibabel from_bytes": read_isal_bytes,
}


def same(reference, other) -> bool:
    array, spacing, origin, direction = reference[:4]
    array_o, spacing_o, origin_o, direction_o = other[:4]
    return (
        array.shape == array_o.shape
        and array.dtype == array_o.dtype
        and np.array_equal(array, array_o)
        and np.allclose(spacing, spacing_o, atol=1e-6)
        and np.allclose(origin, origin_o, atol=1e-6)
        and np.allclose(direction, direction_o, atol=1e-6)
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="seg4seg_readers_") as tmp:
        paths = write_case(Path(tmp))
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in paths)
        print(f"case: {SHAPE_ZYX[::-1]} voxels, spacing {SPACING_XYZ} mm; {sizes}")
        expected = [read_sitk(p) for p in paths]
        for name, reader in READERS.items():  # warm-up and equality
            assert all(same(e, reader(p)) for e, p in zip(expected, paths, strict=True)), name
        times: dict[str, list[float]] = {name: [] for name in READERS}
        for _ in range(ROUNDS):
            for name, reader in READERS.items():
                started = time.perf_counter()
                for path in paths:
                    reader(path)
                times[name].append(time.perf_counter() - started)
    base = statistics.median(times["SimpleITK (seg4seg)"])
    print("| reader (3 files) | median s | runs s | × SimpleITK | identical arrays and geometry |")
    print("|---|---|---|---|---|")
    for name, runs in times.items():
        median = statistics.median(runs)
        shown = ", ".join(f"{r:.3f}" for r in sorted(runs))
        print(f"| {name} | {median:.3f} | {shown} | {median / base:.2f} | yes |")


if __name__ == "__main__":
    main()
