"""The one module that talks to nnU-Net v2, through its public predictor API.

It builds the network from `plans.json` (never by looking the trainer class up by name: that
imports torchvision for any custom trainer and trusts the checkpoint's pickle), loads weights read
safely by `checkpoint.load_checkpoint`, and predicts one case at a time in-process with
`nnUNetPredictor`, recording an encoder embedding in the same forward passes. nnU-Net prints to
stdout; everything it prints is routed to our log so that stdout stays free for machine output.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seg4seg_cli.atomic import atomic_path
from seg4seg_cli.checkpoint import load_checkpoint
from seg4seg_cli.embedding_hook import PooledActivationRecorder, embedding_blocks
from seg4seg_cli.errors import CaseError, ModelError, UsageError
from seg4seg_cli.file_checks import check_complete
from seg4seg_cli.model_folder import ModelFiles

with contextlib.redirect_stdout(io.StringIO()):  # nnunetv2.paths warns on stdout at import
    from nnunetv2.inference.export_prediction import (
        convert_predicted_logits_to_segmentation_with_correct_shape,
    )
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

EMBEDDING_SOURCE = "nnunet_encoder"
EMBEDDING_LAYER = "network.encoder.stages[*], mean and max over space"


@contextlib.contextmanager
def nnunet_output(verbose: bool = False) -> Iterator[None]:
    """Send what nnU-Net prints to stderr when verbose, else nowhere; stdout stays ours."""
    target = sys.stderr if verbose else io.StringIO()
    with contextlib.redirect_stdout(target):
        yield


def resolve_device(requested: str) -> torch.device:
    """`auto` is CUDA when torch sees a GPU, else the CPU; asking for CUDA without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise UsageError(
                f"--device cuda, but torch {torch.__version__} ({build}) sees no CUDA device; "
                "use --device cpu or --device auto"
            )
        return torch.device("cuda")
    if requested == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device must be auto, cuda or cpu, not {requested!r}")


@dataclass
class CasePrediction:
    """A case's segmentation in its input geometry, optional probabilities, and its embedding."""

    segmentation: np.ndarray
    probabilities: np.ndarray | None
    properties: dict
    embedding: np.ndarray  # (embedding_width,) float32


class NnunetModel:
    """A trained nnU-Net v2 model ready to predict cases one at a time.

    Parameters mirror nnU-Net's `nnUNetv2_predict`: `step_size` (-step_size), `use_mirroring`
    (off with --disable_tta), the folds in `files`; `device` from `resolve_device`.
    """

    def __init__(
        self,
        files: ModelFiles,
        device: torch.device,
        step_size: float = 0.5,
        use_mirroring: bool = True,
        trust_checkpoint: bool = False,
        verbose: bool = False,
    ) -> None:
        if not 0 < step_size <= 1:
            raise UsageError(f"--step-size must be in (0, 1], got {step_size}")
        self.files = files
        self.device = device
        self.verbose = verbose
        plans = files.read_json("plans")
        self.dataset_json = files.read_json("dataset")
        checkpoints = {
            fold: load_checkpoint(p, trust_checkpoint) for fold, p in files.checkpoints.items()
        }
        first = next(iter(checkpoints.values()))
        try:
            self.configuration = first["init_args"]["configuration"]
        except (KeyError, TypeError) as exc:
            raise ModelError(
                f"{files.checkpoints[files.folds[0]]} has no init_args.configuration; "
                "it was not written by nnU-Net v2's trainer"
            ) from exc
        self.trainer_name = str(first.get("trainer_name", "unknown"))
        mirror_axes = first.get("inference_allowed_mirroring_axes")

        try:
            self.plans_manager = PlansManager(plans)
            self.configuration_manager = self.plans_manager.get_configuration(self.configuration)
            self.label_manager = self.plans_manager.get_label_manager(self.dataset_json)
            n_inputs = determine_num_input_channels(
                self.plans_manager, self.configuration_manager, self.dataset_json
            )
        except (RuntimeError, KeyError, TypeError) as exc:
            available = list(plans.get("configurations", {})) if isinstance(plans, dict) else []
            raise ModelError(
                f"{files.plans_file} cannot describe configuration {self.configuration!r} "
                f"(available: {', '.join(available) or 'none'}): {exc}"
            ) from exc
        if self.configuration_manager.previous_stage_name is not None:
            raise ModelError(
                f"configuration {self.configuration!r} is a cascade stage; seg4seg predicts "
                "single-stage models (pass predictions of the cascade with --predictions)"
            )
        with nnunet_output(verbose):
            network = get_network_from_plans(
                self.configuration_manager.network_arch_class_name,
                self.configuration_manager.network_arch_init_kwargs,
                self.configuration_manager.network_arch_init_kwargs_req_import,
                n_inputs,
                self.label_manager.num_segmentation_heads,
                allow_init=False,
                deep_supervision=False,
            )
        weights = [c["network_weights"] for c in checkpoints.values()]
        for fold, state in zip(checkpoints, weights, strict=True):
            try:
                network.load_state_dict(state)
            except RuntimeError as exc:
                detail = str(exc).strip().splitlines()
                raise ModelError(
                    f"the weights of {files.checkpoints[fold]} do not fit the network that "
                    f"{files.plans_file} describes ({detail[1].strip() if len(detail) > 1 else detail[0]}); "
                    "use the plans.json the model was trained with"
                ) from exc
        try:
            stages = list(network.encoder.stages)
            widths = [int(w) for w in network.encoder.output_channels]
            if not stages or len(widths) != len(stages):
                raise TypeError("stages and output_channels disagree")
        except (AttributeError, IndexError, TypeError) as exc:
            raise ModelError(
                f"the network {type(network).__name__} has no encoder.stages; seg4seg needs a "
                "dynamic_network_architectures U-Net to take embeddings"
            ) from exc
        self.recorder = PooledActivationRecorder(stages)
        self.embedding_blocks = embedding_blocks(
            [f"encoder.stages[{k}]" for k in range(len(stages))], widths
        )
        self.n_input_channels = n_inputs

        with nnunet_output(verbose):
            self.predictor = nnUNetPredictor(
                tile_step_size=step_size,
                use_gaussian=True,
                use_mirroring=use_mirroring,
                perform_everything_on_device=True,
                device=device,
                verbose=False,
                allow_tqdm=False,
            )
            self.predictor.manual_initialization(
                network,
                self.plans_manager,
                self.configuration_manager,
                weights,
                self.dataset_json,
                self.trainer_name,
                tuple(mirror_axes) if mirror_axes is not None else None,
            )
        self.preprocessor = self.configuration_manager.preprocessor_class(verbose=False)
        self.reader_writer = self.plans_manager.image_reader_writer_class()

    @property
    def file_ending(self) -> str:
        return self.dataset_json["file_ending"]

    @property
    def n_image_channels(self) -> int:
        return len(self.dataset_json.get("channel_names", self.dataset_json.get("modality", {})))

    def read_case(self, image_files: tuple[Path, ...]) -> tuple[np.ndarray, dict]:
        """Read a case's channels as nnU-Net does, with one clear error per kind of bad input."""
        arrays, properties = [], []
        with nnunet_output(self.verbose):
            for path in image_files:
                check_complete(path, "image")
                try:
                    array, props = self.reader_writer.read_images([str(path)])
                except Exception as exc:  # readers raise anything from RuntimeError to OSError
                    reason = (
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    )
                    raise CaseError(
                        f"cannot read image {path} ({reason[:200]}); replace the file (corrupt, "
                        "truncated or not an image)"
                    ) from exc
                arrays.append(array)
                properties.append(props)
        for path, array, props in zip(image_files[1:], arrays[1:], properties[1:], strict=True):
            if array.shape != arrays[0].shape:
                raise CaseError(
                    f"channel {path.name} has shape {array.shape[1:]} but {image_files[0].name} has "
                    f"{arrays[0].shape[1:]}; all channels of a case must share one grid"
                )
            if not np.allclose(props["spacing"], properties[0]["spacing"]):
                raise CaseError(
                    f"channel {path.name} has spacing {props['spacing']} but {image_files[0].name} "
                    f"has {properties[0]['spacing']}; resample the channels onto one grid"
                )
        data = np.vstack(arrays)
        if not np.isfinite(data).all():
            raise CaseError(f"image {image_files[0]} contains NaN or inf values; fix the image")
        return data, properties[0]

    def predict_files(
        self, image_files: tuple[Path, ...], probabilities: bool = False
    ) -> CasePrediction:
        """Read and segment one case. The raw image is freed once preprocessed, as nnU-Net's own
        predictor does: on a CT volume it is hundreds of MB that the prediction no longer needs."""
        data, properties = self.read_case(image_files)
        preprocessed, properties = self.preprocess(data, properties)
        del data
        return self._predict_preprocessed(preprocessed, properties, probabilities)

    def preprocess(self, data: np.ndarray, properties: dict) -> tuple[np.ndarray, dict]:
        """nnU-Net's preprocessing of a case read by `read_case`: crop, normalise, resample."""
        with nnunet_output(self.verbose):
            preprocessed, _, properties = self.preprocessor.run_case_npy(
                data,
                None,
                properties,
                self.plans_manager,
                self.configuration_manager,
                self.dataset_json,
            )
        return preprocessed, properties

    def _predict_preprocessed(
        self, preprocessed: np.ndarray, properties: dict, probabilities: bool
    ) -> CasePrediction:
        with nnunet_output(self.verbose):
            self.recorder.reset()
            logits = self.predictor.predict_logits_from_preprocessed_data(
                torch.from_numpy(preprocessed)
            ).cpu()
            embedding = self.recorder.pop()
            result = convert_predicted_logits_to_segmentation_with_correct_shape(
                logits,
                self.plans_manager,
                self.configuration_manager,
                self.label_manager,
                properties,
                return_probabilities=probabilities,
            )
        segmentation, probs = result if probabilities else (result, None)
        return CasePrediction(segmentation, probs, properties, embedding)

    def write_segmentation(self, prediction: CasePrediction, path: Path) -> None:
        """Write the segmentation atomically, in the input's file format and exact geometry."""
        with atomic_path(path) as tmp, nnunet_output(self.verbose):
            self.reader_writer.write_seg(prediction.segmentation, str(tmp), prediction.properties)
