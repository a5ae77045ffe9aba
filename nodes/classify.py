"""DegradationClassifier: which degradations an IMAGE batch has, how severe, and what to tell M3UNet."""
from __future__ import annotations

from pathlib import Path

import comfy.model_management as model_management
import folder_paths
from comfy_api.latest import io, ui

from ..m3unet.auto import DEFAULT_CLASSIFIER, LABELS, Classifier, DegradationClassifier, Reader, load_classifier
from .common import CATEGORY, FOLDER_NAME, Degradation, FileCache, file_fingerprint, is_classifier_name
from .compat import schema

DEFAULT_CLASSIFIER_NAME = DEFAULT_CLASSIFIER.name
NODE_ID = "M3UNetDegradationClassifier"
OLD_NODE_ID = "DegradationClassifier"  # before the pack prefix; still found by search and migrated

_classifiers: FileCache[DegradationClassifier] = FileCache()


def classifier_names() -> list[str]:
    """Classifier files of the ``m3unet`` folder (pack ``weights/`` + ``models/m3unet``), shipped one first."""
    names = [n for n in folder_paths.get_filename_list(FOLDER_NAME) if n != DEFAULT_CLASSIFIER_NAME]
    return [DEFAULT_CLASSIFIER_NAME] + [n for n in names if is_classifier_name(n)]


def classifier_path(name: str) -> Path:
    full = folder_paths.get_full_path(FOLDER_NAME, name)
    return Path(full) if full is not None else (DEFAULT_CLASSIFIER if name == DEFAULT_CLASSIFIER_NAME
                                                 else Path(folder_paths.models_dir) / FOLDER_NAME / name)


def get_classifier(name: str) -> DegradationClassifier:
    """Load (or reuse, keyed by path, mtime and size) a classifier; CheckpointError names the file."""
    path = classifier_path(name)
    # load_classifier raises CheckpointError for missing/corrupt/non-classifier files
    return _classifiers.get(path, lambda: load_classifier(path))


class DegradationClassifierNode(io.ComfyNode):
    """IMAGE -> DEGRADATION (labels, probabilities, severities per image), report, restoration text."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id=NODE_ID,
            display_name="Degradation Classifier (M3UNet)",
            category=CATEGORY,
            search_aliases=[OLD_NODE_ID, "detect degradations", "what is wrong with the photo", "image quality",
                            "noise detector", "blur detector"],
            description=(
                "Detects which degradations each image has (" + ", ".join(LABELS) + ") and how severe "
                "(light, moderate, heavy), with a small CNN reading native-resolution crops and a "
                "downscaled whole view (about 0.05 s per megapixel on a CPU); motion blur is also read from the "
                "image's spectrum (up to a few seconds more on a large photo), and low light or haze the "
                "image's tones rule out (a dark scene's bright highlights, deep blacks under supposed haze) are "
                "left out, with the reason in the report. Outputs the findings for the "
                "M3UNet Sampler's degradation input, a readable report and the restoration text M3UNet "
                "understands ('remove the moderate motion blur, then remove the light noise')."),
            inputs=[
                io.Image.Input("image", tooltip="Image(s) to inspect; a batch gives one finding per image."),
                io.Combo.Input("classifier_name", options=classifier_names(), default=DEFAULT_CLASSIFIER_NAME,
                               tooltip=("Classifier weights: the shipped one, or your own .safetensors "
                                        "(python -m m3unet train-classifier) in models/m3unet.")),
                io.Float.Input("threshold", default=0.5, min=0.05, max=0.95, step=0.05, tooltip=(
                    "Probability from which a degradation is reported (probabilities already include the "
                    "classifier file's per-label calibration). Lower finds more (and more false alarms on "
                    "clean photos); higher reports only what is certain.")),
            ],
            outputs=[
                Degradation.Output(display_name="degradation", tooltip=(
                    "Per image: probability and severity of every label, and the detected labels. Connect "
                    "to the M3UNet Sampler's degradation input to steer it automatically.")),
                io.String.Output(display_name="report", tooltip=(
                    "Readable findings, one line per image: label, level, probability, severity.")),
                io.String.Output(display_name="restoration_text", tooltip=(
                    "The restoration text for M3UNet, most severe first; empty when the image is clean. "
                    "With a batch: one line per image.")),
            ],
        )

    @classmethod
    def validate_inputs(cls, classifier_name: str):
        if not isinstance(classifier_name, str):
            return True
        path = classifier_path(classifier_name)
        if path.is_file():
            return True
        return (f"classifier file {classifier_name!r} not found ({path}). Available: "
                f"{', '.join(classifier_names())}. Put classifier .safetensors files into models/m3unet.")

    @classmethod
    def fingerprint_inputs(cls, classifier_name: str, **_):
        # Re-run when the file behind the name changes (e.g. a retrained classifier copied over it).
        return (classifier_name, file_fingerprint(classifier_path(classifier_name)))

    @classmethod
    def execute(cls, image, classifier_name: str, threshold: float = 0.5) -> io.NodeOutput:
        model_management.throw_exception_if_processing_interrupted()
        clf = Reader(Classifier(get_classifier(classifier_name), threshold=threshold))
        findings = []
        for i in range(image.shape[0]):  # one image at a time: interruptible, small memory
            findings += clf(image[i:i + 1].cpu())
            model_management.throw_exception_if_processing_interrupted()
        many = len(findings) > 1
        report = "\n".join((f"image {i + 1}: " if many else "") + f.report() for i, f in enumerate(findings))
        text = "\n".join(f.restoration_text() for f in findings)
        return io.NodeOutput(findings, report, text, ui=ui.PreviewText(report))
