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


def tool_versions(check_cuda: bool = False) -> dict[str, str]:
    """Versions of seg4seg and what it runs on.

    CUDA is looked at only when torch is already imported (predict) or `check_cuda` is set
    (--version): importing torch just to record it costs ~200 MiB and 1-2 s per command.
    """
    torch = sys.modules.get("torch")
    if torch is None and check_cuda:
        import torch
    if torch is not None:
        cuda = torch.cuda.is_available()
        torch_version, cuda_state = torch.__version__, "yes" if cuda else "no"
        device = torch.cuda.get_device_name(0) if cuda else ""
    else:
        torch_version, cuda_state, device = package_version("torch"), "not checked", ""
    return {
        "seg4seg": __version__,
        "nnunetv2": package_version("nnunetv2"),
        "torch": torch_version,
        "cuda_available": cuda_state,
        "cuda_device": device,
        "python": platform.python_version(),
        "numpy": package_version("numpy"),
        "SimpleITK": package_version("SimpleITK"),
    }


def version_text() -> str:
    """The text of `seg4seg --version`."""
    v = tool_versions(check_cuda=True)
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
