"""bot.images.store: content-addressed pictures, atomic writes, retention by age."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from bot.errors import ImageError
from bot.images.store import ImageStore

DAY = 24 * 3600


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_round_trip_under_sha256_key(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    data = b"\x89PNG pretend picture"
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.get(key) == data
    assert store.exists(key)
    assert store.path(key) == tmp_path / "images" / key[:2] / f"{key[2:]}.png"
    assert store.path(key).read_bytes() == data


def test_put_is_idempotent_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    keys = {store.put(b"same bytes") for _ in range(3)}
    other = store.put(b"other bytes")
    assert len(keys) == 1 and other not in keys
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 2 and all(name.endswith(".png") for name in files)


def test_missing_key_says_send_the_picture_again(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    key = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(key)
    with pytest.raises(ImageError) as caught:
        store.get(key)
    assert caught.value.key == "image.expired"
    assert "send it again" in caught.value.render("en")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../../etc/passwd",
        "ab/../../x",
        "a" * 63,
        "a" * 65,
        "A" * 64,  # sha256 hexdigest is lowercase; anything else did not come from put
        "g" * 64,
        "a" * 62 + "/x",
        "a" * 63 + "\n",
    ],
)
def test_invalid_keys_are_refused(tmp_path: Path, key: str) -> None:
    store = ImageStore(tmp_path)
    for call in (store.path, store.get, store.exists):
        with pytest.raises(ValueError):
            call(key)


def test_retention_deletes_only_old_pictures(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    old, fresh = store.put(b"old"), store.put(b"fresh")
    age(store.path(old), 3 * DAY)
    stranger = tmp_path / "notes.txt"  # not ours: never touched, however old
    stranger.write_text("keep me")
    age(stranger, 30 * DAY)
    assert store.delete_older_than(DAY) == 1
    assert not store.exists(old) and store.exists(fresh) and stranger.exists()
    assert not store.path(old).parent.exists() or store.path(old).parent == store.path(fresh).parent
    assert store.delete_older_than(DAY) == 0


def test_storing_again_keeps_a_reused_picture(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    key = store.put(b"reused")
    age(store.path(key), 3 * DAY)
    assert store.put(b"reused") == key  # touches the mtime
    assert store.delete_older_than(DAY) == 0
    assert store.get(key) == b"reused"


def test_retention_clears_leftover_temp_files(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    key = store.put(b"x")
    leftover = store.path(key).parent / ".tmp-crashed"
    leftover.write_bytes(b"half a picture")
    age(leftover, 3 * DAY)
    assert store.delete_older_than(DAY) == 0  # temp files are not counted as pictures
    assert not leftover.exists() and store.exists(key)


def test_retention_on_a_missing_root(tmp_path: Path) -> None:
    assert ImageStore(tmp_path / "nothing-yet").delete_older_than(0) == 0
