"""Faults: runs killed with SIGKILL at random points resume to the same result, a failing write is a
clear error that leaves no corrupt file, and two shards writing into one out folder coexist."""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk
from conftest import SAMPLE_MODEL, make_dataset, sample_test_case_ids

from seg4seg_cli.atomic import TEMP_PREFIX

TRIALS = 10
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(step, data, out):
    base = [sys.executable, "-m", "seg4seg_cli", "-q", step, "-d", str(data), "-o", str(out)]
    return base + (["-m", str(SAMPLE_MODEL), "--device", "cpu"] if step == "predict" else [])


def _run(step, data, out, **kwargs):
    return subprocess.run(
        _command(step, data, out), capture_output=True, text=True, env=ENV, **kwargs
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("raw"), sample_test_case_ids()[:24])


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """An uninterrupted predict + features run, and how long each took."""
    out = tmp_path_factory.mktemp("reference") / "out"
    durations = {}
    for step in ("predict", "features"):
        start = time.monotonic()
        assert _run(step, dataset, out).returncode == 0
        durations[step] = time.monotonic() - start
    return out, durations


def _assert_no_half_files(out):
    """Every file under a final name is complete; only dot-named temporaries may be left."""
    for path in (out / "predictions").glob("*.nii.gz"):
        sitk.ReadImage(str(path))
    for path in (out / "partial" / "embeddings").glob("*.npy"):
        np.load(path)
    for path in out.rglob("*"):
        if path.is_file() and path.name.startswith("."):
            assert path.name.startswith(TEMP_PREFIX), path


def _assert_same_outputs(out, reference_out):
    for path in sorted((reference_out / "predictions").glob("*.nii.gz")):
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "predictions" / path.name)))
        np.testing.assert_array_equal(ours, sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
    assert pq.read_table(out / "embeddings.parquet").equals(
        pq.read_table(reference_out / "embeddings.parquet")
    )
    if (out / "cases.parquet").exists():
        pd.testing.assert_frame_equal(
            pq.read_table(out / "cases.parquet").to_pandas(),
            pq.read_table(reference_out / "cases.parquet").to_pandas(),
        )


@pytest.mark.parametrize("step", ["predict", "features"])
def test_sigkill_at_random_points_then_resume_gives_identical_outputs(
    step, dataset, reference, tmp_path
):
    reference_out, durations = reference
    rng = random.Random(f"{step}-kill")
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}"
        if step == "features":  # features needs finished predictions: take the reference's
            shutil.copytree(
                reference_out, out, ignore=shutil.ignore_patterns("cases.parquet", "features")
            )
        process = subprocess.Popen(
            _command(step, dataset, out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        time.sleep(rng.uniform(0.2, 1.0) * durations[step])
        process.send_signal(signal.SIGKILL)
        process.wait()
        _assert_no_half_files(out)
        resumed = _run(step, dataset, out)
        assert resumed.returncode == 0, resumed.stderr
        if step == "predict":
            assert _run("features", dataset, out).returncode == 0
        _assert_same_outputs(out, reference_out)


def test_a_killed_overwrite_over_other_settings_resumes_without_the_old_outputs(
    dataset, reference, tmp_path
):
    """An out folder predicted with other settings (no mirroring), redone with --overwrite,
    killed half-way, then resumed without --overwrite: the result is the reference run's, not a
    mix of old and new cases (the record names the new settings as soon as the redo starts)."""
    reference_out, durations = reference
    out = tmp_path / "out"
    old = subprocess.run(
        [*_command("predict", dataset, out), "--disable-tta"], capture_output=True, env=ENV
    )
    assert old.returncode == 0
    started = time.time()
    process = subprocess.Popen(
        [*_command("predict", dataset, out), "--overwrite"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    # killed once the redo has finished a few cases (so it has begun), long before its end
    deadline = time.monotonic() + 10 * durations["predict"] + 60
    while time.monotonic() < deadline and process.poll() is None:
        redone = [
            p for p in (out / "partial" / "embeddings").glob("*.npy")
            if p.stat().st_mtime >= started
        ]  # fmt: skip
        if len(redone) >= 3:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the redo finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    _assert_no_half_files(out)
    resumed = _run("predict", dataset, out)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_outputs(out, reference_out)


def test_a_failing_write_is_a_clear_error_and_leaves_no_corrupt_file(dataset, reference, tmp_path):
    out = tmp_path / "out"
    assert _run("predict", dataset, out).returncode == 0
    record_before = (out / "run.json").read_bytes()

    def small_files_only():  # writes beyond 4 KiB fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    failed = subprocess.run(
        _command("features", dataset, out),
        capture_output=True,
        text=True,
        env=ENV,
        preexec_fn=small_files_only,
    )
    assert failed.returncode == 2, failed.stderr
    assert "error: cannot write" in failed.stderr and "File too large" in failed.stderr
    assert "Traceback" not in failed.stderr
    _assert_no_half_files(out)
    assert not (out / "cases.parquet").exists()
    assert (out / "run.json").read_bytes() == record_before  # the old record is intact
    # with room again, the run completes
    assert _run("features", dataset, out).returncode == 0
    _assert_same_outputs(out, reference[0])


def test_two_shards_writing_into_one_out_folder_at_once(dataset, reference, tmp_path):
    out = tmp_path / "out"
    processes = [
        subprocess.Popen(
            _command("predict", dataset, out) + ["--num-parts", "2", "--part-id", str(part)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        for part in range(2)
    ]
    for process in processes:
        assert process.wait() == 0, process.stderr.read()
    merged = subprocess.run(
        [sys.executable, "-m", "seg4seg_cli", "merge", str(out)],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert merged.returncode == 0, merged.stderr
    _assert_same_outputs(out, reference[0])
