"""`--plan` beyond the cloud: the session's own steps (SSH, the tunnel, the laptop's files, a question
to the user, what a verb says it did) go through one of these two, so that no verb asks whether it
is planning.  The cloud's calls are planned at the provider's mutation gate (providers/cloud.py).

    steps.then("then over SSH to 10.0.0.5: keys, env, Jupyter, tunnel", connect)

taken: runs the step and returns what it returns; planned: prints "plan: " and the words (none
for a step too small to name), and returns None.  `looked` is a verb's first look at the cloud: planned
without credentials, it says it could not look, what a first `up` would make, and what to ask an admin for.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .errors import LabvmError
from .providers.credentials import NoCredentials

if TYPE_CHECKING:
    from .providers import Provider

T = TypeVar("T")


def confirm(question: str, without_terminal: str) -> None:
    """The user's yes before a step that cannot be undone; without a terminal to ask, `without_terminal`
    (the option that answers yes) as the error."""
    if not sys.stdin.isatty():
        raise LabvmError(without_terminal)
    if input(f"{question} [y/N] ").strip().lower() != "y":
        raise LabvmError("not confirmed; nothing changed")


class Steps:
    """A verb's steps as they are taken."""

    def then(self, planned: str, step: Callable[[], T] | None = None) -> T | None:
        """The step, taken; `planned`: what a planned verb says instead."""
        return step() if step else None

    def looked(self, look: Callable[[], object], provider: Provider) -> bool:
        """The look taken; a cloud without credentials stops the verb with the SDK's one line."""
        look()
        return True


class PlannedSteps:
    """A verb's steps under --plan: each said, none taken."""

    def then(self, planned: str, step: Callable[[], T] | None = None) -> T | None:
        """Says `planned` (if anything) as a line of the plan; takes nothing."""
        if planned:
            print(f"plan: {planned}")
        return None

    def looked(self, look: Callable[[], object], provider: Provider) -> bool:
        """The look taken; False, with what it could not see said, where the cloud's SDK found no credentials."""
        try:
            look()
        except NoCredentials as e:
            print(f"plan: {e.cloud}: could not look: {e}")
            print(f"plan: a first up would make: {'; '.join(provider.first_up())}")
            print(f"plan: ask an admin for: {', '.join(provider.permissions())}")
            return False
        return True
