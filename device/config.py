"""One configuration system for host and device: TOML profiles with inheritance.

A profile is a TOML file. Built-in profiles live in ``device/profiles/`` (``default``,
``real``); a user's own profile is any path to a ``.toml`` file. A profile may name another in
``extends`` and then only lists what differs. Command-line overrides use dotted keys::

    cfg = load_config("default", overrides=["model.multitask.epochs=3"])
    cfg["frontend.keyword.hop_ms"]         # 10.0
    cfg.section("frontend.keyword")         # a plain dict
    cfg.hash("frontend", "data")            # stable digest, e.g. to key a data cache

Errors name the profile, the key and the fix.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 on older Pi images
    import tomli as tomllib  # type: ignore[no-redef]

from . import schema  # noqa: E402

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A profile cannot be loaded or holds a bad value; the message says which and how to fix it."""


def available_profiles() -> list[str]:
    """Names of the built-in profiles."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _resolve(profile: str | Path, base_dir: Path | None = None) -> Path:
    """A profile name or path -> its file. A path in ``extends`` is relative to the profile
    that names it (``base_dir``), not to the current directory."""
    if not isinstance(profile, (str, Path)) or not str(profile):
        raise ConfigError(f"a profile must be named by a string (a built-in name or a path to a "
                          f".toml file), got {profile!r}")
    path = Path(profile).expanduser()
    if base_dir is not None and not path.is_absolute():
        beside = base_dir / path
        if beside.suffix == ".toml" or beside.exists():
            path = beside
    if path.is_dir():
        raise ConfigError(f"profile {path} is a folder; give a .toml file in it or one of the "
                          f"built-in profiles: {', '.join(available_profiles())}")
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise ConfigError(f"profile file {path} does not exist; give a path to a .toml file "
                              f"or one of the built-in profiles: {', '.join(available_profiles())}")
        return path
    builtin = PROFILE_DIR / f"{profile}.toml"
    if not builtin.exists():
        raise ConfigError(f"unknown profile {profile!r}; built-in profiles are "
                          f"{', '.join(available_profiles())}, or give a path to a .toml file")
    return builtin


def _leaves(value: Any, dotted: str):
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{dotted}.{k}")
    else:
        yield dotted


def _merge(base: dict, top: Mapping, origins: dict | None = None, source: str = "",
           _prefix: str = "") -> dict:
    """``top`` over ``base``; ``origins`` (dotted key -> source) records where leaves came from."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        dotted = f"{_prefix}{key}"
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origins, source, dotted + ".")
        else:
            out[key] = copy.deepcopy(value)
            if origins is not None:
                for leaf in _leaves(value, dotted):
                    origins[leaf] = source
    return out


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _read(path: Path, seen: tuple[Path, ...] = (), origins: dict | None = None) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"profile {path} extends itself through {' -> '.join(map(str, seen))}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"profile {path} is not valid TOML ({exc}); fix the line it names") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"profile {path} cannot be read ({exc}); check the file") from exc
    parent = data.pop("extends", None)
    source = _display(path)
    if parent is None:
        return _merge({}, data, origins, source)
    base = _read(_resolve(parent, path.parent), seen + (path,), origins)
    return _merge(base, data, origins, source)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: `sinks.mqtt.host=broker.local`


class Config(Mapping):
    """A loaded profile: nested sections, read with dotted keys.

    Parameters
    ----------
    data : dict
        The merged profile.
    name : str
        Where it came from, for error messages.
    origins : dict, optional
        Dotted key -> where its value came from (a profile file, ``--set``); see `origin`.
    """

    def __init__(self, data: dict, name: str = "<dict>", origins: Mapping[str, str] | None = None):
        self._data = data
        self.name = name
        self._origins = dict(origins or {})

    def origin(self, key: str) -> str:
        """Where the value of ``key`` came from: a profile file, ``--set``, or "the profile"."""
        if key in self._origins:
            return self._origins[key]
        inner = next((v for k, v in self._origins.items() if k.startswith(key + ".")), None)
        return inner or f"profile {self.name}"

    # Mapping interface over the top level, dotted keys for depth.
    def __getitem__(self, key: str) -> Any:
        node: Any = self._data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"profile {self.name} has no setting {key!r}; add it to the "
                                  f"profile or pass --set {key}=VALUE")
            node = node[part]
        return node

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except ConfigError:
            return default

    def section(self, key: str) -> dict:
        value = self[key]
        if not isinstance(value, dict):
            raise ConfigError(f"{key!r} in profile {self.name} is a value, not a section")
        return copy.deepcopy(value)

    def to_dict(self) -> dict:
        return copy.deepcopy(self._data)

    def hash(self, *keys: str, length: int = 12) -> str:
        """Stable short digest of the named sections (all of them when none is named)."""
        payload = {k: self[k] for k in keys} if keys else self._data
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:length]

    def with_overrides(self, overrides: Iterable[str]) -> "Config":
        data = copy.deepcopy(self._data)
        origins = dict(self._origins)
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value, "
                                  f"e.g. model.multitask.epochs=3")
            key, text = item.split("=", 1)
            parts = key.strip().split(".")
            node = data
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"override {key!r}: {part!r} is a value, not a section")
            node[parts[-1]] = _parse_value(text.strip())
            shown = f"{key.strip()}=<hidden>" if parts[-1] in SECRET_KEYS else item
            for leaf in _leaves(node[parts[-1]], key.strip()):
                origins[leaf] = f"--set {shown}"
        return Config(data, self.name, origins)

    @property
    def build_dir(self) -> Path:
        """The one folder for everything generated, absolute."""
        path = Path(self["project.build_dir"])
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def keyword_labels(self) -> list[str]:
        """The keyword head's labels, in output order."""
        return ["_silence_", "_unknown_", self["labels.wake_word"], *self["labels.commands"]]

    @property
    def head_labels(self) -> dict[str, list[str]]:
        """Every model head's labels by head name, in output order: the one place that says
        which profile labels a head named ``keyword``, ``scene`` or ``percussion`` has (models,
        manifests, evaluation and sinks all ask here)."""
        return {"keyword": self.keyword_labels, "scene": list(self["labels.scenes"]),
                "percussion": list(self["labels.percussion"])}

    def __repr__(self) -> str:
        return f"Config({self.name!r})"


def _toml_value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    raise ConfigError(f"setting {key!r} holds a {type(value).__name__}, which a profile cannot store")


def dump_toml(data: Mapping, _prefix: str = "") -> str:
    """A profile as TOML text that `load_config` reads back to the same values (no ``extends``:
    everything inherited is written out). Used to ship the exact profile with a deploy bundle."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value, _prefix + key)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f"{_prefix}{key}"
        out += f"\n[{name}]\n" + dump_toml(value, name + ".")
    return out


SECRET_KEYS = ("password",)  # never printed: `config --show` and logs show that one is set


def show_config(cfg: Config) -> str:
    """The merged profile as TOML, each value followed by where it came from (``# default.toml``,
    ``# --set ...``); secrets are shown as set or empty, never their value. ``python -m device
    config --show`` prints this."""
    lines: list[str] = [f"# profile {cfg.name}: every setting, with the file or --set it came from"]

    def walk(section: Mapping, prefix: str) -> None:
        values = {k: v for k, v in section.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in section.items() if isinstance(v, Mapping)}
        if values and prefix:
            lines.append(f"\n[{prefix[:-1]}]")
        width = max((len(k) for k in values), default=0)
        for key, value in values.items():
            dotted = prefix + key
            if key in SECRET_KEYS:
                text = '"<set>"' if value else '""'
            else:
                text = _toml_value(value, dotted)
            lines.append(f"{key.ljust(width)} = {text}  # {cfg.origin(dotted)}")
        for key, value in tables.items():
            walk(value, f"{prefix}{key}.")

    walk(cfg.to_dict(), "")
    return "\n".join(lines) + "\n"


def load_config(profile: str | Path = "default", overrides: Iterable[str] = ()) -> Config:
    """Load a built-in profile by name, or a profile file by path, then apply overrides."""
    path = _resolve(profile)
    origins: dict[str, str] = {}
    cfg = Config(_read(path, origins=origins), name=str(profile), origins=origins)
    cfg = cfg.with_overrides(overrides)
    validate(cfg)
    return cfg


def add_profile_arguments(parser, example: str = "model.multitask.epochs=3") -> None:
    """Give a command line the two options every hopwise CLI shares: ``--profile`` and ``--set``.

    Read them back with `config_from_args`. ``example`` is a ``KEY=VALUE`` shown in the help.
    """
    parser.add_argument("--profile", default="default",
                        help=f"built-in profile ({', '.join(available_profiles())}) or a path to "
                             f"a .toml profile (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"override a profile value with a dotted key, e.g. --set {example} "
                             f"(repeatable)")


def config_from_args(args) -> Config:
    """The profile named by ``--profile`` with the ``--set`` overrides applied."""
    return load_config(args.profile, args.overrides)


def validate(cfg: Config) -> None:
    """Check the profile against its schema (`device.schema`: known keys, types, ranges), then
    the relations between values; raise ConfigError naming the key, the value and the fix."""
    try:
        schema.check(cfg.to_dict(), cfg.origin)
    except schema.SchemaError as exc:
        raise ConfigError(str(exc)) from None
    for name, section in cfg["frontend"].items():
        where = f"frontend.{name}"
        rate = section.get("sample_rate")
        if not isinstance(rate, int) or rate <= 0:
            raise ConfigError(f"{where}.sample_rate must be a positive integer in Hz, got {rate!r}")
        if not 0 < section.get("hop_ms", 0) <= section.get("window_ms", 0):
            raise ConfigError(f"{where}: need 0 < hop_ms <= window_ms, got hop_ms="
                              f"{section.get('hop_ms')!r}, window_ms={section.get('window_ms')!r}")
        if "n_mels" in section:
            fmax = section.get("fmax_hz", rate / 2)
            if not 0 <= section.get("fmin_hz", 0) < fmax <= rate / 2:
                raise ConfigError(f"{where}: need 0 <= fmin_hz < fmax_hz <= sample_rate/2 "
                                  f"({rate / 2:g} Hz), got fmin_hz={section.get('fmin_hz')!r}, "
                                  f"fmax_hz={fmax!r}")
    shed, restore = cfg.get("runtime.shed_above"), cfg.get("runtime.restore_below")
    if shed is not None and restore is not None and not restore < shed:
        raise ConfigError(f"runtime.restore_below ({restore!r}) must be below runtime.shed_above "
                          f"({shed!r}): the gap keeps a stage from flapping between shed and "
                          f"restored")
    on, off = cfg.get("decisions.scene_threshold_on"), cfg.get("decisions.scene_threshold_off")
    if on is not None and off is not None and off > on:
        raise ConfigError(f"decisions.scene_threshold_off ({off!r}) must not exceed "
                          f"decisions.scene_threshold_on ({on!r}): that gap is the hysteresis")
    for key in ("labels.wake_word",):
        if not isinstance(cfg.get(key), str) or not cfg.get(key):
            raise ConfigError(f"{key} must be a non-empty string, e.g. \"computer\"")
    dupes = {x for x in cfg.keyword_labels if cfg.keyword_labels.count(x) > 1}
    if dupes:
        raise ConfigError(f"keyword labels repeat {sorted(dupes)}: the wake word must not also be "
                          f"a command; change labels.wake_word or labels.commands")
