"""Reading hosts.yml and .env, which may come from anyone: bounded, UTF-8, strict YAML, no bomb.

A file too large, not UTF-8, not YAML, with a key given twice or nested too deeply is one line
naming the file (and the line where there is one) and what to do; YAML's own words come with
their likely cause in a hand-written file (a tab, the indentation, a colon or * in a value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import LabvmError

MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 10_000  # after YAML anchors and aliases are expanded: a bomb stops here

_INDENTATION = "check the indentation: the keys of one mapping start in the same column"
_STAR = 'a value starting with * needs quotes (sync: ["*.ipynb"])'
# What PyYAML's scanner, parser and composer say (`context`, `problem`: pyyaml's scanner.py, parser.py),
# and what it most often means in a hosts.yml written by hand: the first whose words appear wins.
YAML_HINTS = (
    ("'\\t'", "a tab: YAML indents with spaces only"),
    ("while scanning an alias", _STAR),
    ("found undefined alias", _STAR),
    ("while scanning a quoted scalar", "a quote is not closed"),
    (
        "mapping values are not allowed here",
        'a value with ": " in it needs quotes (key: "a: b"), '
        "or check the colon and the indentation of this line and the one above",
    ),
    ("but got ':'", 'a value with ": " or "," in it needs quotes (key: "a: b")'),
    ("but got '<stream end>'", "a [ or { is not closed"),
    ("expected <block end>", _INDENTATION),
    ("did not find expected key", _INDENTATION),
    ("cannot start any token", "a value starting with @, ` or % needs quotes"),
)


def read_text(path: Path, what: str) -> str:
    """The file's text; a LabvmError when it cannot be read, is too large or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LabvmError(f"{path}: cannot read {what} ({e.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise LabvmError(f"{path}: {len(data)} bytes is too large for {what} (at most {MAX_FILE_BYTES})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LabvmError(
            f"{path}: line {line}: byte 0x{data[e.start]:02x} is not UTF-8; save {what} as UTF-8 text"
        ) from None


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (instead of keeping the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key_node.value!r} is given twice (line {seen[key_node.value]} "
                        f"and line {line}); keep one",
                        key_node.start_mark,
                    )
                seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def _likely_cause(error: yaml.YAMLError) -> str:
    """The hint YAML_HINTS gives for PyYAML's words (after "; "), or "" where none fits."""
    said = f"{getattr(error, 'context', None) or ''} {getattr(error, 'problem', None) or ''}"
    return next((f"; {hint}" for words, hint in YAML_HINTS if words in said), "")


def parse_yaml(path: Path, text: str) -> Any:
    """The document in text (hosts.yml at path), every anchor expanded: at most MAX_VALUES values."""
    try:
        doc = yaml.load(text, Loader=_StrictLoader) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        hint = "" if isinstance(e, yaml.constructor.ConstructorError) else _likely_cause(e)
        raise LabvmError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', None) or e}){hint}") from None
    except RecursionError:
        raise LabvmError(f"{path}: nested too deeply to be a hosts.yml") from None
    # Anchors and aliases are shared, not copied, by the loader; everything after walks the
    # expanded tree, so a "billion laughs" document must stop here.
    stack, count = [doc], 0
    while stack:
        count += 1
        if count > MAX_VALUES:
            raise LabvmError(
                f"{path}: more than {MAX_VALUES} values once YAML anchors (&) and aliases (*) are "
                f"expanded; a hosts.yml needs far fewer"
            )
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return doc
