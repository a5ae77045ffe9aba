"""Model files are checked before use: a damaged or foreign checkpoint is one clear error naming the file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from m3unet.core.unet import M3UNet, M3UNetConfig
from m3unet.core.weights import CheckpointError, load_model, save_model

REPO = Path(__file__).resolve().parent.parent
TINY = dict(width=8, enc_blocks=[1, 1, 1], mid_blocks=1, dec_blocks=[1, 1, 1])


def tiny_checkpoint(path: Path, config_changes: dict | None = None, tensor_change=None) -> Path:
    model = M3UNet(M3UNetConfig(**TINY))
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if tensor_change is not None:
        tensor_change(state)
    config = json.loads(model.config.to_json()) | (config_changes or {})
    save_file(state, str(path), metadata={"m3unet_config": json.dumps(config), "format": "m3unet/1"})
    return path


def test_a_good_checkpoint_loads(tmp_path):
    save_model(M3UNet(M3UNetConfig(**TINY)), tmp_path / "ok.safetensors")
    assert load_model(tmp_path / "ok.safetensors").config.width == 8


@pytest.mark.parametrize("changes, message", [
    ({"attention_type": "flash"}, "unknown config keys ['attention_type']"),
    ({"width": -8}, "width=-8 (a whole number from 1 to 4096)"),
    ({"width": 0}, "width=0"),
    ({"width": 8.5}, "width=8.5"),
    ({"enc_blocks": [1, -1, 1]}, "enc_blocks=[1, -1, 1]"),
    ({"dec_blocks": [1, 1]}, "must have the same length"),
    ({"heads": 3}, "must be a multiple of heads 3"),
    ({"mid_blocks": 10 ** 9}, "mid_blocks=1000000000"),
])
def test_invalid_configs_are_clear_errors(tmp_path, changes, message):
    path = tiny_checkpoint(tmp_path / "bad.safetensors", changes)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert "bad.safetensors" in str(e.value) and message in str(e.value)


def nan_everywhere(state):
    for v in state.values():
        v.fill_(float("nan"))


def to_int(state):
    key = next(iter(state))
    state[key] = state[key].round().to(torch.int32)


def test_non_finite_and_non_float_tensors_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"nan\.safetensors: \d+ tensors hold NaN or infinite values"):
        load_model(tiny_checkpoint(tmp_path / "nan.safetensors", tensor_change=nan_everywhere))
    with pytest.raises(CheckpointError, match=r"int\.safetensors: 1 tensors are not floating point .*int32"):
        load_model(tiny_checkpoint(tmp_path / "int.safetensors", tensor_change=to_int))


@pytest.mark.cli
def test_restore_with_a_bad_checkpoint_is_one_clear_error(tmp_path):
    tiny_checkpoint(tmp_path / "nan.safetensors", tensor_change=nan_everywhere)
    Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(tmp_path / "x.png")
    r = subprocess.run([sys.executable, "-m", "m3unet", "restore", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"),
                        "--mode", "single", "--model", str(tmp_path / "nan.safetensors")], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "nan.safetensors" in r.stderr and "NaN or infinite" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()  # nothing written
