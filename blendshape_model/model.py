"""The blendshape network (PyTorch): a small CNN on the aligned crop, a smaller one shared by the
two eye patches, an MLP on the landmarks, fused, then a GRU whose state is carried from frame to
frame.

Variants live in a registry by name (``create_model("bsnet_small")``, ``list_models()``), as in
timm. Every forward takes whole sequences ``(B, T, ...)`` and an explicit GRU state, so the same
module is the training model and the exported ONNX graph (T = 1 per frame at runtime).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from blendshape_model.features import CROP_SIZE, EYE_PATCH, FEATURE_DIM

N_BLENDSHAPES = 52
N_GAZE = 4              # (yaw, pitch) left eye, then right eye, radians
N_POSE = 3              # rotation-vector correction applied to the PnP head rotation, radians


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of one variant; saved in every checkpoint so it can rebuild itself."""

    name: str = "bsnet_small"
    widths: tuple[int, ...] = (16, 32, 48, 64, 96)   # CNN stages, each halves the resolution
    landmark_hidden: int = 192
    fused: int = 128
    gru_hidden: int = 96
    crop_size: int = CROP_SIZE
    feature_dim: int = FEATURE_DIM
    # Both eye patches go through one CNN (three stride-2 stages, flattened so the lid's position
    # survives), ``eye_features`` per eye: the eye is ~15 px wide in the crop and the whole-face CNN
    # pools it away.
    eye_patch: tuple[int, int] = EYE_PATCH
    eye_widths: tuple[int, ...] = (16, 32, 48)
    eye_features: int = 64
    dropout: float = 0.1


def _dw_block(cin: int, cout: int) -> nn.Sequential:
    """MobileNet-style depthwise-separable block with stride 2."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=2, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True),
    )


def _cnn(widths: tuple[int, ...]) -> list[nn.Module]:
    """A stride-2 stem, then one depthwise-separable stride-2 block per further width."""
    layers = [nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
              nn.ReLU6(inplace=True)]
    return layers + [_dw_block(cin, cout) for cin, cout in zip(widths[:-1], widths[1:])]


def _to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8-valued -> (N, 3, H, W) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() * (1.0 / 127.5) - 1.0


class BlendshapeNet(nn.Module):
    """crop (B, T, S, S, 3) and eyes (B, T, 2, EH, EW, 3) uint8-valued, features (B, T, F),
    h (1, B, H) -> blendshapes (B, T, 52) in [0, 1], gaze (B, T, 4) rad, pose_delta (B, T, 3) rad,
    h_next."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.cnn = nn.Sequential(*_cnn(w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        # SiLU, not ReLU: with ReLU most fused and landmark units were dead (never positive on
        # held-out frames) and the model underfit (docs/model_card.md, version history).
        act = nn.SiLU
        eh, ew = config.eye_patch
        for _ in config.eye_widths:
            eh, ew = (eh + 1) // 2, (ew + 1) // 2
        self.eye_cnn = nn.Sequential(*_cnn(config.eye_widths), nn.Flatten(),
                                     nn.Linear(config.eye_widths[-1] * eh * ew, config.eye_features), act())
        eyes = 2 * config.eye_features
        self.landmarks = nn.Sequential(
            nn.Linear(config.feature_dim, config.landmark_hidden), act(),
            nn.Linear(config.landmark_hidden, config.landmark_hidden), act())
        self.fuse = nn.Sequential(nn.Dropout(config.dropout),
                                  nn.Linear(w[-1] + config.landmark_hidden + eyes, config.fused), act())
        self.gru = nn.GRU(config.fused, config.gru_hidden, batch_first=True)
        # The head also reads the landmark and eye branches directly (skips): a lid or lip gap
        # need not squeeze through the fused bottleneck.
        skip = config.landmark_hidden + eyes
        self.head = nn.Linear(config.gru_hidden + config.fused + skip, N_BLENDSHAPES + N_GAZE + N_POSE)
        # Per-feature standardisation, measured on the training set (``set_feature_stats``) and
        # saved with the weights: the lip gap or a lid gap is a few hundredths of the crop, far
        # below the landmarks' spread, and an unscaled MLP barely learns it.
        self.register_buffer("feat_mean", torch.zeros(config.feature_dim))
        self.register_buffer("feat_std", torch.ones(config.feature_dim))

    def set_feature_stats(self, mean, std) -> None:
        self.feat_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feat_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-4))

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(1, batch, self.config.gru_hidden)

    def forward(self, crop: torch.Tensor, eyes: torch.Tensor, features: torch.Tensor, h: torch.Tensor,
                raw: bool = False):
        """``raw=True`` (training) returns the blendshape logits (trained with BCE on logits)
        instead of their sigmoid."""
        b, t = crop.shape[:2]
        s = self.config.crop_size
        eh, ew = self.config.eye_patch
        img = self.cnn(_to_float_nchw(crop.reshape(b * t, s, s, 3)))
        eye = self.eye_cnn(_to_float_nchw(eyes.reshape(b * t * 2, eh, ew, 3))).reshape(b * t, -1)
        lmk = self.landmarks(((features - self.feat_mean) / self.feat_std).reshape(b * t, -1))
        fused = self.fuse(torch.cat([img, lmk, eye], dim=1)).reshape(b, t, -1)
        seq, h_next = self.gru(fused, h)
        # The skip from the fused features lets the head react within the frame; the GRU adds timing.
        parts = [seq, fused, lmk.reshape(b, t, -1), eye.reshape(b, t, -1)]
        out = self.head(torch.cat(parts, dim=2))
        blend = out[..., :N_BLENDSHAPES]
        if not raw:
            blend = torch.sigmoid(blend)
        gaze = out[..., N_BLENDSHAPES:N_BLENDSHAPES + N_GAZE]
        pose = out[..., N_BLENDSHAPES + N_GAZE:] * 0.1       # corrections are a few degrees
        return blend, gaze, pose, h_next


_REGISTRY: dict[str, ModelConfig] = {
    "bsnet_tiny": ModelConfig(name="bsnet_tiny", widths=(8, 16, 24, 32, 48), landmark_hidden=96, fused=64, gru_hidden=48,
                              eye_widths=(8, 16, 24), eye_features=32),
    "bsnet_small": ModelConfig(name="bsnet_small"),
    "bsnet_base": ModelConfig(name="bsnet_base", widths=(24, 48, 96, 128, 192), landmark_hidden=256, fused=192,
                              gru_hidden=128),
}


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_config(name: str, **overrides) -> ModelConfig:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return ModelConfig(**{**asdict(_REGISTRY[name]), **overrides})


def create_model(name: str, **overrides) -> BlendshapeNet:
    """Build a registered variant by name, e.g. ``create_model("bsnet_small", dropout=0.0)``."""
    return BlendshapeNet(model_config(name, **overrides))


def model_from_checkpoint(ckpt: dict) -> BlendshapeNet:
    """Rebuild a model from a trainer checkpoint (its ``model_config`` and ``model`` entries)."""
    known = {f.name for f in fields(ModelConfig)}      # older checkpoints also carry retired switches
    cfg = {k: v for k, v in ckpt["model_config"].items() if k in known}
    for key in ("widths", "eye_patch", "eye_widths"):
        cfg[key] = tuple(cfg[key])
    model = BlendshapeNet(ModelConfig(**cfg))
    model.load_state_dict(ckpt["model"])
    return model.eval()
