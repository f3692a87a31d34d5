"""Time and peak memory of every discovery method on synthetic embeddings.

10,000 cases x 512 dims for every method (goal: each under 60 s and 4 GB on 2 cores), and
100,000 cases for domino, kmeans and sliceline (goal: under 10 minutes). Then `seg4seg discover`
end to end with the default method on 10,000 cases x 512 dims (Parquet files in, subgroups.json
out, cross-fitting with 5 folds: 6 fits of the method, statistics, descriptions; goal: under 60 s). Each measurement runs in
a fresh subprocess so that its peak resident memory (ru_maxrss) is its own. A planted 10%
subgroup is shifted in embedding space and worse in quality; precision@10 of the best of the top-3
slices is printed as a sanity check.

Run: `.venv/bin/python benchmarks/bench_discover.py [--quick]`
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def planted_data(n_cases: int, n_dims: int):
    """(rng, planted mask, embeddings, quality): a 10% subgroup shifted by 2.5 in 8 dimensions
    and worse in quality (Dice 0.6 against 0.9)."""
    import numpy as np

    rng = np.random.default_rng(0)
    planted = np.zeros(n_cases, bool)
    planted[rng.choice(n_cases, n_cases // 10, replace=False)] = True
    embeddings = rng.normal(size=(n_cases, n_dims)).astype(np.float32)
    embeddings[planted, :8] += 2.5
    quality = np.clip(
        np.where(planted, rng.normal(0.6, 0.08, n_cases), rng.normal(0.9, 0.05, n_cases)), 0, 1
    )
    return rng, planted, embeddings, quality


def run_one(method: str, n_cases: int, n_dims: int) -> dict:
    import resource

    import numpy as np
    import pandas as pd

    from seg4seg_cli.slicers import make_slicer

    rng, planted, embeddings, quality = planted_data(n_cases, n_dims)
    features = pd.DataFrame(
        {f"feature_{i}": rng.normal(size=n_cases) for i in range(16)}
        | {f"meta_{i}": rng.choice(list("ABCD"), n_cases) for i in range(4)}
        | {"meta_planted_site": np.where(planted, "S", rng.choice(list("TU"), n_cases))}
    )
    start = time.perf_counter()
    slicer = make_slicer(method, n_slices=5, random_state=0, min_size=max(10, n_cases // 50))
    slicer.fit(embeddings if method != "sliceline" else None, quality, features)
    strengths = slicer.transform(embeddings, features)
    seconds = time.perf_counter() - start
    best = 0.0
    for j in range(min(3, strengths.shape[1])):
        order = np.argsort(-strengths[:, j], kind="stable")[:10]
        order = order[strengths[order, j] > 0]
        if order.size:
            best = max(best, float(planted[order].mean()))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "method": method,
        "n_cases": n_cases,
        "n_dims": n_dims,
        "seconds": seconds,
        "peak_gb": peak_gb,
        "p_at_10": best,
    }


def run_discover_end_to_end(n_cases: int, n_dims: int) -> dict:
    """`run_discover` with its defaults on a synthetic out folder; seconds exclude writing it."""
    import resource
    import tempfile
    from pathlib import Path

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seg4seg_cli.discover import DiscoverOptions, run_discover
    from seg4seg_cli.embeddings_store import write_embeddings

    rng, planted, embeddings, quality = planted_data(n_cases, n_dims)
    ids = [f"case_{i:06d}" for i in range(n_cases)]
    cases = pd.DataFrame(
        {"case_id": ids, "dice": quality}
        | {f"intensity_{i}": rng.normal(size=n_cases) for i in range(12)}
        | {"vol_pred_ml": rng.gamma(2.0, 1.0, n_cases), "n_comp_pred": rng.integers(1, 3, n_cases)}
        | {"meta_site": rng.choice(list("ABCD"), n_cases)}
    )
    out = Path(tempfile.mkdtemp(prefix="seg4seg_bench_discover_"))
    pq.write_table(pa.Table.from_pandas(cases, preserve_index=False), out / "cases.parquet")
    write_embeddings(out / "embeddings.parquet", ids, list(embeddings), source="synthetic")
    start = time.perf_counter()
    payload = run_discover(DiscoverOptions(out=out))
    seconds = time.perf_counter() - start
    top = payload["subgroups"][0] if payload["subgroups"] else {"case_ids": []}
    hits = sum(planted[int(c[5:])] for c in top["case_ids"][:10])
    return {
        "method": f"discover ({payload['method']}, end to end)",
        "n_cases": n_cases,
        "n_dims": n_dims,
        "seconds": seconds,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "p_at_10": hits / max(1, min(10, len(top["case_ids"]))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 cases only")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "N", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        method, n, d = args.one
        if method == "end-to-end":
            print(json.dumps(run_discover_end_to_end(int(n), int(d))))
        else:
            print(json.dumps(run_one(method, int(n), int(d))))
        return
    methods = ("coherent", "domino", "spotlight", "planespot", "kmeans", "sliceline")
    plan = [(m, 10_000, 512) for m in methods]
    plan += [(m, 100_000, 512) for m in ("coherent", "domino", "kmeans", "sliceline")]
    plan += [("end-to-end", 10_000, 512)]
    if args.quick:
        plan = [(m, 1_000, 64) for m, _, _ in plan[: len(methods)]] + [("end-to-end", 1_000, 64)]
    print("| method | cases | dims | seconds | peak memory (GB) | P@10 of best top-3 slice |")
    print("|---|---|---|---|---|---|")
    for method, n, d in plan:
        done = subprocess.run(
            [sys.executable, __file__, "--one", method, str(n), str(d)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"| {method} | {n} | {d} | failed: {done.stderr.strip().splitlines()[-1]} | | |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {r['method']} | {n:,} | {d} | {r['seconds']:.1f} | {r['peak_gb']:.2f} | {r['p_at_10']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
