"""molscore: score-based generative modeling of molecules on one SDE engine."""
from .sde import SDE, SubVPSDE, VESDE, VPSDE, make_sde
from .spaces import DenseSpace, PointSetSpace, Space

__version__ = "0.1.0"
__all__ = ["SDE", "VESDE", "VPSDE", "SubVPSDE", "make_sde", "Space", "DenseSpace",
           "PointSetSpace", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import molscore` stays light (no RDKit / PyG import for the engine).
    if name == "generate_conformers":
        from .generate import generate_conformers
        return generate_conformers
    raise AttributeError(f"module 'molscore' has no attribute {name!r}")
