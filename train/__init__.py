"""Host-side training for hopwise: the data every model learns from, the parts every model
shares, and one module per model.

Data (``python -m train.corpus --profile default`` builds and inspects the corpus):

* `train.corpus` — the profile's corpus (synthetic or real), cached and split by group;
* `train.datasets`, `train.audio_io`, `train.splits` — dataset loaders, file decoding, splits;
* `train.synth` — the built-in synthetic corpus (espeak-ng speech, scenes, drum hits).

Shared by every model (a new model is one module that uses these):

* `train.waveforms` — fit_length, level (rms), mixing at an SNR or a share, time shift, speed
  perturbation (soxr, `device.resample`), background noise, gain;
* `train.features` — batch log-mel through `device.frontend`, the `Normalizer`, SpecAugment;
* `train.loop` — the Keras loop (fresh examples per epoch, early stopping, best checkpoint,
  warm start), the run's files (`RunFiles`), curves, and the deployed-variant choice.
  Folders come from `device.paths.BuildPaths`, profile values from ``cfg[...]``.

Models, one module each (``python -m train.<model> --help``):

* `train.multitask` — the keyword + scene DS-CNN and its variants (``kw`` ... ``mt60j``);
* `train.esn` — the echo state network for vocal percussion (grid reservoir, frame labels,
  the scikit-learn-shaped estimator fit on the device's fixed-point states, CV by recording,
  the search), exported by `export.esn`;
* `train.classifiers` — the two environmental sound classifiers (log-mel CNN after Piczak
  2015, bottleneck ResNet; segments, voting), exported by `export.classifiers`;
* coming: ``train.separation`` (the DANet source separator).

Nothing here imports `export` or `evaluation`: export uses training, evaluation uses both.
"""
