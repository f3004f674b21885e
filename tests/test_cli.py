"""The `pixeltok` command line: fast start, one clear line for bad input, no partial or clobbered output files."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pixeltok.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_error_line(err: str, command: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pixeltok {command}: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def sprite(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "sprite.png"
    Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["palettes", "-v"], ["encode", "--help"], ["encode"],
                                  ["decode"]])
def test_light_commands_start_without_torch_or_transformers(argv, tmp_path):
    if argv in (["encode"], ["decode"]):  # a real round trip through files
        Image.new("RGB", (5, 4), (200, 10, 10)).save(tmp_path / "a.png")
        assert main(["encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.txt")]) == 0
        argv = ["encode", str(tmp_path / "a.png")] if argv == ["encode"] else \
            ["decode", str(tmp_path / "a.txt"), "-o", str(tmp_path / "b.png")]
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pixeltok", *argv], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "transformers", "datasets", "accelerate"}, sorted(imported)[:50]
    if argv == ["--version"]:
        assert r.stdout.strip().startswith("pixeltok 0.")


def test_encode_decode_round_trip_needs_no_repeated_flags(tmp_path, capsys, sprite):
    from pixeltok import PixelTokenizer

    for palette in ("named128", "nes55"):
        for layout in ("grouped", "raster", "runs"):
            txt, png = tmp_path / f"{palette}-{layout}.txt", tmp_path / f"{palette}-{layout}.png"
            assert run(capsys, "encode", str(sprite), "--palette", palette, "--layout", layout, "-o", str(txt))[0] == 0
            rc, _, err = run(capsys, "decode", str(txt), "-o", str(png))  # palette and layout read from the text
            assert rc == 0, err
            expected = PixelTokenizer(palette=palette, layout=layout).quantize(str(sprite))
            assert np.array_equal(np.asarray(Image.open(png)), np.asarray(expected))


def test_encode_of_a_large_photo_names_the_flag_and_leaves_no_file(tmp_path, capsys):
    big = tmp_path / "photo.png"
    Image.new("RGB", (640, 427), (10, 200, 30)).save(big)
    out = tmp_path / "photo.txt"
    rc, _, err = run(capsys, "encode", str(big), "--palette", "nes55", "--layout", "runs", "-o", str(out))
    assert rc == 2
    one_error_line(err, "encode", "640x427", "--resize")
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    assert run(capsys, "encode", str(big), "--resize", "box", "-o", str(out))[0] == 0 and out.stat().st_size > 0


def test_existing_output_is_refused_unless_force(tmp_path, capsys, sprite):
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    rc, _, err = run(capsys, "encode", str(sprite), "-o", str(out))
    assert rc == 2
    one_error_line(err, "encode", "exists", "--force")
    assert out.read_text() == "keep me"
    assert run(capsys, "encode", str(sprite), "-o", str(out), "--force")[0] == 0
    assert out.read_text().startswith("w13 h9")


@pytest.mark.parametrize("case", ["dir-input", "dir-output", "under-a-file", "missing-folder", "missing-input",
                                  "missing-model", "model-is-a-file", "garbage-ptk", "not-text", "bad-tokens"])
def test_bad_input_ends_in_one_clear_line(tmp_path, capsys, sprite, case):
    garbage = tmp_path / "garbage.ptk"
    garbage.write_bytes(b"PTK?" + bytes(range(60)))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    bad = tmp_path / "bad.txt"
    bad.write_text("w2 h2\nc_red 0_0, 9_9,\n")
    argv, needle = {
        "dir-input": (["encode", str(tmp_path), "-o", str(tmp_path / "o.txt")], "is a directory"),
        "dir-output": (["encode", str(sprite), "-o", str(tmp_path)], "is a directory"),
        "under-a-file": (["compress", str(sprite), "-o", str(sprite / "x.ptk")], "is a file"),
        "missing-folder": (["compress", str(sprite), "-o", str(tmp_path / "no" / "x.ptk")], "does not exist"),
        "missing-input": (["decompress", str(tmp_path / "none.ptk"), "-o", str(tmp_path / "o.png")], "not found"),
        "missing-model": (["compress", str(sprite), "-o", str(tmp_path / "o.ptk"), "--model", "missing.png"],
                          "not found: missing.png"),
        "model-is-a-file": (["compress", str(sprite), "-o", str(tmp_path / "o.ptk"), "--model", str(sprite)],
                            "is a file"),
        "garbage-ptk": (["decompress", str(garbage), "-o", str(tmp_path / "o.png")], ""),
        "not-text": (["decode", str(binary), "-o", str(tmp_path / "o.png")], "not UTF-8"),
        "bad-tokens": (["decode", str(bad), "-o", str(tmp_path / "o.png")], ""),
    }[case]
    before = sorted(os.listdir(tmp_path))
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    one_error_line(err, argv[0], needle)
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, not even a partial file


@pytest.mark.parametrize("tile", [None, "8"])
def test_compress_decompress_round_trip(tmp_path, capsys, tile):
    from skimage import data as skdata

    sprite = tmp_path / "photo.png"  # a real photo crop: it codes smaller than raw (random pixels are stored)
    Image.fromarray(skdata.astronaut()[100:124, 200:230]).save(sprite)
    ptk, back = tmp_path / "s.ptk", tmp_path / "back.png"
    rc, out, _ = run(capsys, "compress", str(sprite), "-o", str(ptk), *(["--tile", tile] if tile else []))
    assert rc == 0 and ("whole image" in out if tile is None else "independent tiles" in out), out
    assert run(capsys, "decompress", str(ptk), "-o", str(back))[0] == 0
    assert np.array_equal(np.asarray(Image.open(back)), np.asarray(Image.open(sprite)))


def test_compress_keeps_grayscale_one_channel(tmp_path, capsys):
    from skimage import data as skdata

    gray = tmp_path / "gray.png"
    Image.fromarray(skdata.camera()[440:504, 300:396]).save(gray)
    ptk, back = tmp_path / "g.ptk", tmp_path / "back.png"
    assert run(capsys, "compress", str(gray), "-o", str(ptk))[0] == 0
    assert ptk.stat().st_size < 96 * 64  # one coded channel: below the raw 8-bit pixels
    assert run(capsys, "decompress", str(ptk), "-o", str(back))[0] == 0
    again = Image.open(back)
    assert again.mode == "L" and np.array_equal(np.asarray(again), np.asarray(Image.open(gray)))
