"""A small CNN classifier molscore trains itself, for image-quality metrics.

Its penultimate activations are the feature space of the Fréchet distance
(the role Inception-v3 plays in FID, but trained on the same dataset, so nothing
is downloaded and the numbers are comparable only between runs that use the
same classifier file), and its predictions give the label accuracy of
class-guided samples.

Inputs are images in model space ``(B, C, H, W)`` floats in ``[-1, 1]`` (bin
centres, see :func:`molscore.data.images.to_model_space`).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_torch_file, mismatch_line, save_atomic
from ..errors import message_line

__all__ = ["ImageClassifier", "train_classifier", "save_classifier", "load_classifier"]


class ImageClassifier(nn.Module):
    """Conv(32)-Conv(32)-pool-Conv(64)-Conv(64)-global-average-pool-Linear(feature_dim)-Linear.

    Args:
        in_channels: image channels.
        num_classes: output classes.
        feature_dim: size of the feature vector used by the Fréchet distance.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, feature_dim: int = 64):
        super().__init__()
        self.hparams = {"in_channels": in_channels, "num_classes": num_classes,
                        "feature_dim": feature_dim}
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, feature_dim), nn.SiLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Feature vectors ``(B, feature_dim)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.body(x))

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 512) -> Tensor:
        """Predicted labels ``(B,)`` (empty for no images)."""
        self.eval()
        return _in_batches(lambda xb: self(xb).argmax(-1), x, batch_size)

    @torch.no_grad()
    def embed(self, x: Tensor, batch_size: int = 512) -> Tensor:
        """Features of many images, in batches: ``(N, C, H, W) -> (N, feature_dim)``."""
        self.eval()
        return _in_batches(self.features, x, batch_size)


def _in_batches(fn, x: Tensor, batch_size: int) -> Tensor:
    """``fn`` over ``x`` in batches along dim 0, concatenated (``fn(x)`` itself when empty)."""
    if len(x) == 0:
        return fn(x)
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def train_classifier(x: Tensor, y: Tensor, num_classes: int, *, epochs: int = 15,
                     batch_size: int = 64, lr: float = 5e-3, noise: float = 0.05,
                     seed: int = 0, device: str | torch.device = "cpu") -> ImageClassifier:
    """Train :class:`ImageClassifier` on images ``x (N, C, H, W)`` in ``[-1, 1]``, labels ``(N,)``.

    Light Gaussian noise (std ``noise``) is added to inputs as augmentation so that
    slightly imperfect samples are still embedded sensibly. Deterministic given ``seed``;
    torch's global random state is left as it was.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):     # the initial weights, from ``seed``
        torch.manual_seed(seed)
        clf = ImageClassifier(x.shape[1], num_classes)
    clf = clf.to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    steps = epochs * max(1, -(-len(x) // batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    clf.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            xb = xb + noise * torch.randn(xb.shape, generator=g).to(device)
            loss = F.cross_entropy(clf(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return clf.eval()


def save_classifier(clf: ImageClassifier, path: str | Path, info: dict | None = None) -> None:
    """Save weights + hyper-parameters (+ a JSON-like ``info`` dict) atomically
    (:func:`~molscore.checkpoint.save_atomic`: synced before and after the rename)."""
    save_atomic({"hparams": clf.hparams, "state_dict": clf.state_dict(), "info": info or {}}, path)


def load_classifier(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[ImageClassifier, dict]:
    """Load a classifier written by :func:`save_classifier`: ``(classifier, info)``.

    Raises:
        FileNotFoundError / ValueError: one line naming the file: missing, unreadable or
            damaged (:func:`~molscore.checkpoint.load_torch_file`), not a classifier file
            (a model checkpoint), or weights that do not fit its ``hparams``.
    """
    blob = load_torch_file(path, map_location=device, what="classifier")
    if not (isinstance(blob, dict) and isinstance(blob.get("hparams"), dict)
            and isinstance(blob.get("state_dict"), dict)):
        raise ValueError(f"{path} is not an image classifier file (it needs 'hparams' and "
                         "'state_dict', as save_classifier writes)")
    try:
        clf = ImageClassifier(**blob["hparams"]).to(device)
    except TypeError as err:  # an unknown or missing keyword
        raise ValueError(f"{path}: cannot build the classifier its hparams describe "
                         f"({message_line(err)})") from err
    try:
        clf.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: the weights do not fit the classifier its hparams describe "
                         f"({mismatch_line(err)})") from err
    return clf.eval(), blob.get("info", {})
