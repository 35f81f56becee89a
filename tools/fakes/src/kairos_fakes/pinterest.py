"""A fake of Pinterest's API v5: image pins on a board, and OAuth token refresh.

Sources: Pinterest's OpenAPI description (github.com/pinterest/api-description, v5/openapi.json,
release 5.23.0; "the spec" below), Pinterest's own clients (pinterest/api-quickstart,
pinterest/pinterest-python-sdk) and exchanges recorded in public issue threads.

Routes (one host, as api.pinterest.com):
- `POST /v5/pins`: JSON `PinCreate` (`board_id`, `description`, `title`, `link`, `alt_text`,
  `media_source`), bearer token. Answered 201 with the `Pin` (`id`, `created_at`, `board_id`,
  `board_owner`, `media`, ...), shaped as the response recorded in pinterest/api-quickstart#78.
  Pinterest fetches an `image_url` itself, and so does this fake: one it cannot fetch is
  answered 400 `{"code": 1, "message": "Sorry we could not fetch the image."}` (the body
  recorded in gitroomhq/postiz-app#1931). Limits from `PinCreate`: `board_id` `^\\d+$`, title
  100, description 800, alt_text 500, link 2,048 characters; a longer field, a missing board or
  media source, or a `source_type` other than `image_url` is a 400 code 1 (that wording is this
  fake's own). A board outside `boards` (when set) is 404 `{"code": 40, "message": "Board not
  found."}` (the spec's example).
- `POST /v5/oauth/token`: form `grant_type=refresh_token&refresh_token=...` with the app's
  client id and secret as HTTP Basic auth (the spec's `basic` security on `/oauth/token`; the
  same request in pinterest-python-sdk's `get_new_access_token` and pinterest/api-quickstart's
  `AccessToken.refresh`). Answered 200 with the spec's `OauthAccessTokenResponseRefresh`:
  `access_token`, `token_type`, `expires_in` (30 days, as recorded in public clients' tests),
  `scope`, `refresh_token` and its `refresh_token_expires_in` (60 days: the spec's "continuous
  refresh token (60-day expiration, refreshable indefinitely)") and `refresh_token_expires_at`.
  Every refresh returns a new refresh token (the spec requires one in the answer); whether
  Pinterest still takes the old one afterwards is not documented, so this fake spends it
  (`rotating`), the stricter reading: Kairos must keep the new one.

Errors are the spec's `{"code": <int>, "message": "..."}`; the 401 for a missing, expired or
revoked token is `{"code": 2, "message": "Authentication failed.", "status": "failure"}`, the
body recorded in pinterest/pinterest-python-generated-api-client#31 and
vijaypatoliya/pinterest-node-api#20. Every answer carries `x-pinterest-rid`, the request id
Pinterest's clients log (pinterest/api-quickstart `api_common.py`).

Rate limits: a 429 is code 8 with the spec's message ("This request exceeded a rate limit...").
Pinterest documents no header saying how long to wait (its rate-limits page,
developers.pinterest.com/docs/reference/rate-limits, gives per-category budgets per minute or per
day, and the spec no response headers), so the 429 carries none and a fault's `seconds` is
unused.

Fault operations: "create" and "refresh". `rate_limit` answers the 429 (with the fault's message
instead when given: a spam block is a 429 too, and pinterest/api-quickstart tells it apart by
"spam" in its message), `server_error` a 500 "Something went wrong on our end." (the words
gitroomhq/postiz-app retries on), `reject` the spec's 403 `{"code": 29, "message": "You are not
permitted to access that resource."}` (or the fault's message), `expire_token` expires the
presented token and answers the 401, `hang` saves the pin and never answers. On "refresh",
`reject` and `expire_token` refuse the refresh token.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from aiohttp import web

from kairos_fakes._graph import fetch_type
from kairos_fakes.base import FakeServer, Fault, Tokens, bearer, new_id

ACCESS_LIFETIME = 30 * 24 * 3600.0
REFRESH_LIFETIME = 60 * 24 * 3600
SCOPE = "boards:read,boards:write,pins:read,pins:write"
#: `PinCreate` string limits (`maxLength`, in characters).
MAX_LENGTHS = {"title": 100, "description": 800, "alt_text": 500, "link": 2048}
BOARD_ID = re.compile(r"^\d+$")
RATE_LIMITED = (
    "This request exceeded a rate limit. This can happen if the client exceeds one\n"
    "of the published rate limits or if multiple write operations are applied to\n"
    "an object within a short time window."
)
NOT_PERMITTED = "You are not permitted to access that resource."
COULD_NOT_FETCH = "Sorry we could not fetch the image."
SERVER_ERROR = "Something went wrong on our end."
#: Marks a call whose `hang` fault lets the pin be saved but the answer never come.
HANG = web.RequestKey("hang", bool)


def error(http_status: int, code: int, message: str, **more: Any) -> web.Response:
    """Pinterest's error body, with a request id as every answer has."""
    return web.json_response(
        {"code": code, "message": message, **more},
        status=http_status,
        headers={"x-pinterest-rid": new_id(16)},
    )


def invalid(message: str) -> web.Response:
    return error(400, 1, f"Invalid request: {message}")


def authentication_failed() -> web.Response:
    return error(401, 2, "Authentication failed.", status="failure")


class PinterestFake(FakeServer):
    name: ClassVar[str] = "pinterest"
    default_port: ClassVar[int] = 9111

    def __init__(self) -> None:
        super().__init__()
        self.tokens = Tokens(prefix="pin", rotating=True)
        self.posts: list[dict[str, Any]] = []
        #: The boards that exist; None accepts any board id (as `make dev` does).
        self.boards: set[str] | None = None
        #: When set, the token endpoint checks the app's Basic credentials against these.
        self.client_id = ""
        self.client_secret = ""
        #: The owner's username shown in a pin's `board_owner`.
        self.username = "kairos"

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v5/pins", self.create)
        router.add_post("/v5/oauth/token", self.token)

    def issue(self) -> tuple[str, str]:
        """A new (access, refresh) pair as Pinterest's authorization-code grant gives it."""
        return self.tokens.issue(ACCESS_LIFETIME)

    def fault_answer(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        """The answer for a queued fault; None for none or for `hang` (the handler saves the pin,
        then hangs)."""
        if fault is None:
            return None
        if fault.kind == "hang":
            request[HANG] = True
            return None
        if fault.kind == "rate_limit":
            return error(429, 8, fault.message or RATE_LIMITED)
        if fault.kind == "server_error":
            return error(500, 500, SERVER_ERROR)
        if fault.kind == "expire_token":
            self.tokens.expire(bearer(request))
            return authentication_failed()
        return error(403, 29, fault.message or NOT_PERMITTED)

    async def create(self, request: web.Request) -> web.Response:
        refused = self.fault_answer(request, self.fault("create"))
        if refused is not None:
            return refused
        if self.tokens.state(bearer(request)) != "ok":
            return authentication_failed()
        try:
            data = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return invalid("the body is not JSON")
        if not isinstance(data, dict):
            return invalid("the body must be a JSON object")
        problem = await self.check(data)
        if problem is not None:
            return problem
        pin = self.save(data)
        if request.get(HANG):
            return await self.hang()
        return web.json_response(pin, status=201, headers={"x-pinterest-rid": new_id(16)})

    async def check(self, data: dict[str, Any]) -> web.Response | None:
        """Pinterest's refusal of this `PinCreate`, or None when a pin can be made of it."""
        board = data.get("board_id")
        if not isinstance(board, str) or not BOARD_ID.match(board):
            return invalid(f"'board_id' value {board!r} must match the pattern: ^\\d+$")
        for field, limit in MAX_LENGTHS.items():
            value = data.get(field)
            if value is not None and not isinstance(value, str):
                return invalid(f"'{field}' must be a string")
            if value is not None and len(value) > limit:
                return invalid(f"'{field}' is longer than {limit} characters ({len(value)})")
        source = data.get("media_source")
        if not isinstance(source, dict) or source.get("source_type") != "image_url":
            return invalid("'media_source' must have source_type 'image_url' here")
        url = source.get("url")
        if not isinstance(url, str) or not url:
            return invalid("'media_source.url' is required")
        if self.boards is not None and board not in self.boards:
            return error(404, 40, "Board not found.")
        if not await fetch_type(url):
            return error(400, 1, COULD_NOT_FETCH)
        return None

    def save(self, data: dict[str, Any]) -> dict[str, Any]:
        """Store the pin and return it as Pinterest shows it."""
        source: dict[str, Any] = data["media_source"]
        image = str(source["url"])
        pin: dict[str, Any] = {
            "id": new_id(18),
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "link": data.get("link"),
            "title": data.get("title"),
            "description": data.get("description"),
            "dominant_color": "#e8d3db",
            "alt_text": data.get("alt_text"),
            "board_id": data["board_id"],
            "board_section_id": data.get("board_section_id"),
            "board_owner": {"username": self.username},
            "parent_pin_id": None,
            "media": {
                "media_type": "image",
                "images": {
                    "originals": {"width": 1200, "height": 1508, "url": image},
                },
            },
        }
        self.posts.append(pin)
        return pin

    async def token(self, request: web.Request) -> web.Response:
        fault = self.fault("refresh")
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        if fault is not None and fault.kind == "rate_limit":
            return error(429, 8, fault.message or RATE_LIMITED)
        if fault is not None and fault.kind == "server_error":
            return error(500, 500, SERVER_ERROR)
        client = self.basic(request)
        if client is None or (self.client_id and client != (self.client_id, self.client_secret)):
            return authentication_failed()
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return invalid("'grant_type' must be refresh_token here")
        pair = None
        if fault is None:  # any other fault refuses the refresh token
            pair = self.tokens.use_refresh(form.get("refresh_token", ""), ACCESS_LIFETIME)
        if pair is None:
            return invalid("the refresh token is invalid, expired or revoked")
        access, refresh = pair
        return web.json_response(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": int(ACCESS_LIFETIME),
                "scope": SCOPE,
                "refresh_token": refresh,
                "refresh_token_expires_in": REFRESH_LIFETIME,
                "refresh_token_expires_at": int(time.time()) + REFRESH_LIFETIME,
                "response_type": "refresh_token",
            },
            headers={"x-pinterest-rid": new_id(16)},
        )

    @staticmethod
    def basic(request: web.Request) -> tuple[str, str] | None:
        """(client_id, client_secret) from an `Authorization: Basic` header, else None."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if not client_id or not secret:
            return None
        return client_id, secret


Fake = PinterestFake
