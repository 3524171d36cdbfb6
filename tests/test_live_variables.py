"""docs/testing.md names exactly the LABVM_LIVE_* variables the live tests read: a variable the code reads and
the docs do not name is a setting nobody can find; one the docs name and the code does not read is a run that
skips while the runner believes it set everything."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READ = re.compile(r"""os\.environ(?:\.get\(|\[)\s*["'](LABVM_LIVE_[A-Z0-9_]+)["']""")
NAMED = re.compile(r"\bLABVM_LIVE_[A-Z0-9_]*[A-Z0-9]\b")


def read_by_the_tests() -> set[str]:
    return {name for path in (ROOT / "tests").rglob("*.py") for name in READ.findall(path.read_text())}


def named_by(docs: str) -> set[str]:
    return set(NAMED.findall(docs))


def test_the_docs_name_exactly_the_variables_the_live_tests_read():
    read = read_by_the_tests()
    assert {"LABVM_LIVE_AWS_REGION", "LABVM_LIVE_OPENSTACK_IMAGE", "LABVM_LIVE_GCE_PROJECT"} <= read  # it reads code
    docs = (ROOT / "docs" / "testing.md").read_text()
    assert named_by(docs) == read
    # The names of before: Google's own tools read no GCE_PROJECT or GCE_ZONE, and neither does the suite.
    assert not re.search(r"(?<![A-Z_])GCE_(PROJECT|ZONE)\b", docs)
