"""Render + track a synthetic set into the cache: ``python -m training.generate --help``."""

from __future__ import annotations

import json

from training.dataclass_cli import parse_dataclass_args
from training.dataset import GenerateConfig, generate


def main(argv=None) -> None:
    cfg = parse_dataclass_args(GenerateConfig, argv, "Render ICT-FaceKit sequences, augment them, run the "
                               "daemon's tracker on every frame (and its mirror) and cache the result.")
    print(json.dumps(generate(cfg), indent=2))


if __name__ == "__main__":
    main()
