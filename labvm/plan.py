"""`--plan` beyond the cloud: the session's own steps (SSH, the tunnel, the laptop's files, a question
to the user, what a verb says it did) go through one of these two, so that no verb asks whether it
is planning.  The cloud's calls are planned at the provider's mutation gate (providers/cloud.py).

    steps.then("then over SSH to 10.0.0.5: keys, env, Jupyter, tunnel", connect)

taken: runs the step and returns what it returns; planned: prints "plan: " and the words (none
for a step too small to name), and returns None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Steps:
    """A verb's steps as they are taken."""

    def then(self, planned: str, step: Callable[[], T] | None = None) -> T | None:
        """The step, taken; `planned`: what a planned verb says instead."""
        return step() if step else None


class PlannedSteps:
    """A verb's steps under --plan: each said, none taken."""

    def then(self, planned: str, step: Callable[[], T] | None = None) -> T | None:
        """Says `planned` (if anything) as a line of the plan; takes nothing."""
        if planned:
            print(f"plan: {planned}")
        return None
