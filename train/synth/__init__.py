"""The built-in synthetic corpus: espeak-ng speech, procedural scenes, drum hits, augmentation.

Offline and deterministic: every clip comes from a generator seeded by the project seed, the
kind of clip, its class and its index (`keywords.clip_rng`). Level and mixing helpers are the
shared `train.waveforms` ones.
"""
from .augment import (NOISE_COLOURS, apply_room, coloured_noise, place_in_window, random_segment,
                      room_impulse_response)
from .household import HOUSEHOLD_GENERATORS, generate_household
from .keywords import (augment_keyword, clip_rng, fit_into, noise_recording, plan_take,
                       render_take, silence_clip)
from .percussion import PERCUSSION_GENERATORS, drum_hit, percussion_clip
from .scenes import SCENE_GENERATORS, generate_scene
from .speech import VOICES, SpeechSynthError, Take, backend_name, synthesize, trim_silence

__all__ = [
    "NOISE_COLOURS", "apply_room", "coloured_noise", "place_in_window", "random_segment",
    "room_impulse_response", "augment_keyword", "clip_rng", "fit_into",
    "noise_recording", "plan_take", "render_take", "silence_clip", "PERCUSSION_GENERATORS",
    "drum_hit", "percussion_clip", "SCENE_GENERATORS", "generate_scene", "VOICES",
    "SpeechSynthError", "Take", "backend_name", "synthesize", "trim_silence",
    "HOUSEHOLD_GENERATORS", "generate_household",
]
