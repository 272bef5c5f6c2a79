from __future__ import annotations

from pathlib import Path

import pytest

from services.trainer.artifacts import (
    CorruptArtifact,
    content_hash,
    new_staging_dir,
    publish,
    sweep_staging,
    verify,
)
from shared.errors import Conflict
from shared.registry import artifact_hash


def _write_adapter(directory: Path, weights: bytes = b"\x00" * 64) -> None:
    (directory / "adapter_config.json").write_text('{"r": 8}')
    (directory / "adapter_model.safetensors").write_bytes(weights)


def test_publish_moves_a_complete_staging_dir_under_a_hash_derived_name(tmp_path) -> None:
    staging = new_staging_dir(tmp_path)
    assert staging.parent == tmp_path and staging.name.startswith(".staging-")
    _write_adapter(staging)
    expected = content_hash(staging)
    published = publish(staging, tmp_path, lambda h: f"v-{h[:6]}")
    path, name, digest = published.path, published.name, published.digest
    assert digest == expected == artifact_hash(path)  # the student checks with the same hash
    assert name == f"v-{digest[:6]}"
    assert path == (tmp_path / name).resolve()
    assert not staging.exists()
    verify(path, digest)


def test_an_incomplete_staging_dir_is_never_published(tmp_path) -> None:
    staging = new_staging_dir(tmp_path)
    (staging / "adapter_config.json").write_text("{}")
    with pytest.raises(CorruptArtifact) as err:
        publish(staging, tmp_path, lambda h: "v1")
    assert err.value.message == (
        f"adapter artifact {staging} is incomplete: missing adapter_model.safetensors"
    )
    assert not (tmp_path / "v1").exists()


def test_versions_are_never_overwritten(tmp_path) -> None:
    for weights in (b"a", b"b"):
        staging = new_staging_dir(tmp_path)
        _write_adapter(staging, weights)
        if weights == b"a":
            publish(staging, tmp_path, lambda h: "v1")
        else:
            with pytest.raises(Conflict) as err:
                publish(staging, tmp_path, lambda h: "v1")
            assert err.value.message == (
                f"adapter artifact {tmp_path / 'v1'} already exists; versions are never overwritten"
            )
    assert (tmp_path / "v1" / "adapter_model.safetensors").read_bytes() == b"a"


@pytest.mark.parametrize("damage", ["flip", "truncate", "extra", "missing"])
def test_verify_detects_any_change(tmp_path, damage) -> None:
    staging = new_staging_dir(tmp_path)
    _write_adapter(staging, bytes(range(64)))
    published = publish(staging, tmp_path, lambda h: "v1")
    path, digest = published.path, published.digest
    weights = path / "adapter_model.safetensors"
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[10] ^= 0x01
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-1])
    elif damage == "extra":
        (path / "notes.txt").write_text("x")
    else:
        weights.unlink()
    with pytest.raises(CorruptArtifact) as err:
        verify(path, digest)
    if damage == "missing":
        assert err.value.message == (
            f"adapter artifact {path} is incomplete: missing adapter_model.safetensors"
        )
    else:
        assert err.value.message.startswith(f"adapter artifact {path} is corrupt: content hash ")
        assert err.value.message.endswith(f"differs from the registered {digest[:12]}…")


def test_sweep_removes_only_staging_dirs(tmp_path) -> None:
    kept = tmp_path / "persd-r1-abc"
    kept.mkdir()
    left = new_staging_dir(tmp_path)
    (left / "adapter_model.safetensors").write_bytes(b"partial")
    assert sweep_staging(tmp_path) == [left.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["persd-r1-abc"]
    assert sweep_staging(tmp_path / "absent") == []
