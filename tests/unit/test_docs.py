"""The documentation stays true to the repository: the generated policy reference matches
the models, relative links resolve, and every example policy is mentioned somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spotwise.api.reference import REGENERATE_COMMAND, policy_reference_markdown

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "policy-reference.md"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target); the target ends at whitespace or the closing paren.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """Markdown without fenced blocks and code spans, where links are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _anchors(text: str) -> set[str]:
    """The fragments GitHub gives the headings of a page (duplicates get -1, -2, ...)."""
    out: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in out:
            n += 1
            candidate = f"{slug}-{n}"
        out.add(candidate)
    return out


def test_policy_reference_is_generated_from_the_models():
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert committed == policy_reference_markdown(), (
        "docs/policy-reference.md is out of date with operator/spotwise/api/v1alpha1.py; "
        f"regenerate it from the repository root with:\n  {REGENERATE_COMMAND}"
    )


def test_policy_reference_covers_spec_and_status():
    text = policy_reference_markdown()
    for section in (
        "## ScalingPolicySpec",
        "## WorkloadSpec",
        "## NodesSpec",
        "## ScalingPolicyStatus",
        "## PlanStatus",
    ):
        assert section in text
    # camelCase wire names, not Python attribute names
    assert "`intervalSeconds`" in text and "interval_seconds" not in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page: Path):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in _LINK.findall(_prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto:
        path_part, _, fragment = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
            broken.append(f"{target}: {shown} does not exist")
            continue
        if (
            fragment
            and dest.suffix == ".md"
            and fragment not in _anchors(dest.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target}: no heading #{fragment} in {dest.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_every_example_policy_is_mentioned(policy: Path):
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    assert f"policies/{policy.name}" in text, (
        f"policies/{policy.name} is not mentioned in docs/*.md or README.md"
    )


def test_there_are_pages_and_policies_to_check():
    assert len(PAGES) > 2 and POLICIES
