"""The planted-failure scenarios of `seg4seg bench`, after the SEG4SEG paper's failure types.

Each scenario designs its own training set (what the model learns from) and test set (what the
audit sees): 60 training and 200 test cases, 64x64, one structure each. In the test set 30 cases
(15%) form the subgroup, at random positions; case ids (`case_000`...) say nothing about it.
Membership is written to `truth.json` next to the dataset, never inside it.

1. artefact     a bright structure-like artefact next to the structure, never seen in training
2. appearance   inverted contrast (dark structure on bright tissue), absent from training
3. acquisition  another acquisition: a low-field scanner (half the contrast, five times the
                noise), absent from training
4. annotation   in training, structures of one recognisable kind (striped texture, 30% of the
                cases) were annotated 3 pixels inside their edge (eroded); test references are
                clean, so the model repeats the bias on striped ones. (Dilating instead was
                learnt by the 30-epoch model in only 2 of 3 seeds.)
5. small        nothing planted: 15% of both training and test cases hold very small structures,
                on which models are naturally worse (valid only if the model really shows it)
6. null         no subgroup: training and test cases come from one distribution

A scenario is valid when its subgroup's mean Dice is at least `MIN_GAP` below the rest's; the
benchmark checks this on the trained model and reports an invalid scenario instead of scoring it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seg4seg_cli import atomic
from seg4seg_cli.bench import train
from seg4seg_cli.bench.synthetic import FILE_ENDING, Look, make_case, write_nifti

N_TRAIN = 60
N_TEST = 200
N_SUBGROUP = 30  # 15% of the test cases
MIN_GAP = 0.15  # Dice below the rest for a scenario to be valid

PLAIN = Look()
SMALL_AXES = (2.0, 3.5)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    description: str
    train_looks: tuple[tuple[Look, float], ...]  # (look, share of training cases)
    test_subgroup: Look | None  # None: no subgroup (null)
    test_rest: Look = PLAIN
    failure_type: str = "planted"
    epochs: int = train.N_EPOCHS  # a bias in the labels takes longer to learn than the shape


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "artefact",
            "imaging artefact",
            "a bright structure-like artefact next to the structure, never seen in training",
            ((PLAIN, 1.0),),
            Look(artefact=True),
        ),
        Scenario(
            "appearance",
            "under-represented appearance",
            "inverted contrast (a dark structure on bright tissue), absent from training",
            ((PLAIN, 1.0),),
            Look(inverted=True),
        ),
        Scenario(
            "acquisition",
            "acquisition shift",
            "a low-field scanner: half the contrast and five times the noise, absent from training",
            ((PLAIN, 1.0),),
            Look(contrast=(80.0, 110.0), noise_sd=60.0),
        ),
        Scenario(
            "annotation",
            "annotation bias",
            "striped structures (30% of training) were annotated 3 px inside their edge; test references clean",
            ((PLAIN, 0.7), (Look(stripes=True, erode_label=3), 0.3)),
            Look(stripes=True),
            epochs=30,
        ),
        Scenario(
            "small",
            "natural failure: small structures",
            "nothing planted: 15% very small structures in training and test alike",
            ((PLAIN, 0.85), (Look(axes=SMALL_AXES), 0.15)),
            Look(axes=SMALL_AXES),
            failure_type="natural",
        ),
        Scenario(
            "null",
            "null (nothing to find)",
            "training and test cases from one distribution; any alarm is false",
            ((PLAIN, 1.0),),
            None,
        ),
    )
}


def dataset_name(scenario: Scenario, seed: int) -> str:
    """nnU-Net dataset folder name; ids 900-989 are free for local use."""
    index = list(SCENARIOS).index(scenario.name)
    return f"Dataset{900 + 10 * index + seed % 10:03d}_Bench{scenario.name.capitalize()}"


def generate(scenario: Scenario, seed: int, folder: Path) -> Path:
    """Write the scenario's raw dataset and `truth.json` into `folder`; returns the dataset path.

    Deterministic in (scenario, seed). Written to a staging folder and renamed, so a killed run
    never leaves a half dataset behind.
    """
    rng = np.random.default_rng([seed, list(SCENARIOS).index(scenario.name), 6])
    dataset = folder / dataset_name(scenario, seed)
    staging = folder / f".{dataset.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (staging / sub).mkdir(parents=True)
    (staging / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "MRI"},
                "labels": {"background": 0, "structure": 1},
                "numTraining": N_TRAIN,
                "file_ending": FILE_ENDING,
                "name": dataset.name,
                "description": f"seg4seg bench scenario {scenario.name}: {scenario.description}",
            },
            indent=4,
        )
        + "\n"
    )

    # training looks in shuffled order, with exact shares
    train_looks: list[Look] = []
    for look, share in scenario.train_looks:
        train_looks += [look] * int(round(share * N_TRAIN))
    train_looks = (train_looks + [PLAIN] * N_TRAIN)[:N_TRAIN]
    train_looks = [train_looks[i] for i in rng.permutation(N_TRAIN)]
    for i, look in enumerate(train_looks):
        image, label = make_case(rng, look)
        write_nifti(image, staging / "imagesTr" / f"train_{i:03d}_0000{FILE_ENDING}")
        write_nifti(label, staging / "labelsTr" / f"train_{i:03d}{FILE_ENDING}")

    test_ids = [f"case_{i:03d}" for i in range(N_TEST)]
    members: list[str] = []
    if scenario.test_subgroup is not None:
        members = sorted(test_ids[i] for i in rng.permutation(N_TEST)[:N_SUBGROUP])
    member_set = set(members)
    for case_id in test_ids:
        look = scenario.test_subgroup if case_id in member_set else scenario.test_rest
        image, label = make_case(rng, look)
        write_nifti(image, staging / "imagesTs" / f"{case_id}_0000{FILE_ENDING}")
        write_nifti(label, staging / "labelsTs" / f"{case_id}{FILE_ENDING}")

    if dataset.exists():
        shutil.rmtree(dataset)
    staging.rename(dataset)
    atomic.write_json(
        folder / "truth.json",
        {
            "scenario": scenario.name,
            "seed": seed,
            "description": scenario.description,
            "subgroup": members,
            "n_test": N_TEST,
        },
    )
    return dataset
