#!/usr/bin/env python3
"""Write docs/stress.md from the stress-set results (results/stress-*.json) and the page OCR results
(results/ocr-pages-*.json). The JSON files come from the commands printed in the page; this script
only tabulates them.
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
FAMILIES = ("noise", "jpeg", "lowlight", "haze", "soft", "motion")
TARGET = {"noise": 0.95, "jpeg": 0.95, "lowlight": 0.95, "haze": 0.95, "soft": 0.95, "motion": 0.90}


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def f1_table(runs: list[tuple[str, dict]]) -> str:
    rows = ["| classifier | " + " | ".join(FAMILIES) + " | clean read with no label |", "|---" * (len(FAMILIES) + 2) + "|",
            "| target | " + " | ".join(f">= {TARGET[f]:.2f}" for f in FAMILIES) + " | >= 0.95 |"]
    for name, r in runs:
        rows.append(f"| {name} | " + " | ".join(f"{r['f1'][f]:.2f}" for f in FAMILIES) + f" | {r['clean_no_label']:.2f} |")
    return "\n".join(rows)


def gain_table(runs: list[tuple[str, dict]]) -> str:
    keys = list(runs[-1][1]["gains"])
    rows = ["| kind / band | n | input PSNR | " + " | ".join(f"gain, {n}" for n, _ in runs) + " |",
            "|---|---|---|" + "---|" * len(runs)]
    for k in keys:
        last = runs[-1][1]["gains"][k]
        cells = []
        for _, r in runs:
            g = r["gains"].get(k)
            cells.append("-" if g is None else f"{g['gain_db']:+.2f}")
        rows.append(f"| {k} | {last['n']} | {last['input_psnr']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def motion_mid(r: dict) -> str:
    rs = [row for row in r["rows"] if row["name"] == "linear motion" and 9 <= row["applied"][0]["length"] <= 17]
    if not rs:
        return "-"
    return f"{sum(row['auto_psnr'] - row['input_psnr'] for row in rs) / len(rs):+.2f} dB ({len(rs)} cases)"


def mixes(r: dict) -> str:
    rs = [row for row in r["rows"] if row["name"] in ("mix2", "mix3")]
    return f"{sum(row['auto_psnr'] - row['input_psnr'] for row in rs) / len(rs):+.2f} dB ({len(rs)} cases)"


def pages_table(runs: list[tuple[str, dict]]) -> str:
    keys = list(runs[0][1]["table"])
    rows = ["| page / factor | size (px) | clean | input | " + " | ".join(f"auto, {n}" for n, _ in runs) + " |",
            "|---|---|---|---|" + "---|" * len(runs)]
    for k in keys:
        v = runs[0][1]["table"][k]
        rows.append(f"| {k} | {v['px']} | {v['clean']:.1f} | {v['input']:.1f} | "
                    + " | ".join(f"{r['table'][k]['auto']:.1f}" for _, r in runs) + " |")
    return "\n".join(rows)


def main() -> int:
    before, now = load("stress-test-before.json"), load("stress-test.json")
    val = load("stress-validation.json")
    if now is None:
        print("results/stress-test.json is missing; run the commands in docs/stress.md first")
        return 1
    runs = [("before", before)] if before else []
    runs.append(("now", now))
    out = ["# The stress set", "",
           "Photos degraded over wider ranges than training uses, to see what the automatic restore does on",
           "degradations nobody tuned on (`m3unet/evaluation/stress.py`): Gaussian noise 5-50/255,",
           "Poisson-Gaussian noise (10-200 photons at white plus 2-10/255), defocus 0.8-3.5 px, straight motion",
           "5-25 px at any angle, curved camera shake 5-25 px, JPEG q5-70, down-sampling x2-x4 (bicubic, bilinear,",
           "area) brought back to size, low light (gain 0.15-0.5, gamma 1.2-2.2, noise 2-10/255), haze, and",
           "mixes of two or three in random order; each kind cut into three severity bands by its main",
           "parameter. Seeded by `STRESS_SEED`, which nothing is trained on; 256 px centre crops, two cases per",
           "kind and photo, one clean crop per photo.", "",
           "```bash",
           ".venv/bin/python -m m3unet eval --stress --json results/stress-test.json --plot docs/stress.png",
           ".venv/bin/python -m m3unet eval --stress --split validation --json results/stress-validation.json",
           "# before: the same command at commit 67bd65c (before the motion deblur, the low-light floor, low light",
           "# as given and the print guard's low-resolution reading)",
           "python scripts/stress_report.py   # writes this page",
           "```", "",
           f"Test photos ({', '.join(now['photos'])}): they chose nothing.", "",
           "## Classifier: F1 per family (test photos)", "",
           "Defocus and down-sampling are scored as one *soft* family (they overlap by construction,",
           "`results/label-overlap.json`); the classifier keeps both labels for the plan.", "",
           f1_table(runs), ""]
    if val:
        out += ["On the validation photos (which chose the settings):", "", f1_table([("now", val)]), ""]
    out += ["## Automatic restore: PSNR gain over the input (test photos)", "",
            f"Straight motion 9-17 px: {motion_mid(now)} now" + (f", {motion_mid(before)} before" if before else "")
            + " (target >= +2 dB).",
            f"Mixes of two or three: {mixes(now)} now" + (f", {mixes(before)} before" if before else "")
            + " (target >= +1.5 dB).", "",
            "![PSNR gain of the automatic restore per kind and band, test photos](stress.png)", "",
            gain_table(runs), ""]
    below = [f"{k} ({v['gain_db']:+.2f} dB)" for k, v in now["gains"].items() if v["gain_db"] < 0]
    clean = now["gains"].get("clean / -", {}).get("gain_db")
    out += [f"Kinds and bands below the input now: {', '.join(below) if below else 'none'} (target: none). "
            f"Clean photos: {clean:+.2f} dB (target: at most 0.3 dB lost)." if clean is not None else "", ""]
    dark = load("stress-test-dark.json")
    if dark:
        out += ["The test photos' darkest crops (`--region dark`: each photo's own dark scene, 256 px), now:", "",
                f1_table([("now", dark)]), "", gain_table([("now", dark)]), ""]
    if val:
        out += ["Validation photos, now:", "", gain_table([("now", val)]), ""]
    pv, pt = load("ocr-pages-validation.json"), load("ocr-pages-test.json")
    if pv or pt:
        out += ["## Text pages at every size, down-sampled x2-x4: OCR character accuracy (%)", "",
                "```bash",
                ".venv/bin/python -m m3unet eval --ocr-pages --split validation --json results/ocr-pages-validation.json",
                ".venv/bin/python -m m3unet eval --ocr-pages --split test --json results/ocr-pages-test.json",
                "```", "",
                "Pages of one to eight lines (`m3unet/evaluation/ocr_pages.py`), down-sampled by bicubic or area",
                "filtering and brought back to size; every line read by RapidOCR at its known place. Validation",
                "pages use random words in fonts the test never uses; test pages use fixed lines in four fonts",
                "that neither training nor validation uses.", ""]
        prev = load("ocr-pages-validation-previous-policy.json")
        for name, r in (("validation", pv), ("test", pt)):
            if r:
                runs = ([("print guard without low resolution", prev)] if name == "validation" and prev else []) + [("now", r)]
                out += [f"{name.capitalize()} pages ({', '.join(r['fonts'])}):", "", pages_table(runs), ""]
        out += ["The validation pages chose the print guard's low-resolution reading (`print_unread`,",
                "[policy.md](policy.md)). Pages under 128 px high (one small line) take the small-image route",
                "(blur estimator, kernel deblur or the small-print model), which helped the validation fonts and",
                "hurts some test fonts at x2-x3 (a bold serif and a typewriter face).", ""]
    (REPO / "docs" / "stress.md").write_text("\n".join(out))
    print("wrote docs/stress.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
