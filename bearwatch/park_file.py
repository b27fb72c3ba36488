"""The park configuration file (YAML): sites, their cameras and thresholds, models.

Validated strictly: an unknown key is an error naming the key, and every problem is
reported with where it is (the key path and the line in the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bearwatch.errors import ConfigError
from bearwatch.localtime import UTC_NAME, check_zone
from bearwatch.redact import redact_text
from bearwatch.schema import ChannelKind, ModelRole, WebhookFormat
from bearwatch.smtp_url import parse_smtp_url


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """Gate and guard thresholds (design.md section 5); each can be set per site."""

    # manual -> limited
    shadow_days: float = Field(7, ge=0)
    min_reviewed: int = Field(300, ge=0)
    # sightings (caught + missed); the gate also needs as many as the recall bound can pass
    # with at the site's audit design (shadow.gates.sightings_to_pass: 51 at a full audit)
    min_confirmed_bears: int = Field(51, ge=0)
    min_recall_lower: float = Field(0.90, ge=0, le=1)
    min_precision_lower: float = Field(0.50, ge=0, le=1)
    # limited -> expanded
    trial_days: float = Field(7, ge=0)
    min_alerts_reviewed: int = Field(50, ge=0)
    min_confirmed_share: float = Field(0.5, ge=0, le=1)
    max_missed_bears: int = Field(2, ge=0)
    # alert-rate guard: ratio to the manual baseline must stay inside [low, high]
    alert_ratio_low: float = Field(0.5, gt=0)
    alert_ratio_high: float = Field(2.0, gt=0)
    guard_significance: float = Field(0.05, gt=0, lt=1)
    # the guard counts episodes, not alerts: alerts (and baseline sightings) on one camera
    # less than this apart count once, because one lingering bear sends a burst of alerts
    # and the guard's e-process assumes independent events (docs/calibration.md section 4)
    guard_episode_gap_s: float = Field(3600, ge=0)
    # review and alerting. The audit of unflagged frames is a stratified probability
    # sample (shadow.audit_design): scores from audit_near_from x the model threshold up
    # to it at audit_near_rate, where misses live; the rest at audit_rate by day and
    # audit_night_rate (None: audit_rate) by night. Every stratum's rate is stored with
    # each verdict as the frame's inclusion probability.
    audit_rate: float = Field(0.02, ge=0, le=1)
    audit_night_rate: float | None = Field(None, ge=0, le=1)
    audit_near_rate: float = Field(0.10, ge=0, le=1)
    audit_near_from: float = Field(0.5, ge=0, le=1)
    alert_cooldown_s: float = Field(300, ge=0)
    # a verdict on a frame captured longer ago than the flag staleness window (1 h) sends
    # no live alert ("none": recorded only) or one marked late in its payload ("marked")
    late_alerts: Literal["none", "marked"] = "none"
    # limited: a held alert no ranger decided within this long goes to the alert channels
    # unverified: as a notice that stays held ("notify") or as the alert itself ("send");
    # 0: never. A bear must not go unreported because the night ranger stepped away.
    held_escalation_s: float = Field(600, ge=0)
    held_escalation: Literal["notify", "send"] = "notify"
    # guard: cameras are dark when no enabled camera produced a frame for this long
    dark_after_s: float = Field(3600, gt=0)
    # drift (shadow.drift): the current window, the least frames compared, and when a
    # metric alarms (significant at drift_significance AND at least the effect size)
    drift_window_hours: float = Field(24, gt=0)
    drift_min_frames: int = Field(30, ge=2)
    drift_significance: float = Field(0.01, gt=0, lt=1)
    drift_min_ks: float = Field(0.25, ge=0, le=1)  # KS D of brightness, sharpness, scores
    drift_min_share_change: float = Field(0.15, ge=0, le=1)  # night, flag and OOD shares
    drift_min_mmd: float = Field(0.05, ge=0)  # squared MMD of the embeddings
    # an automatic reference (the latest manual period) keeps only its last this many
    # hours: the samples are bounded anyway, a longer one only costs reading time
    drift_reference_max_hours: float = Field(168, gt=0)

    @model_validator(mode="after")
    def _band_holds_the_baseline(self) -> "Thresholds":
        # the guard's band is around the baseline rate itself (ratio 1)
        if not self.alert_ratio_low < 1.0 < self.alert_ratio_high:
            raise ValueError(f"the alert-rate band must hold 1 (the baseline's own rate): alert_ratio_low "
                             f"{self.alert_ratio_low:g} < 1 < alert_ratio_high {self.alert_ratio_high:g}")
        return self

    @model_validator(mode="after")
    def _reference_outlasts_the_window(self) -> "Thresholds":
        # a reference shorter than the window it is compared with is a noisier baseline
        if self.drift_reference_max_hours < self.drift_window_hours:
            raise ValueError(f"drift_reference_max_hours ({self.drift_reference_max_hours:g}) must be at least "
                             f"drift_window_hours ({self.drift_window_hours:g})")
        return self


_Named = TypeVar("_Named", bound="CameraConfig | SiteConfig | ChannelConfig")


class CameraConfig(_Strict):
    name: str = Field(min_length=1, max_length=100)
    # May carry ${ENV_VAR} placeholders for credentials, resolved at capture time.
    source: str = Field(min_length=1, max_length=1000)
    interval: float = Field(5.0, gt=0, description="seconds between samples")
    enabled: bool = True


def _unique_names(items: list[_Named], problem: str) -> list[_Named]:
    names = [item.name for item in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{problem}: {', '.join(dupes)}")
    return items


class SiteConfig(_Strict):
    """A site; it always starts in manual (stages change by promotion, never by config)."""

    name: str = Field(min_length=1, max_length=100)
    # The site's clock for pages, CLI lines and alerts (IANA name); unset: the park's.
    timezone: str | None = Field(None, max_length=64)
    thresholds: Thresholds = Thresholds()
    cameras: list[CameraConfig] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        return check_zone(name) if name is not None else None

    @field_validator("cameras")
    @classmethod
    def _unique_camera_names(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        return _unique_names(cameras, "camera names must be unique within a site")


class ModelConfig(_Strict):
    name: str = Field(min_length=1, max_length=100)
    path: Path
    positive: list[str] = Field(min_length=1)
    threshold: float = Field(0.5, ge=0, le=1)
    role: ModelRole = ModelRole.ROLLOUT
    reference: Path | None = None  # images like the training data, for the out-of-domain score
    sites: list[str] = []  # sites whose rollout model this is (role rollout only)


class ChannelConfig(_Strict):
    """Where alerts go: a webhook (POST with an Idempotency-Key, body in ``format``), e-mail
    (an smtp:// target, bearwatch.smtp_url) or the log (demos)."""

    name: str = Field(min_length=1, max_length=100)
    kind: ChannelKind
    url: str | None = Field(None, max_length=1000)
    format: WebhookFormat = WebhookFormat.BEARWATCH
    sites: list[str] = []  # empty: every site
    enabled: bool = True

    @model_validator(mode="after")
    def _url_fits_kind(self) -> "ChannelConfig":
        if self.kind is ChannelKind.WEBHOOK:
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("a webhook channel needs a url starting with http:// or https://")
        elif self.kind is ChannelKind.EMAIL:
            parse_smtp_url(self.url or "")  # its ValueError names the problem, never the password
        elif self.url:
            raise ValueError("a log channel takes no url")
        if self.kind is not ChannelKind.WEBHOOK and self.format is not WebhookFormat.BEARWATCH:
            raise ValueError(f"format is for webhook channels; an {self.kind.value} channel has its own")
        return self


class AlertsConfig(_Strict):
    channels: list[ChannelConfig] = []

    @field_validator("channels")
    @classmethod
    def _unique_channel_names(cls, channels: list[ChannelConfig]) -> list[ChannelConfig]:
        return _unique_names(channels, "alert channel names must be unique")


class ParkConfig(_Strict):
    # The park's clock (IANA name, e.g. America/Denver): every site's unless it names its own.
    timezone: str = Field(UTC_NAME, max_length=64)
    sites: list[SiteConfig] = []
    models: list[ModelConfig] = []
    alerts: AlertsConfig = AlertsConfig()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        return check_zone(name)

    @field_validator("sites")
    @classmethod
    def _unique_site_names(cls, sites: list[SiteConfig]) -> list[SiteConfig]:
        return _unique_names(sites, "site names must be unique")


@dataclass(frozen=True)
class ConfigProblem:
    where: str  # e.g. "sites[0].cameras[1].interval"
    line: int | None  # 1-based line in the file, when known
    message: str

    def __str__(self) -> str:
        at = f"line {self.line}: " if self.line else ""
        return f"{at}{self.where or '(top level)'}: {self.message}"


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each key path in a composed YAML document to its 1-based line."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            lines.update(_line_index(value, sub))
            lines[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, i)))
    return lines


MAX_CONFIG_BYTES = 1 << 20  # a park file of a thousand cameras is ~200 KB
MAX_ALIASES = 20  # YAML aliases (*name): a few are handy, nested ones expand exponentially


def _limits(text: str) -> list[ConfigProblem]:
    """Refuse what would make parsing itself costly: a huge file, many aliases."""
    size = len(text.encode("utf-8"))
    if size > MAX_CONFIG_BYTES:
        return [ConfigProblem("", None, f"the park file is {size:,} bytes; at most {MAX_CONFIG_BYTES:,}")]
    aliases = 0
    for event in yaml.parse(text):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                line = event.start_mark.line + 1 if event.start_mark else None
                return [ConfigProblem("", line, f"more than {MAX_ALIASES} YAML aliases (*name): write the values out")]
    return []


def _duplicate_keys(node: yaml.Node, path: tuple[Any, ...] = ()) -> list[ConfigProblem]:
    """Keys given twice in one mapping (YAML keeps the last one silently)."""
    problems: list[ConfigProblem] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in first:
                problems.append(ConfigProblem(_where((*path, key.value)), line,
                                              f"duplicate key (first on line {first[key.value]})"))
            first.setdefault(key.value, line)
            problems += _duplicate_keys(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, (*path, i))
    return problems


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check_config_text(text: str) -> tuple[ParkConfig | None, list[ConfigProblem]]:
    """Parse and validate; returns the config, or every problem found."""
    try:
        limits = _limits(text)
        if limits:
            return None, limits
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        return None, [ConfigProblem("", line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    duplicates = _duplicate_keys(node) if node is not None else []
    if duplicates:
        return None, duplicates
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [ConfigProblem("", 1, "the file must be a mapping with 'sites' and 'models'")]
    lines = _line_index(node) if node is not None else {}
    try:
        return ParkConfig.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] != "extra_forbidden" and "input" in err and not isinstance(err["input"], dict | list):
                message += f" (got {redact_text(repr(err['input']))})"  # a too-long camera source can carry a password
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
            problems.append(ConfigProblem(_where(loc), line, message))
        return None, problems


def load_config(path: Path) -> ParkConfig:
    """Load a park file or raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    config, problems = check_config_text(text)
    if config is None:
        raise ConfigError(f"{path}: " + "; ".join(str(p) for p in problems))
    return config
