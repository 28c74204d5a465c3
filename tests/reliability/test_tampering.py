"""`verify` accepts no tampered release: >= 200 seeded random byte flips across the release files and the tarball,
the gzip layer's header/trailer bytes, and flips inside the uncompressed tar (re-gzipped so gzip itself is valid)."""

from __future__ import annotations

import shutil

import pytest

from .findings import TAMPER_OPEN
from .harness import check_clean_failure, run_inprocess
from .tamper import apply, build_release, flips, tar_level_flips, verify_accepts, verify_outcome

N_RANDOM = 200
SEED = 1234


@pytest.fixture(scope="module")
def release(world):
    return build_release(world)


def _xfail_if_open(name: str):
    if name in TAMPER_OPEN:
        return pytest.mark.xfail(strict=True, reason=TAMPER_OPEN[name])
    return []


def test_good_release_verifies(world, release):
    for p in (release, world.extra["tarball"]):
        accepted, detail = verify_accepts(p)
        assert accepted, detail
        assert verify_outcome(p)[0] == "accepted"


def _sweep(world, tmp_path, selected) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {"accepted": [], "crashed": []}
    for i, flip in enumerate(selected):
        d = tmp_path / f"{i:04d}"
        d.mkdir()
        state, detail = verify_outcome(apply(world, flip, d))
        if state != "rejected":
            bad[state].append(f"{flip.id} ({detail})" if state == "crashed" else flip.id)
        shutil.rmtree(d)
    return bad


def _assert_none(bad: dict[str, list[str]], n: int) -> None:
    msg = []
    if bad["accepted"]:
        msg.append(f"verify ACCEPTED {len(bad['accepted'])} of {n} tampered copies: {bad['accepted'][:10]}")
    if bad["crashed"]:
        msg.append(f"verify CRASHED (non-EdgecompressError) on {len(bad['crashed'])} of {n}: {bad['crashed'][:5]}")
    assert not msg, "\n".join(msg)


@pytest.mark.parametrize("target", [pytest.param("dir", marks=_xfail_if_open("random-dir")),
                                    pytest.param("tar", marks=_xfail_if_open("random-tar"))])
def test_random_flips_rejected(world, release, tmp_path, target):
    selected = [f for f in flips(world, N_RANDOM, SEED) if f.region == "random" and f.target == target]
    assert len(selected) >= N_RANDOM // 3
    _assert_none(_sweep(world, tmp_path, selected), len(selected))


@pytest.mark.parametrize("region", [pytest.param("gzip-header", marks=_xfail_if_open("gzip-header")),
                                    pytest.param("gzip-trailer", marks=_xfail_if_open("gzip-trailer")),
                                    pytest.param("gzip-last-deflate-byte",
                                                 marks=_xfail_if_open("gzip-last-deflate-byte"))])
def test_gzip_layer_flips_rejected(world, release, tmp_path, region):
    selected = [f for f in flips(world, N_RANDOM, SEED) if f.region == region]
    _assert_none(_sweep(world, tmp_path, selected), len(selected))


@pytest.mark.parametrize("region", [pytest.param("tar-first-header"),
                                    pytest.param("tar-tail", marks=_xfail_if_open("tar-tail")),
                                    pytest.param("tar-random", marks=_xfail_if_open("tar-random"))])
def test_tar_level_flips_rejected(world, release, tmp_path, region):
    bad: dict[str, list[str]] = {"accepted": [], "crashed": []}
    cases = [(n, b) for n, b in tar_level_flips(world, 24, SEED) if n.startswith(region + "@")]
    for name, blob in cases:
        p = tmp_path / "release.tar.gz"
        p.write_bytes(blob)
        state, detail = verify_outcome(p)
        if state != "rejected":
            bad[state].append(f"{name} ({detail})")
    _assert_none(bad, len(cases))


def test_cli_verify_on_tampered_copies(world, release, tmp_path):
    """Through the CLI: exit 1, one closing `error:` line, nothing extracted into the cwd or left in TMPDIR."""
    for i, flip in enumerate(flips(world, 10, SEED + 1)[:6]):
        d = tmp_path / f"{i}"
        (d / "cwd").mkdir(parents=True)
        (d / "tmp").mkdir()
        target = apply(world, flip, d)
        outcome = run_inprocess(["verify", str(target)], cwd=d / "cwd", tmp=d / "tmp")
        assert outcome.rc == 1, outcome.describe()
        problems = check_clean_failure(outcome)
        assert not problems, f"{flip.id}: {problems}\n{outcome.describe()}"
        assert not any((d / "cwd").iterdir()) and not any((d / "tmp").iterdir())
