"""Post content limits: each platform's own way of counting text, media rules, field names."""

from __future__ import annotations

import dataclasses

import pytest

from kairos_api.domain.limits import (
    MAX_MEDIA_URL_LENGTH,
    UrlSpan,
    count_characters,
    find_urls,
    max_text_length,
    validate_content,
    validate_media_url,
    validate_settings,
)
from kairos_common.errors import FieldViolation
from kairos_common.platforms import CATALOGUE, Platform, video_rules

IMAGE = "https://cdn.example.com/photo.jpg"

GRINNING = "\U0001f600"  # 😀, one code point, 4 UTF-8 bytes
# 👨‍👩‍👧‍👦: four people joined by three ZWJs; 7 code points, 11 UTF-16 units, 25 UTF-8 bytes.
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"
THUMBS_UP_MEDIUM = "\U0001f44d\U0001f3fd"  # 👍🏽, thumbs up with a skin tone
FLAG_FR = "\U0001f1eb\U0001f1f7"  # 🇫🇷, two regional indicators
KEYCAP_ONE = "1\ufe0f\u20e3"  # 1️⃣
E_ACUTE_DECOMPOSED = "e\u0301"  # "e" + combining acute: one grapheme, NFC makes it U+00E9

EMOJI = [
    pytest.param(GRINNING, id="single"),
    pytest.param(FAMILY, id="zwj-family"),
    pytest.param(THUMBS_UP_MEDIUM, id="skin-tone"),
    pytest.param(FLAG_FR, id="flag"),
    pytest.param(KEYCAP_ONE, id="keycap"),
]


def fields(violations: list[FieldViolation]) -> list[str]:
    return [violation.field for violation in violations]


def media_for(platform: Platform) -> list[str]:
    """Media that makes a post acceptable where media is required, and nothing elsewhere."""
    limits = CATALOGUE[platform].limits
    return [IMAGE] if limits.media_required and not limits.video_only else []


def uploads_for(platform: Platform) -> int:
    """One uploaded file for a platform whose posts are one uploaded video."""
    return 1 if CATALOGUE[platform].limits.video_only else 0


# --- the limits table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "max_chars", "max_media"),
    [
        (Platform.X, 280, 4),
        (Platform.MASTODON, 500, 4),
        (Platform.BLUESKY, 300, 4),
        (Platform.LINKEDIN, 3000, 20),
        (Platform.FACEBOOK, 63206, 10),
        (Platform.INSTAGRAM, 2200, 10),
        (Platform.THREADS, 500, 20),
        (Platform.TELEGRAM, 4096, 10),
        (Platform.DISCORD, 2000, 10),
        (Platform.SLACK, 40000, 49),
        (Platform.PINTEREST, 800, 1),
        (Platform.TIKTOK, 4000, 35),
        (Platform.YOUTUBE, 5000, 1),
    ],
)
def test_limits_match_the_platform_reference(
    platform: Platform, max_chars: int, max_media: int
) -> None:
    assert CATALOGUE[platform].limits.max_chars == max_chars
    assert CATALOGUE[platform].limits.max_media == max_media


def test_only_instagram_pinterest_tiktok_and_youtube_require_media() -> None:
    assert [p for p in Platform if CATALOGUE[p].limits.media_required] == [
        Platform.INSTAGRAM,
        Platform.PINTEREST,
        Platform.TIKTOK,
        Platform.YOUTUBE,
    ]


def test_the_catalogue_cannot_be_changed_by_accident() -> None:
    with pytest.raises(TypeError):
        CATALOGUE[Platform.X] = CATALOGUE[Platform.MASTODON]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOGUE[Platform.X].limits = CATALOGUE[Platform.MASTODON].limits  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOGUE[Platform.X].limits.max_chars = 10_000  # type: ignore[misc]


# --- ASCII at and one over every limit ------------------------------------------------------------


@pytest.mark.parametrize("platform", list(Platform))
def test_ascii_at_the_limit_is_accepted(platform: Platform) -> None:
    text = "a" * CATALOGUE[platform].limits.max_chars

    assert count_characters(platform, text) == CATALOGUE[platform].limits.max_chars
    assert (
        validate_content(platform, text, media_for(platform), uploads=uploads_for(platform)) == []
    )


@pytest.mark.parametrize("platform", list(Platform))
def test_ascii_one_over_the_limit_is_reported_on_content(platform: Platform) -> None:
    limits = CATALOGUE[platform].limits
    text = "a" * (limits.max_chars + 1)

    violations = validate_content(
        platform, text, media_for(platform), uploads=uploads_for(platform)
    )

    assert fields(violations) == ["content"]
    description = violations[0].description
    assert description.startswith(f"{CATALOGUE[platform].name} counts {limits.max_chars + 1:,} of ")
    assert f"{limits.max_chars:,} {limits.unit}" in description


def test_x_message_says_how_x_counts() -> None:
    violations = validate_content(Platform.X, "a" * 312, [])

    assert violations == [
        FieldViolation(
            "content",
            "X counts 312 of 280 weighted characters "
            "(URLs count 23, most non-Latin characters and emoji 2)",
        )
    ]


# --- emoji ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("emoji", EMOJI)
def test_x_counts_any_emoji_sequence_as_two(emoji: str) -> None:
    assert count_characters(Platform.X, emoji) == 2
    assert count_characters(Platform.X, f"hi {emoji}") == 5


@pytest.mark.parametrize("emoji", EMOJI)
@pytest.mark.parametrize("platform", [Platform.BLUESKY, Platform.MASTODON])
def test_grapheme_platforms_count_any_emoji_sequence_as_one(platform: Platform, emoji: str) -> None:
    assert count_characters(platform, emoji) == 1
    assert count_characters(platform, emoji * 3) == 3


def test_x_limit_is_reached_by_140_emoji() -> None:
    assert validate_content(Platform.X, FAMILY * 140, []) == []
    violations = validate_content(Platform.X, FAMILY * 141, [])
    assert fields(violations) == ["content"]
    assert "282 of 280" in violations[0].description


def test_bluesky_accepts_300_emoji_that_x_would_refuse() -> None:
    text = THUMBS_UP_MEDIUM * 300  # 300 graphemes, 2,400 bytes

    assert validate_content(Platform.BLUESKY, text, []) == []
    assert fields(validate_content(Platform.X, text, [])) == ["content"]


@pytest.mark.parametrize(
    ("emoji", "expected"),
    [
        (GRINNING, 4),
        (THUMBS_UP_MEDIUM, 8),
        (FAMILY, 25),
    ],
)
def test_threads_counts_emoji_as_their_utf8_bytes(emoji: str, expected: int) -> None:
    assert count_characters(Platform.THREADS, emoji) == expected
    assert count_characters(Platform.THREADS, f"ok {emoji}") == 3 + expected


def test_threads_limit_is_reached_by_125_four_byte_emoji() -> None:
    assert validate_content(Platform.THREADS, GRINNING * 125, []) == []
    violations = validate_content(Platform.THREADS, GRINNING * 126, [])
    assert fields(violations) == ["content"]
    assert "504 of 500" in violations[0].description


def test_telegram_counts_utf16_code_units() -> None:
    assert count_characters(Platform.TELEGRAM, GRINNING) == 2
    assert count_characters(Platform.TELEGRAM, FAMILY) == 11
    assert count_characters(Platform.TELEGRAM, "日本") == 2
    assert validate_content(Platform.TELEGRAM, GRINNING * 2048, []) == []
    # 2,049 code points, but 4,098 UTF-16 units.
    assert fields(validate_content(Platform.TELEGRAM, GRINNING * 2049, [])) == ["content"]


def test_text_style_pictographs_are_not_emoji_on_x() -> None:
    # "©" without VS16 is a Latin-1 sign (weight 1); with VS16 it is an emoji (weight 2).
    assert count_characters(Platform.X, "\u00a9") == 1
    assert count_characters(Platform.X, "\u00a9\ufe0f") == 2


# --- CJK and combining marks ----------------------------------------------------------------------


def test_x_counts_cjk_as_two_and_bluesky_as_one() -> None:
    text = "日本語のテキスト"  # 8 characters

    assert count_characters(Platform.X, text) == 16
    assert count_characters(Platform.BLUESKY, text) == 8
    assert validate_content(Platform.X, "漢" * 140, []) == []
    assert fields(validate_content(Platform.X, "漢" * 141, [])) == ["content"]
    assert validate_content(Platform.BLUESKY, "漢" * 300, []) == []


def test_x_weighs_latin_and_general_punctuation_as_one() -> None:
    # U+10FF is the last light code point of the first range; U+1100 (Hangul Jamo) is heavy.
    assert count_characters(Platform.X, "\u10ff") == 1
    assert count_characters(Platform.X, "\u1100") == 2
    # Curly quotes, en dash and prime are light; the ellipsis U+2026 is not in any range.
    assert count_characters(Platform.X, "\u201c\u2013\u2032") == 3
    assert count_characters(Platform.X, "\u2026") == 2


def test_combining_mark_is_one_grapheme_and_one_code_point_on_x_after_nfc() -> None:
    assert count_characters(Platform.X, E_ACUTE_DECOMPOSED) == 1
    assert count_characters(Platform.BLUESKY, E_ACUTE_DECOMPOSED) == 1
    assert count_characters(Platform.MASTODON, E_ACUTE_DECOMPOSED) == 1
    # Without normalisation it is two code points.
    assert count_characters(Platform.DISCORD, E_ACUTE_DECOMPOSED) == 2
    assert validate_content(Platform.X, E_ACUTE_DECOMPOSED * 280, []) == []
    assert validate_content(Platform.BLUESKY, E_ACUTE_DECOMPOSED * 300, []) == []


# --- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://t.example",
        "http://example.com",
        "https://example.com/" + "long-path/" * 30,
        "https://example.com/search?q=kairos&page=2#results",
    ],
)
@pytest.mark.parametrize("platform", [Platform.X, Platform.MASTODON])
def test_x_and_mastodon_count_a_url_as_23_whatever_its_length(platform: Platform, url: str) -> None:
    assert count_characters(platform, url) == 23
    assert count_characters(platform, f"Read {url} now") == 5 + 23 + 4


def test_long_url_fits_on_x_but_not_on_bluesky() -> None:
    url = "https://example.com/" + "a" * 400
    text = f"New post: {url}"

    assert count_characters(Platform.X, text) == 10 + 23
    assert validate_content(Platform.X, text, []) == []
    assert count_characters(Platform.BLUESKY, text) == len(text)
    assert fields(validate_content(Platform.BLUESKY, text, [])) == ["content"]


def test_x_text_at_the_limit_with_a_url() -> None:
    url = "https://example.com/" + "p" * 80
    assert validate_content(Platform.X, "a" * 256 + " " + url, []) == []
    assert fields(validate_content(Platform.X, "a" * 257 + " " + url, [])) == ["content"]


def test_sentence_punctuation_after_a_url_is_not_part_of_it() -> None:
    text = "See https://example.com/a. Or (https://example.com/b)! Or https://w.example/Foo_(bar)?"

    assert [span.url for span in find_urls(text)] == [
        "https://example.com/a",
        "https://example.com/b",
        "https://w.example/Foo_(bar)",
    ]
    # Three URLs at 23 each, plus "See ", ". Or (", ")! Or " and "?".
    assert count_characters(Platform.X, text) == 3 * 23 + 4 + 6 + 6 + 1


def test_find_urls_gives_positions_in_the_text() -> None:
    text = "go https://example.com/x now"

    assert find_urls(text) == [UrlSpan(3, 24, "https://example.com/x")]


@pytest.mark.parametrize(
    "text",
    [
        "xhttps://example.com",  # glued to a word
        "https://",  # no host
        "ftp://example.com/file",  # not http(s)
    ],
)
def test_what_is_not_a_url(text: str) -> None:
    assert find_urls(text, bare_domains=True) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", ["example.com"]),
        ("visit www.example.org/about.", ["www.example.org/about"]),
        ("bit.ly/abc", ["bit.ly/abc"]),
        ("www.bbc.co.uk", ["www.bbc.co.uk"]),
        ("t.co", ["t.co"]),
        # A single label before a country code and no path is a file name, not a link.
        ("run setup.py or node.js", []),
        ("mail bob@example.com", []),
        ("https://example.com", ["https://example.com"]),
    ],
)
def test_bare_domains_are_found_as_twitter_text_finds_them(text: str, expected: list[str]) -> None:
    assert [span.url for span in find_urls(text, bare_domains=True)] == expected


def test_x_counts_a_bare_domain_as_23_but_mastodon_does_not() -> None:
    assert count_characters(Platform.X, "example.com") == 23
    assert count_characters(Platform.MASTODON, "example.com") == 11
    assert count_characters(Platform.X, "setup.py") == 8


# --- Mastodon mentions ----------------------------------------------------------------------------


def test_mastodon_counts_a_remote_mention_as_the_local_part() -> None:
    assert count_characters(Platform.MASTODON, "@alice@mastodon.example") == len("@alice")
    assert count_characters(Platform.MASTODON, "hi @alice@mastodon.example!") == len("hi @alice!")
    assert count_characters(Platform.MASTODON, "hi @bob") == len("hi @bob")


def test_mastodon_remote_mentions_let_a_longer_text_fit() -> None:
    mention = "@alice@a-very-long-instance-name.example"
    text = mention + " " + "a" * 493  # 6 + 1 + 493 = 500 as Mastodon counts

    assert len(text) > 500
    assert validate_content(Platform.MASTODON, text, []) == []
    assert fields(validate_content(Platform.MASTODON, text + "a", [])) == ["content"]


def test_email_address_is_not_a_mastodon_mention() -> None:
    # "@" right after a word character does not start a mention.
    assert count_characters(Platform.MASTODON, "bob@mail.example") == len("bob@mail.example")


def test_mastodon_instance_limits_can_replace_the_default() -> None:
    instance = dataclasses.replace(CATALOGUE[Platform.MASTODON].limits, max_chars=5000, max_media=8)
    text = "a" * 4000
    media = [IMAGE] * 6

    assert len(validate_content(Platform.MASTODON, text, media)) == 2
    assert validate_content(Platform.MASTODON, text, media, limits=instance) == []


# --- Bluesky's byte limit -------------------------------------------------------------------------


def test_bluesky_byte_limit_is_reached_before_the_grapheme_limit() -> None:
    at_limit = FAMILY * 120  # 120 graphemes, 3,000 bytes
    over = FAMILY * 121  # 121 graphemes, 3,025 bytes

    assert count_characters(Platform.BLUESKY, over) == 121
    assert validate_content(Platform.BLUESKY, at_limit, []) == []
    assert validate_content(Platform.BLUESKY, over, []) == [
        FieldViolation(
            "content",
            "Bluesky counts 3,025 of 3,000 UTF-8 bytes "
            "(a limit besides the 300 graphemes; an emoji takes 4 bytes or more)",
        )
    ]


def test_bluesky_reports_both_limits_when_both_are_broken() -> None:
    text = FAMILY * 301

    violations = validate_content(Platform.BLUESKY, text, [])

    assert fields(violations) == ["content", "content"]
    assert "301 of 300 graphemes" in violations[0].description
    assert "7,525 of 3,000 UTF-8 bytes" in violations[1].description


# --- Telegram captions ----------------------------------------------------------------------------


def test_telegram_text_with_media_is_a_caption_limited_to_1024() -> None:
    assert validate_content(Platform.TELEGRAM, "a" * 1024, [IMAGE]) == []
    violations = validate_content(Platform.TELEGRAM, "a" * 1025, [IMAGE])
    assert fields(violations) == ["content"]
    assert "1,025 of 1,024 UTF-16 code units allowed in a caption" in violations[0].description
    # The same text without media is an ordinary message.
    assert validate_content(Platform.TELEGRAM, "a" * 1025, []) == []


def test_the_text_limit_with_media_is_the_caption_limit_where_there_is_one() -> None:
    telegram, x = CATALOGUE[Platform.TELEGRAM].limits, CATALOGUE[Platform.X].limits
    assert max_text_length(telegram, has_media=True) == 1024
    assert max_text_length(telegram, has_media=False) == 4096
    assert max_text_length(x, has_media=True) == max_text_length(x, has_media=False) == 280


# --- empty text and required media ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
@pytest.mark.parametrize(
    "platform", [p for p in Platform if not CATALOGUE[p].limits.media_required]
)
def test_text_is_needed_when_there_is_no_media(platform: Platform, text: str) -> None:
    violations = validate_content(platform, text, [])

    assert violations == [
        FieldViolation(
            "content", f"{CATALOGUE[platform].name} needs text when no media is attached"
        )
    ]


@pytest.mark.parametrize("platform", list(Platform))
def test_media_alone_needs_no_text(platform: Platform) -> None:
    if CATALOGUE[platform].limits.video_only:
        assert validate_content(platform, "", [], uploads=1) == []
    else:
        assert validate_content(platform, "", [IMAGE]) == []


def test_instagram_refuses_text_without_media() -> None:
    violations = validate_content(Platform.INSTAGRAM, "A caption", [])

    assert violations == [
        FieldViolation(
            "media_urls",
            "Instagram needs at least one image or video: it cannot publish text alone",
        )
    ]


def test_pinterest_takes_one_image_and_its_800_character_description() -> None:
    assert validate_content(Platform.PINTEREST, "é" * 800, [IMAGE]) == []
    assert fields(validate_content(Platform.PINTEREST, "A pin", [])) == ["media_urls"]
    assert fields(validate_content(Platform.PINTEREST, "A pin", [IMAGE, IMAGE])) == ["media_urls"]
    assert fields(validate_content(Platform.PINTEREST, "é" * 801, [IMAGE])) == ["content"]


@pytest.mark.parametrize(
    ("key", "limit"), [("title", 100), ("alt_text", 500), ("link", 2048), ("board_id", 30)]
)
def test_pinterest_settings_up_to_their_limit_are_accepted_and_one_more_is_not(
    key: str, limit: int
) -> None:
    fill = {"link": "https://example.com/", "board_id": "1"}.get(key, "")
    at_limit = fill + ("1" if key == "board_id" else "a") * (limit - len(fill))
    assert validate_settings(Platform.PINTEREST, {key: at_limit}) == []
    [violation] = validate_settings(Platform.PINTEREST, {key: at_limit + "1"}, field="s")
    assert violation.field == f"s.{key}"
    assert f"at most {limit:,} characters" in violation.description


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("board_id", "recipes"),
        ("board_id", "١٢٣"),  # Arabic-Indic digits are digits to Python, not to Pinterest
        ("link", "example.com/bread"),
        ("link", "ftp://example.com/bread"),
        ("link", "https://exa mple.com/"),
    ],
)
def test_pinterest_settings_of_the_wrong_form_are_named(key: str, value: str) -> None:
    assert fields(validate_settings(Platform.PINTEREST, {key: value})) == [f"settings.{key}"]


def test_tiktok_counts_its_4000_character_description_in_utf16_code_units() -> None:
    assert validate_content(Platform.TIKTOK, "😀" * 2000, [IMAGE]) == []
    assert fields(validate_content(Platform.TIKTOK, "😀" * 2000 + "a", [IMAGE])) == ["content"]
    assert fields(validate_content(Platform.TIKTOK, "A photo post", [])) == ["media_urls"]


TIKTOK_PUBLIC = {"privacy_level": "PUBLIC_TO_EVERYONE"}


def test_a_tiktok_target_must_say_who_may_see_the_post() -> None:
    assert validate_settings(Platform.TIKTOK, TIKTOK_PUBLIC) == []
    for missing in ({}, {"privacy_level": ""}):
        assert validate_settings(Platform.TIKTOK, missing) == [
            FieldViolation(
                "settings.privacy_level",
                "TikTok needs who may see the post: one of PUBLIC_TO_EVERYONE, "
                "MUTUAL_FOLLOW_FRIENDS, FOLLOWER_OF_CREATOR, SELF_ONLY",
            )
        ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("privacy_level", "public"),  # the enum is case-sensitive
        ("privacy_level", "FRIENDS"),
        ("disable_comment", "yes"),
        ("auto_add_music", "True"),
        ("photo_cover_index", "-1"),
        ("photo_cover_index", "١"),  # an Arabic-Indic digit
    ],
)
def test_tiktok_settings_of_the_wrong_form_are_named(key: str, value: str) -> None:
    assert fields(validate_settings(Platform.TIKTOK, {**TIKTOK_PUBLIC, key: value})) == [
        f"settings.{key}"
    ]


def test_tiktoks_title_is_90_utf16_code_units() -> None:
    assert validate_settings(Platform.TIKTOK, {**TIKTOK_PUBLIC, "title": "😀" * 45}) == []
    [violation] = validate_settings(Platform.TIKTOK, {**TIKTOK_PUBLIC, "title": "😀" * 45 + "a"})
    assert violation == FieldViolation(
        "settings.title",
        "TikTok takes at most 90 UTF-16 code units for the photo post's title; 91 given",
    )


def test_tiktoks_cover_must_be_one_of_the_posts_photos() -> None:
    settings = {**TIKTOK_PUBLIC, "photo_cover_index": "2"}
    assert validate_settings(Platform.TIKTOK, settings, media_count=3) == []
    assert validate_settings(Platform.TIKTOK, settings, media_count=2) == [
        FieldViolation(
            "settings.photo_cover_index",
            "2 is past the last of the post's 2 media items (counted from 0): "
            "the photo shown as the cover, counted from 0",
        )
    ]


def test_youtube_counts_its_5000_byte_description_in_utf8_bytes() -> None:
    assert validate_content(Platform.YOUTUBE, "é" * 2500, [], uploads=1) == []
    [violation] = validate_content(Platform.YOUTUBE, "é" * 2500 + "a", [], uploads=1)
    assert violation.field == "content"
    assert "5,000 UTF-8 bytes" in violation.description
    assert fields(validate_content(Platform.YOUTUBE, "A video", [])) == ["media_ids"]


YOUTUBE_PUBLIC = {"privacy": "public"}


def test_a_youtube_target_must_say_who_may_see_the_video() -> None:
    assert validate_settings(Platform.YOUTUBE, YOUTUBE_PUBLIC) == []
    assert validate_settings(Platform.YOUTUBE, {}) == [
        FieldViolation(
            "settings.privacy",
            "YouTube needs who may see the video: one of private, unlisted, public",
        )
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("privacy", "Public"),
        ("privacy", "friends"),
        ("title", "t" * 101),
        ("made_for_kids", "no"),
        ("category_id", "ab"),
        ("category_id", "1234"),
        ("short", "yes"),
        ("tags", "t" * 501),
    ],
)
def test_youtube_settings_of_the_wrong_form_are_named(key: str, value: str) -> None:
    assert fields(validate_settings(Platform.YOUTUBE, {**YOUTUBE_PUBLIC, key: value})) == [
        f"settings.{key}"
    ]


def test_a_youtube_short_has_the_short_rules_and_other_videos_twelve_hours() -> None:
    video = video_rules(Platform.YOUTUBE, YOUTUBE_PUBLIC)
    short = video_rules(Platform.YOUTUBE, {**YOUTUBE_PUBLIC, "short": "true"})
    assert video is not None
    assert short is not None
    assert (video.max_seconds, video.max_bytes, video.max_aspect) == (12 * 3600, 256 << 30, None)
    assert (short.what, short.max_seconds, short.max_aspect) == ("a Short", 180, 1.0)
    assert video_rules(Platform.YOUTUBE, {**YOUTUBE_PUBLIC, "short": "false"}) == video


def test_settings_a_platform_does_not_declare_are_left_to_its_publisher() -> None:
    assert validate_settings(Platform.PINTEREST, {"dominant_color": "x" * 900, "title": ""}) == []
    assert validate_settings(Platform.X, {"title": "t" * 1000}) == []


def test_instagram_without_text_or_media_reports_only_the_missing_media() -> None:
    assert fields(validate_content(Platform.INSTAGRAM, "", [])) == ["media_urls"]


# --- media count ----------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", list(Platform))
def test_media_up_to_the_limit_is_accepted_and_one_more_is_not(platform: Platform) -> None:
    limit = CATALOGUE[platform].limits.max_media
    media = [f"https://cdn.example.com/{index}.jpg" for index in range(limit + 1)]

    if CATALOGUE[platform].limits.video_only:  # its items are uploaded, never URLs
        assert validate_content(platform, "hello", [], uploads=limit) == []
        [violation] = validate_content(platform, "hello", [], uploads=limit + 1)
        assert violation == FieldViolation(
            "media_ids",
            f"{CATALOGUE[platform].name} accepts at most {limit} media items in a post; "
            f"{limit + 1} given",
        )
        return
    assert validate_content(platform, "hello", media[:limit]) == []
    violations = validate_content(platform, "hello", media)
    assert violations == [
        FieldViolation(
            "media_urls",
            f"{CATALOGUE[platform].name} accepts at most {limit} media items in a post; "
            f"{limit + 1} given",
        )
    ]


# --- Threads links --------------------------------------------------------------------------------


def test_threads_refuses_more_than_five_distinct_links() -> None:
    five = " ".join(f"https://site{index}.example/" for index in range(5))
    repeated = five + " https://site0.example/"
    six = five + " www.facebook.com"

    assert validate_content(Platform.THREADS, five, []) == []
    assert validate_content(Platform.THREADS, repeated, []) == []
    violations = validate_content(Platform.THREADS, six, [])
    assert fields(violations) == ["content"]
    assert "at most 5 distinct links" in violations[0].description
    assert "has 6" in violations[0].description


# --- media URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        IMAGE,
        "https://cdn.example.com:8443/a/b.png?sig=abc&exp=1#x",
        "HTTPS://CDN.EXAMPLE.COM/Photo.JPG",
        "https://café.example/photo.jpg",
        "https://[2001:db8::1]/photo.jpg",
        "https://203.0.113.7/photo.jpg",
        "https://cdn.example.com/" + "a" * (MAX_MEDIA_URL_LENGTH - len("https://cdn.example.com/")),
    ],
)
def test_good_media_urls_are_accepted(url: str) -> None:
    assert validate_media_url(url, "media_urls[0]") == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param("/uploads/photo.jpg", "is not absolute", id="relative-path"),
        pytest.param("photo.jpg", "is not absolute", id="relative-file"),
        pytest.param("cdn.example.com/photo.jpg", "is not absolute", id="no-scheme"),
        pytest.param("//cdn.example.com/photo.jpg", "is not absolute", id="scheme-relative"),
        pytest.param("http://cdn.example.com/photo.jpg", "must use https", id="http"),
        pytest.param("ftp://cdn.example.com/photo.jpg", "not 'ftp'", id="ftp"),
        pytest.param("file:///etc/passwd", "not 'file'", id="file"),
        pytest.param("data:image/png;base64,iVBORw0KGgo=", "not 'data'", id="data"),
        pytest.param("https://user:secret@cdn.example.com/a.jpg", "credentials", id="password"),
        pytest.param("https://token@cdn.example.com/a.jpg", "credentials", id="user-only"),
        pytest.param("https:///photo.jpg", "has no host name", id="no-host"),
        pytest.param("https://", "has no host name", id="scheme-only"),
        pytest.param("https://cdn.example.com:99999/a.jpg", "is not a valid URL", id="bad-port"),
        pytest.param("https://cdn.example.com:abc/a.jpg", "is not a valid URL", id="text-port"),
        pytest.param("https://[2001:db8::1/a.jpg", "is not a valid URL", id="broken-ipv6"),
        # Recent Pythons refuse this in urlsplit, older 3.11 releases in Kairos's own check.
        pytest.param("https://[not-ip]/a.jpg", "'not-ip'", id="bad-ipv6"),
        pytest.param("https://-cdn.example.com/a.jpg", "invalid host name", id="bad-label"),
        pytest.param("https://cdn..example.com/a.jpg", "invalid host name", id="empty-label"),
        pytest.param("https://cdn.example.com/my photo.jpg", "spaces", id="space"),
        pytest.param("https://cdn.example.com/a.jpg\n", "control characters", id="newline"),
    ],
)
def test_bad_media_urls_are_reported(url: str, expected: str) -> None:
    violations = validate_media_url(url, "media_urls[0]")

    assert len(violations) == 1
    assert violations[0].field == "media_urls[0]"
    assert expected in violations[0].description


def test_http_media_is_allowed_only_when_asked_for() -> None:
    url = "http://localhost:8080/photo.jpg"

    assert fields(validate_content(Platform.X, "hi", [url])) == ["media_urls[0]"]
    assert validate_content(Platform.X, "hi", [url], allow_http_media=True) == []
    # The flag allows http, not anything else.
    assert fields(validate_content(Platform.X, "hi", ["ftp://a.example/x"], allow_http_media=True))


def test_media_url_longer_than_2048_is_reported_with_its_length() -> None:
    url = "https://cdn.example.com/" + "a" * 2100

    assert validate_media_url(url, "media_urls[0]") == [
        FieldViolation("media_urls[0]", "is 2,124 characters long; at most 2,048 are allowed")
    ]


def test_over_long_url_with_credentials_reports_both() -> None:
    url = "https://u:p@cdn.example.com/" + "a" * 2100

    violations = validate_media_url(url, "media_urls[3]")

    assert len(violations) == 2
    assert "characters long" in violations[0].description
    assert "credentials" in violations[1].description


# --- field names and collecting every violation ---------------------------------------------------


def test_violations_name_the_fields_as_the_client_sent_them() -> None:
    media = [IMAGE, "http://cdn.example.com/b.jpg", IMAGE, IMAGE, "/c.jpg"]

    violations = validate_content(
        Platform.X,
        "a" * 300,
        media,
        content_field="targets[2].content_override",
        media_field="media_urls",
    )

    assert fields(violations) == [
        "targets[2].content_override",
        "media_urls",
        "media_urls[1]",
        "media_urls[4]",
    ]


def test_every_problem_is_reported_at_once() -> None:
    violations = validate_content(
        Platform.BLUESKY,
        FAMILY * 301,
        [IMAGE] * 4 + ["ftp://x.example/a.jpg"],
    )

    assert fields(violations) == ["content", "content", "media_urls", "media_urls[4]"]


def test_validate_content_does_not_raise_on_odd_text() -> None:
    # A lone surrogate cannot be encoded as UTF-8 or UTF-16; counting must still not raise.
    for platform in Platform:
        assert isinstance(validate_content(platform, "\ud800", [IMAGE]), list)
    assert count_characters(Platform.BLUESKY, "\ud800") == 1
