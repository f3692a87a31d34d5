"""The 10,000-case benchmark on one machine: the real CLI end to end, time and peak memory per step.

Writes N small synthetic 2-D cases (default 10,000, fixed seed) as an nnU-Net v2 raw dataset with
predictions "from another tool" (no model) and a metadata CSV, then runs the installed CLI
(`.venv/bin/seg4seg ... --progress never`) as separate subprocesses and times each:

- `features --data D --predictions P --out O --metadata M --workers 2` (fresh out folder);
- the same `features` command again (every row reused: the cost of resuming);
- `discover O` (default method) and `discover O --method all` (the latter's subgroups.json is
  the one reported);
- `report O --format html` (size of report.html, goal < 20 MB) and `report O` (the terminal
  table: its line count and width), as captured (not a TTY: 160 columns) and with COLUMNS=80.

Data, per case (48x48 pixels, 0.8x0.8 mm, int16 image, uint8 labels, `.nii.gz` via SimpleITK):
a smooth noisy background with one bright ellipse (the reference label); the prediction is the
reference shifted by up to a pixel, dilated or eroded by one pixel or not, with a few boundary
pixels flipped. 10% of the cases carry a planted failure, half of each kind:
- `fp`: a bright artefact blob (radius 3-5 pixels) 3-5 pixels from the structure, in the image
  and in the prediction (an extra false-positive component);
- `eroded`: a low-contrast structure, predicted strongly eroded (3 pixels).
`metadata.csv` has `case_id,site,scanner,age`; 80% of the planted cases come from site C, which
also holds about 10% of the normal cases. Case ids do not reveal membership (`planted.json`).

Peak memory, per command, two ways:
- largest single process: GNU time's "Maximum resident set size" (`/usr/bin/time -v`; the
  wait4() rusage of the command, the largest high-water mark among it and its waited-for
  children, exact; `ru_maxrss` of this script's RUSAGE_CHILDREN would mix all commands);
- whole process tree: the sums of Pss (shared pages split between the processes sharing them)
  and of VmRSS over the command and all its descendants (the feature workers), sampled from
  /proc every 0.2 s (a sampled lower bound of the true peak sum); each process's own VmHWM too.
CPU seconds (user + sys of the command and its children, from GNU time) are printed beside the
wall seconds: they are less sensitive to other load on the machine.

Nothing about timing is asserted.

Run: `.venv/bin/python benchmarks/bench_scale.py [--cases 10000] [--keep DIR] [--json FILE]`
(`--keep DIR` writes everything into DIR and keeps it; a second run with the same DIR, --cases
and --seed reuses the generated data and recomputes everything else.)
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CLI = REPO / ".venv" / "bin" / "seg4seg"
GNU_TIME = "/usr/bin/time"
DATASET_NAME = "Dataset991_Seg4SegScale"
SPACING = (0.8, 0.8)
SITES_NORMAL = ("A", "B", "C", "D")
SITES_NORMAL_P = (0.35, 0.35, 0.10, 0.20)
SCANNERS = {"A": "Aurora 3T", "B": "Borealis 1.5T", "C": "Cygnus 1.5T", "D": "Draco 3T"}


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def plan_cases(n_cases: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """Case ids, the kind of each case (normal/fp/eroded) and its site, deterministically."""
    rng = np.random.default_rng([seed, 1])
    case_ids = [f"case_{i:05d}" for i in range(n_cases)]
    kinds = ["normal"] * n_cases
    planted = rng.permutation(n_cases)[: n_cases // 10]
    for j, i in enumerate(planted):
        kinds[i] = "fp" if j % 2 == 0 else "eroded"
    sites = []
    for kind in kinds:
        if kind == "normal":
            sites.append(str(rng.choice(SITES_NORMAL, p=SITES_NORMAL_P)))
        else:
            sites.append("C" if rng.random() < 0.8 else str(rng.choice(("A", "B", "D"))))
    return case_ids, kinds, sites


def _ellipse(size: int, cy: float, cx: float, a: float, b: float, theta: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def make_case(index: int, kind: str, seed: int, size: int) -> tuple[np.ndarray, ...]:
    """(image int16, reference uint8, prediction uint8) of one case, from its own generator."""
    from scipy import ndimage

    rng = np.random.default_rng([seed, 2, index])
    background = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (size, size)), 3.0) * 150 + 100
    yy, xx = np.mgrid[:size, :size]
    background += rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx
    cy, cx = rng.uniform(size / 3, 2 * size / 3, 2)
    a, b = rng.uniform(5.0, 10.0, 2)
    reference = _ellipse(size, cy, cx, a, b, rng.uniform(0, np.pi))
    contrast = 90.0 if kind == "eroded" else rng.uniform(260.0, 340.0)
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (size, size)), 1.0) * 40
    image = background + reference * (contrast + texture)

    prediction = np.roll(reference, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
    op = rng.integers(3)
    if op == 1:
        prediction = ndimage.binary_dilation(prediction)
    elif op == 2:
        prediction = ndimage.binary_erosion(prediction)
    rim = ndimage.binary_dilation(prediction) ^ ndimage.binary_erosion(prediction)
    prediction = prediction ^ (rim & (rng.random((size, size)) < 0.1))

    if kind == "fp":
        distance = ndimage.distance_transform_edt(~reference)
        artefact = np.zeros_like(reference)
        for _ in range(500):
            r = rng.uniform(3.0, 5.0)
            candidate = _ellipse(size, *rng.uniform(r + 1, size - r - 1, 2), r, r, 0.0)
            if candidate.any() and 3 <= distance[candidate].min() <= 5:
                artefact = candidate
                break
        image = image + artefact * (contrast + texture)
        prediction = prediction | artefact
    elif kind == "eroded":
        prediction = ndimage.binary_erosion(reference, iterations=3)
    image = image + rng.normal(0.0, 15.0, (size, size))
    return (
        np.clip(np.rint(image), -32768, 32767).astype(np.int16),
        reference.astype(np.uint8),
        prediction.astype(np.uint8),
    )


def _write(array: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(path), useCompression=True)


def _write_chunk(job: tuple) -> int:
    indices, kinds, seed, size, dataset, predictions = job
    for index, kind in zip(indices, kinds, strict=True):
        image, reference, prediction = make_case(index, kind, seed, size)
        case_id = f"case_{index:05d}"
        _write(image, dataset / "imagesTs" / f"{case_id}_0000.nii.gz")
        _write(reference, dataset / "labelsTs" / f"{case_id}.nii.gz")
        _write(prediction, predictions / f"{case_id}.nii.gz")
    return len(indices)


def generate(root: Path, n_cases: int, seed: int, size: int, processes: int) -> dict:
    """Write the dataset, predictions, metadata.csv and planted.json under `root`."""
    dataset, predictions = root / DATASET_NAME, root / "predictions"
    for folder in (dataset / "imagesTs", dataset / "labelsTs", predictions):
        folder.mkdir(parents=True, exist_ok=True)
    case_ids, kinds, sites = plan_cases(n_cases, seed)
    dataset_json = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "structure": 1},
        "numTraining": 0,
        "file_ending": ".nii.gz",
        "name": DATASET_NAME,
        "description": "Synthetic 2-D scale benchmark for seg4seg (benchmarks/bench_scale.py).",
    }
    (dataset / "dataset.json").write_text(json.dumps(dataset_json, indent=4))
    age_rng = np.random.default_rng([seed, 3])
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "site", "scanner", "age"])
        for case_id, site in zip(case_ids, sites, strict=True):
            writer.writerow([case_id, site, SCANNERS[site], int(age_rng.integers(18, 90))])
    planted = {
        kind: [c for c, k in zip(case_ids, kinds, strict=True) if k == kind]
        for kind in ("fp", "eroded")
    }
    (root / "planted.json").write_text(json.dumps(planted, indent=1))

    chunk = 100
    jobs = [
        (
            list(range(s, min(s + chunk, n_cases))),
            kinds[s : s + chunk],
            seed,
            size,
            dataset,
            predictions,
        )
        for s in range(0, n_cases, chunk)
    ]
    start = time.perf_counter()
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            done = sum(pool.imap_unordered(_write_chunk, jobs))
    else:
        done = sum(_write_chunk(job) for job in jobs)
    seconds = time.perf_counter() - start
    marker = {"n_cases": n_cases, "seed": seed, "size": size, "seconds": seconds}
    (root / "generated.json").write_text(json.dumps(marker))
    assert done == n_cases
    return marker


# ----------------------------------------------------------------------------------------------
# Measuring a command
# ----------------------------------------------------------------------------------------------
def _proc_table() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def _status_kib(pid: int) -> tuple[int, int, int]:
    """(VmRSS, VmHWM, Pss) in KiB, zeros when the process is gone."""
    rss = hwm = pss = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except OSError:
        pass
    return rss, hwm, pss


class TreeSampler:
    """Peaks of the summed VmRSS and Pss of a process's descendants (sampled), and their VmHWM.

    Summed VmRSS counts shared pages (libraries, numpy/scipy code) once per process; summed Pss
    splits them between the processes sharing them: the physical memory the tree holds.
    """

    def __init__(self, root: int, include_root: bool = False) -> None:
        self.root, self.include_root = root, include_root
        self.peak_rss_kib = self.peak_pss_kib = 0
        self.max_processes = 0
        self.hwm_kib: dict[int, int] = {}

    def sample(self) -> None:
        parents = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        tree, stack = [], list(children.get(self.root, []))
        if self.include_root:
            stack.append(self.root)
        while stack:
            pid = stack.pop()
            tree.append(pid)
            stack.extend(children.get(pid, []))
        total_rss = total_pss = 0
        for pid in tree:
            rss, hwm, pss = _status_kib(pid)
            total_rss += rss
            total_pss += pss
            if hwm:
                self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), hwm)
        self.peak_rss_kib = max(self.peak_rss_kib, total_rss)
        self.peak_pss_kib = max(self.peak_pss_kib, total_pss)
        self.max_processes = max(self.max_processes, len(tree))


def measure(
    name: str, args: list[str], logs: Path, env_extra: dict | None = None, interval: float = 0.2
) -> dict:
    """Run `seg4seg ARGS` under GNU time: seconds, CPU seconds, exit code, peak memory, logs."""
    cmd = [str(CLI), *args]
    time_file = logs / f"{name}.time"
    use_time = Path(GNU_TIME).is_file()
    full = [GNU_TIME, "-v", "-o", str(time_file), *cmd] if use_time else cmd
    stdout_file, stderr_file = logs / f"{name}.stdout", logs / f"{name}.stderr"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | (env_extra or {})
    print(f"[{name}] seg4seg {' '.join(args)}", file=sys.stderr, flush=True)
    with open(stdout_file, "wb") as out, open(stderr_file, "wb") as err:
        start = time.perf_counter()
        process = subprocess.Popen(full, stdout=out, stderr=err, env=env, cwd=REPO)
        # under GNU time the command is time's child: sample time's descendants only
        sampler = TreeSampler(process.pid, include_root=not use_time)
        while process.poll() is None:
            sampler.sample()
            time.sleep(interval)
        seconds = time.perf_counter() - start
    peak_single_kib = max(sampler.hwm_kib.values(), default=0)
    cpu_seconds = None
    if use_time and time_file.is_file():
        text = time_file.read_text()
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        if match:
            peak_single_kib = int(match.group(1))
        user = re.search(r"User time \(seconds\): ([\d.]+)", text)
        system = re.search(r"System time \(seconds\): ([\d.]+)", text)
        if user and system:
            cpu_seconds = float(user.group(1)) + float(system.group(1))
    result = {
        "name": name,
        "command": "seg4seg " + " ".join(args),
        "env": env_extra or {},
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "returncode": process.returncode,
        "peak_single_mib": peak_single_kib / 1024,
        "peak_tree_rss_mib": sampler.peak_rss_kib / 1024,
        "peak_tree_pss_mib": sampler.peak_pss_kib / 1024,
        "hwm_per_process_mib": sorted((v / 1024 for v in sampler.hwm_kib.values()), reverse=True),
        "processes": sampler.max_processes,
        "stdout": stdout_file,
        "stderr": stderr_file,
    }
    print(
        f"[{name}] exit {process.returncode}, {seconds:.1f} s, peak {result['peak_single_mib']:.0f} "
        f"MiB (largest process), tree {result['peak_tree_pss_mib']:.0f} MiB Pss / "
        f"{result['peak_tree_rss_mib']:.0f} MiB RSS (sampled)",
        file=sys.stderr,
        flush=True,
    )
    if process.returncode not in (0, 1):
        sys.stderr.write(stderr_file.read_text(errors="replace")[-4000:])
    return result


# ----------------------------------------------------------------------------------------------
# Notes per step
# ----------------------------------------------------------------------------------------------
def folder_bytes(folder: Path) -> tuple[int, int]:
    """(total size in bytes, number of files) under `folder`."""
    total = count = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            total += os.path.getsize(os.path.join(dirpath, name))
            count += 1
    return total, count


def closing_line(result: dict, prefix: str) -> str:
    for line in result["stderr"].read_text(errors="replace").splitlines():
        if line.startswith(prefix):
            return line.strip()
    return ""


def subgroup_note(out: Path, planted: set[str]) -> str:
    path = out / "subgroups.json"
    if not path.is_file():
        return "no subgroups.json"
    payload = json.loads(path.read_text())
    groups = payload["subgroups"]
    note = f"{len(groups)} subgroup(s)"
    if groups:
        top = groups[0]
        members = set(top["case_ids"])
        precision = len(members & planted) / len(members)
        recall = len(members & planted) / len(planted)
        note += (
            f"; rank 1 {top['id']}: {top['size']} cases, gap {top['gap']:.3f}, "
            f"p adj {top['p_adjusted']:.2g}, {precision:.0%} planted, recall {recall:.0%}"
        )
        best = max(groups, key=lambda g: len(set(g["case_ids"]) & planted) / len(planted))
        if best is not top:
            hit = len(set(best["case_ids"]) & planted)
            note += f"; best recall rank {best['rank']} {best['id']}: {hit / len(planted):.0%}"
    return note


def code_version() -> str:
    """The commit of the checkout, and whether seg4seg_cli/ differs from it."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "seg4seg_cli"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"{head or 'unknown'}{' + uncommitted changes in seg4seg_cli/' if dirty else ''}"


def table_layout(text: str) -> dict:
    lines = text.splitlines()
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    return {
        "lines": len(lines),
        "table_lines": len(table),
        "max_width": max((len(line) for line in lines), default=0),
    }


# ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=48, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=991)
    parser.add_argument("--workers", type=int, default=2, help="seg4seg features --workers")
    parser.add_argument("--gen-processes", type=int, default=2, help="pool for data generation")
    parser.add_argument("--keep", type=Path, help="write into DIR and keep it (reuses its data)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    if not CLI.is_file():
        sys.exit(f"{CLI} not found: run `make test` (or create .venv) first")

    root = args.keep or Path(tempfile.mkdtemp(prefix="seg4seg_scale_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        run(args, root.resolve())
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> None:
    marker_file = root / "generated.json"
    wanted = {"n_cases": args.cases, "seed": args.seed, "size": args.size}
    marker = json.loads(marker_file.read_text()) if marker_file.is_file() else {}
    if all(marker.get(k) == v for k, v in wanted.items()):
        gen_note = f"reused from {root} (generated earlier in {marker['seconds']:.1f} s)"
        gen_seconds = None
    else:
        for name in (DATASET_NAME, "predictions"):
            shutil.rmtree(root / name, ignore_errors=True)
        print(f"generating {args.cases} cases into {root} ...", file=sys.stderr, flush=True)
        marker = generate(root, args.cases, args.seed, args.size, args.gen_processes)
        gen_seconds = marker["seconds"]
        gen_note = f"{args.gen_processes} process(es)"
    dataset, predictions = root / DATASET_NAME, root / "predictions"
    planted_by_kind = json.loads((root / "planted.json").read_text())
    planted = {c for ids in planted_by_kind.values() for c in ids}
    data_bytes, data_files = folder_bytes(dataset)
    pred_bytes, pred_files = folder_bytes(predictions)
    raw_mib = args.cases * args.size**2 * (2 + 1 + 1) / 2**20

    out, logs = root / "out", root / "logs"
    shutil.rmtree(out, ignore_errors=True)
    logs.mkdir(exist_ok=True)
    features_args = [
        "features",
        "--data",
        str(dataset),
        "--predictions",
        str(predictions),
        "--out",
        str(out),
        "--metadata",
        str(root / "metadata.csv"),
        "--workers",
        str(args.workers),
        "--progress",
        "never",
    ]
    steps = [
        ("features", features_args, None),
        ("features (rerun, all reused)", features_args, None),
        ("discover (default: domino)", ["discover", str(out), "--progress", "never"], None),
        (
            "discover --method all",
            ["discover", str(out), "--method", "all", "--progress", "never"],
            None,
        ),
        (
            "report --format html",
            ["report", str(out), "--format", "html", "--progress", "never"],
            None,
        ),
        ("report (terminal table)", ["report", str(out), "--progress", "never"], None),
        (
            "report (terminal table, COLUMNS=80)",
            ["report", str(out), "--progress", "never"],
            {"COLUMNS": "80"},
        ),
    ]
    code_before = code_version()
    load_before = os.getloadavg()
    results = []
    for index, (name, step_args, env_extra) in enumerate(steps):
        result = measure(f"{index}", step_args, logs, env_extra)
        result["name"] = name
        result["load_before"] = load_before if index == 0 else results[-1]["load_after"]
        result["load_after"] = os.getloadavg()
        if name.startswith("features"):
            result["note"] = closing_line(result, "features:")
            if index == 0:
                out_bytes, out_files = folder_bytes(out)
                cases_mib = (out / "cases.parquet").stat().st_size / 2**20
                partial_bytes, partial_files = folder_bytes(out / "partial" / "features")
                result["note"] += (
                    f"; out folder {out_bytes / 2**20:.1f} MiB in {out_files} files "
                    f"(cases.parquet {cases_mib:.1f} MiB, partial/features "
                    f"{partial_bytes / 2**20:.1f} MiB in {partial_files} files)"
                )
        elif name.startswith("discover"):
            result["note"] = subgroup_note(out, planted)
        elif name == "report --format html":
            html = out / "report.html"
            size = html.stat().st_size if html.is_file() else 0
            result["html_bytes"] = size
            verdict = "met" if size < 20e6 else "NOT met"
            result["note"] = f"report.html {size / 1e6:.2f} MB ({verdict}: goal < 20 MB)"
        else:
            text = result["stderr"].read_text(errors="replace")
            layout = table_layout(text)
            result["layout"] = layout
            result["terminal_output"] = text
            result["note"] = (
                f"stderr: {layout['lines']} lines, {layout['table_lines']} of them table, "
                f"widest {layout['max_width']} columns"
            )
        if result["processes"] > 1:
            peaks = ", ".join(f"{v:.0f}" for v in result["hwm_per_process_mib"])
            result["note"] += f"; per-process peaks (VmHWM, sampled) {peaks} MiB"
        result["note"] = (
            f"exit {result['returncode']}; " if result["returncode"] else ""
        ) + result["note"]
        results.append(result)

    versions = subprocess.run(
        [str(CLI), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"\n## {args.cases:,} cases on one machine\n")
    print(f"Code: {code_version()} (read before the first step: {code_before}).")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}; {versions.replace(chr(10), '; ')}. Load average (1 min) "
        f"{load_before[0]:.2f} before the first step, {results[-1]['load_after'][0]:.2f} after "
        "the last."
    )
    print(
        f"Data: {args.cases} cases, {args.size}x{args.size} int16 images + uint8 reference and "
        f"prediction, {len(planted)} planted ({len(planted_by_kind['fp'])} fp, "
        f"{len(planted_by_kind['eroded'])} eroded); on disk {data_bytes / 2**20:.1f} MiB dataset "
        f"({data_files} files) + {pred_bytes / 2**20:.2f} MiB predictions ({pred_files} files); "
        f"{raw_mib:.1f} MiB of voxels uncompressed."
    )
    print()
    print(
        "| step | seconds | CPU s (user+sys, all processes) | peak RSS MiB, largest process "
        "| peak MiB, whole tree: Pss / RSS sum (sampled) | notes |"
    )
    print("|---|---|---|---|---|---|")
    gen = f"{gen_seconds:.1f}" if gen_seconds is not None else "–"
    print(f"| generate data (not seg4seg) | {gen} | – | – | – | {gen_note} |")
    for r in results:
        cpu = f"{r['cpu_seconds']:.1f}" if r["cpu_seconds"] is not None else "–"
        tree = (
            f"{r['peak_tree_pss_mib']:.0f} / {r['peak_tree_rss_mib']:.0f} ({r['processes']} proc.)"
        )
        print(
            f"| `{r['name']}` | {r['seconds']:.1f} | {cpu} | {r['peak_single_mib']:.0f} | "
            f"{tree} | {r['note']} |"
        )
    print()
    for r in results:
        env = "".join(f"{k}={v} " for k, v in r["env"].items())
        print(f"- `{r['name']}`: `{env}{r['command']}`")
    html = next(r for r in results if "html_bytes" in r)
    print(f"\nreport.html: {html['html_bytes'] / 1e6:.2f} MB (goal < 20 MB)")
    for table in results:
        if "terminal_output" in table:
            print(f"\nTerminal output of `{table['name']}` ({table['note']}):\n")
            print("```\n" + table["terminal_output"].rstrip() + "\n```")
    if args.json:
        for r in results:
            r["stdout"], r["stderr"] = str(r["stdout"]), str(r["stderr"])
        args.json.write_text(
            json.dumps(
                {
                    "cases": args.cases,
                    "generation_seconds": gen_seconds,
                    "data_bytes": data_bytes,
                    "prediction_bytes": pred_bytes,
                    "steps": results,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
