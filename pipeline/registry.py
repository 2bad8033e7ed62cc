"""Stages and commands register here on import; the CLI and `glmdata run` read the registry."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

STAGES: dict[str, type] = {}  # stage name -> Stage subclass


def register_stage(cls: type) -> type:
    STAGES[cls.name] = cls
    return cls


@dataclass
class Command:
    """A CLI command `glmdata <group> [<action>]` (action None: the group itself)."""

    group: str
    action: str | None
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: list[Command] = []


def register_command(group: str, action: str | None, help: str,
                     add_arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    """Decorator for the function that runs the command: `@register_command("shards", "verify", ...)`."""

    def wrap(fn):
        COMMANDS.append(Command(group, action, help, add_arguments, fn))
        return fn

    return wrap
