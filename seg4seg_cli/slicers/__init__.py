"""Slice-discovery methods, one module each, all with the interface described in `base.py`.

`make_slicer(name, ...)` builds one by name; adding a method is adding a module and a line here.
"""

from __future__ import annotations

import importlib
import inspect

# name -> (module, class, whether it needs embeddings)
METHODS: dict[str, tuple[str, str, bool]] = {
    "coherent": ("seg4seg_cli.slicers.coherent", "CoherentSlicer", False),
    "domino": ("seg4seg_cli.slicers.domino", "DominoSlicer", True),
    "spotlight": ("seg4seg_cli.slicers.spotlight", "SpotlightSlicer", True),
    "planespot": ("seg4seg_cli.slicers.planespot", "PlaneSpotSlicer", True),
    "kmeans": ("seg4seg_cli.slicers.kmeans", "KMeansSlicer", True),
    "sliceline": ("seg4seg_cli.slicers.sliceline", "SliceLineSlicer", False),
}


def make_slicer(
    name: str, n_slices: int, random_state: int, min_size: int, params: dict | None = None
):
    """A slicer with our defaults; `min_size` is the fewest cases a reported slice may hold.

    `params` overrides hyperparameters of the method's `__init__` (as `seg4seg bench` does to
    compare settings); an unknown name raises TypeError from the class itself.
    """
    module_name, class_name, _ = METHODS[name]
    cls = getattr(importlib.import_module(module_name), class_name)
    # every method that bounds its slices' size takes it under one of these names
    accepted = inspect.signature(cls).parameters
    extra = {key: min_size for key in ("min_slice_size", "min_support") if key in accepted}
    extra.update(params or {})
    return cls(n_slices=n_slices, random_state=random_state, **extra)
