"""What each platform accepts in a post's text and media, measured the way that platform measures.

A post is checked here, when it is created or edited, so that a text that is too long or a media
list a platform refuses is reported to the client at once instead of failing at publish time hours
later. Each platform counts text its own way: X weighs characters and shortens URLs, Mastodon and
Bluesky count grapheme clusters, Threads counts emoji as UTF-8 bytes, Telegram counts UTF-16 code
units. The numbers, and which `Counting` each platform uses, are rows of the platform catalogue
(`kairos_common.platforms.CATALOGUE`, where their sources are cited); this module counts, and
`validate_content` applies the rules and reports every broken one as a `FieldViolation`; it never
raises. Sections of the platform reference PLATFORMS.md are cited below as "§1".

Pure Python: `unicodedata`, `re`, `urllib.parse`, and `regex` for grapheme clusters and emoji
properties, which `re` does not know.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import regex  # type: ignore[import-untyped]

from kairos_common.errors import FieldViolation
from kairos_common.platforms import (
    CATALOGUE,
    Counting,
    Platform,
    PlatformLimits,
    SettingKind,
    TargetSetting,
)

# Code points that X weighs 1 (twitter-text config v3, PLATFORMS.md §1): Basic Latin to Georgian,
# then spaces, hyphens and quotes from General Punctuation. Every other code point weighs 2.
_X_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
_X_EMOJI_WEIGHT = 2
_X_HEAVY_WEIGHT = 2
# X and Mastodon both replace every URL by a 23-character link whatever its length (§1, §2).
URL_WEIGHT = 23

MAX_MEDIA_URL_LENGTH = 2048
"""Longest media URL accepted: the common practical URL limit, and plenty for signed CDN links."""


# --- URLs in text ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrlSpan:
    """A URL found in a text: `text[start:end] == url`, indexes in code points."""

    start: int
    end: int
    url: str


# A URL may not start right after a letter, digit or one of @ $ # (twitter-text's
# validUrlPrecedingChars), so "xhttps://..." and "@example.com" are not links.
_NOT_AFTER = r"(?<![A-Za-z0-9@$#])"
_HOST = r"[\w-]+(?:\.[\w-]+)*"
_PORT = r"(?::\d{1,5})?"
# Path, query and fragment characters: ASCII URL characters plus Latin and Cyrillic letters, as
# twitter-text allows. Anything else (a CJK sentence glued to a link, say) ends the URL, so that
# text is counted as text and not hidden inside the 23 a URL weighs.
_PATH_CHARS = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%|\u00C0-\u024F\u0400-\u04FF]"
_SCHEME_URL = re.compile(
    rf"{_NOT_AFTER}https?://{_HOST}{_PORT}(?:[/?#]{_PATH_CHARS}*)?", re.IGNORECASE
)
# A domain without a scheme (X links "example.com" too). It must not follow . - _ / either
# (twitter-text's invalidUrlWithoutProtocolPrecedingChars), and must be ASCII.
_BARE_DOMAIN_URL = re.compile(
    r"(?<![A-Za-z0-9@$#.\-_/])"
    r"(?P<domain>(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?P<tld>[a-z]{2,24}))"
    r"(?![a-z0-9@_-])"
    rf"{_PORT}(?P<path>/{_PATH_CHARS}*)?",
    re.IGNORECASE,
)
# twitter-text checks a bare domain's top-level domain against the full IANA list (~1,500
# names). Kairos keeps the generic TLDs people actually write; any two-letter TLD is taken as a
# country code. An unlisted TLD ("example.museum") is then counted as text, which under-counts
# by at most 23 minus its length; adding a TLD here fixes it.
_GENERIC_TLDS = frozenset(
    {
        "com",
        "net",
        "org",
        "info",
        "biz",
        "edu",
        "gov",
        "mil",
        "int",
        "name",
        "pro",
        "app",
        "dev",
        "page",
        "blog",
        "shop",
        "store",
        "online",
        "site",
        "tech",
        "xyz",
        "club",
        "news",
        "live",
        "world",
        "today",
        "link",
        "social",
        "cloud",
        "art",
        "design",
        "agency",
        "email",
        "network",
        "digital",
        "media",
        "studio",
        "space",
        "website",
        "top",
        "icu",
        "vip",
        "work",
        "life",
        "one",
        "global",
        "group",
        "company",
    }
)
# twitter-text does not link a country-code domain with a single label and no path ("file.py",
# "node.js"): too many ordinary words look like that. t.co is the stated exception.
_SPECIAL_SHORT_DOMAINS = frozenset({"t.co"})
_TRAILING_PUNCTUATION = frozenset(".,:;!?'\"*")
_BRACKETS = {")": "(", "]": "[", "}": "{"}


def find_urls(text: str, *, bare_domains: bool = False) -> list[UrlSpan]:
    """The http(s) URLs in `text`, in order, without sentence punctuation that follows them.

    With `bare_domains`, domains written without a scheme ("example.com", "bit.ly/x") are found
    too, as X and Threads find them; Mastodon and Bluesky only link URLs with a scheme.
    """
    found = [_trimmed(match.start(), match.group()) for match in _SCHEME_URL.finditer(text)]
    if bare_domains:
        for match in _BARE_DOMAIN_URL.finditer(text):
            if not _is_linked_bare_domain(match):
                continue
            span = _trimmed(match.start(), match.group())
            if not any(span.start < other.end and other.start < span.end for other in found):
                found.append(span)
        found.sort(key=lambda span: span.start)
    return found


def _is_linked_bare_domain(match: re.Match[str]) -> bool:
    domain = match.group("domain").lower()
    tld = match.group("tld").lower()
    if tld in _GENERIC_TLDS:
        return True
    if len(tld) != 2:
        return False
    single_label = domain.count(".") == 1
    return not single_label or match.group("path") is not None or domain in _SPECIAL_SHORT_DOMAINS


def _trimmed(start: int, url: str) -> UrlSpan:
    """Drop what ends a sentence rather than the URL: "see https://a.example/x." ends at x."""
    while url:
        last = url[-1]
        opening = _BRACKETS.get(last)
        if last in _TRAILING_PUNCTUATION or (
            opening is not None and url.count(last) > url.count(opening)
        ):
            url = url[:-1]
            continue
        break
    return UrlSpan(start, start + len(url), url)


# --- counting -------------------------------------------------------------------------------------

_GRAPHEME = regex.compile(r"\X")
_EXTENDED_PICTOGRAPHIC = regex.compile(r"\p{Extended_Pictographic}")
_EMOJI_PRESENTATION = regex.compile(r"\p{Emoji_Presentation}")
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F1FF + 1)
_SKIN_TONES = range(0x1F3FB, 0x1F3FF + 1)
_KEYCAP_BASES = frozenset("#*0123456789")
_ZWJ = "\u200d"
_EMOJI_STYLE = "\ufe0f"
_KEYCAP = "\u20e3"

# Mastodon's Account::MENTION_RE: `@user` optionally followed by `@domain`.
_MASTODON_MENTION = re.compile(
    r"(?<![=/\w])@(?P<user>[a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@\w+(?:[.-]+\w+)*)?",
    re.IGNORECASE,
)
# Mastodon swaps each URL for this before counting (StatusLengthValidator, PLATFORMS.md §2).
_MASTODON_URL_PLACEHOLDER = "x" * URL_WEIGHT


def count_characters(platform: Platform, text: str) -> int:
    """The length of `text` as `platform` counts it against its catalogue `max_chars`.

    Bluesky's second limit, in UTF-8 bytes, is not part of this count; `validate_content`
    checks it separately.
    """
    return _count(CATALOGUE[platform].limits.counting, text)


def _count(counting: Counting, text: str) -> int:
    match counting:
        case Counting.X_WEIGHTED:
            return _x_weighted_length(text)
        case Counting.MASTODON:
            return _grapheme_count(_mastodon_countable_text(text))
        case Counting.GRAPHEMES:
            return _grapheme_count(text)
        case Counting.THREADS:
            return sum(
                _utf8_length(cluster) if _is_emoji_sequence(cluster) else len(cluster)
                for cluster in _graphemes(text)
            )
        case Counting.UTF16_CODE_UNITS:
            # "surrogatepass" so a lone surrogate is counted rather than raising.
            return len(text.encode("utf-16-le", "surrogatepass")) // 2
        case Counting.CODE_POINTS:
            return len(text)
        case Counting.UTF8_BYTES:
            return _utf8_length(text)


def _graphemes(text: str) -> list[str]:
    clusters: list[str] = _GRAPHEME.findall(text)
    return clusters


def _grapheme_count(text: str) -> int:
    return len(_graphemes(text))


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _is_emoji_sequence(cluster: str) -> bool:
    """True when a grapheme cluster is one emoji: a pictograph shown as emoji, possibly with a
    skin tone or ZWJ-joined to others, a flag (two regional indicators) or a keycap."""
    first = cluster[0]
    if ord(first) in _REGIONAL_INDICATORS:
        return len(cluster) > 1
    if _KEYCAP in cluster:
        return first in _KEYCAP_BASES
    if not _EXTENDED_PICTOGRAPHIC.match(first):
        return False
    # A pictograph whose default is text style ("©", "↔") is an emoji only when asked for one.
    return bool(
        _EMOJI_PRESENTATION.match(first)
        or _EMOJI_STYLE in cluster
        or _ZWJ in cluster
        or any(ord(char) in _SKIN_TONES for char in cluster)
    )


def _x_weighted_length(text: str) -> int:
    normalized = unicodedata.normalize("NFC", text)
    total = 0
    cursor = 0
    for url in find_urls(normalized, bare_domains=True):
        total += _x_weigh_text(normalized[cursor : url.start]) + URL_WEIGHT
        cursor = url.end
    return total + _x_weigh_text(normalized[cursor:])


def _x_weigh_text(text: str) -> int:
    total = 0
    for cluster in _graphemes(text):
        if _is_emoji_sequence(cluster):
            total += _X_EMOJI_WEIGHT
        else:
            total += sum(_x_code_point_weight(char) for char in cluster)
    return total


def _x_code_point_weight(char: str) -> int:
    code_point = ord(char)
    if any(low <= code_point <= high for low, high in _X_LIGHT_RANGES):
        return 1
    return _X_HEAVY_WEIGHT


def _mastodon_countable_text(text: str) -> str:
    """The text Mastodon measures: URLs as 23 placeholders, remote mentions without the domain."""
    pieces: list[str] = []
    cursor = 0
    for url in find_urls(text):
        pieces.append(_MASTODON_MENTION.sub(r"@\g<user>", text[cursor : url.start]))
        pieces.append(_MASTODON_URL_PLACEHOLDER)
        cursor = url.end
    pieces.append(_MASTODON_MENTION.sub(r"@\g<user>", text[cursor:]))
    return "".join(pieces)


# --- validation -----------------------------------------------------------------------------------


def validate_content(
    platform: Platform,
    text: str,
    media_urls: Sequence[str],
    *,
    content_field: str = "content",
    media_field: str = "media_urls",
    allow_http_media: bool = False,
    limits: PlatformLimits | None = None,
    uploads: int = 0,
    uploads_field: str = "media_ids",
) -> list[FieldViolation]:
    """Every rule that `text` with `media_urls` and `uploads` uploaded files breaks on
    `platform`; empty when it may publish.

    `content_field` and `media_field` name the fields as the client sent them, for example
    `targets[2].content_override` when a target overrides the text; each media URL is reported
    as `media_field[i]`. `allow_http_media` accepts http media URLs, for development only.
    `limits` replaces the platform's catalogue limits when the account's real limits are known
    (a Mastodon instance's own `max_characters`, say). The uploaded files (checked themselves
    elsewhere: they are in the database) count towards the media limit with the URLs; a count
    over it is reported on `uploads_field` when there are any. Never raises.
    """
    name = CATALOGUE[platform].name
    rules = limits if limits is not None else CATALOGUE[platform].limits
    violations: list[FieldViolation] = []
    count = len(media_urls) + uploads
    has_media = count > 0

    # Whitespace counts as no text: every platform refuses a post that shows nothing.
    if not text.strip() and not has_media and not rules.media_required:
        violations.append(
            FieldViolation(content_field, f"{name} needs text when no media is attached")
        )
    if text:
        violations.extend(_text_violations(name, rules, text, has_media, content_field))

    if rules.media_required and not has_media:
        violations.append(
            FieldViolation(
                uploads_field if rules.video_only else media_field,
                f"{name} needs an uploaded video: it cannot publish text alone"
                if rules.video_only
                else f"{name} needs at least one image or video: it cannot publish text alone",
            )
        )
    if rules.video_only and media_urls:
        violations.append(
            FieldViolation(
                media_field,
                f"{name} takes one uploaded video (media_ids), not media by URL",
            )
        )
    if count > rules.max_media:
        given = (
            f"{count} given"
            if not uploads or not media_urls
            else (f"{count} given ({uploads} uploaded, {len(media_urls)} by URL)")
        )
        violations.append(
            FieldViolation(
                uploads_field if uploads else media_field,
                f"{name} accepts at most {rules.max_media} media items in a post; {given}",
            )
        )
    for index, url in enumerate(media_urls):
        violations.extend(
            validate_media_url(url, f"{media_field}[{index}]", allow_http=allow_http_media)
        )
    return violations


def max_text_length(rules: PlatformLimits, *, has_media: bool) -> int:
    """The most text a post may carry under `rules`, counted as they count: the caption limit
    when media is attached and the platform has one (Telegram), else `max_chars`. One place
    decides it, for `validate_content` and for ValidatePost's counter, so the two never differ."""
    if has_media and rules.max_chars_with_media is not None:
        return rules.max_chars_with_media
    return rules.max_chars


def _text_violations(
    name: str, rules: PlatformLimits, text: str, has_media: bool, field: str
) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    count = _count(rules.counting, text)
    limit = max_text_length(rules, has_media=has_media)
    if count > limit:
        caption = has_media and rules.max_chars_with_media is not None
        allowed = " allowed in a caption, the text sent with media" if caption else ""
        violations.append(
            FieldViolation(
                field,
                f"{name} counts {count:,} of {limit:,} {rules.unit}{allowed} "
                f"({rules.counting_note})",
            )
        )
    if rules.max_utf8_bytes is not None:
        size = _utf8_length(text)
        if size > rules.max_utf8_bytes:
            violations.append(
                FieldViolation(
                    field,
                    f"{name} counts {size:,} of {rules.max_utf8_bytes:,} UTF-8 bytes "
                    f"(a limit besides the {rules.max_chars:,} {rules.unit}; "
                    "an emoji takes 4 bytes or more)",
                )
            )
    if rules.max_links is not None:
        links = {span.url for span in find_urls(text, bare_domains=True)}
        if len(links) > rules.max_links:
            violations.append(
                FieldViolation(
                    field,
                    f"{name} accepts at most {rules.max_links} distinct links in a post; "
                    f"this text has {len(links)}",
                )
            )
    return violations


_HOST_NAME = re.compile(r"(?:[^\W_](?:[\w-]*[^\W_])?)(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.?")


def validate_settings(
    platform: Platform,
    settings: Mapping[str, str],
    *,
    field: str = "settings",
    media_count: int | None = None,
) -> list[FieldViolation]:
    """Every rule a target's `settings` break among those `platform` declares in its catalogue
    row, each reported on `field.<key>`; empty when they may publish. An empty value counts as
    unset (which a required setting may not be), and keys the platform does not declare are left
    to its publisher. A media index is checked against `media_count` when it is given. Never
    raises."""
    info = CATALOGUE[platform]
    violations: list[FieldViolation] = []
    for key, rule in info.settings.items():
        value = settings.get(key, "")
        where = f"{field}.{key}"
        if not value:
            if rule.required:
                violations.append(
                    FieldViolation(where, f"{info.name} needs {rule.what}: {_expected(rule)}")
                )
            continue
        length = _count(rule.counting, value)
        if length > rule.max_chars:
            violations.append(
                FieldViolation(
                    where,
                    f"{info.name} takes at most {rule.max_chars:,} {rule.unit} for {rule.what}; "
                    f"{length:,} given",
                )
            )
        if rule.kind is SettingKind.DIGITS and not _is_digits(value):
            violations.append(FieldViolation(where, f"must be digits only: {rule.what}"))
        if rule.kind is SettingKind.URL and not _is_web_url(value):
            violations.append(
                FieldViolation(where, f"must be an absolute http or https URL: {rule.what}")
            )
        if rule.kind in (SettingKind.CHOICE, SettingKind.BOOLEAN) and value not in _allowed(rule):
            violations.append(FieldViolation(where, f"must be {_expected(rule)}: {rule.what}"))
        if rule.kind is SettingKind.MEDIA_INDEX:
            if not _is_digits(value):
                violations.append(
                    FieldViolation(where, f"must be a number counted from 0: {rule.what}")
                )
            elif media_count is not None and int(value) >= media_count:
                violations.append(
                    FieldViolation(
                        where,
                        f"{value} is past the last of the post's {media_count} media items "
                        f"(counted from 0): {rule.what}",
                    )
                )
    return violations


def _is_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _allowed(rule: TargetSetting) -> tuple[str, ...]:
    return ("true", "false") if rule.kind is SettingKind.BOOLEAN else rule.choices


def _expected(rule: TargetSetting) -> str:
    if rule.kind in (SettingKind.CHOICE, SettingKind.BOOLEAN):
        return "one of " + ", ".join(_allowed(rule))
    return "a value"


def _is_web_url(value: str) -> bool:
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def validate_media_url(url: str, field: str, *, allow_http: bool = False) -> list[FieldViolation]:
    """What is wrong with one media URL, reported on `field`; empty when it is usable.

    A media URL must be absolute https (http only with `allow_http`, for development), carry no
    credentials (the platforms fetch it, and would see them), and be at most
    `MAX_MEDIA_URL_LENGTH` characters. Whether it can be fetched is checked at publish time.
    """
    violations: list[FieldViolation] = []
    if len(url) > MAX_MEDIA_URL_LENGTH:
        violations.append(
            FieldViolation(
                field,
                f"is {len(url):,} characters long; at most {MAX_MEDIA_URL_LENGTH:,} are allowed",
            )
        )
    problem = _media_url_problem(url, allow_http)
    if problem is not None:
        violations.append(FieldViolation(field, problem))
    return violations


def _media_url_problem(url: str, allow_http: bool) -> str | None:
    """The first structural problem of a media URL, or None. Later checks assume earlier ones."""
    wanted = "an absolute https URL, e.g. https://cdn.example.com/photo.jpg"
    if not url:
        return f"is empty; it must be {wanted}"
    # Checked before parsing: urlsplit silently drops tabs and newlines.
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in url):
        return "must not contain spaces or control characters (percent-encode them)"
    try:
        parts = urlsplit(url)
        port = parts.port  # parsing the port is what rejects "https://host:99999/"
    except ValueError as error:
        return f"is not a valid URL ({error})"
    scheme = parts.scheme.lower()
    if not scheme or url.startswith("//"):
        return f"is not absolute; it must be {wanted}"
    if scheme == "http" and not allow_http:
        return "must use https; http is allowed only in development"
    if scheme not in ("https", "http"):
        return f"must use https, not {scheme!r}"
    if parts.username is not None or parts.password is not None:
        return (
            "must not contain credentials (user:password@): "
            "the platforms fetch it and would see them"
        )
    host = parts.hostname
    if not host:
        return f"has no host name; it must be {wanted}"
    if not _is_valid_host(host, bracketed="[" in parts.netloc):
        return f"has an invalid host name {host!r}"
    if port == 0:
        return "has an invalid port 0"
    return None


def _is_valid_host(host: str, *, bracketed: bool) -> bool:
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _HOST_NAME.fullmatch(host) is not None
