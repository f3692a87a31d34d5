"""What produced a result: tool versions, the command line, the device. Recorded in run.json."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from seg4seg_cli import __version__


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def tool_versions() -> dict[str, str]:
    """Versions of seg4seg and what it runs on; imports torch but not nnunetv2."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "seg4seg": __version__,
        "nnunetv2": package_version("nnunetv2"),
        "torch": torch.__version__,
        "cuda_available": "yes" if cuda else "no",
        "cuda_device": torch.cuda.get_device_name(0) if cuda else "",
        "python": platform.python_version(),
        "numpy": package_version("numpy"),
        "SimpleITK": package_version("SimpleITK"),
    }


def version_text() -> str:
    """The text of `seg4seg --version`."""
    v = tool_versions()
    cuda = f"yes ({v['cuda_device']})" if v["cuda_available"] == "yes" else "no"
    return (
        f"seg4seg {v['seg4seg']}\nnnunetv2 {v['nnunetv2']}\ntorch {v['torch']}\n"
        f"CUDA available: {cuda}\npython {v['python']}"
    )


_invocation: list[str] | None = None


def set_command_line(args: list[str]) -> None:
    """Remember the arguments the CLI was called with (they differ from sys.argv in-process)."""
    global _invocation
    _invocation = list(args)


def command_line() -> list[str]:
    return ["seg4seg", *(sys.argv[1:] if _invocation is None else _invocation)]
