"""The platforms Kairos publishes to, and the one catalogue of what each of them is.

`Platform` is a platform's stable name. `CATALOGUE` holds one `PlatformInfo` row per platform:
how people write its name, what an account of it carries, what one post on it may hold, and
whether a second try of its publish call is safe. Every service reads these rows rather than
listing platforms again, so adding a platform takes: a `Platform` value, its
`PLATFORM_<NAME>` value in the posts proto (the wire enum maps to `Platform` by name), one row
here, one publisher module (`kairos_publisher/platforms/<name>.py`) and, for a public platform,
one fake (`kairos_fakes/<name>.py`). Tests fail when any of these is missing.

The rows are plain data. The code that acts on them stays with its owner: the api's domain
counts text the way `Counting` names and checks credentials against the fields a row asks for.

Limit sources: the shared platform reference PLATFORMS.md (cited below by section, e.g. "§1"),
which itself cites the official docs. Where PLATFORMS.md gives no number or unit, the choice is
Kairos's own and is marked as such.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType


class Platform(enum.StrEnum):
    """A platform's stable name, used in NATS subjects, settings and the database."""

    X = "x"
    MASTODON = "mastodon"
    BLUESKY = "bluesky"
    LINKEDIN = "linkedin"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    THREADS = "threads"
    TELEGRAM = "telegram"
    DISCORD = "discord"
    SLACK = "slack"
    PINTEREST = "pinterest"
    TIKTOK = "tiktok"
    YOUTUBE = "youtube"
    WEBHOOK = "webhook"
    SANDBOX = "sandbox"


class Counting(enum.Enum):
    """How a platform measures the length of a post's text."""

    X_WEIGHTED = enum.auto()
    """twitter-text v3: NFC, then weight 1 or 2 per code point, 2 per emoji, 23 per URL."""
    MASTODON = enum.auto()
    """Grapheme clusters, once each URL counts 23 and `@user@domain` is read as `@user`."""
    GRAPHEMES = enum.auto()
    """Extended grapheme clusters (what a reader sees as one character)."""
    THREADS = enum.auto()
    """Code points, except that an emoji counts as many as its UTF-8 bytes."""
    UTF16_CODE_UNITS = enum.auto()
    """UTF-16 code units: 1 per character up to U+FFFF, 2 beyond (most emoji)."""
    CODE_POINTS = enum.auto()
    """Unicode code points, what Python's `len` counts."""
    UTF8_BYTES = enum.auto()
    """UTF-8 bytes: 1 per ASCII character, 2 to 4 beyond (most emoji 4)."""


@dataclass(frozen=True)
class PlatformLimits:
    """What one platform accepts in one post."""

    counting: Counting
    """How the text is measured."""
    max_chars: int
    """The most text allowed, in `unit`."""
    unit: str
    """The unit of `max_chars` in words, for messages ("weighted characters", "graphemes")."""
    counting_note: str
    """The counting rule in a few words, for messages; explains why a count differs from `len`."""
    max_media: int
    """The most media items one post may carry."""
    media_required: bool = False
    """True when the platform cannot publish text alone (Instagram)."""
    max_chars_with_media: int | None = None
    """A lower text limit that applies when media is attached (Telegram captions), or None."""
    max_utf8_bytes: int | None = None
    """A second text limit in UTF-8 bytes that applies as well as `max_chars` (Bluesky), or None."""
    max_links: int | None = None
    """The most distinct links the text may contain (Threads), or None for no limit."""
    video_only: bool = False
    """True when a post there is one uploaded video and nothing else (YouTube): media by URL
    and uploaded images are refused."""


class SettingKind(enum.Enum):
    """What a per-target setting's value must look like."""

    TEXT = enum.auto()
    """Any text."""
    URL = enum.auto()
    """An absolute http or https URL."""
    DIGITS = enum.auto()
    """An id of ASCII digits."""
    CHOICE = enum.auto()
    """One of the setting's `choices`, exactly as written there."""
    BOOLEAN = enum.auto()
    """"true" or "false"."""
    MEDIA_INDEX = enum.auto()
    """A position among the post's media, counted from 0: ASCII digits, below their number."""


@dataclass(frozen=True)
class TargetSetting:
    """A per-target setting a platform's publisher reads, and what its value may be."""

    what: str
    """What the setting is on this platform, for messages ("the pin's title")."""
    max_chars: int
    """The longest value the platform takes, counted as `counting` says."""
    kind: SettingKind = SettingKind.TEXT
    """The form the value must have."""
    counting: Counting = Counting.CODE_POINTS
    """How the platform measures the value's length."""
    unit: str = "characters"
    """The unit of `max_chars` in words, for messages."""
    choices: tuple[str, ...] = ()
    """The values a `CHOICE` setting may take."""
    required: bool = False
    """True when the platform cannot publish without it (it has no default Kairos may pick)."""


@dataclass(frozen=True)
class VideoRules:
    """What a platform takes as a post's video; the api checks an uploaded video against them
    when a post is created or edited (the api probed it when it was uploaded).

    Aspect ratios are width / height of the picture as shown (rotation applied): 9/16 is
    vertical. Codec names are FFmpeg's (`h264`, `hevc`, `vp9`, `av1`; `aac`, `mp3`, `opus`).
    A limit left None is not checked.
    """

    max_bytes: int
    """The largest file, in bytes."""
    max_seconds: float
    """The longest video, in seconds."""
    min_seconds: float = 0.0
    """The shortest video, in seconds."""
    types: frozenset[str] = frozenset({"video/mp4", "video/quicktime"})
    """The container types taken, as the api sniffed them."""
    video_codecs: frozenset[str] | None = None
    """The picture codecs taken, or None for any."""
    audio_codecs: frozenset[str] | None = None
    """The sound codecs taken (a video without sound is always taken), or None for any."""
    min_aspect: float | None = None
    """The narrowest width / height."""
    max_aspect: float | None = None
    """The widest width / height."""
    min_width: int | None = None
    """The narrowest picture, in pixels."""
    max_width: int | None = None
    """The widest picture, in pixels."""
    min_height: int | None = None
    """The lowest picture, in pixels."""
    max_height: int | None = None
    """The highest picture, in pixels."""
    max_frame_rate: float | None = None
    """The most frames per second."""
    min_bytes: int = 0
    """The smallest file, in bytes."""
    max_pixels: int | None = None
    """The most pixels in a picture (width times height), whichever way up."""
    max_chars: int | None = None
    """A lower text limit for a post that is this video (TikTok's 2,200-unit video title),
    counted as the platform's `limits` count; None when the platform's own limit holds."""
    what: str = "a video"
    """What the rules are for, in messages ("a Short", "a reel")."""


@dataclass(frozen=True)
class PlatformInfo:
    """What Kairos knows of one platform, whichever service asks."""

    name: str
    """The platform as people write it, for messages ("X", "Mastodon")."""
    limits: PlatformLimits
    """What one post may hold there; the api checks it when a post is created or edited."""
    needs_access_token: bool = True
    """False for a target reached by its URL alone, which publishes without a token."""
    instance_url: str = ""
    """What an account's `instance_url` is on this platform (required when set), for the message
    that asks for it; "" when the platform takes none."""
    page_id: str = ""
    """What an account's `page_id` is on this platform (required when set); "" when unused."""
    chat_id: str = ""
    """What an account's `chat_id` is on this platform (required when set); "" when unused."""
    idempotency_window: timedelta | None = None
    """How long the platform remembers a publish call's idempotency key, so that trying again
    after an attempt that may have published cannot publish twice; None when it has no key."""
    settings: Mapping[str, TargetSetting] = field(default_factory=lambda: MappingProxyType({}))
    """The per-target settings the api checks when a post is created or edited, by key; other
    keys are passed to the publisher unchecked."""
    pulls_media_by_url: bool = False
    """True when the platform is given each media file's URL and fetches it itself (Instagram's
    and Threads' containers, Facebook's `url`, Telegram's `photo`, embeds and image blocks, a
    webhook's payload); False when the publisher downloads the file and uploads its bytes (X,
    Mastodon, Bluesky, LinkedIn). An uploaded file goes to the former as a presigned URL, which
    only a media store that makes URLs (S3) can give."""
    video: VideoRules | None = None
    """What a post's uploaded video may be here; None when the platform takes no video (a post
    naming one is refused for it)."""
    uploads_video: bool = False
    """True when a post's uploaded video goes to the platform as bytes although it pulls other
    media by URL (Telegram's `sendVideo` upload, Slack's file upload, a Discord attachment): the
    video is never presigned, and the publisher streams it from the media store."""
    video_by_setting: tuple[tuple[str, str, VideoRules], ...] = ()
    """Rules that replace `video` for a target whose setting `key` has `value` (a Short, a
    story), as (key, value, rules); the first that matches applies."""
    own: bool = False
    """A target Kairos defines itself (a customer's webhook, the local sandbox), not a public
    platform's API: its endpoint may be plain http, and it has no fake under tools/fakes."""

    def pulls_by_url(self, kind: str) -> bool:
        """Whether an uploaded file of `kind` ("image", "gif", "video") goes to the platform as
        a presigned URL rather than as its bytes."""
        return self.pulls_media_by_url and not (kind == "video" and self.uploads_video)


#: Instagram's reel (its story is the same with other limits; see the Instagram row).
_REEL = VideoRules(
    max_bytes=300_000_000,
    max_seconds=15 * 60,
    min_seconds=3,
    video_codecs=frozenset({"h264", "hevc"}),
    audio_codecs=frozenset({"aac"}),
    min_aspect=0.01,
    max_aspect=10.0,
    max_width=1920,
    max_frame_rate=60,
    what="a reel",
)
#: A YouTube video (a Short is the same, shorter and not wider than square; see its row).
_YOUTUBE_VIDEO = VideoRules(
    max_bytes=256 * 1024**3,
    max_seconds=12 * 3600,
    types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
)

#: Kairos's own targets (a webhook, the sandbox) get a video's presigned URL and fetch it
#: themselves: any container the api takes, as large as an upload may be (1 GiB by default),
#: up to 12 hours. Kairos's own choice: no platform limits these.
_OWN_VIDEO = VideoRules(
    max_bytes=1024**3,
    max_seconds=12 * 3600,
    types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
)

_CODE_POINTS_NOTE = "Unicode code points; {name} does not document its counting unit"

CATALOGUE: Mapping[Platform, PlatformInfo] = MappingProxyType(
    {
        Platform.X: PlatformInfo(
            name="X",
            # §1: 280 weighted; 1-4 images per post.
            limits=PlatformLimits(
                counting=Counting.X_WEIGHTED,
                max_chars=280,
                unit="weighted characters",
                counting_note="URLs count 23, most non-Latin characters and emoji 2",
                max_media=4,
            ),
            # X's media best practices (xdevplatform/docs x-api/media/quickstart/
            # best-practices.mdx, "Video specifications", Advanced): at most 512 MB, 0.5 to 140
            # seconds, aspect 1:3 to 3:1, at least 32x32, at most 60 fps, AAC-LC audio; H.264
            # recommended (the only codec the page names). Its "at most 1280x1024" is not
            # applied: the same page recommends 720x1280 for portrait video. The page's media
            # types are those of INIT's `media_type` (openapi.json); MP4 and MOV are the
            # containers Kairos probes that carry H.264/AAC.
            video=VideoRules(
                max_bytes=512 * 1024 * 1024,
                min_seconds=0.5,
                max_seconds=140.0,
                types=frozenset({"video/mp4", "video/quicktime"}),
                video_codecs=frozenset({"h264"}),
                audio_codecs=frozenset({"aac"}),
                min_aspect=1 / 3,
                max_aspect=3.0,
                min_width=32,
                min_height=32,
                max_frame_rate=60.0,
            ),
        ),
        Platform.MASTODON: PlatformInfo(
            name="Mastodon",
            # §2: 500 is the default `max_characters`; an instance may configure another, as it
            # may `max_media_attachments` ("commonly 4"). Pass adjusted limits to the api's
            # `validate_content` when the instance's configuration is known.
            limits=PlatformLimits(
                counting=Counting.MASTODON,
                max_chars=500,
                unit="characters",
                counting_note=(
                    "grapheme clusters; URLs count 23 and @user@domain counts as @user; "
                    "500 is the default, an instance may allow more"
                ),
                max_media=4,
            ),
            instance_url="the instance's base URL",
            # Mastodon keeps an `Idempotency-Key` for an hour; 50 minutes leaves a margin.
            idempotency_window=timedelta(minutes=50),
            # Mastodon's defaults (4.4 on; an instance may set others, which it shows in
            # `GET /api/v2/instance` -> `configuration.media_attachments`): `video_size_limit`
            # 99 MB (`MediaAttachment::VIDEO_LIMIT`; 40 MB before), `video_frame_rate_limit`
            # 120, the video types of `VIDEO_MIME_TYPES` that Kairos probes (mastodon/mastodon
            # app/models/media_attachment.rb; mastodon/documentation entities/Instance.md shows
            # the same numbers). Mastodon sets no duration, but a video it re-encodes is cut at
            # `MAX_VIDEO_FRAMES` = 36,000 frames ("approx. 5 minutes at 120 fps"; H.264 with AAC
            # in yuv420p is copied uncut): 300 s is the longest no video within these rules
            # loses frames. Its `video_matrix_limit` of 8,294,400 pixels (3840x2160, either
            # way up) bounds width times height.
            video=VideoRules(
                max_bytes=99 * 1024 * 1024,
                max_seconds=300.0,
                types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
                max_frame_rate=120.0,
                max_pixels=8_294_400,
            ),
        ),
        Platform.BLUESKY: PlatformInfo(
            name="Bluesky",
            # §3: 300 graphemes and 3,000 UTF-8 bytes; at most 4 images. URLs count in full.
            limits=PlatformLimits(
                counting=Counting.GRAPHEMES,
                max_chars=300,
                unit="graphemes",
                counting_note="URLs count in full",
                max_media=4,
                max_utf8_bytes=3000,
            ),
            instance_url="the PDS base URL",
            # Bluesky's video service takes 3 minutes and 100 MB (ISO megabytes) from every
            # account (social-app #7916 "Bumped to 3 minutes / 100mb", src/lib/constants.ts
            # "Backend uses ISO megabytes"); 10 minutes and 300 MB are feature-gated
            # (social-app #11388, #10497), so not counted on. The app uploads MP4, QuickTime and
            # WebM as they are (constants.ts SUPPORTED_MIME_TYPES) and the service encodes them.
            video=VideoRules(
                max_bytes=100_000_000,
                max_seconds=180.0,
                types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
            ),
        ),
        Platform.LINKEDIN: PlatformInfo(
            name="LinkedIn",
            # §4: ~3,000 characters (widely cited, not in the official page; unit
            # undocumented); multiImage takes 2-20 images.
            limits=PlatformLimits(
                counting=Counting.CODE_POINTS,
                max_chars=3000,
                unit="characters",
                counting_note=_CODE_POINTS_NOTE.format(name="LinkedIn"),
                max_media=20,
            ),
            page_id="the author URN, urn:li:person:<id> or urn:li:organization:<id>",
            # LinkedIn's Videos API page, "Video File Size Specifications": MP4 only, 3 seconds
            # to 30 minutes, 75 KB to 500 MB (MB of 2^20 bytes, as its 4 MB upload parts are
            # 4,194,304). The 75 KB floor has no field here: the publisher refuses a smaller
            # file before uploading.
            video=VideoRules(
                max_bytes=500 * 1024 * 1024,
                max_seconds=30 * 60.0,
                min_seconds=3.0,
                types=frozenset({"video/mp4"}),
                # The Videos API page: "75 KB - 500 MB" (read as 75,000 bytes, the smaller).
                min_bytes=75_000,
            ),
        ),
        Platform.FACEBOOK: PlatformInfo(
            name="Facebook",
            # §5: 63,206 characters (third-party figure; unit undocumented). PLATFORMS.md gives
            # no count for `attached_media`: 10 is Kairos's own cap, in line with the other
            # carousels.
            limits=PlatformLimits(
                counting=Counting.CODE_POINTS,
                max_chars=63206,
                unit="characters",
                counting_note=_CODE_POINTS_NOTE.format(name="Facebook"),
                max_media=10,
            ),
            pulls_media_by_url=True,
            page_id="the Facebook page id",
            # A Page video (`POST /{page}/videos` with `file_url`). Meta's Page videos reference
            # (developers.facebook.com/docs/graph-api/reference/page/videos) states no size,
            # length or format limit; 10 GB and 240 minutes are the figures Facebook's Help
            # Center gives for uploads (widely cited; 10 GB read as 10^9 bytes each, the
            # smaller reading). MP4 and MOV are what Kairos sniffs as video; other limits are
            # left to Facebook, whose refusal comes back with its words.
            video=VideoRules(max_bytes=10_000_000_000, max_seconds=240 * 60, what="a Page video"),
        ),
        Platform.INSTAGRAM: PlatformInfo(
            name="Instagram",
            # §6: caption 2,200 characters (unit undocumented); text-only posts are not
            # supported; a carousel holds up to 10 items.
            limits=PlatformLimits(
                counting=Counting.CODE_POINTS,
                max_chars=2200,
                unit="characters",
                counting_note=_CODE_POINTS_NOTE.format(name="Instagram"),
                max_media=10,
                media_required=True,
            ),
            pulls_media_by_url=True,
            page_id="the Instagram professional account id",
            # What a post's video (or single image) is published as: a reel (the default, and
            # the only way a single video reaches the feed since 2023-11-09) or a story (no
            # caption: Meta's story containers take none). IG User Media reference
            # (developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/
            # ig-user/media): `media_type` REELS or STORIES.
            settings=MappingProxyType(
                {
                    "media_type": TargetSetting(
                        "what the video is published as",
                        7,
                        SettingKind.CHOICE,
                        choices=("REELS", "STORIES"),
                    ),
                }
            ),
            # The same page's "Reel Specifications": MOV or MP4; HEVC or H264; AAC; 23-60 FPS;
            # at most 1920 columns; aspect ratio between 0.01:1 and 10:1 (9:16 recommended);
            # "15 mins maximum, 3 seconds minimum"; "300MB maximum" (read as 300 * 10^6).
            video=_REEL,
            # Its "Story Video Specifications": as a reel's, but the aspect ratio between 0.1:1
            # and 10:1, "60 seconds maximum, 3 seconds minimum" and "100MB maximum".
            video_by_setting=(
                (
                    "media_type",
                    "STORIES",
                    replace(
                        _REEL, max_bytes=100_000_000, max_seconds=60, min_aspect=0.1, what="a story"
                    ),
                ),
            ),
        ),
        Platform.THREADS: PlatformInfo(
            name="Threads",
            # §7: 500 characters, emoji counted as their UTF-8 bytes; a carousel has up to 20
            # children. The 5-link cap is from the official Threads docs (text attachments
            # page): since 2025-12-22 a post with more than 5 distinct links fails at container
            # creation.
            limits=PlatformLimits(
                counting=Counting.THREADS,
                max_chars=500,
                unit="characters",
                counting_note="emoji count as their UTF-8 bytes, e.g. 4 for 😀",
                max_media=20,
                max_links=5,
            ),
            pulls_media_by_url=True,
            page_id="the Threads user id",
            # A VIDEO container. The Threads overview's "Video Specifications"
            # (developers.facebook.com/docs/threads/overview): MOV or MP4; HEVC or H264; AAC;
            # 23-60 FPS; at most 1920 columns; aspect ratio between 0.01:1 and 10:1; "300
            # seconds (5 minutes) maximum, minimum longer than 0 seconds"; "1 GB maximum" (read
            # as 10^9 bytes).
            video=VideoRules(
                max_bytes=1_000_000_000,
                max_seconds=300,
                video_codecs=frozenset({"h264", "hevc"}),
                audio_codecs=frozenset({"aac"}),
                min_aspect=0.01,
                max_aspect=10.0,
                max_width=1920,
                max_frame_rate=60,
                what="a Threads video",
            ),
        ),
        Platform.TELEGRAM: PlatformInfo(
            name="Telegram",
            # §8: text 4,096, caption 1,024; entity offsets are UTF-16 code units, so that is
            # the unit counted (it is never less than the code point count, so it cannot let an
            # over-long text through). The limit applies after entity parsing: counting the raw
            # text can only over-count markup. sendMediaGroup takes 2-10 items.
            limits=PlatformLimits(
                counting=Counting.UTF16_CODE_UNITS,
                max_chars=4096,
                unit="UTF-16 code units",
                counting_note="emoji and other characters beyond U+FFFF count 2",
                max_media=10,
                max_chars_with_media=1024,
            ),
            pulls_media_by_url=True,
            chat_id="the chat id or @channel",
            # Bot API `sendVideo` (core.telegram.org/bots/api#sendvideo): "Telegram clients
            # support MPEG4 videos (other formats may be sent as Document)" and "Bots can
            # currently send video files of up to 50 MB in size"; 50 MB is read as 50,000,000
            # bytes, the smaller reading (a larger upload is answered 413 "Request Entity Too
            # Large", tdlib/telegram-bot-api#720). The video is uploaded as multipart form data:
            # Telegram fetches a video by URL only up to 20 MB ("Sending Files"). No length
            # limit is documented; 24 hours is Kairos's own cap.
            video=VideoRules(
                max_bytes=50_000_000,
                max_seconds=24 * 3600.0,
                types=frozenset({"video/mp4"}),
            ),
            uploads_video=True,
        ),
        Platform.DISCORD: PlatformInfo(
            name="Discord",
            # §9: `content` 2,000 characters (unit unspecified); images go in embeds, up to 10.
            limits=PlatformLimits(
                counting=Counting.CODE_POINTS,
                max_chars=2000,
                unit="characters",
                counting_note=_CODE_POINTS_NOTE.format(name="Discord"),
                max_media=10,
            ),
            pulls_media_by_url=True,
            # A video is an attachment (`files[0]`) of the webhook message: discord-api-docs
            # reference.mdx "Uploading Files": "The file upload size limit applies to each file
            # in a request. The default limit is `10 MiB`" (the change log of 2024-12-16 applies
            # it to webhooks from 2025-01-16; a boosted server may allow more, which a webhook
            # cannot learn). Discord takes any file; MP4, QuickTime and WebM are the kinds its
            # clients play inline. No length limit is documented; 24 hours is Kairos's own cap.
            video=VideoRules(
                max_bytes=10 * 1024 * 1024,
                max_seconds=24 * 3600.0,
                types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
            ),
            uploads_video=True,
        ),
        Platform.SLACK: PlatformInfo(
            name="Slack",
            # §10: `text` beyond 40,000 characters is truncated, which Kairos treats as a limit
            # rather than publish a cut post. A message holds at most 50 blocks and each image
            # is one block: one block is kept back for the text section.
            limits=PlatformLimits(
                counting=Counting.CODE_POINTS,
                max_chars=40000,
                unit="characters",
                counting_note=_CODE_POINTS_NOTE.format(name="Slack"),
                max_media=49,
            ),
            pulls_media_by_url=True,
            chat_id="the channel id",
            # A video is a file shared into the channel: `files.getUploadURLExternal`, the bytes
            # to its `upload_url`, then `files.completeUploadExternal` (docs.slack.dev reference
            # of both methods). Slack's help centre gives 1 GB as the largest file ("File upload
            # limits"), read as 1,000,000,000 bytes; a workspace may restrict it further
            # (`file_upload_size_restricted`). Slack plays MP4, QuickTime and WebM inline. No
            # length limit is documented; 24 hours is Kairos's own cap.
            video=VideoRules(
                max_bytes=1_000_000_000,
                max_seconds=24 * 3600.0,
                types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
            ),
            uploads_video=True,
        ),
        Platform.PINTEREST: PlatformInfo(
            name="Pinterest",
            # Not in PLATFORMS.md; from Pinterest's OpenAPI description (pinterest/api-description
            # v5/openapi.json, release 5.23.0, schema `PinCreate`): a pin's `description` has
            # `maxLength` 800, which JSON Schema counts in characters, i.e. code points. The post's
            # text is the pin's description. One pin carries one image (`media_source` of
            # `source_type` "image_url"); a pin without media shows nothing, so media is required.
            # Pinterest's other text fields (title 100, alt_text 500, link 2,048) are not the
            # post's text.
            limits=PlatformLimits(
                counting=Counting.CODE_POINTS,
                max_chars=800,
                unit="characters",
                counting_note="Unicode code points",
                max_media=1,
                media_required=True,
            ),
            page_id="the id of the board pins are saved to (digits only)",
            # Pinterest fetches the image itself (`media_source` "image_url"); a video's bytes are
            # sent to the upload URL `POST /v5/media` gives, so it needs no URL of Kairos's.
            pulls_media_by_url=True,
            uploads_video=True,
            # `PinCreate` again: `board_id` matches `^\d+$` (its length of 30 is Kairos's own
            # cap, as for the account's board), `title` has `maxLength` 100, `alt_text` 500 and
            # `link` 2,048 (which the api's cap of 1,000 characters on any setting's value
            # reaches first).
            settings=MappingProxyType(
                {
                    "board_id": TargetSetting(
                        "the board to save this pin to instead of the account's",
                        30,
                        SettingKind.DIGITS,
                    ),
                    "title": TargetSetting("the pin's title", 100),
                    "alt_text": TargetSetting("the image's alternative text", 500),
                    "link": TargetSetting("the page the pin links to", 2048, SettingKind.URL),
                    # `PinMediaSourceVideoID` (the same spec): a video pin's cover is an image
                    # URL or the key frame at a time in whole seconds (`minimum` 0; "if entered
                    # time exceeds video duration, the last frame is used"). 5 digits reach the
                    # 15-minute maximum. Without either the first frame is the cover (Kairos's
                    # choice: it sends `cover_image_key_frame_time` 0).
                    "cover_image_url": TargetSetting(
                        "the image shown as a video pin's cover", 2048, SettingKind.URL
                    ),
                    "cover_image_key_frame_time": TargetSetting(
                        "the second of the video shown as a video pin's cover",
                        5,
                        SettingKind.DIGITS,
                    ),
                }
            ),
            # Pinterest's "Video Pins" creative specs (help.pinterest.com/en/business/article/
            # video-pins, and business.pinterest.com/en/Pinterest-product-specs): .mp4, .mov or
            # .m4v (an M4V is sniffed as MP4), H.264 or H.265, at most 2 GB, 4 seconds to 15
            # minutes, and for a standard video an aspect ratio "taller than 1.91:1 and shorter
            # than 1:2" (width / height from 0.5 to 1.91). The video goes through `POST
            # /v5/media` and an upload, not by URL.
            video=VideoRules(
                max_bytes=2 * 1024**3,
                max_seconds=15 * 60,
                min_seconds=4,
                types=frozenset({"video/mp4", "video/quicktime"}),
                video_codecs=frozenset({"h264", "hevc"}),
                min_aspect=1 / 2,
                max_aspect=1.91,
                what="a video pin",
            ),
        ),
        Platform.TIKTOK: PlatformInfo(
            name="TikTok",
            # Not in PLATFORMS.md; from TikTok's Content Posting API reference for photo posts
            # (developers.tiktok.com/doc/content-posting-api-reference-photo-post): the post's
            # text is the photo post's `description`, "The maximum length for photo posts is 4000
            # in UTF-16 runes"; `photo_images` is "An array containing up to 35 photo content
            # URLs" (TikTok pulls them itself); a photo post without photos is nothing, so media
            # is required. A video post's text is its `title` instead, at most 2,200 UTF-16
            # runes (the direct post page): the publisher refuses a longer one (this row has one
            # text limit).
            limits=PlatformLimits(
                counting=Counting.UTF16_CODE_UNITS,
                max_chars=4000,
                unit="UTF-16 code units",
                counting_note="emoji and other characters beyond U+FFFF count 2",
                max_media=35,
                media_required=True,
            ),
            # TikTok fetches the photos itself (`PULL_FROM_URL`), from a URL prefix verified
            # for the app: a presigned store URL must be on such a domain. A video goes by
            # `FILE_UPLOAD` (the publisher streams it in chunks), which needs neither such a
            # domain nor a store that makes URLs.
            pulls_media_by_url=True,
            uploads_video=True,
            # The same page's `post_info` and `source_info`: `privacy_level` is "Required for
            # DIRECT POST" and "must match one of the privacy_level_options" the creator has,
            # and TikTok's UX guidelines (content-sharing-guidelines) let no app pick it for the
            # user, so Kairos has no default either; `title` is at most 90 UTF-16 runes;
            # `disable_comment` and `auto_add_music` are booleans; `photo_cover_index` is the
            # index (from 0) of the cover among `photo_images` (2 digits reach 34).
            settings=MappingProxyType(
                {
                    "privacy_level": TargetSetting(
                        "who may see the post",
                        32,
                        SettingKind.CHOICE,
                        choices=(
                            "PUBLIC_TO_EVERYONE",
                            "MUTUAL_FOLLOW_FRIENDS",
                            "FOLLOWER_OF_CREATOR",
                            "SELF_ONLY",
                        ),
                        required=True,
                    ),
                    "title": TargetSetting(
                        "the photo post's title",
                        90,
                        counting=Counting.UTF16_CODE_UNITS,
                        unit="UTF-16 code units",
                    ),
                    "disable_comment": TargetSetting(
                        "whether others may not comment", 5, SettingKind.BOOLEAN
                    ),
                    "auto_add_music": TargetSetting(
                        "whether TikTok adds recommended music", 5, SettingKind.BOOLEAN
                    ),
                    "photo_cover_index": TargetSetting(
                        "the photo shown as the cover, counted from 0", 2, SettingKind.MEDIA_INDEX
                    ),
                    # The video direct post reference (content-posting-api-reference-direct-post):
                    # `disable_duet` and `disable_stitch` are booleans (a creator whose
                    # creator_info says duets or stitches are off gets them off regardless);
                    # `video_cover_timestamp_ms` is the frame shown as the cover, in
                    # milliseconds (7 digits reach the 10-minute maximum).
                    "disable_duet": TargetSetting(
                        "whether others may not duet the video", 5, SettingKind.BOOLEAN
                    ),
                    "disable_stitch": TargetSetting(
                        "whether others may not stitch the video", 5, SettingKind.BOOLEAN
                    ),
                    "video_cover_timestamp_ms": TargetSetting(
                        "the millisecond of the video shown as its cover", 7, SettingKind.DIGITS
                    ),
                }
            ),
            # TikTok's media transfer guide (content-posting-api-media-transfer-guide, "Video
            # restrictions"): MP4 (recommended), WebM or MOV; H.264, H.265, VP8 or VP9; 23 to 60
            # frames a second; 360 to 4,096 pixels each way; at most 4 GB; "the longest video a
            # developer can send ... is 10 minutes" (a creator may have less: creator_info's
            # `max_video_post_duration_sec`, checked when the post is sent). TikTok's direct post
            # page gives no minimum; 3 seconds is the floor its processing refuses below
            # (`duration_check_failed`), as Ayrshare's TikTok media guidelines state it.
            video=VideoRules(
                max_bytes=4 * 1024**3,
                max_seconds=10 * 60,
                min_seconds=3,
                types=frozenset({"video/mp4", "video/quicktime", "video/webm"}),
                video_codecs=frozenset({"h264", "hevc", "vp8", "vp9"}),
                min_width=360,
                max_width=4096,
                min_height=360,
                max_height=4096,
                max_frame_rate=60,
                # video/init's `post_info.title` is the video's text: "The video caption ... max
                # length of 2200 in UTF-16 runes" (Content Posting API reference), where photo
                # posts take a 4,000-rune description.
                max_chars=2200,
                what="a TikTok video",
            ),
        ),
        Platform.YOUTUBE: PlatformInfo(
            name="YouTube",
            # Not in PLATFORMS.md; from the YouTube Data API v3 reference
            # (developers.google.com/youtube/v3/docs/videos, "snippet.description"): the post's
            # text is the video's description, "a maximum length of 5000 bytes" (UTF-8) without
            # < or >. A YouTube post is one uploaded video (videos.insert takes exactly one media
            # body), so media is required and at most one item.
            limits=PlatformLimits(
                counting=Counting.UTF8_BYTES,
                max_chars=5000,
                unit="UTF-8 bytes",
                counting_note="accented letters count 2, most emoji 4",
                max_media=1,
                media_required=True,
                video_only=True,
            ),
            # The publisher uploads the bytes itself (the resumable upload protocol).
            # videos.insert's `status.privacyStatus` is private, unlisted or public; YouTube
            # would pick private, but a video nobody sees is not what a scheduled post means,
            # so Kairos asks each target to say. `snippet.title`: "a maximum length of 100
            # characters", without < or > (videos resource). `status.selfDeclaredMadeForKids`
            # is a boolean. `snippet.categoryId` is a category id (digits; 3 reach them all).
            # `snippet.tags` count "a maximum length of 500 characters" together, commas
            # included (the videos resource). `short` chooses the Short rules below and the
            # /shorts/ URL.
            settings=MappingProxyType(
                {
                    "privacy": TargetSetting(
                        "who may see the video",
                        8,
                        SettingKind.CHOICE,
                        choices=("private", "unlisted", "public"),
                        required=True,
                    ),
                    "title": TargetSetting("the video's title (else the text's first line)", 100),
                    "made_for_kids": TargetSetting(
                        "whether the video is made for kids", 5, SettingKind.BOOLEAN
                    ),
                    "category_id": TargetSetting("the video's category id", 3, SettingKind.DIGITS),
                    "tags": TargetSetting("the video's tags, separated by commas", 500),
                    "short": TargetSetting(
                        "whether the video is a Short (vertical or square, 3 minutes at most)",
                        5,
                        SettingKind.BOOLEAN,
                    ),
                }
            ),
            # videos.insert (developers.google.com/youtube/v3/docs/videos/insert): "Maximum file
            # size: 256GB", accepted types "video/*" (the discovery document's `maxSize` is
            # 274877906944, 256 GiB). Length: YouTube Help "Upload videos longer than 15
            # minutes": 12 hours (or 256 GB, whichever is less) for a verified account, 15
            # minutes otherwise; Kairos cannot tell which a channel is, so it takes 12 hours and
            # YouTube rejects a longer video of an unverified channel while processing it
            # (`rejectionReason` "length", read back as PERMANENT). MP4, MOV and WebM are among
            # YouTube Help's "Supported YouTube file formats" and are what an upload can be.
            video=_YOUTUBE_VIDEO,
            # A Short (YouTube Help "Upload YouTube Shorts"): a square or vertical video of up to
            # 3 minutes (since 2024-10-15; 60 seconds before); YouTube makes such an upload a
            # Short by itself, whatever the setting says.
            video_by_setting=(
                (
                    "short",
                    "true",
                    replace(_YOUTUBE_VIDEO, max_seconds=180, max_aspect=1.0, what="a Short"),
                ),
            ),
        ),
        # Kairos's own targets: no platform imposes a limit, so theirs only stop absurd
        # payloads. A webhook is authenticated by its URL (and signing secret); the sandbox is a
        # local fake that accepts any token.
        Platform.WEBHOOK: PlatformInfo(
            name="Webhook",
            limits=PlatformLimits(
                counting=Counting.CODE_POINTS,
                max_chars=100_000,
                unit="characters",
                counting_note="Unicode code points",
                max_media=100,
            ),
            pulls_media_by_url=True,
            needs_access_token=False,
            video=_OWN_VIDEO,
            own=True,
        ),
        Platform.SANDBOX: PlatformInfo(
            name="Sandbox",
            limits=PlatformLimits(
                counting=Counting.CODE_POINTS,
                max_chars=100_000,
                unit="characters",
                counting_note="Unicode code points",
                max_media=100,
            ),
            pulls_media_by_url=True,
            needs_access_token=False,
            instance_url="the sandbox endpoint URL",
            video=_OWN_VIDEO,
            own=True,
        ),
    }
)
"""Every platform's row. Tests check that no `Platform` is missing."""


def video_rules(platform: Platform, settings: Mapping[str, str]) -> VideoRules | None:
    """The video rules of a target on `platform` with these settings, or None when it takes no
    video."""
    info = CATALOGUE[platform]
    for key, value, rules in info.video_by_setting:
        if settings.get(key) == value:
            return rules
    return info.video
