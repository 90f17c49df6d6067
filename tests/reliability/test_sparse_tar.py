"""A sharded checkpoint sent as one tar cannot write more than the upload cap (issue 21, item 1): sparse
members (GNU 'S' and PAX 1.0, which `tarfile` expands, filling the holes) are refused, extracted bytes
count against the caller's upload limit, and nothing is extracted before the token's limits are checked
(a fresh Idempotency-Key at the concurrency limit is 429 first)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from safetensors.torch import save_file
from svc_helpers import SPEC, small_state_dict

from .conftest import Api

SHARD = "model-00001-of-00001.safetensors"
DECLARED = 64 << 20  # what the sparse member expands to; the tar itself is ~10 kB


def _pax_sparse(name: str, realsize: int) -> tarfile.TarInfo:
    """A PAX 1.0 sparse member: one 4-byte data block at offset 0, `realsize` bytes once expanded."""
    info = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
    info.size = 512 + 4  # the sparse map block, then the stored bytes
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(realsize),
    }
    return info


INDEX = json.dumps({"metadata": {}, "weight_map": {"fc1.weight": SHARD}}).encode()


def _index_member(tar_format: int) -> bytes:
    entry = tarfile.TarInfo("model.safetensors.index.json")
    entry.size = len(INDEX)
    return entry.tobuf(tar_format) + INDEX.ljust(512, b"\0")


def pax_sparse_tar(realsize: int = DECLARED) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entry = tarfile.TarInfo("model.safetensors.index.json")
        entry.size = len(INDEX)
        tar.addfile(entry, io.BytesIO(INDEX))
        tar.addfile(_pax_sparse(SHARD, realsize), io.BytesIO(b"1\n0\n4\n".ljust(512, b"\0") + b"abcd"))
    return out.getvalue()


def gnu_sparse_tar(realsize: int = DECLARED) -> bytes:
    """An old-style GNU sparse member (type 'S'): one 4-byte block at offset 0, `realsize` expanded."""
    info = tarfile.TarInfo(SHARD)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 4
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[386:398] = b"%011o\0" % 0  # the first (offset, numbytes) pair of the sparse map
    header[398:410] = b"%011o\0" % 4
    header[483:495] = b"%011o\0" % realsize  # the expanded size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    body = _index_member(tarfile.GNU_FORMAT) + bytes(header) + b"abcd".ljust(512, b"\0")
    return body + b"\0" * 1024


def post(api: Api, headers: dict[str, str], tar: bytes, **extra: str) -> object:
    return api.client.post(
        "/jobs",
        files={"model": ("ckpt.tar", tar)},
        data={"spec": json.dumps(SPEC)},
        headers={**headers, **extra},
    )


def written(api: Api) -> int:
    """Bytes in the uploads' staging folders and the jobs' folders."""
    folders = (api.settings.staging_dir, api.settings.jobs_dir)
    return sum(p.stat().st_size for folder in folders for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("make", [pax_sparse_tar, gnu_sparse_tar], ids=["pax", "gnu"])
@pytest.mark.parametrize("route", ["/jobs", "/jobs/validate"])
def test_a_sparse_tar_member_is_refused_and_writes_nothing(api: Api, make: object, route: str) -> None:
    tar = make()  # type: ignore[operator]
    assert len(tar) < 12_000
    with tarfile.open(fileobj=io.BytesIO(tar)) as opened:
        assert any(member.issparse() and member.size == DECLARED for member in opened)
    me = api.token("capped", max_upload_bytes=100_000)
    response = api.client.post(
        route, files={"model": ("ckpt.tar", tar)}, data={"spec": json.dumps(SPEC)}, headers=me
    )
    assert response.status_code == 422, response.text
    assert "sparse" in response.json()["detail"], response.text
    assert written(api) == 0
    assert list(api.settings.staging_dir.iterdir()) == []


def test_extracted_bytes_count_against_the_upload_limit(api: Api, tmp_path: Path) -> None:
    """A regular member cannot be larger than the tar; the limit is still counted while extracting."""
    shard = tmp_path / SHARD
    save_file(small_state_dict(), str(shard))
    index = json.dumps({"metadata": {}, "weight_map": dict.fromkeys(small_state_dict(), SHARD)}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(shard, arcname=SHARD)
        entry = tarfile.TarInfo("model.safetensors.index.json")
        entry.size = len(index)
        tar.addfile(entry, io.BytesIO(index))
    archive = out.getvalue()
    assert post(api, api.token("roomy", max_upload_bytes=len(archive) + 4096), archive).status_code == 202
    from service.errors import PayloadTooLarge
    from service.model_tar import unpack_model_tar
    from service.uploads import INDEX_PART, SHARD_PART

    target = tmp_path / "unpack" / "model.tar"
    target.parent.mkdir()
    target.write_bytes(archive)
    with pytest.raises(PayloadTooLarge, match="over the limit"):
        unpack_model_tar(target, INDEX_PART, SHARD_PART, 16, max_bytes=shard.stat().st_size - 1)
    assert not (target.parent / SHARD).exists()


def test_limits_are_checked_before_anything_is_extracted(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """At its concurrency limit, a fresh Idempotency-Key is answered 429 without extracting the tar."""
    import service.model_tar

    extracted: list[Path] = []
    unpack = service.model_tar.unpack_model_tar

    def spy(archive: Path, *args: object, **kwargs: object) -> object:
        extracted.append(archive)
        return unpack(archive, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service.model_tar, "unpack_model_tar", spy)
    me = api.token("busy", max_concurrent_jobs=1)
    first = api.client.post(
        "/jobs",
        files={"model": ("m.safetensors", _model_bytes())},
        data={"spec": json.dumps(SPEC)},
        headers=me,
    )
    assert first.status_code == 202
    before = written(api)
    response = post(api, me, pax_sparse_tar(), **{"Idempotency-Key": "fresh-key"})
    assert response.status_code == 429, response.text
    assert extracted == []
    assert written(api) == before
    assert list(api.settings.staging_dir.iterdir()) == []


def _model_bytes() -> bytes:
    out = io.BytesIO()
    from safetensors.torch import save

    out.write(save(small_state_dict()))
    return out.getvalue()
