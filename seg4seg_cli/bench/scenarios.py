"""The planted-failure scenarios of `seg4seg bench`, after the SEG4SEG paper's failure types.

A scenario names the training set its model learns from and the test set the audit sees. Test
sets have 120 cases by default (`--size`), 15% of them in the planted subgroup, and about 15% of
the others are *distractors*: each with its own random corruption (`distractors.py`), failing
about as badly as the subgroup but for no shared reason; never one that reproduces the
scenario's own failure mechanism (`Scenario.unlike`). Membership and distractors are written
to `truth.json` next to the test set, never inside it; case ids (`case_000`...) say nothing.

Scenarios with the same `model` share one trained model per seed (the same training cases), so a
model trained on plain cases is audited on several test sets, as a released model would be.

1. artefact     a bright structure-like artefact next to the structure, never seen in training
2. appearance   a blurred, low-contrast structure (a different reconstruction kernel)
3. acquisition  a low-field scanner: lower contrast and more noise, absent from training
4. annotation   in training, striped structures (30%) were annotated 3 px inside their edge; test
                references are clean, so the model repeats the bias on striped ones
5. small        nothing planted: 15% of training and test cases hold small structures, on which
                models are naturally worse (valid only if the model really shows it); the test
                ones are the larger of them (semi-axes 3-5 px against 2.5-4.5 in training): the
                smallest fail far worse than any distractor, so listing the worst cases found them
6. brain        real anatomy (MNI152 T1, white matter): grey matter brighter than white matter
                (another sequence), absent from training
7. few          60 cases, 10 from a harsher low-field scanner: a strong failure (gap >= 0.3) in a
                small test set, no worse than the distractors, which here all combine two kinds
                of corruption so that they fail as hard (an inverted contrast, its first
                version, failed so much worse that listing the 10 worst cases found it)
8. null         no subgroup (distractors only): any alarm is false

A scenario is valid when its subgroup's mean Dice is at least `MIN_GAP` below the rest's; the
benchmark checks this on the trained model and reports an invalid scenario instead of scoring it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from seg4seg_cli import atomic
from seg4seg_cli.bench import brain, distractors, synthetic, train
from seg4seg_cli.bench.brain import BrainLook
from seg4seg_cli.bench.synthetic import FILE_ENDING, Look

N_TRAIN = 60
N_TEST = 120  # the main size; `--size` changes it for scenarios without a size of their own
SUBGROUP_SHARE = 0.15
DISTRACTOR_SHARE = 0.15  # of the cases outside the subgroup
MIN_GAP = 0.15  # Dice below the rest for a scenario to be valid

PLAIN = Look()
PLAIN_BRAIN = BrainLook()
SMALL_AXES = (2.5, 4.5)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    description: str
    model: str  # scenarios with the same model share its training cases and trained model
    train_looks: tuple[tuple[Look | BrainLook, float], ...]  # (look, share of training cases)
    test_subgroup: Look | BrainLook | None  # None: no subgroup (null)
    test_rest: Look | BrainLook = PLAIN
    failure_type: str = "planted"
    epochs: int = train.N_EPOCHS  # a bias in the labels takes longer to learn than the shape
    n_test: int | None = None  # None: the bench's size
    n_subgroup: int | None = None  # None: SUBGROUP_SHARE of the test cases
    # distractor kinds that would reproduce the subgroup's own failure mechanism: such a case
    # would belong to the failure mode, not be a scattered failure, so it is not drawn
    unlike: tuple[str, ...] = ()
    # share of distractors that combine two kinds of corruption: more where the subgroup fails
    # harder than one kind usually makes a case fail, so that distractors still fail alike
    second_kind_share: float = distractors.SECOND_KIND_SHARE

    def distractor_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in distractors.KINDS if k not in self.unlike)

    def size(self, default: int = N_TEST) -> int:
        return self.n_test or default

    def subgroup_size(self, n_test: int) -> int:
        if self.test_subgroup is None:
            return 0
        return self.n_subgroup or int(round(SUBGROUP_SHARE * n_test))


PLAIN_TRAINING = ((PLAIN, 1.0),)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "artefact",
            "imaging artefact",
            "a bright structure-like artefact next to the structure, never seen in training",
            "plain",
            PLAIN_TRAINING,
            Look(artefact=True, artefact_axes=(5.0, 9.0)),
            unlike=("blob", "ghost"),  # extra structure-like objects: the artefact itself
        ),
        Scenario(
            "appearance",
            "under-represented appearance",
            "a blurred, low-contrast structure (another reconstruction kernel), absent from training",
            "plain",
            PLAIN_TRAINING,
            Look(blur_sigma=1.6, contrast=(70.0, 100.0)),
            unlike=("drop",),  # a faded structure
        ),
        Scenario(
            "acquisition",
            "acquisition shift",
            "a low-field scanner: about half the contrast and five times the noise, absent from training",
            "plain",
            PLAIN_TRAINING,
            # a contrast range reaching 110 (it was 100) and noise 65 (70), chosen on development
            # seeds: worst-k P@10 0.45 instead of 0.55 there, gap 0.26; the reported seeds gave
            # 0.62 with the former look, above the bench's bar of 0.6
            Look(contrast=(70.0, 110.0), noise_sd=65.0),
            unlike=("drop", "burst"),  # less contrast, more noise
        ),
        Scenario(
            "annotation",
            "annotation bias",
            "striped structures (30% of training) were annotated 3 px inside their edge; test references clean",
            "annotation",
            ((PLAIN, 0.7), (Look(stripes=True, erode_label=3), 0.3)),
            Look(stripes=True),
            epochs=30,
        ),
        Scenario(
            "small",
            "natural failure: small structures",
            "nothing planted: 15% small structures in training, 15% in test (the larger of them)",
            "small",
            ((PLAIN, 0.85), (Look(axes=SMALL_AXES), 0.15)),
            Look(axes=(3.0, 5.0)),
            failure_type="natural",
        ),
        Scenario(
            "brain",
            "real anatomy: sequence shift",
            "real brain MR (MNI152 T1, white matter): grey matter brighter than white matter (another sequence), absent from training",
            "brain",
            ((PLAIN_BRAIN, 1.0),),
            BrainLook(gm_wm_contrast=-0.5),
            test_rest=PLAIN_BRAIN,
        ),
        Scenario(
            "few",
            "small test set, strong failure",
            "60 test cases, 10 from a low-field scanner (about 0.5x the contrast, 8x the noise), absent from training",
            "plain",
            PLAIN_TRAINING,
            Look(contrast=(55.0, 110.0), noise_sd=95.0),
            n_test=60,
            n_subgroup=10,
            unlike=("drop", "burst"),  # less contrast, more noise
            # The subgroup fails harder than one corruption usually makes a case fail (mean Dice
            # 0.56 against 0.67 for the distractors, development seeds), so the 10 worst cases
            # were mostly members (worst-k P@10 0.60 there, 0.62 on the reported seeds). Every
            # distractor here combines two kinds (mean Dice 0.58 on the development sets), and
            # the noise is 95 (it was 85) to keep the gap >= 0.3; chosen on development seeds
            # 100, 101, 200-203: worst-k P@10 0.50 (at most 0.6 per seed), gap 0.40 (at least
            # 0.30), found 6/6. On seeds 200-219: P@10 0.51, gap below 0.3 in 3 of 20, found 20/20
            second_kind_share=1.0,
        ),
        Scenario(
            "null",
            "null (nothing to find)",
            "training and test cases from one distribution, distractors only; any alarm is false",
            "plain",
            PLAIN_TRAINING,
            None,
        ),
    )
}
# in order of first use: plain, annotation, small, brain (their dataset ids follow this order)
MODELS = list(dict.fromkeys(s.model for s in SCENARIOS.values()))

for _s in SCENARIOS.values():  # scenarios sharing a model must agree on its training
    _first = next(t for t in SCENARIOS.values() if t.model == _s.model)
    assert (_s.train_looks, _s.epochs) == (_first.train_looks, _first.epochs), _s.name


def _is_brain(look: Look | BrainLook) -> bool:
    return isinstance(look, BrainLook)


def make_case(rng: np.random.Generator, look: Look | BrainLook) -> tuple[np.ndarray, np.ndarray]:
    return brain.make_case(rng, look) if _is_brain(look) else synthetic.make_case(rng, look)


def _write(array: np.ndarray, path: Path, look: Look | BrainLook) -> None:
    (brain.write_nifti if _is_brain(look) else synthetic.write_nifti)(array, path)


def _dataset_json(name: str, n_training: int, description: str) -> str:
    return (
        json.dumps(
            {
                "channel_names": {"0": "MRI"},
                "labels": {"background": 0, "structure": 1},
                "numTraining": n_training,
                "file_ending": FILE_ENDING,
                "name": name,
                "description": description,
            },
            indent=4,
        )
        + "\n"
    )


def training_name(model: str, seed: int) -> str:
    """nnU-Net dataset folder of a model's training cases; ids 900-989 are free for local use."""
    return f"Dataset{900 + 10 * MODELS.index(model) + seed % 10:03d}_Bench{model.capitalize()}"


def training_fingerprint(scenario: Scenario, seed: int) -> dict:
    """What a trained model depends on: a change redoes the training data and the model."""
    return {
        "model": scenario.model,
        "train_looks": [[asdict(look), share] for look, share in scenario.train_looks],
        "epochs": scenario.epochs,
        "seed": seed,
        "n_train": N_TRAIN,
        "training": {
            "features_per_stage": train.FEATURES_PER_STAGE,
            "iterations_per_epoch": train.N_ITERATIONS_PER_EPOCH,
            "batch_size": train.BATCH_SIZE,
        },
    }


def _staged(dataset: Path) -> Path:
    staging = dataset.parent / f".{dataset.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _publish(staging: Path, dataset: Path) -> None:
    if dataset.exists():
        shutil.rmtree(dataset)
    staging.rename(dataset)


def generate_training(scenario: Scenario, seed: int, folder: Path) -> Path:
    """Write the training cases of the scenario's model (`imagesTr`, `labelsTr`) into `folder`.

    Deterministic in (model, seed); staged and renamed, so a killed run leaves no half dataset.
    """
    rng = np.random.default_rng([seed, MODELS.index(scenario.model), 6])
    dataset = folder / training_name(scenario.model, seed)
    staging = _staged(dataset)
    for sub in ("imagesTr", "labelsTr"):
        (staging / sub).mkdir()
    (staging / "dataset.json").write_text(
        _dataset_json(
            dataset.name, N_TRAIN, f"seg4seg bench training cases, model {scenario.model}"
        )
    )
    looks: list = []
    for look, share in scenario.train_looks:
        looks += [look] * int(round(share * N_TRAIN))
    looks = (looks + [scenario.train_looks[0][0]] * N_TRAIN)[:N_TRAIN]
    looks = [looks[i] for i in rng.permutation(N_TRAIN)]
    for i, look in enumerate(looks):
        image, label = make_case(rng, look)
        _write(image, staging / "imagesTr" / f"train_{i:03d}_0000{FILE_ENDING}", look)
        _write(label, staging / "labelsTr" / f"train_{i:03d}{FILE_ENDING}", look)
    _publish(staging, dataset)
    return dataset


def generate_test(scenario: Scenario, seed: int, n_test: int, folder: Path) -> Path:
    """Write the scenario's test set (`imagesTs`, `labelsTs`) and `truth.json` into `folder`.

    Deterministic in (scenario, seed, n_test). `truth.json` lists the subgroup, the distractors
    and what was done to each distractor.
    """
    rng = np.random.default_rng([seed, list(SCENARIOS).index(scenario.name), 7, n_test])
    dataset = folder / "test"
    staging = _staged(dataset)
    for sub in ("imagesTs", "labelsTs"):
        (staging / sub).mkdir()
    (staging / "dataset.json").write_text(
        _dataset_json(
            dataset.name, 0, f"seg4seg bench scenario {scenario.name}: {scenario.description}"
        )
    )
    test_ids = [f"case_{i:03d}" for i in range(n_test)]
    order = rng.permutation(n_test)
    n_subgroup = scenario.subgroup_size(n_test)
    n_distractors = int(round(DISTRACTOR_SHARE * (n_test - n_subgroup)))
    members = sorted(test_ids[i] for i in order[:n_subgroup])
    distracted = sorted(test_ids[i] for i in order[n_subgroup : n_subgroup + n_distractors])
    member_set, distractor_set = set(members), set(distracted)
    corruptions = {}
    for case_id in test_ids:
        look = scenario.test_subgroup if case_id in member_set else scenario.test_rest
        image, label = make_case(rng, look)
        if case_id in distractor_set:
            image, corruptions[case_id] = distractors.corrupt(
                rng,
                image,
                label,
                allowed=scenario.distractor_kinds(),
                second_kind_share=scenario.second_kind_share,
            )
        _write(image, staging / "imagesTs" / f"{case_id}_0000{FILE_ENDING}", look)
        _write(label, staging / "labelsTs" / f"{case_id}{FILE_ENDING}", look)
    _publish(staging, dataset)
    atomic.write_json(
        folder / "truth.json",
        {
            "scenario": scenario.name,
            "seed": seed,
            "description": scenario.description,
            "subgroup": members,
            "distractors": distracted,
            "corruptions": corruptions,
            "n_test": n_test,
        },
    )
    return dataset
