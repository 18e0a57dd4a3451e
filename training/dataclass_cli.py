"""A command line from a config dataclass: one ``--flag`` per field, its trailing comment as the
help. Shared by ``training.generate`` and ``training.train`` (stdlib only, so importing it pulls in
neither the renderer nor torch)."""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields


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
