"""The batch's rules, in process: output names, which files a folder gives, and failures while writing."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path, PurePath

import numpy as np
import pytest
from PIL import Image

from m3unet.cli.batch import (LOG_NAME, BatchRestorer, Job, Settings, Source, UsageError, assign_outputs,
                              expand_inputs, plan_jobs)


def names(jobs, out: Path) -> list[str]:
    return [str(Path(j.output).relative_to(out)) for j in jobs]


def test_naming_rule(tmp_path):
    out = tmp_path / "out"
    src = [Source(tmp_path / "a" / "x.png", PurePath("x.png")), Source(tmp_path / "a" / "x.jpg", PurePath("x.jpg")),
           Source(tmp_path / "b" / "x.png", PurePath("x.png")),  # a second folder with the same name
           Source(tmp_path / "a" / "y.tif", PurePath("y.tif")), Source(tmp_path / "a" / "Y.PNG", PurePath("Y.PNG")),
           Source(tmp_path / "a" / "z.png", PurePath("sub/z.png")), Source(tmp_path / "a" / "README", PurePath("README"))]
    jobs = assign_outputs(src, out, before_after=True)
    assert names(jobs, out) == ["x.png.png", "x.jpg.png", "x.png~2.png", "y.tif.png", "Y.PNG.png", "sub/z.png",
                                "README.png"]
    assert [Path(j.comparison).name for j in jobs][:2] == ["x.png_before_after.png", "x.jpg_before_after.png"]
    # the same inputs always give the same names (a rerun finds its outputs)
    assert names(assign_outputs(src, out, True), out) == names(jobs, out)


def test_an_output_never_takes_an_inputs_name(tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("x.png", "y.jpg", "y.png"):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / name)
    with pytest.raises(UsageError, match="is an input folder"):
        plan_jobs([str(folder)], folder)
    jobs, _, _ = plan_jobs([str(folder)], folder, allow_input_folder=True)
    assert sorted(names(jobs, folder)) == ["x.png.png", "y.jpg.png", "y.png.png"]
    assert not {j.output for j in jobs} & {str(p) for p in folder.iterdir()}


def test_folders_skip_earlier_outputs_but_files_named_are_taken(tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    for name in ("a.png", "a.png.png"):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / name)
    (folder / LOG_NAME).write_text(json.dumps({"source": str(folder / "a.png"), "output": str(folder / "a.png.png"),
                                               "status": "ok"}) + "\n")
    found = expand_inputs([str(folder)], tmp_path / "out")
    assert [s.path.name for s in found.sources] == ["a.png"]
    named = expand_inputs([str(folder / "a.png.png")], tmp_path / "out")
    assert [s.path.name for s in named.sources] == ["a.png.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    got = expand_inputs([str(empty), str(tmp_path / "*.gif")], tmp_path / "out")
    assert [why for _, why in got.missing] == [f"{empty}: no image files in this folder (or only outputs of an "
                                               "earlier restore)", f"{tmp_path}/*.gif: no image file matches this pattern"]


def test_a_full_disk_fails_one_image_and_the_next_is_written(tmp_path, monkeypatch):
    for i in range(2):
        Image.fromarray(np.full((24, 24, 3), 60 * i, np.uint8)).save(tmp_path / f"p{i}.png")
    out = tmp_path / "out"
    worker = BatchRestorer(Settings(mode="single", threads=1))
    real_write = os.write

    def full_for_p0(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".p0.png."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)
    monkeypatch.setattr(os, "write", full_for_p0)
    bad = worker.process(Job(str(tmp_path / "p0.png"), str(out / "p0.png")))
    good = worker.process(Job(str(tmp_path / "p1.png"), str(out / "p1.png")))
    assert bad["status"] == "failed"
    assert bad["error"] == (f"cannot write {out / 'p0.png'}: No space left on device (the input {tmp_path / 'p0.png'} "
                            "is untouched)")
    assert good["status"] == "ok" and sorted(p.name for p in out.iterdir()) == ["p1.png"]
