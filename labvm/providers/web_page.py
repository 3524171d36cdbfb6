"""A web page where a cloud's answer should be: a Wi-Fi login page (a captive portal answers every request
with its HTML) or a proxy's error page.  Every cloud's API answers JSON or XML, never HTML, so an HTML
answer is no answer of the cloud's, whatever its status; each cloud's API client says so in the same line."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import LabvmError


class WebPage(LabvmError):
    """An HTML answer met inside an SDK's request (raised by a cloud's response hook); `call` says it in one line."""


def web_page(cloud: str, asked: str) -> str:
    """The one line for a web page instead of `cloud`'s answer; `asked` says to what ("to describe_images")."""
    return (
        f"{cloud}'s answer {asked} was not {cloud}'s: a web page (a proxy or a Wi-Fi login page between this "
        f"laptop and {cloud}?); open any web page to log in, check HTTPS_PROXY, and try again"
    )


def is_web_page(headers: Mapping[str, str] | None) -> bool:
    """Whether an HTTP answer with these headers is HTML (its Content-Type says text/html)."""
    return bool(headers) and str((headers or {}).get("Content-Type", "")).lower().startswith("text/html")
