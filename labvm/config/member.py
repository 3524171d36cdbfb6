"""A cluster worker's name among profiles: `<head profile>+w<index>` (aws+w2).

A worker is a profile of its own for ssh (alias labvm-aws+w2), steps and messages, and `inv audit` shows a
worker machine's profile so.  '+' is in no profile name, so no worker's name is a profile's and its head is
everything before the '+'.  Built and read only here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARK = "+w"
PATTERN = re.escape(MARK) + "[0-9]{1,3}"  # what a worker adds to its head's name (clusters have <= 100 workers)


@dataclass(frozen=True)
class Member:
    """Worker `index` (from 1) of the cluster whose head is the profile `head`."""

    head: str
    index: int

    def __str__(self) -> str:
        return shown(self.head, self.index)

    @classmethod
    def parse(cls, name: str) -> Member | None:
        """The worker a name says; None for a head's own name (or any name that says no worker number)."""
        head, mark, index = name.rpartition(MARK)
        return cls(head, int(index)) if mark and index.isdigit() else None

    @staticmethod
    def head_of(name: str) -> str:
        """The profile a name belongs to: a worker's head, or the name itself."""
        return name.partition("+")[0]


def shown(head: str, index: object) -> str:
    """A worker's name as its machine's tags give it: the index as the tag says it, even one that is no
    number (tags are written by whoever shares the account; `inv audit` shows them as they are)."""
    return f"{head}{MARK}{index}"
