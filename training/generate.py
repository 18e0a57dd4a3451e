"""Render + track a synthetic set into the cache: ``python -m training.generate --help``."""

from __future__ import annotations

import argparse
import inspect
import json
import re
from dataclasses import fields

from training.dataset import GenerateConfig, generate


def field_comments(cls) -> dict[str, str]:
    """The trailing ``# comment`` of each field in a dataclass's source, so a config's comments are
    also its command line's help."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def parse_dataclass_args(cls, argv=None, description: str = ""):
    """An argparse CLI with one ``--flag`` per dataclass field (its comment and default in --help)."""
    parser = argparse.ArgumentParser(description=description)
    comments = field_comments(cls)
    for f in fields(cls):
        default = f.default
        name = "--" + f.name.replace("_", "-")
        helptext = " ".join(filter(None, [comments.get(f.name), "(default: %(default)s)"]))
        if isinstance(default, bool):
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=helptext)
        else:
            parser.add_argument(name, type=type(default), default=default, help=helptext)
    return cls(**vars(parser.parse_args(argv)))


def main(argv=None) -> None:
    cfg = parse_dataclass_args(GenerateConfig, argv, "Render ICT-FaceKit sequences, augment them, run the "
                               "daemon's tracker on every frame (and its mirror) and cache the result.")
    print(json.dumps(generate(cfg), indent=2))


if __name__ == "__main__":
    main()
