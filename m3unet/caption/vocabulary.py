"""Restoration in text space: split a caption into its content and its degradations.

The paper's text prior (Sec. 3.3): a multimodal LLM describes the low-quality image, the
degradation details are removed from that description (the *content*: what a clean photo of the
scene would be described as), and the degradations are turned into the restoration text that
guides M3UNet. Captions are free-form ("A slightly blurry photo of a cat. The image also has
visible JPEG artifacts."), M3UNet was trained on the phrasing of :func:`m3unet.core.text.describe`
("remove the moderate JPEG artifacts, then remove the light blur"): the mapping between the two
is data, ``vocabulary.json`` beside this file (terms per degradation kind, severity words,
negations, and the words that make a clause "about quality" rather than about the scene).

Rules: a caption is cut into sentences and clauses (at commas, semicolons, colons and words such
as "and", "but", "with"). A clause with no content words left once degradation terms, severity
words and quality words are removed is a *quality clause*: it is dropped from the content, and
both strong and weak terms in it count ("the photo is too dark" -> low light). In a content clause
only strong terms count and are cut out with their severity words ("a blurry photo of a cat" ->
"a photo of a cat"); weak terms stay ("a man in a dark coat"). A term after a negation in its
clause ("no visible noise") or with a "-free"/"-less" suffix does not count.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.degradations import LABEL, Degradation, level

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.json")
# Nouns for sentences built from degradations (each is a strong term of vocabulary.json).
NOUNS = {"noise": "noise", "blur": "blur", "motion": "motion blur", "jpeg": "JPEG artifacts",
         "lowres": "low resolution", "lowlight": "low light", "haze": "haze"}
INTENSIFIERS = {"very", "really", "quite", "rather", "fairly", "too"}
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_END_PUNCT = re.compile(r"[\s.!?]+$")
_MARKDOWN = re.compile(r"\*\*|__|`|^\s*(?:#+|[-*\u2022]|\d+[.)])\s+", re.MULTILINE)
_DETERMINERS = {"a", "an", "the", "this", "that", "its", "their", "his", "her", "our", "my", "your"}


def _phrase(pattern: str) -> str:
    """A vocabulary pattern as a regex: a space also matches a hyphen; word boundaries added."""
    pattern = pattern.replace(" ?", r"[\s\-]?").replace(" ", r"[\s\-]+")
    return r"(?<![a-z0-9])(?:" + pattern + r")(?![a-z0-9])"


@dataclass(frozen=True)
class Vocabulary:
    """The compiled contents of ``vocabulary.json``."""
    terms: list[tuple[str, bool, re.Pattern]]          # (kind, strong, regex)
    levels: list[tuple[str, re.Pattern]]                # (level, regex anchored at the end)
    level_severity: dict[str, float]
    default_level: str
    negation: re.Pattern
    negation_suffix: re.Pattern
    delimiter: re.Pattern
    quality_words: frozenset[str]

    @classmethod
    def load(cls, path: Path | str = VOCABULARY_FILE) -> "Vocabulary":
        data = json.loads(Path(path).read_text())
        terms = []
        for kind, entry in data["kinds"].items():
            if kind not in NOUNS:
                raise ValueError(f"{path}: unknown degradation kind {kind!r}; expected one of {sorted(NOUNS)}")
            for strong in (True, False):
                for pat in entry["strong" if strong else "weak"]:
                    terms.append((kind, strong, re.compile(_phrase(pat))))
        levels = [(lv, re.compile(_phrase(p) + r"[\s,]*$")) for lv, pats in data["levels"].items() for p in pats]
        breaks = "|".join(["and", "with"] + data["clause_breaks"])
        return cls(
            terms=terms, levels=levels, level_severity=dict(data["level_severity"]),
            default_level=data["default_level"],
            negation=re.compile("|".join(_phrase(n) for n in data["negations"])),
            negation_suffix=re.compile(r"^[\s\-]?(?:" + "|".join(data["negation_suffixes"]) + r")(?![a-z])"),
            delimiter=re.compile(r"(\s*[,;:]\s*|\s+(?:" + breaks + r")\s+)", re.IGNORECASE),
            quality_words=frozenset(w.lower() for w in data["quality_words"]) | {"and", "but", "with"},
        )


@functools.lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """The shipped vocabulary (parsed once)."""
    return Vocabulary.load()


@dataclass(frozen=True)
class Mention:
    """One degradation term found in a clause: its kind, level and character span (with modifiers)."""
    kind: str
    level: str
    strong: bool
    negated: bool
    start: int
    end: int


@dataclass
class CaptionSplit:
    """A caption cut into what the image shows and what is wrong with it."""
    caption: str
    content: str
    degradations: list[Degradation] = field(default_factory=list)

    @property
    def degradation_text(self) -> str:
        """The degradations in M3UNet's training phrasing (most severe first; "" if none)."""
        return restoration_text(self.degradations)


def _mentions(clause: str, vocab: Vocabulary) -> list[Mention]:
    """Degradation terms in a lower-case clause; overlapping matches keep the longest."""
    found = []
    for kind, strong, rx in vocab.terms:
        for m in rx.finditer(clause):
            found.append((m.start(), m.end(), kind, strong))
    found.sort(key=lambda t: (t[0], -(t[1] - t[0])))
    kept: list[tuple[int, int, str, bool]] = []
    for s, e, kind, strong in sorted(found, key=lambda t: -(t[1] - t[0])):
        if all(e <= ks or s >= ke for ks, ke, _, _ in kept):
            kept.append((s, e, kind, strong))
    out = []
    for s, e, kind, strong in sorted(kept):
        # Severity words right before the term ("very slightly blurry"), or after it ("the noise is heavy").
        start, mods = s, []
        while True:
            prefix = clause[:start]
            hit = next(((lv, m) for lv, rx in vocab.levels if (m := rx.search(prefix))), None)
            if hit is None:
                break
            mods.insert(0, (hit[0], prefix[hit[1].start():].strip(" ,")))
            start = hit[1].start()
        after = re.match(r"\s+(?:is|are|was|were|appears|seems|looks|remains)\s+(?:(?:very|quite|rather|fairly|really)\s+)?"
                         r"([a-z]+)", clause[e:])
        if not mods and after:
            lv = next((lv for lv, rx in vocab.levels if rx.search(after.group(1))), None)
            if lv:
                mods.append((lv, after.group(1)))
        plain = [lv for lv, word in mods if word.split()[0] not in INTENSIFIERS]
        lv = plain[0] if plain else (mods[0][0] if mods else vocab.default_level)
        suffix = vocab.negation_suffix.match(clause[e:])
        negated = bool(vocab.negation.search(clause[:start])) or suffix is not None
        out.append(Mention(kind, lv, strong, negated, start, e + (suffix.end() if suffix else 0)))
    return out


def _content_words(clause: str, mentions: list[Mention], vocab: Vocabulary) -> list[str]:
    rest = clause
    for m in sorted(mentions, key=lambda m: -m.start):
        rest = rest[:m.start] + " " + rest[m.end:]
    return [w for w in _WORD.findall(rest) if w not in vocab.quality_words
            and not vocab.negation.fullmatch(w) and not w.isdigit()]


def _tidy(text: str) -> str:
    """Clean up what inline removal leaves behind (orphan words, doubled commas, spaces)."""
    for _ in range(3):
        text = re.sub(r"\s+", " ", text)
        text = re.sub(r"\s+([,;:.!?])", r"\1", text)
        text = re.sub(r"([,;:])\s*(?=[,;:.!?]|$)", "", text)
        text = re.sub(r"\b(?:with|and|or|of|from|by|has|have|shows|showing|but|is|are|in|at|on|to|for|under)\s*(?=[,;:.!?]|$)", "", text,
                      flags=re.IGNORECASE)
        text = re.sub(r"^\s*[,;:]\s*", "", text)
        text = re.sub(r"\b(a|an|the)\s*,\s*", r"\1 ", text, flags=re.IGNORECASE)
        text = re.sub(r"\b([Aa])n(?=\s+[b-df-hj-np-tv-z])", r"\1", text)
        text = re.sub(r"\b([Aa])(?=\s+[aeio])", r"\1n", text)
    return text.strip(" ,;:")


def _normalise_lines(caption: str, vocab: Vocabulary) -> str:
    """Markdown and list answers ("- **Noise:** moderate") -> plain sentences ("moderate Noise.")."""
    text = _MARKDOWN.sub("", caption)
    lines = []
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z][A-Za-z \-/]*?)\s*[:\-\u2013]\s*([A-Za-z][A-Za-z ]*?)[\s.;,]*$", line)
        if m and _mentions(m.group(1).lower(), vocab):
            value = m.group(2).lower()
            if vocab.negation.search(value) or value in {"absent", "n/a", "na", "not present", "none detected"}:
                line = f"no {m.group(1)}."
            elif any(rx.search(value) for _, rx in vocab.levels):
                line = f"{value} {m.group(1)}."
        lines.append(line)
    return "\n".join(lines)


def split_caption(caption: str, vocab: Vocabulary | None = None) -> CaptionSplit:
    """Cut ``caption`` into content (degradation words removed) and degradations (normalised)."""
    vocab = vocab or vocabulary()
    caption_in, caption = caption, _normalise_lines(caption, vocab)
    found: dict[str, str] = {}
    order = ("light", "moderate", "heavy")
    sentences_out = []
    for sentence in _SENTENCE.split(caption.strip()):
        end = _END_PUNCT.search(sentence)
        punct = (end.group(0).strip() or ".") if end else "."
        body = sentence[:end.start()] if end else sentence
        parts = vocab.delimiter.split(body)
        pieces = [("", parts[0])] + [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
        kept = []
        for i, (delim, clause) in enumerate(pieces):
            low = clause.lower()
            mentions = _mentions(low, vocab)
            words = _content_words(low, mentions, vocab)
            quality = not words
            for m in mentions:
                if not m.negated and (m.strong or quality):
                    found[m.kind] = max(found.get(m.kind, m.level), m.level, key=order.index)
            text = clause
            for m in sorted((m for m in mentions if m.strong), key=lambda m: -m.start):
                text = text[:m.start] + text[m.end:]
            if quality:
                # "This is a low-resolution, pixelated picture of ...": the noun phrase goes on
                # after the comma, so keep the words before the degradation terms.
                left = _WORD.findall(text.lower())
                if (i == 0 and len(pieces) > 1 and pieces[1][0].strip() == "," and left
                        and left[-1] in _DETERMINERS and not any(m.negated for m in mentions)):
                    kept.append((delim, text))
                continue
            if delim.strip().lower() in {"with", "and", "but"} and not _WORD.search(text.lower()):
                continue
            kept.append((delim, text))
        if not kept:
            continue
        kept[0] = ("", kept[0][1])
        out = _tidy("".join(d + t for d, t in kept).strip())
        if out and _content_words(out.lower(), [], vocab):
            sentences_out.append(out[0].upper() + out[1:] + punct)
    degs = [Degradation(k, vocab.level_severity[lv]) for k, lv in found.items()]
    return CaptionSplit(caption_in, " ".join(sentences_out), sorted(degs, key=lambda d: -d.severity))


def parse_degradations(text: str) -> list[Degradation]:
    """The degradations a free-form text names (most severe first)."""
    return split_caption(text).degradations


def fuse(*sources: list[Degradation]) -> list[Degradation]:
    """Union of degradation lists (e.g. the MLLM's and the classifier's); the most severe reading per kind."""
    best: dict[str, Degradation] = {}
    for degs in sources:
        for d in degs or []:
            k = LABEL.get(d.kind, d.kind)
            if k not in best or d.severity > best[k].severity:
                best[k] = Degradation(k, d.severity)
    return sorted(best.values(), key=lambda d: -d.severity)


def restoration_text(degs: list[Degradation]) -> str:
    """M3UNet's canonical restoration text (:func:`m3unet.core.text.describe`) for ``degs``."""
    from ..core.text import describe
    return describe(fuse(degs))


def degradation_sentence(degs: list[Degradation]) -> str:
    """A plain sentence naming ``degs`` ("Quality problems: heavy noise, moderate blur.") that
    :func:`split_caption` reads back exactly; "" when there is nothing."""
    degs = fuse(degs)
    if not degs:
        return ""
    return "Quality problems: " + ", ".join(f"{level(d.severity)} {NOUNS[d.kind]}" for d in degs) + "."
