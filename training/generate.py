"""Render + track a synthetic set into the cache: ``python -m training.generate --help``."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from training.dataset import GenerateConfig, generate


def parse_dataclass_args(cls, argv=None, description: str = ""):
    """An argparse CLI with one ``--flag`` per dataclass field (defaults shown in --help)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(cls):
        default = f.default
        name = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(name, type=type(default), default=default)
    return cls(**vars(parser.parse_args(argv)))


def main(argv=None) -> None:
    cfg = parse_dataclass_args(GenerateConfig, argv, "Render ICT-FaceKit sequences, augment them, run the "
                               "daemon's tracker on every frame (and its mirror) and cache the result.")
    print(json.dumps(generate(cfg), indent=2))


if __name__ == "__main__":
    main()
