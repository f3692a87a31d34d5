"""`seg4seg slurm-script`: an sbatch driver for sharded audits on a SLURM cluster.

The printed script, run with `bash`, submits an array job (one task per part: `predict` on a GPU,
then `features`, each taking its part from SLURM_ARRAY_TASK_ID) and a job that starts once every
task succeeded (`--dependency=afterok`): `merge`, `discover`, `report`. The job steps are ordinary
seg4seg commands, the same the tests run, so a cluster run and a local run agree.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SlurmOptions:
    model: Path
    data: Path
    out: Path
    num_parts: int = 4
    method: str = "coherent"
    metric: str = "dice"
    seed: int = 0
    metadata: Path | None = None
    cpus_per_task: int = 8
    mem: str = "32G"
    time: str = "04:00:00"
    gpus_per_task: int = 1
    partition: str | None = None
    seg4seg: str = "seg4seg"


def part_commands(o: SlurmOptions) -> list[str]:
    """The commands every array task runs (its part from SLURM_ARRAY_TASK_ID)."""
    q = shlex.quote
    metadata = f" --metadata {q(str(o.metadata))}" if o.metadata else ""
    return [
        f"{o.seg4seg} predict --model {q(str(o.model))} --data {q(str(o.data))} --out {q(str(o.out))} "
        f"--num-parts {o.num_parts} --progress never",
        f"{o.seg4seg} features --data {q(str(o.data))} --out {q(str(o.out))} --num-parts {o.num_parts} "
        f"--workers {o.cpus_per_task}{metadata} --progress never",
    ]


def report_commands(o: SlurmOptions) -> list[str]:
    """The commands of the job that runs after every part succeeded."""
    q = shlex.quote
    out = q(str(o.out))
    return [
        f"{o.seg4seg} merge {out}",
        f"{o.seg4seg} discover {out} --method {q(o.method)} --metric {q(o.metric)} --seed {o.seed} --progress never",
        f"{o.seg4seg} report {out} --format html",
    ]


def render_slurm_script(o: SlurmOptions) -> str:
    if o.num_parts < 1:
        raise ValueError("num_parts must be at least 1")
    q = shlex.quote
    logs = q(str(Path(o.out) / "logs"))
    partition = f" --partition={q(o.partition)}" if o.partition else ""
    gpus = f" --gres=gpu:{o.gpus_per_task}" if o.gpus_per_task else ""
    lines = [
        "#!/usr/bin/env bash",
        "# seg4seg on SLURM, written by `seg4seg slurm-script`. Submit with: bash THIS_FILE",
        f"# {o.num_parts} array tasks predict and compute features for one part each; then one job",
        "# merges the parts, finds the failure subgroups and writes report.html.",
        "set -euo pipefail",
        f"mkdir -p {logs}",
        "",
        f"parts_job=$(sbatch --parsable --job-name=seg4seg-parts --array=0-{o.num_parts - 1}{partition}{gpus} "
        f"--cpus-per-task={o.cpus_per_task} --mem={q(o.mem)} --time={q(o.time)} --output={logs}/part-%a.out <<'PARTS'",
        "#!/usr/bin/env bash",
        "set -euo pipefail",
        *part_commands(o),
        "PARTS",
        ")",
        "",
        f'report_job=$(sbatch --parsable --job-name=seg4seg-report --dependency=afterok:"$parts_job"{partition} '
        f"--cpus-per-task=2 --mem={q(o.mem)} --time={q(o.time)} --output={logs}/report.out <<'REPORT'",
        "#!/usr/bin/env bash",
        "set -euo pipefail",
        *report_commands(o),
        "REPORT",
        ")",
        "",
        'echo "submitted: parts job $parts_job, report job $report_job (after every part succeeds)"',
        "",
    ]
    return "\n".join(lines)
