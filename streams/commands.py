"""Subcommands that wrap the pure cores: simulate, replay, var, backtest-var, rules, audit."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the core-backed subcommands to ``mevrisk``'s parser."""
