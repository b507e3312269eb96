"""The agent's settings, declared once: each key with its type, default, check and help.

The TOML loader, the error messages and the operator documentation
(``stb-widget config-doc``) all come from the declarations below.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from protocol.limits import BOX_ID_PATTERN

from .errors import ConfigError

_REQUIRED = object()
Check = Callable[[Any], str | None]


def setting(
    default: Any = _REQUIRED, help: str = "", check: Check | None = None, *, secret: bool = False
) -> Any:
    """Declare one key. Without ``default`` it is required; a ``secret`` is never shown."""
    meta = {"help": help, "check": check, "required": default is _REQUIRED}
    if default is _REQUIRED:
        return field(metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def _between(lo: float, hi: float, what: str = "a number") -> Check:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be {what} between {lo:g} and {hi:g}"

    return check


def _at_least(lo: float) -> Check:
    def check(v: Any) -> str | None:
        return None if v >= lo else f"must be at least {lo:g}"

    return check


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else "must be one of " + ", ".join(repr(c) for c in choices)

    return check


def _nonempty(v: Any) -> str | None:
    return None if v.strip() else "must not be empty"


#: What an example configuration's token looks like (never a real one: tokens are random).
_PLACEHOLDER = re.compile(r"replace|changeme|change-me|placeholder|your[-_ ]?token|^\.+$|<[^>]*>",
                          re.IGNORECASE)


def _token(v: Any) -> str | None:
    if not v.strip():
        return "must not be empty"
    if _PLACEHOLDER.search(v):
        # The value itself is not repeated: whatever it is, it sits in the token's place.
        return ("is still the example's placeholder; set this box's upload token, the "
                "output of `nps-collector box-token <box_id>`")
    return None


def _box_id(v: Any) -> str | None:
    return None if re.fullmatch(BOX_ID_PATTERN, v) else "must be 1 to 64 of A-Z a-z 0-9 . _ : -"


def _url(v: Any) -> str | None:
    return None if re.match(r"^https?://[^/\s]+", v) else "must be an http:// or https:// URL"


def _regex(v: Any) -> str | None:
    try:
        re.compile(v)
    except re.error as exc:
        return f"not a valid regular expression ({exc})"
    return None


_HHMM = r"([01]\d|2[0-3]):([0-5]\d)"


def _quiet(v: Any) -> str | None:
    if v == "" or re.fullmatch(f"{_HHMM}-{_HHMM}", v):
        return None
    return 'must be "" (off) or a local time range such as "23:00-07:00"'


def parse_quiet_hours(text: str) -> tuple[int, int] | None:
    """``"23:00-07:00"`` as minutes after midnight (start, end); None when off."""
    m = re.fullmatch(f"{_HHMM}-{_HHMM}", text)
    if m is None:
        return None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    return h1 * 60 + m1, h2 * 60 + m2


@dataclass(frozen=True, slots=True, kw_only=True)
class BoxSection:
    """The box's attributes, sent with every batch as its report segments."""

    model: str = setting("", "Hardware model, sent as the batch's box.model (\"\" = not sent).")
    firmware: str = setting("", "Firmware version, sent as box.firmware (\"\" = not sent).")
    region: str = setting("", "Region code, sent as box.region (\"\" = not sent).")


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorSection:
    """Where and how records are uploaded."""

    url: str = setting(help="The collector's base URL; batches go to <url>/v1/batches.", check=_url)
    token: str = setting(
        help="This box's upload token (never logged; a placeholder such as the example's is "
        "refused).", check=_token, secret=True
    )
    upload_delay_s: float = setting(
        60.0, "A finished record waits at most this long for a batch to fill.", _at_least(0)
    )
    boot_jitter_s: float = setting(
        300.0, "Random wait, up to this, before the first upload after start.", _at_least(0)
    )
    timeout_s: float = setting(30.0, "Whole-request timeout of one upload.", _at_least(1))
    connect_timeout_s: float = setting(10.0, "Connect timeout of one upload.", _at_least(1))
    backoff_base_s: float = setting(2.0, "Retry backoff base (full jitter, doubling).", _at_least(0.01))
    backoff_cap_s: float = setting(600.0, "Retry backoff cap.", _at_least(0.01))
    auth_pause_s: float = setting(
        1800.0, "After a 401 or 403, uploads pause this long (nothing is deleted).",
        _at_least(0.01),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayerSection:
    """Where the player's events come from."""

    source: str = setting(help='"mpv" (mpv\'s JSON IPC) or "events" (JSON lines).',
                          check=_one_of("mpv", "events"))
    mpv_socket: str = setting("/run/mpv.sock", "With source = \"mpv\": mpv's --input-ipc-server.")
    events_socket: str = setting(
        "/run/stb-widget.sock", "With source = \"events\": the unix socket the agent listens on."
    )
    reconnect_max_s: float = setting(
        5.0, "With source = \"mpv\": longest wait between reconnect attempts.", _at_least(0.05)
    )
    channel_from: str = setting(
        "media-title", "With source = \"mpv\": the mpv property that names the channel "
        "(\"media-title\", \"path\", \"filename\", \"metadata/by-key/<KEY>\", ...; \"\" = none). "
        "A media-title that is only the file name does not count.",
    )
    channel_pattern: str = setting(
        "", "With source = \"mpv\": a regular expression searched in that property; its group "
        "\"channel\" (else the whole match) is the channel; no match = null; \"\" = all of it.",
        _regex,
    )
    content_type_live: str = setting(
        "", "With source = \"mpv\": a regular expression; where it is found in mpv's path, the "
        "content type is \"live\" (\"\" = never).", _regex,
    )
    content_type_vod: str = setting(
        "", "Likewise for \"vod\" (tried after live).", _regex,
    )
    content_type_catchup: str = setting(
        "", "Likewise for \"catchup\" (tried after vod).", _regex,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SurveySection:
    """When and how the question is asked."""

    enabled: bool = setting(True, "Ask the question at all.")
    sample_rate: float = setting(
        0.05, "Share of eligible sessions that are asked.", _between(0, 1)
    )
    min_watch_s: float = setting(600.0, "Shorter sessions are never surveyed.", _at_least(0))
    settle_s: float = setting(
        3.0, "The player must stay idle this long after a session ends before the question "
        "comes; a play in that time makes the session a zap (reason zapped); 0 = ask at once.",
        _between(0, 3600),
    )
    cooldown_answered_days: float = setting(
        90.0, "No question for this long after an answered one (from when it was shown).",
        _at_least(0),
    )
    cooldown_dismissed_days: float = setting(
        30.0, "No question for this long after a dismissed or timed-out one.", _at_least(0)
    )
    timeout_s: float = setting(60.0, "No key pressed for this long: outcome \"timeout\".",
                               _at_least(1))
    locale: str = setting("nl", "The question's language.", _nonempty)
    service_name: str = setting("IPTV", "The service named in the question.", _nonempty)
    tty: str = setting("", "Terminal the question is drawn on, e.g. \"/dev/tty1\"; \"\" = the "
                       "agent's own terminal.")
    quiet_hours: str = setting("", "Local time range with no questions, e.g. \"23:00-07:00\"; "
                               "\"\" = off.", _quiet)
    presenter: str = setting(
        "stb_widget.ui.presenter:TextualPresenter",
        "module:Class of the question presenter, imported only when a question is due.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferSection:
    """Bounds of the offline buffer."""

    max_bytes: int = setting(8 * 1024 * 1024, "Records kept, in bytes of JSON.", _at_least(4096))
    max_records: int = setting(20_000, "Records kept.", _at_least(10))
    max_age_days: float = setting(30.0, "Records older than this are dropped.", _at_least(0.01))


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration of one agent."""

    box_id: str = setting(help="This box's id: 1 to 64 of A-Z a-z 0-9 . _ : -", check=_box_id)
    data_dir: str = setting(help="Directory of the offline buffer.", check=_nonempty)
    log_level: str = setting("info", "Log level.", _one_of("debug", "info", "warning", "error"))
    box: BoxSection = field(default_factory=BoxSection)
    collector: CollectorSection = field(metadata={"required": True})
    player: PlayerSection = field(metadata={"required": True})
    survey: SurveySection = field(default_factory=SurveySection)
    buffer: BufferSection = field(default_factory=BufferSection)

    @property
    def db_path(self) -> Path:
        """The buffer's sqlite file."""
        return Path(self.data_dir) / "buffer.sqlite3"


_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _section_types(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _convert(key: str, hint: Any, value: Any) -> Any:
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(key, f"must be {_TYPE_WORDS.get(hint, hint.__name__)}")
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = _section_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in raw:
        if name not in fields:
            raise ConfigError(prefix + name, "unknown key")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            sub = raw.get(name, {})
            if not isinstance(sub, dict):
                raise ConfigError(key, "must be a table")
            if f.metadata.get("required") and name not in raw:
                missing = next(iter(_required_keys(hint)), None)
                raise ConfigError(f"{key}.{missing}" if missing else key, "is required")
            values[name] = _build(hint, sub, key + ".")
            continue
        if name not in raw:
            if f.metadata.get("required"):
                raise ConfigError(key, "is required")
            continue
        value = _convert(key, hint, raw[name])
        check = f.metadata.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(key, problem)
        values[name] = value
    return cls(**values)


def _required_keys(cls: type) -> Iterator[str]:
    for f in dataclasses.fields(cls):
        if f.metadata.get("required"):
            yield f.name


def parse_config(raw: dict[str, Any]) -> Config:
    """Check a parsed TOML document against the declared settings."""
    cfg: Config = _build(Config, raw, "")
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and check a TOML file; every problem is a :class:`ConfigError` naming the key."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from exc
    return parse_config(raw)


def iter_settings(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, Any, Any, str, bool]]:
    """Every declared key: (dotted key, type, default, help, required)."""
    hints = _section_types(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from iter_settings(hint, f"{prefix}{f.name}.")
            continue
        default = None if f.default is dataclasses.MISSING else f.default
        yield (prefix + f.name, hint, default, f.metadata.get("help", ""),
               bool(f.metadata.get("required")))


def config_doc() -> str:
    """The Markdown table of every key, generated from the declarations."""
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, hint, default, text, required in iter_settings():
        shown = "required" if required else f"`{_toml_value(default)}`"
        lines.append(f"| `{key}` | {hint.__name__} | {shown} | {text} |")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
