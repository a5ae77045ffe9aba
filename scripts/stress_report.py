#!/usr/bin/env python3
"""Write docs/stress.md from the stress-set results (results/stress-*.json) and the page OCR results
(results/ocr-pages-*.json). The JSON files come from the commands printed in the page; this script
only tabulates them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from m3unet.evaluation.stress import miss_causes  # noqa: E402
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
        if r is runs[-1][1] and "f1_classifier_alone" in r:  # the reading without the spectral motion test
            clean = [row for row in r["rows"] if row["name"] == "clean"]
            alone = sum(1 for row in clean if not row.get("read_by_classifier", row["read"])) / max(1, len(clean))
            rows.append(f"| {name}, classifier alone | " + " | ".join(f"{r['f1_classifier_alone'][f]:.2f}" for f in FAMILIES)
                        + f" | {alone:.2f} |")
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


def everything(r: dict) -> str:
    rs = r["rows"]
    return f"{sum(row['auto_psnr'] - row['input_psnr'] for row in rs) / len(rs):+.2f} dB ({len(rs)} cases)"


def misses_table(runs: list[tuple[str, dict]]) -> str:
    rows = ["| photos | family | F1 | missed under a later blur | noise read on low light | other misses | "
            "other false readings | F1 on what stays visible | F1 without one photo |", "|---" * 9 + "|"]
    for name, r in runs:
        for fam, m in miss_causes(r["rows"]).items():
            photo = f"{m['photo_out'][1]:.2f} ({m['photo_out'][0]})" if m["photo_out"] else "-"
            rows.append(f"| {name} | {fam} | {m['f1']:.2f} | {m['fn_hidden']} | {m['fp_lowlight_noise']} | "
                        f"{m['fn_other']} | {m['fp_other']} | {m['f1_visible']:.2f} | {photo} |")
    return "\n".join(rows)


def haze_misreadings(r: dict) -> str:
    """Which photos the reading finds haze in where none was added, and what the restore does there."""
    free = [row for row in r["rows"] if "haze" not in row["families"]]
    per = {}
    for row in free:
        per.setdefault(row["photo"], []).append(row)
    worst = sorted((p for p, rows in per.items() if sum("haze" in x["read"] for x in rows) > len(rows) / 2))
    hit = [x for p in worst for x in per[p]]
    rest = [x for x in r["rows"] if x["photo"] not in worst]
    mean = lambda rows: sum(x["auto_psnr"] - x["input_psnr"] for x in rows) / max(1, len(rows))  # noqa: E731
    return (f"Haze is read on {sum('haze' in x['read'] for x in free)} of the {len(free)} centre-crop cases with no haze "
            f"added; on {len(worst)} photos ({', '.join(worst)}) on most of them ({sum('haze' in x['read'] for x in hit)} "
            f"of {len(hit)}): bright, grey, low-contrast scenes. The restore dehazes "
            f"{sum(any(st[0] == 'haze' and st[1] == 'kept' for st in x.get('steps', [])) for x in hit)} of those "
            f"{len(hit)} and changes them by {mean(hit):+.2f} dB a case on average. "
            f"The automatic restore gains {mean(r['rows']):+.2f} dB over all {len(r['rows'])} cases, "
            f"{mean(rest):+.2f} dB over the {len(rest)} cases of the other photos.")


def pages_table(runs: list[tuple[str, dict]]) -> str:
    keys = list(runs[-1][1]["table"])
    rows = ["| page / factor | size (px) | " + " | ".join(f"input, {n} | auto, {n} | auto - input, {n}" for n, _ in runs)
            + " |", "|---|---|" + "---|---|---|" * len(runs)]
    for k in keys:
        cells = []
        for _, r in runs:
            v = r["table"].get(k)
            cells.append("- | - | -" if v is None else f"{v['input']:.1f} | {v['auto']:.1f} | {v['auto'] - v['input']:+.1f}")
        rows.append(f"| {k} | {runs[-1][1]['table'][k]['px']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    before, now = load("stress-test-before.json"), load("stress-test.json")
    previous, last = load("stress-test-e814429.json"), load("stress-test-04123b8.json")
    latest, prior = load("stress-test-7c6bec4.json"), load("stress-test-83ee956.json")
    recent = load("stress-test-24db6bc.json")
    val = load("stress-validation.json")
    if now is None:
        print("results/stress-test.json is missing; run the commands in docs/stress.md first")
        return 1
    runs = ([("67bd65c", before)] if before else []) + ([("e814429", previous)] if previous else [])
    runs += ([("04123b8", last)] if last else []) + ([("7c6bec4", latest)] if latest else [])
    runs += ([("83ee956", prior)] if prior else []) + ([("24db6bc", recent)] if recent else []) + [("now", now)]
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
           ".venv/bin/python -m m3unet eval --stress --region dark --json results/stress-test-dark.json",
           ".venv/bin/python -m m3unet eval --stress --split validation --json results/stress-validation.json",
           ".venv/bin/python -m m3unet eval --stress --split validation --region dark --json results/stress-validation-dark.json",
           ".venv/bin/python -m m3unet eval --stress --split holdout --json results/stress-holdout.json",
           ".venv/bin/python -m m3unet eval --stress --split holdout --region dark --json results/stress-holdout-dark.json",
           "# 67bd65c, e814429, 04123b8, 7c6bec4, 83ee956 and 24db6bc: the first two commands at those commits (67bd65c: before",
           "# the motion deblur, the low-light floor, low light as given and the print guard's low-resolution",
           "# reading; e814429: before the stage-7 classifier and small_print_routes; 04123b8: before the",
           "# highlight limit on brightening, the milder deconvolution of down-sampled photos, the 96 px minimum",
           "# side, the classifier's low-light and haze calibration and haze taken as given; 7c6bec4: before",
           "# the motion deblur's fitted path and its match gate; 83ee956: before the reading's noise, JPEG and",
           "# soft offsets and its motion read from the spectrum, the restore's results the same; 24db6bc: before",
           "# the haze black-point limit and the low-light highlight limit at 0.55 instead of 0.9)",
           "python scripts/stress_report.py   # writes this page",
           "```", "",
           f"Test photos ({', '.join(now['photos'])}): they chose nothing.", "",
           "## Classifier: F1 per family (test photos)", "",
           "Defocus and down-sampling are scored as one *soft* family (they overlap by construction,",
           "`results/label-overlap.json`); the classifier keeps both labels for the plan. Scored is the reading",
           "the pack reports (the Degradation Classifier node, `classify`): the classifier at its file's",
           "calibration, with motion also read from the spectrum and without the low light and haze that the",
           "image's tones rule out (the restore's scene limits); *classifier alone* leaves out the spectrum and",
           "the scene limits ([classifier.md](classifier.md#calibration)). The automatic restore acts at its own",
           "decision points.", "",
           f1_table(runs), ""]
    if val:
        out += ["On the validation photos (which chose the settings):", "", f1_table([("now", val)]), ""]
    val_dark = load("stress-validation-dark.json")
    if val_dark:
        out += ["Their darkest crops:", "", f1_table([("now", val_dark)]), ""]
    hold, hold_dark = load("stress-holdout.json"), load("stress-holdout-dark.json")
    if hold:
        out += ["On the holdout photos (never trained on; they chose only the two scene limits of the restore,",
                "`haze_min_black_point` and `lowlight_max_highlight`, together with the validation photos:",
                f"{', '.join(hold['photos'])}; high-key and grey scenes, shallow depth of field, a texture):", "",
                f1_table([("now, centre", hold)] + ([("now, darkest", hold_dark)] if hold_dark else [])), "",
                haze_misreadings(hold), ""]
    sets = [(n, r) for n, r in (("test, centre", now), ("test, darkest", load("stress-test-dark.json")),
                                 ("validation, centre", val), ("validation, darkest", val_dark),
                                 ("holdout, centre", hold), ("holdout, darkest", hold_dark)) if r]
    out += ["### Where the misses come from", "",
            "The same readings, each miss put down to one cause (`m3unet.evaluation.stress.miss_causes`): noise or",
            "JPEG applied *before* a defocus, a motion blur or a down-sampling in a mix's random order and read as",
            "absent (what it is scored on is mostly smoothed away); noise read on a low-light case with no noise",
            "applied (the stress set's low light carries its own sensor noise, 2-10/255); the rest. *F1 on what",
            "stays visible* leaves the first two kinds of case out of the family's count; *F1 without one photo*",
            "leaves out the photo whose cases cost the family most.", "",
            misses_table(sets), ""]
    out += ["## Automatic restore: PSNR gain over the input (test photos)", "",
            "Straight motion 9-17 px: " + ", ".join(f"{motion_mid(r)} at {n}" for n, r in runs) + " (target >= +2 dB).",
            "Mixes of two or three: " + ", ".join(f"{mixes(r)} at {n}" for n, r in runs) + " (target >= +1.5 dB).",
            "All cases: " + ", ".join(f"{everything(r)} at {n}" for n, r in runs) + ".", "",
            "![PSNR gain of the automatic restore per kind and band, test photos](stress.png)", "",
            gain_table(runs), ""]
    below = [f"{k} ({v['gain_db']:+.2f} dB)" for k, v in now["gains"].items() if v["gain_db"] < 0]
    clean = now["gains"].get("clean / -", {}).get("gain_db")
    out += [f"Kinds and bands below the input now: {', '.join(below) if below else 'none'} (target: none). "
            f"Clean photos: {clean:+.2f} dB (target: at most 0.3 dB lost)." if clean is not None else "", ""]
    dark, dark_prev = load("stress-test-dark.json"), load("stress-test-dark-e814429.json")
    dark_last, dark_latest = load("stress-test-dark-04123b8.json"), load("stress-test-dark-7c6bec4.json")
    dark_prior, dark_recent = load("stress-test-dark-83ee956.json"), load("stress-test-dark-24db6bc.json")
    if dark:
        druns = ([("e814429", dark_prev)] if dark_prev else []) + ([("04123b8", dark_last)] if dark_last else [])
        druns += [("7c6bec4", dark_latest)] if dark_latest else []
        druns += [("83ee956", dark_prior)] if dark_prior else []
        druns += [("24db6bc", dark_recent)] if dark_recent else []
        druns.append(("now", dark))
        out += ["The test photos' darkest crops (`--region dark`: each photo's own dark scene, 256 px):", "",
                f1_table(druns), "", gain_table(druns), ""]
    if val:
        out += ["Validation photos, now:", "", gain_table([("now", val)]), ""]
    if hold:
        out += ["Holdout photos, now, centre crops:", "", gain_table([("now", hold)]), ""]
    if hold_dark:
        out += ["Holdout photos, now, darkest crops:", "", gain_table([("now", hold_dark)]), ""]
    pv, pt, pt_prev = load("ocr-pages-validation.json"), load("ocr-pages-test.json"), load("ocr-pages-test-e814429.json")
    pt_last, pt_recent = load("ocr-pages-test-04123b8.json"), load("ocr-pages-test-d465eb4.json")
    small = {(split, when): load(f"ocr-small-lines-{split}-64{suffix}.json") for split in ("validation", "test")
             for when, suffix in (("d465eb4", "-d465eb4"), ("now", ""))}
    if pv or pt:
        out += ["## Text pages at every size, down-sampled x2-x4: OCR character accuracy (%)", "",
                "```bash",
                ".venv/bin/python -m m3unet eval --ocr-pages --split validation --per-cell 16 --json results/ocr-pages-validation.json",
                ".venv/bin/python -m m3unet eval --ocr-pages --split test --per-cell 16 --json results/ocr-pages-test.json",
                "# e814429: eval --ocr-pages --split test (4 pages per cell) at that commit; 04123b8 and d465eb4:",
                "# the second command at that commit",
                "```", "",
                "Pages of one to eight lines (`m3unet/evaluation/ocr_pages.py`), down-sampled by bicubic or area",
                "filtering and brought back to size; every line read by RapidOCR at its known place. Validation",
                "pages use random words in fonts the test never uses; test pages use fixed lines in four fonts",
                "that neither training nor validation uses. 16 pages per page size and factor (the first 4 are",
                "the pages of a 4-per-cell run).", ""]
        for name, r in (("validation", pv), ("test", pt)):
            if r:
                truns = ([("e814429, 4 per cell", pt_prev)] if name == "test" and pt_prev else []) + (
                    [("04123b8", pt_last)] if name == "test" and pt_last else []) + (
                    [("d465eb4", pt_recent)] if name == "test" and pt_recent else []) + [("now", r)]
                out += [f"{name.capitalize()} pages ({', '.join(r['fonts'])}):", "", pages_table(truns), ""]
        out += ["The validation pages chose the print guard's low-resolution reading (`print_unread`) and the",
                "routes a small image that looks like print may take (`small_print_routes`: only the small-print",
                "specialist; [automatic.md](automatic.md#small-images), [policy.md](policy.md)).", ""]
        if all(small.values()):
            out += ["One small line per page, 64 pages per factor (the first 16 are those above); d465eb4: the",
                    "blind pass was also taken on print (`small_print_routes=enlarged_print,blind`), which 16",
                    "validation pages per factor had chosen and 64 did not:", "",
                    "```bash",
                    ".venv/bin/python -m m3unet eval --ocr-pages --split validation --per-cell 64 --page-sizes \"one small line\" \\",
                    "    --json results/ocr-small-lines-validation-64.json   # and --split test; d465eb4's routes:",
                    "#   --policy small_print_routes=enlarged_print,blind --json results/ocr-small-lines-<split>-64-d465eb4.json",
                    "```", ""]
            for split in ("validation", "test"):
                out += [f"{split.capitalize()} pages:", "",
                        pages_table([("d465eb4", small[(split, "d465eb4")]), ("now", small[(split, "now")])]), ""]
    (REPO / "docs" / "stress.md").write_text("\n".join(out))
    print("wrote docs/stress.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
