from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection

from accounts import vault
from accounts.keys import add_provider_key, reencrypt_all_keys
from accounts.models import AuditEvent, ProviderKey

SECRET = "sk-proj-" + "A1b2C3d4E5" * 5 + "T3BlbkFJ" + "z9Y8x7W6v5" * 5 + "QwEr"


def test_it_round_trips_a_secret(db):
    token = vault.encrypt(SECRET)
    assert SECRET not in token
    assert vault.decrypt(token) == SECRET


def test_it_shows_only_prefix_and_last_four():
    assert vault.display_parts(SECRET) == ("sk-proj-", "QwEr")
    assert vault.display_parts("sk-" + "a" * 40 + "WXYZ") == ("sk-", "WXYZ")
    assert vault.display_parts("gsk_" + "b" * 40 + "1234") == ("gsk", "1234")


def test_it_rejects_something_that_is_not_a_key():
    with pytest.raises(ValidationError) as info:
        vault.clean_secret("short")
    assert "short" not in str(info.value)
    with pytest.raises(ValidationError):
        vault.clean_secret("sk-has a space in the middle of it-1234567890")


def test_add_stores_ciphertext_fingerprint_and_audit_without_secret(alpha, alice):
    environment = alpha.environments.get(name="production")
    key = add_provider_key(environment, f"  {SECRET}\n", by=alice, ip="10.0.0.7")
    key.refresh_from_db()
    assert key.masked == "sk-proj-…QwEr"
    assert key.name.startswith("alpha-production-")
    assert key.reveal_secret() == SECRET
    assert key.fingerprint == vault.fingerprint(SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key)
    event = AuditEvent.objects.get(action="key.add")
    assert event.actor == alice and event.ip == "10.0.0.7" and event.project == alpha
    assert SECRET not in str(event.detail)


def test_the_secret_is_in_no_table(alpha, alice, transactional_db):
    """Scan every column of every table as text: the plaintext must not be there."""
    environment = alpha.environments.get(name="staging")
    add_provider_key(environment, SECRET, by=alice)
    needle = SECRET[10:40]  # any long substring would do
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        assert "accounts_providerkey" in tables
        for table in tables:
            columns = [c.name for c in connection.introspection.get_table_description(cursor,
                                                                                   table)]
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    assert needle not in str(value), f"secret found in {table}.{column}"


def test_rotate_vault_key_reencrypts_every_row(alpha, alice, settings, capsys):
    old_key = settings.VAULT_KEYS[0]
    keys = []
    for i, env_name in enumerate(["production", "staging", "dev"]):
        environment = alpha.environments.get(name=env_name)
        keys.append(add_provider_key(environment, f"{SECRET[:-1]}{i}", by=alice))
    before = {k.pk: k.secret_encrypted for k in keys}

    new_key = Fernet.generate_key().decode()
    settings.VAULT_KEYS = [new_key, old_key]
    call_command("rotate_vault_key", "--batch-size", "2")
    assert "3 of 3 provider keys re-encrypted" in capsys.readouterr().out

    # Only the new key is needed from now on.
    settings.VAULT_KEYS = [new_key]
    for i, key in enumerate(ProviderKey.objects.order_by("pk")):
        assert key.secret_encrypted != before[key.pk]
        assert key.reveal_secret() == f"{SECRET[:-1]}{i}"
        assert key.fingerprint == vault.fingerprint(f"{SECRET[:-1]}{i}")


def test_rotate_vault_key_reports_rows_it_cannot_decrypt(alpha, alice, settings):
    add_provider_key(alpha.environments.get(name="dev"), SECRET, by=alice)
    settings.VAULT_KEYS = [Fernet.generate_key().decode()]  # the old key is gone
    counts = reencrypt_all_keys()
    assert counts == {"rows": 1, "reencrypted": 0, "failed": 1}
    with pytest.raises(vault.VaultError):
        ProviderKey.objects.get().reveal_secret()
