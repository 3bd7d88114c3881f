"""Find strings shaped like OpenAI keys in text and files, and flag stored keys seen there.

A finding keeps only what may be shown: where (source:line), prefix…last4 and the
HMAC fingerprint. The matched text itself is dropped as soon as it is fingerprinted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts import audit, notices, vault
from accounts.models import KeyStageNotice, ProviderKey, User

MARKER = "T3BlbkFJ"  # base64 of "OpenAI", in the middle of most real keys
# Not preceded by a letter or digit (except a JSON/C escape like \n), and the
# url-safe body runs to its natural end, so keys inside quotes, JSON, YAML, URLs
# and KEY=value lines are found whole.
_LEFT = r"(?:(?<![A-Za-z0-9])|(?<=\\[nrt]))"
_RIGHT = r"(?![A-Za-z0-9_-])"
LEGACY = re.compile(_LEFT + r"sk-[A-Za-z0-9]{20}" + MARKER + r"[A-Za-z0-9]{20}" + _RIGHT)
TYPED = re.compile(_LEFT + r"sk-(proj|svcacct|admin|None)-([A-Za-z0-9_-]{20,400})" + _RIGHT)
PROJECT_BODY_WITHOUT_MARKER = 40  # newer project keys may lack the marker

MAX_FILE_BYTES = 5 * 1024 * 1024
SKIP_DIRS = {".git", "node_modules", ".hg", ".svn", "__pycache__"}


@dataclass
class Finding:
    source: str
    line: int
    masked: str
    fingerprint: str = field(repr=False)
    stored_key_ids: list[int] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@sensitive_variables("candidate")
def _finding(candidate: str, source: str, line: int) -> Finding:
    prefix, last4 = vault.display_parts(candidate)
    return Finding(source, line, f"{prefix}…{last4}", vault.fingerprint(candidate))


def find_keys(text: str, source: str) -> list[Finding]:
    """Key-shaped strings in `text`, with 1-based line numbers. Does not touch the DB."""
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        if "sk-" not in line:
            continue
        matches = list(LEGACY.finditer(line))
        for match in TYPED.finditer(line):
            kind, body = match.groups()
            if MARKER in body or (kind == "proj" and len(body) >= PROJECT_BODY_WITHOUT_MARKER):
                matches.append(match)
        for match in sorted(matches, key=lambda m: m.start()):
            findings.append(_finding(match.group(0), source, number))
    return findings


def mark_leaked(
    findings: Iterable[Finding], *, by: User | None = None, ip: str | None = None
) -> list[ProviderKey]:
    """Match findings to stored keys by fingerprint; flag each newly leaked key once
    (leaked_at, audit "key.leaked", an email to its project's admins). Fills in
    each finding's stored_key_ids and returns the keys that matched."""
    findings = list(findings)
    by_fingerprint: dict[str, list[Finding]] = {}
    for finding in findings:
        by_fingerprint.setdefault(finding.fingerprint, []).append(finding)
    if not by_fingerprint:
        return []
    matched = list(
        ProviderKey.objects.filter(fingerprint__in=by_fingerprint).select_related(
            "project", "environment"
        )
    )
    now = timezone.now()
    for key in matched:
        seen_in = by_fingerprint[key.fingerprint]
        for finding in seen_in:
            finding.stored_key_ids.append(key.pk)
        with transaction.atomic():
            first = ProviderKey.objects.filter(pk=key.pk, leaked_at__isnull=True).update(
                leaked_at=now
            )
            if not first:
                continue
            key.leaked_at = now
            audit.record(
                "key.leaked",
                actor=by,
                project=key.project,
                target=key,
                ip=ip,
                key=key.masked,
                name=key.name,
                seen_in=[f.where for f in seen_in][:20],
            )
            notices.open_notice(
                project=key.project,
                stage=KeyStageNotice.Stage.LEAKED,
                episode=now,
                provider_key=key,
            )
    return matched


def scan_text(
    text: str, source: str, *, by: User | None = None, ip: str | None = None
) -> list[Finding]:
    findings = find_keys(text, source)
    mark_leaked(findings, by=by, ip=ip)
    return findings


def scan_pasted_text(text: str, by: User | None, ip: str | None) -> list[Finding]:
    """The UI paste box: scan what a user pasted; the scan itself is audited."""
    findings = scan_text(text, "pasted text", by=by, ip=ip)
    audit.record(
        "leak.scan",
        actor=by,
        ip=ip,
        source="pasted text",
        found=len(findings),
        stored=sum(1 for f in findings if f.stored_key_ids),
    )
    return findings


def _is_binary(head: bytes) -> bool:
    return b"\x00" in head


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for each file to scan, or (path, reason) for each one skipped."""
    for root in paths:
        root = Path(root)
        if root.is_file():
            yield root, None
            continue
        if not root.is_dir():
            yield root, "not found"
            continue
        for directory, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                yield Path(directory) / name, None


def read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None) or (None, why it was skipped)."""
    try:
        if path.is_symlink() and not path.exists():
            return None, "broken link"
        if path.stat().st_size > MAX_FILE_BYTES:
            return None, "larger than 5 MB"
        with path.open("rb") as handle:
            data = handle.read()
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or type(exc).__name__})"
    if _is_binary(data[:8192]):
        return None, "binary"
    return data.decode("utf-8", errors="replace"), None


def scan_paths(
    paths: Iterable[str | Path], *, by: User | None = None
) -> tuple[list[Finding], list[tuple[Path, str]]]:
    """Scan files and directories; returns (findings, skipped files with reasons)."""
    findings: list[Finding] = []
    skipped: list[tuple[Path, str]] = []
    for path, reason in iter_files(paths):
        text = None
        if reason is None:
            text, reason = read_text(path)
        if text is None:
            skipped.append((path, reason or "skipped"))
            continue
        findings.extend(find_keys(text, str(path)))
    mark_leaked(findings, by=by)
    return findings, skipped
