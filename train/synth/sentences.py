"""Random English sentences for running-speech negatives, from a small built-in vocabulary.

A device spends its day hearing people talk, not hearing isolated words: its false wake-ups
come from windows of running speech (the ends and starts of words, coarticulated), which a
clip corpus of centred words never shows the model. These sentences are what the synthesisers
read to make such windows (`train.corpus`, ``data.synthetic.running_speech_clips``). They need
no meaning, only the sounds and rhythm of ordinary speech: simple templates over a vocabulary of
common words, seeded, offline, and free of the profile's keywords (a window that holds "stop"
must not teach the model that "stop" is unknown).

    >>> rng = np.random.default_rng(0)
    >>> sentence(rng, exclude={"computer", "yes", "no"})   # doctest: +SKIP
    'the small garden was painted yesterday'
"""
from __future__ import annotations

import numpy as np

__all__ = ["VOCABULARY", "TEMPLATES", "sentence"]

# Common words by part of speech (plain, frequent, phonetically varied). Keep every entry
# lower-case; the keywords of a profile are removed at draw time, not here.
VOCABULARY = {
    "det": ["the", "a", "my", "your", "our", "this", "that", "every", "some", "her", "his",
            "their"],
    "adj": ["small", "big", "old", "new", "green", "bright", "quiet", "heavy", "early", "late",
            "warm", "cold", "empty", "busy", "careful", "simple", "strange", "yellow", "tired",
            "happy", "broken", "famous", "gentle", "rough", "sudden", "little", "modern",
            "public", "private", "useful", "wooden", "purple", "narrow", "tall"],
    "noun": ["garden", "window", "teacher", "letter", "morning", "kitchen", "river", "market",
             "doctor", "table", "mountain", "picture", "bottle", "paper", "station", "village",
             "engine", "father", "mother", "sister", "brother", "company", "office", "problem",
             "question", "answer", "dinner", "weather", "minute", "number", "pocket", "basket",
             "camera", "telephone", "ticket", "computer", "pepper", "hammer", "corner", "summer",
             "winter", "blanket", "chicken", "police", "museum", "library", "student", "banana",
             "potato", "tomato", "carpet", "jacket", "bucket", "monkey", "rabbit", "capital",
             "concert", "customer", "partner", "neighbour", "package", "report", "meeting"],
    "verb_past": ["opened", "painted", "carried", "wanted", "needed", "found", "brought",
                  "cleaned", "watched", "finished", "started", "counted", "pushed", "pulled",
                  "visited", "cooked", "fixed", "closed", "moved", "sold", "bought", "kept",
                  "lost", "paid", "sent", "wrote", "read", "heard", "saw", "met", "called",
                  "answered", "collected", "repaired", "followed", "compared", "completed",
                  "explained", "described", "promised"],
    "verb_base": ["open", "paint", "carry", "want", "need", "find", "bring", "clean", "watch",
                  "finish", "start", "count", "push", "pull", "visit", "cook", "fix", "close",
                  "move", "sell", "buy", "keep", "pay", "send", "write", "read", "hear", "see",
                  "meet", "call", "answer", "collect", "repair", "follow", "compare",
                  "complete", "explain", "describe", "remember", "consider"],
    "adv": ["yesterday", "today", "quickly", "slowly", "again", "later", "often", "never",
            "always", "carefully", "together", "outside", "inside", "tomorrow", "almost",
            "really", "probably", "suddenly", "finally", "already"],
    "prep": ["in", "on", "near", "behind", "under", "after", "before", "with", "without",
             "from", "into", "across", "beside", "around", "between"],
    "pron": ["she", "he", "we", "they", "you", "I", "somebody", "nobody", "everyone"],
    "aux": ["will", "can", "should", "might", "could", "would", "must"],
}

# Each template is a sequence of parts of speech; literal words start with "=".
TEMPLATES = [
    ("det", "adj", "noun", "verb_past", "det", "noun", "adv"),
    ("pron", "verb_past", "det", "noun", "prep", "det", "adj", "noun"),
    ("det", "noun", "prep", "det", "noun", "=was", "adj"),
    ("pron", "aux", "verb_base", "det", "adj", "noun", "adv"),
    ("=did", "pron", "verb_base", "det", "noun", "prep", "det", "noun"),
    ("adv", "pron", "verb_past", "det", "noun", "=and", "det", "noun"),
    ("det", "noun", "=is", "adj", "=but", "det", "noun", "=is", "adj"),
    ("pron", "=said", "=that", "det", "noun", "verb_past", "det", "adj", "noun"),
    ("=please", "verb_base", "det", "noun", "prep", "det", "noun"),
    ("=where", "=is", "det", "adj", "noun"),
    ("pron", "verb_past", "=it", "adv", "=because", "det", "noun", "=was", "adj"),
    ("det", "adj", "adj", "noun", "verb_past", "prep", "det", "noun"),
]


def sentence(rng: np.random.Generator, exclude=()) -> str:
    """One random sentence, with none of the words in ``exclude`` (case-insensitive).

    Parameters
    ----------
    rng : numpy.random.Generator
        All randomness: the same generator state gives the same sentence.
    exclude : iterable of str
        Words and phrases never to say: the profile's keywords and wake word. A multi-word
        phrase excludes each of its words.
    """
    banned = {w for phrase in exclude for w in str(phrase).lower().split()}
    # A template's literal words are excluded too, by leaving out the templates that say one
    # (with no literal banned the list, and so the draws, are the same as without the filter).
    templates = [t for t in TEMPLATES
                 if not any(p.startswith("=") and p[1:] in banned for p in t)]
    if not templates:
        raise ValueError("every sentence template says an excluded word")
    template = templates[int(rng.integers(len(templates)))]
    words = []
    for part in template:
        if part.startswith("="):
            words.append(part[1:])
            continue
        choices = [w for w in VOCABULARY[part] if w.lower() not in banned]
        if not choices:
            raise ValueError(f"every {part!r} word of the sentence vocabulary is excluded")
        words.append(choices[int(rng.integers(len(choices)))])
    return " ".join(words)
