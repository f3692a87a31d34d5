"""Overhead of `seg4seg predict` over plain nnU-Net inference, side by side in one process.

Both sides go from the trained model folder to prediction files on disk for the sample test set
(80 cases), with the same settings (CPU or CUDA, mirroring on, step size 0.5):
- nnU-Net: `nnUNetPredictor.initialize_from_trained_model_folder` + `predict_from_files_sequential`;
- seg4seg: `run_predict` (the code behind `seg4seg predict`), which also captures the encoder
  embedding in the same forward passes, writes embeddings.parquet and run.json, all atomically.
Runs alternate (nnU-Net, seg4seg, nnU-Net, ...) so that drift hits both equally; the ratio of the
medians is the overhead. Run: `.venv/bin/python benchmarks/bench_predict_overhead.py [--device cuda]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "sample_data/model/Dataset990_Seg4SegSample/nnUNetTrainer__nnUNetPlans__2d"
DATA = REPO / "sample_data/Dataset990_Seg4SegSample"


def time_nnunet(device: torch.device, out: Path) -> float:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    out.mkdir(parents=True, exist_ok=True)  # nnU-Net's sequential API needs it to exist
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(device=device, allow_tqdm=False, tile_step_size=0.5)
        predictor.initialize_from_trained_model_folder(str(MODEL), use_folds=(0,))
        predictor.predict_from_files_sequential(str(DATA / "imagesTs"), str(out))
    return time.perf_counter() - start


def time_seg4seg(device: torch.device, out: Path) -> float:
    from seg4seg_cli import console
    from seg4seg_cli.predict import PredictOptions, run_predict

    console.settings.quiet = True
    start = time.perf_counter()
    run_predict(PredictOptions(model=MODEL, data=DATA, out=out, device=device.type, overwrite=True))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n_cases = len(list((DATA / "imagesTs").glob("*_0000.nii.gz")))

    times: dict[str, list[float]] = {"nnU-Net": [], "seg4seg": []}
    with tempfile.TemporaryDirectory() as tmp:
        # one untimed warm-up of each: imports, allocator, file cache
        time_nnunet(device, Path(tmp) / "warm_nnunet")
        time_seg4seg(device, Path(tmp) / "warm_seg4seg")
        for run in range(args.runs):
            for name, fn in (("nnU-Net", time_nnunet), ("seg4seg", time_seg4seg)):
                out = Path(tmp) / f"{name}_{run}"
                out.mkdir()
                times[name].append(fn(device, out))
                shutil.rmtree(out)

    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["seg4seg"] / medians["nnU-Net"]
    device_name = (
        torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {args.threads} threads"
    )
    print(
        f"predict overhead, {n_cases} sample cases (64x64, mirroring on), {device_name}, {args.runs} alternating runs"
    )
    print("| implementation | median s | s per case | runs (s) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {medians[name]:.2f} | {medians[name] / n_cases:.4f} | {runs} |")
    print(f"ratio seg4seg / nnU-Net: {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%; goal <= +5%)")


if __name__ == "__main__":
    main()
