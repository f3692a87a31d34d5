"""`seg4seg predict` on a CT-sized volume against plain nnU-Net inference: time and peak memory.

The case is the CT-like volume of `bench_features.py` (512 x 512 x 200 voxels, 0.8 x 0.8 x 2.5 mm,
int16). The model is the 3-D sample's tiny network (`sample_data/model/Dataset992_Seg4Seg3D`),
copied with its plans set to a CT-like configuration: target spacing `--spacing` (z, y, x; default
2.5 x 1.6 x 1.6 mm, so nnU-Net resamples the volume in and the logits out, as it does for most CT
models) and patch `--patch` (default 32 x 128 x 128). The weights are unchanged: the network is
fully convolutional.

Both sides go from the model folder and the image file to the segmentation on disk, with the same
settings (device, step size 0.5, mirroring off unless `--mirroring`), each run in a fresh process:
- nnU-Net: `nnUNetPredictor.initialize_from_trained_model_folder` + `predict_from_files_sequential`;
- seg4seg: `run_predict` (the code behind `seg4seg predict`), which also records the embedding in
  the same forward passes and writes embeddings.parquet and run.json, atomically.
Runs alternate (nnU-Net, seg4seg, nnU-Net, ...); the ratio of the medians is the overhead. Peak
memory is VmHWM of each child process (peak RSS over its whole run, imports included).

Run: `.venv/bin/python benchmarks/bench_predict_3d.py [--runs 3] [--device cuda]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "sample_data/model/Dataset992_Seg4Seg3D/nnUNetTrainer__nnUNetPlans__3d_fullres"


def make_inputs(work: Path, spacing: list[float], patch: list[int]) -> tuple[Path, Path]:
    """The CT-sized raw dataset and the CT-configured copy of the 3-D sample model."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_features import make_ct_case

    case_dir = make_ct_case(work / "cases", np.random.default_rng(0))
    data = work / "data"
    (data / "imagesTs").mkdir(parents=True)
    shutil.copy(case_dir / "image.nii.gz", data / "imagesTs" / "ct_000_0000.nii.gz")
    dataset = json.loads((MODEL / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps(dataset, indent=2))

    model = work / "model" / MODEL.name
    shutil.copytree(MODEL, model)
    plans = json.loads((model / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    config["spacing"], config["patch_size"] = list(spacing), list(patch)
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    return data, model


def run_side(side: str, model: Path, data: Path, out: Path, device: str, mirroring: bool) -> float:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if side == "nnunet":
        import contextlib
        import io

        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            predictor = nnUNetPredictor(
                device=torch.device(device),
                tile_step_size=0.5,
                use_mirroring=mirroring,
                allow_tqdm=False,
            )
            predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,))
            predictor.predict_from_files_sequential(str(data / "imagesTs"), str(out))
        return time.perf_counter() - start
    from seg4seg_cli import console
    from seg4seg_cli.predict import PredictOptions, run_predict

    console.settings.quiet = True
    start = time.perf_counter()
    options = PredictOptions(
        model=model, data=data, out=out, device=device, disable_tta=not mirroring, overwrite=True
    )
    run_predict(options)
    return time.perf_counter() - start


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    seconds = run_side(args.child, args.model, args.data, args.out, args.device, args.mirroring)
    print(json.dumps({"seconds": seconds, "peak_mib": peak_rss_mib()}))


def spawn(side: str, model: Path, data: Path, out: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", side, "--model", str(model)]
    command += ["--data", str(data), "--out", str(out), "--device", args.device]
    command += ["--mirroring"] if args.mirroring else []
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--spacing", type=float, nargs=3, default=[2.5, 1.6, 1.6])
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 128, 128])
    parser.add_argument("--mirroring", action="store_true", help="test-time mirroring on both")
    parser.add_argument("--child", choices=["nnunet", "seg4seg"], help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory(prefix="seg4seg_bench3d_") as tmp:
        work = Path(tmp)
        data, model = make_inputs(work, args.spacing, args.patch)
        results: dict[str, list[dict]] = {"nnunet": [], "seg4seg": []}
        for run in range(args.runs):
            for side in results:
                result = spawn(side, model, data, work / f"{side}_{run}", args)
                results[side].append(result)
                print(
                    f"run {run + 1}/{args.runs} {side}: {result['seconds']:.1f} s, "
                    f"peak {result['peak_mib']:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
        import SimpleITK as sitk

        a = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "nnunet_0" / "ct_000.nii.gz")))
        b = sitk.GetArrayFromImage(
            sitk.ReadImage(str(work / "seg4seg_0" / "predictions" / "ct_000.nii.gz"))
        )
        identical = bool(np.array_equal(a, b))

    median = {s: statistics.median(r["seconds"] for r in v) for s, v in results.items()}
    peak = {s: max(r["peak_mib"] for r in v) for s, v in results.items()}
    print(
        f"case: 512x512x200 int16, 0.8x0.8x2.5 mm; model: the 3-D sample's network, target spacing "
        f"{' x '.join(map(str, args.spacing))} mm (z, y, x), patch {args.patch}, "
        f"mirroring {'on' if args.mirroring else 'off'}, device {args.device}, "
        f"threads {os.environ.get('BENCH_THREADS', '2')}\n"
    )
    print("| implementation | median s | runs (s) | peak RSS, MiB |")
    print("|---|---|---|---|")
    names = {
        "nnunet": "nnU-Net `predict_from_files_sequential`",
        "seg4seg": "`seg4seg predict` (`run_predict`, embeddings on)",
    }
    for side, runs in results.items():
        times = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        print(f"| {names[side]} | {median[side]:.1f} | {times} | {peak[side]:.0f} |")
    print(
        f"\nseg4seg ÷ nnU-Net: time {median['seg4seg'] / median['nnunet']:.3f}, "
        f"peak memory {peak['seg4seg'] / peak['nnunet']:.3f}; segmentations identical: {identical}"
    )


if __name__ == "__main__":
    main()
