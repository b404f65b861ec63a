"""molscore: score-based generative modeling of molecules on one SDE engine.

The names below are imported on first use (module ``__getattr__``), so that ``import
molscore`` stays light: the engine imports torch and ``generate_conformers`` RDKit and PyG,
seconds in which the ``molscore`` command, which imports this package first, could not yet
turn a Ctrl-C into its one-line message.
"""
import importlib

__version__ = "0.1.0"
__all__ = ["SDE", "VESDE", "VPSDE", "SubVPSDE", "make_sde", "Space", "DenseSpace",
           "PointSetSpace", "__version__"]

# name -> the submodule that defines it
_LAZY = {"SDE": "sde", "VESDE": "sde", "VPSDE": "sde", "SubVPSDE": "sde", "make_sde": "sde",
         "Space": "spaces", "DenseSpace": "spaces", "PointSetSpace": "spaces",
         "generate_conformers": "generate"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'molscore' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value          # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
