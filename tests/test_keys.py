"""API keys: tokens round-trip through the keys file as hashes only, roles gate permissions,
and a malformed keys file is reported (file, entry, field) and never overwritten."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from suitability.serving.keys import (
    ROLES,
    TOKEN_PREFIX,
    Caller,
    KeyFileError,
    KeyStore,
    add_key,
    hash_token,
    list_keys,
    parse_bearer,
    remove_key,
    role_allows,
)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "conf" / "keys.json"


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _entry(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "key_id": "key_00000001",
        "role": "matching",
        "label": None,
        "created": "2026-01-01T00:00:00+00:00",
        "sha256": hash_token("suit_test"),
    }
    entry.update(overrides)
    return entry


# --- adding and authenticating --------------------------------------------------------------------


def test_added_key_authenticates_with_its_role(keys_file: Path):
    new = add_key(keys_file, "compliance", label="audit team")
    assert new.token.startswith(TOKEN_PREFIX)
    assert len(new.token) > 40  # 32 random bytes, base64url

    caller = KeyStore.load(keys_file).authenticate(new.token)

    assert caller == Caller(key_id=new.key_id, role="compliance")
    assert caller.may("audit")


def test_token_is_never_written_nor_shown_in_repr(keys_file: Path):
    new = add_key(keys_file, "matching")
    text = keys_file.read_text(encoding="utf-8")
    assert new.token not in text
    assert new.token[len(TOKEN_PREFIX) :] not in text
    assert hash_token(new.token) in text
    assert new.token not in repr(new)


def test_keys_file_is_private(keys_file: Path):
    add_key(keys_file, "matching")
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    keys_file.chmod(0o644)
    add_key(keys_file, "matching")  # a rewrite restores the mode
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600


def test_two_adds_keep_both_keys(keys_file: Path):
    first = add_key(keys_file, "matching", label="crm")
    second = add_key(keys_file, "compliance")
    store = KeyStore.load(keys_file)

    assert len(store) == 2
    assert first.key_id != second.key_id
    assert store.authenticate(first.token) == Caller(first.key_id, "matching")
    assert store.authenticate(second.token) == Caller(second.key_id, "compliance")
    labels = {e.key_id: e.label for e in list_keys(keys_file)}
    assert labels == {first.key_id: "crm", second.key_id: None}
    assert not list(keys_file.parent.glob("*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("token", [None, "", "suit_wrong", "x" * 500])
def test_unknown_or_missing_token_is_refused(keys_file: Path, token: str | None):
    add_key(keys_file, "compliance")
    assert KeyStore.load(keys_file).authenticate(token) is None


def test_unknown_role_is_refused_naming_the_allowed_ones(keys_file: Path):
    with pytest.raises(ValueError, match="matching, compliance"):
        add_key(keys_file, "admin")
    assert not keys_file.exists()


def test_removed_key_no_longer_authenticates(keys_file: Path):
    gone = add_key(keys_file, "matching")
    kept = add_key(keys_file, "compliance")
    remove_key(keys_file, gone.key_id)
    store = KeyStore.load(keys_file)

    assert store.authenticate(gone.token) is None
    assert store.authenticate(kept.token) is not None
    with pytest.raises(ValueError, match=gone.key_id):
        remove_key(keys_file, gone.key_id)


# --- malformed files ------------------------------------------------------------------------------


def test_malformed_file_is_an_error_and_is_not_overwritten(keys_file: Path):
    keys_file.parent.mkdir(parents=True)
    keys_file.write_text('{"format": 1, "keys": [', encoding="utf-8")
    with pytest.raises(KeyFileError, match="not valid JSON"):
        add_key(keys_file, "matching")
    assert keys_file.read_text(encoding="utf-8") == '{"format": 1, "keys": ['


def test_missing_file_names_the_path(keys_file: Path):
    with pytest.raises(KeyFileError, match=r"keys\.json does not exist"):
        KeyStore.load(keys_file)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must hold a JSON object"),
        ({"format": 2, "keys": []}, "format 2"),
        ({"keys": []}, "format None"),
        ({"format": 1, "keys": {}}, "'keys' must be a list"),
        ({"format": 1, "keys": ["key"]}, "entry 0 must be a JSON object"),
        ({"format": 1, "keys": [_entry(role="admin")]}, "entry 0: unknown role 'admin'"),
        ({"format": 1, "keys": [_entry(sha256="abc")]}, "entry 0: field 'sha256'"),
        ({"format": 1, "keys": [_entry(label=3)]}, "entry 0: field 'label'"),
        (
            {"format": 1, "keys": [_entry(), _entry(sha256=hash_token("other"))]},
            "entry 1: duplicate key id 'key_00000001'",
        ),
        (
            {"format": 1, "keys": [_entry(), _entry(key_id="key_2")]},
            "entry 1: field 'sha256' repeats entry 0",
        ),
    ],
)
def test_malformed_entries_are_reported(keys_file: Path, data: object, message: str):
    _write(keys_file, data)
    with pytest.raises(KeyFileError, match=message) as caught:
        KeyStore.load(keys_file)
    assert str(keys_file) in str(caught.value)
    assert hash_token("suit_test") not in str(caught.value)


@pytest.mark.parametrize("field", ["key_id", "role", "sha256", "created"])
def test_missing_field_names_entry_and_field(keys_file: Path, field: str):
    entry = _entry()
    del entry[field]
    _write(keys_file, {"format": 1, "keys": [_entry(key_id="key_0"), entry]})
    with pytest.raises(KeyFileError, match=f"entry 1 is missing field '{field}'"):
        KeyStore.load(keys_file)


# --- bearer headers and roles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer suit_abc-_123", "suit_abc-_123"),
        ("bearer suit_abc", "suit_abc"),
        ("BEARER suit_abc", "suit_abc"),
        ("  Bearer   suit_abc  ", "suit_abc"),
        ("Bearer abc+/==", "abc+/=="),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("suit_abc", None),
        ("Bearer suit_abc extra", None),
        ("Bearersuit_abc", None),
        ("Bearer suit\u00e9", None),
    ],
)
def test_parse_bearer(header: str | None, token: str | None):
    assert parse_bearer(header) == token


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        ("matching", "predict", True),
        ("matching", "audit", False),
        ("compliance", "predict", True),
        ("compliance", "audit", True),
        ("admin", "predict", False),
        ("", "audit", False),
    ],
)
def test_role_allows(role: str, permission: str, allowed: bool):
    assert role_allows(role, permission) is allowed  # type: ignore[arg-type]


def test_every_role_may_predict():
    assert ROLES == ("matching", "compliance")
    assert all(role_allows(role, "predict") for role in ROLES)
