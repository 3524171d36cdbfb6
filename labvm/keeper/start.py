"""The asleep page's Start, as the keeper runs it: `python -m labvm.asleep_start` (what `inv up`
does) as a child whose output the page shows (cleaned, the last lines, tokens left out), and the
lab's URL the page moves to once the start's last line says the lab answers (protocol.URL_LINE)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from typing import Callable

from .. import platforms
from ..asleep import Pages
from ..text import LINE_LIMIT, clean, decode
from .protocol import GONE_STATUS, START_MODULE, URL_LINE

START_LINES = 200  # of the start's output, the last ones the page shows
TOKEN = re.compile(r"(token=)[^&\s]+")  # kept out of the log and the page's lines (the page gets the URL)


def idle() -> dict:
    """The progress of a start not begun."""
    return {"lines": [], "state": "idle", "error": ""}


class PageStart:
    """What the page shows of a start (progress), and the lab's URL once known."""

    def __init__(
        self,
        hosts: str,
        profile: str,
        pages: Pages,
        log: Callable[[str], None],
        gone: Callable[[], bool],
        went_away: Callable[[], None],
    ):
        self.hosts, self.profile, self.pages, self.log = hosts, profile, pages, log
        self.gone, self.went_away = gone, went_away  # the VM was deleted; it turned out so during a start
        self.lock = threading.Lock()
        self.started: dict = idle()
        self.lab_url: str | None = None

    def reset(self) -> None:
        """A new stop: the last start is said."""
        with self.lock:
            self.started = idle()

    def progress(self) -> dict:
        """What the page shows of a start, and the lab's URL where it answers (after the page's
        start, or while the lab is up: a tab left on the page goes into it)."""
        with self.lock:
            seen = {**self.started, "lines": list(self.started["lines"])}
        seen["url"] = self.lab_url if seen["state"] in ("idle", "ready") and not self.pages.facts else None
        return seen

    def learn_url(self, url: str) -> bool:
        """The lab's URL with its current token (from `inv up`, or the page's start): the page moves
        there, and a browser opening it gets the page's proof.  Only a URL on this port."""
        if not (url.startswith(self.pages.lab_prefixes) and url.isprintable() and " " not in url):
            return False
        token = TOKEN.search(url)
        self.lab_url, self.pages.token = url, token.group(0)[len("token=") :] if token else None
        return True

    def begin(self) -> None:
        """The page's Start: `up` in a child; returns at once (the page's contract, labvm.asleep)."""
        with self.lock:
            if self.gone() or self.started["state"] in ("starting", "ready"):
                return
            self.started = {"lines": [], "state": "starting", "error": ""}
        self.log("asleep page: Start")
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        """The start's thread: `inv up` without a browser (START_MODULE), each line shown, the URL learnt."""
        command = [sys.executable, "-m", START_MODULE, self.hosts, self.profile]
        try:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                **platforms.windowless(),
            )
        except OSError as e:
            self.said(f"could not start {START_MODULE}: {e}", failed=True)
            return
        last, url, output = "", None, child.stdout
        assert output is not None  # stdout=PIPE
        for raw in iter(lambda: output.readline(LINE_LIMIT), b""):
            line = clean(decode(raw).rstrip("\r\n"))
            if line.startswith(URL_LINE):
                url = line[len(URL_LINE) :]
            elif line.strip():
                last = line
                self.said(line)
        code = child.wait()
        if code == GONE_STATUS:
            self.said(last, failed=True)
            self.went_away()
        elif code != 0 or not url or not self.learn_url(url):
            self.said(last or f"the start ended with status {code}", failed=True)
        else:
            with self.lock:
                self.started["state"] = "ready"
            self.log("asleep page: started")

    def said(self, line: str, failed: bool = False) -> None:
        """A line of the start shown on the page, any token in it cut."""
        shown = TOKEN.sub(r"\1…", line)
        with self.lock:
            if failed:
                self.started.update(state="failed", error=shown)
            else:
                self.started["lines"] = [*self.started["lines"], shown][-START_LINES:]
        self.log(f"start: {'failed: ' if failed else ''}{shown}")
