"""The leak scanner on text and on real files holding real-shaped fake keys."""

from __future__ import annotations

import json
import random
import string

import pytest
from django.core.management import CommandError, call_command

from accounts import vault
from accounts.keys import add_provider_key
from accounts.leaks import find_keys, scan_pasted_text, scan_text
from accounts.models import AuditEvent, KeyStageNotice

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


def _chars(alphabet: str, n: int, seed: int) -> str:
    return "".join(random.Random(seed).choice(alphabet) for _ in range(n))


def typed_key(kind: str, seed: int, body: int = 74, marker: bool = True) -> str:
    """sk-<kind>- + `body` url-safe characters with T3BlbkFJ in the middle."""
    if not marker:
        return f"sk-{kind}-" + _chars(ALNUM, 2, seed) + _chars(URLSAFE, body - 4, seed) + "Zz"
    half = (body - 8) // 2
    rest = body - 8 - half
    # Start and end on alphanumerics, like real keys.
    return f"sk-{kind}-" + _chars(ALNUM, half, seed) + "T3BlbkFJ" + _chars(ALNUM, rest, seed + 1)


def legacy_key(seed: int) -> str:
    return "sk-" + _chars(ALNUM, 20, seed) + "T3BlbkFJ" + _chars(ALNUM, 20, seed + 1)


PROJ = typed_key("proj", 1)
LEGACY = legacy_key(2)
SVCACCT = typed_key("svcacct", 3, body=58)
ADMIN = typed_key("admin", 4)
NONE = typed_key("None", 5, body=58)
PROJ_NO_MARKER = typed_key("proj", 6, body=48, marker=False)


def masked(key: str) -> str:
    prefix, last4 = vault.display_parts(key)
    return f"{prefix}…{last4}"


def test_the_fake_keys_have_the_real_shapes():
    assert len(LEGACY) == 51 and len(PROJ) == len("sk-proj-") + 74
    assert "T3BlbkFJ" in PROJ and "T3BlbkFJ" not in PROJ_NO_MARKER


@pytest.mark.parametrize(
    "line",
    [
        "OPENAI_API_KEY={key}",
        'OPENAI_API_KEY="{key}"',
        "api_key = '{key}'",
        '{{"openai": {{"api_key": "{key}"}}}}',
        "  openai_api_key: {key}  # yaml",
        "curl https://api.openai.com/v1/models -H 'Authorization: Bearer {key}'",
        "https://example.org/hook?key={key}&next=1",
        '"note": "first line\\n{key}"',
        "export KEY=`{key}`;",
    ],
)
@pytest.mark.parametrize("key", [PROJ, LEGACY, SVCACCT, ADMIN, NONE, PROJ_NO_MARKER])
def test_it_finds_each_key_form_in_common_contexts(line, key):
    [finding] = find_keys("header\n" + line.format(key=key) + "\nfooter", "f.txt")
    assert (finding.source, finding.line, finding.where) == ("f.txt", 2, "f.txt:2")
    assert finding.masked == masked(key) and finding.masked.endswith(key[-4:])
    assert finding.fingerprint == vault.fingerprint(key)
    assert key not in repr(finding)


@pytest.mark.parametrize(
    "text",
    [
        "sk-proj-tooShort",
        "sk-svcacct-" + _chars(ALNUM, 60, 7),  # no marker, and not a project key
        "sk-proj-" + _chars(ALNUM, 30, 8),  # project key body too short without marker
        LEGACY + "X",  # legacy keys are exactly 51 characters
        "mask" + PROJ,  # part of a longer word
        "the sk- prefix alone, and sk-None- too",
    ],
)
def test_it_ignores_strings_that_are_not_keys(text):
    assert find_keys(text, "f.txt") == []


def test_it_reports_every_key_with_its_own_line():
    text = f"a={PROJ}\n\n b={LEGACY} c={ADMIN}\n"
    findings = find_keys(text, "x.env")
    assert [(f.line, f.masked) for f in findings] == [
        (1, masked(PROJ)), (3, masked(LEGACY)), (3, masked(ADMIN))
    ]  # fmt: skip


@pytest.fixture
def stored(alpha, alice):
    environment = alpha.environments.get(name="production")
    return add_provider_key(environment, PROJ, by=alice)


@pytest.fixture
def eager_tasks():
    from dashboard.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_a_stored_key_in_text_is_marked_leaked_and_emailed_once(
    stored, mailoutbox, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        [finding] = scan_text(f"key: {PROJ}", "notes.md")
        scan_text(f"again {PROJ}", "other.md")
    assert finding.stored_key_ids == [stored.pk]
    stored.refresh_from_db()
    assert stored.leaked_at is not None
    [event] = AuditEvent.objects.filter(action="key.leaked")
    assert event.detail["seen_in"] == ["notes.md:1"] and PROJ not in json.dumps(event.detail)
    assert KeyStageNotice.objects.filter(provider_key=stored, stage="leaked").count() == 1
    [message] = mailoutbox
    assert message.to == ["alice@example.org"] and "leak" in message.subject
    assert PROJ not in message.subject + message.body + message.alternatives[0][0]


def test_the_paste_box_scan_is_audited(stored, alice):
    findings = scan_pasted_text(f"oops {PROJ} and {LEGACY}", by=alice, ip="10.0.0.1")
    assert [f.stored_key_ids for f in findings] == [[stored.pk], []]
    [scan] = AuditEvent.objects.filter(action="leak.scan")
    assert scan.actor == alice and scan.detail == {"source": "pasted text", "found": 2,
                                                   "stored": 1}  # fmt: skip
    stored.refresh_from_db()
    assert stored.leaked_at is not None


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / ".env").write_text(f"# prod\nDEBUG=0\nOPENAI_API_KEY={PROJ}\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "settings.json").write_text(
        json.dumps({"providers": {"openai": LEGACY}}, indent=2)
    )
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(f"token={ADMIN}\n")
    (tmp_path / "node_modules" / "pkg").mkdir(parents=True)
    (tmp_path / "node_modules" / "pkg" / "index.js").write_text(f"k='{SVCACCT}'\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00\x00" + NONE.encode())
    (tmp_path / "huge.log").write_text("x" * (5 * 1024 * 1024) + f"\n{NONE}\n")
    return tmp_path


def test_scan_leaks_prints_only_masked_keys_and_fails_on_a_stored_one(stored, tree, capsys):
    with pytest.raises(CommandError) as failed:
        call_command("scan_leaks", str(tree))
    assert failed.value.returncode == 1
    out = capsys.readouterr().out
    assert f"{tree}/config/.env:3: {masked(PROJ)}" in out
    assert f"LEAKED stored key {stored.pk} alpha/production {stored.name}" in out
    assert f"{tree}/app/settings.json:3: {masked(LEGACY)}" in out
    # .git, node_modules, binaries and files over 5 MB are skipped.
    assert masked(ADMIN) not in out and masked(SVCACCT) not in out and masked(NONE) not in out
    assert "2 key-shaped strings found, 1 of them stored in keymeter; 2 files skipped." in out
    for key in (PROJ, LEGACY, ADMIN, SVCACCT, NONE):
        assert key not in out and key[8:-4] not in out and key[3:-4] not in out
        assert key not in str(failed.value)
    stored.refresh_from_db()
    assert stored.leaked_at is not None


def test_scan_leaks_succeeds_when_no_stored_key_is_found(db, tree, capsys):
    call_command("scan_leaks", str(tree / "app"), str(tree / "config" / ".env"))
    out = capsys.readouterr().out
    assert "2 key-shaped strings found, 0 of them stored in keymeter" in out
    assert "LEAKED" not in out


def test_scan_leaks_lists_skipped_files_when_asked(db, tree, capsys):
    call_command("scan_leaks", str(tree), "--verbose-skips")
    out = capsys.readouterr().out
    assert f"skipped {tree}/image.png: binary" in out
    assert f"skipped {tree}/huge.log: larger than 5 MB" in out
