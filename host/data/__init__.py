"""Keyword datasets: a folder per class on disk -> labelled clips in train/validation/test, as arrays.

The on-disk layout is Google Speech Commands': one folder per word, any audio format soundfile reads,
`_background_noise_/` for long noise recordings, and optionally `validation_list.txt` /
`testing_list.txt` naming the clips of those splits. A real Speech Commands tree loads as is. What the
loader makes of it, for the words asked for:

- **splits**: the list files when the root has them; otherwise a stable split by speaker, the sha1 of
  the file name part before `_nohash_` (in `_unknown_/`, after the leading word) or of the whole name,
  so one speaker's clips never cross splits and adding files never moves old ones;
- **`_unknown_`**: clips of the folders that are not target words plus an `_unknown_/` folder, taken
  per split at `unknown_ratio` times the mean keyword count, spread evenly over the other words;
- **`_silence_`**: a `_silence_/` folder's clips plus clips cut from the background recordings at
  random levels (some near digital silence), `silence_ratio` times the mean keyword count; each
  recording is cut by time into train/validation/test parts so no stretch of noise crosses splits, and
  `Dataset.noise` (for augmentation) is the train part only. A dataset without recordings gets
  synthetic coloured noise and hum (`tinyear.host.noise`) instead, and says so in its summary;
- **class balance** is left to the trainer, with `class_weights(split)` (inverse frequency, for the
  loss) and `sample_weights(split)` (for a weighted sampler): arrays are never oversampled, so the
  validation and test numbers are measured on the real class mix, and a thin class is weighted up,
  not copied;
- **several roots** (say real recordings plus a synthetic fill) load as one dataset, the union.

`Dataset.arrays(split)` returns fixed-length waveforms (`fit_clip` applied) and label indices,
computed once and cached on disk (`.npy` in the user's cache folder, `tinyear.host.cache`, keyed by the
dataset and frontend fingerprints, written atomically). Unreadable files are skipped with a warning
that counts them.

The modules, by seam: `layout` (folder names, reserved labels, `Clip`), `scan` (reading a root),
`speakers` (the speaker split), `silence` (background noise and `_silence_` clips), `load`
(`load_dataset`, in named steps), `dataset` (`Dataset`), `wavecache` (the arrays' cache). Import from
this package. Imports numpy, soundfile, tqdm and `tinyear.device`; never torch.
"""

from .dataset import Dataset
from .layout import (AUDIO_SUFFIXES, BACKGROUND, SILENCE, SOURCES, SPLITS, SYNTH_MANIFEST, TESTING_LIST, UNKNOWN,
                     VALIDATION_LIST, WORDS, Clip, default_labels)
from .load import load_dataset
from .silence import NEAR_SILENCE_FRACTION, NEAR_SILENCE_RMS_DB, SILENCE_RMS_DB
from .speakers import speaker_of, speaker_split
from .wavecache import CACHE_VERSION

__all__ = ["AUDIO_SUFFIXES", "BACKGROUND", "CACHE_VERSION", "Clip", "Dataset", "NEAR_SILENCE_FRACTION",
           "NEAR_SILENCE_RMS_DB", "SILENCE", "SILENCE_RMS_DB", "SOURCES", "SPLITS", "SYNTH_MANIFEST", "TESTING_LIST",
           "UNKNOWN", "VALIDATION_LIST", "WORDS", "default_labels", "load_dataset", "speaker_of", "speaker_split"]
