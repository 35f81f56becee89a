"""A fake Bluesky PDS: the XRPC methods a poster uses, answering as bsky.social does.

Methods (all under `/xrpc/`): `com.atproto.server.createSession` (handle or did and app
password), `com.atproto.server.refreshSession` (the refresh JWT as bearer, no body; single use),
`com.atproto.server.getSession`, `com.atproto.repo.uploadBlob` (raw bytes, at most 1,000,000),
`com.atproto.repo.createRecord` and `com.atproto.repo.getRecord`.

What it reproduces (PLATFORMS.md §3, §12):
- Errors as XRPC bodies `{"error": <Name>, "message": ...}`: a stale access token is 400
  `ExpiredToken` "Token has expired" (a revoked one "Token has been revoked"), a refresh JWT used
  as an access token or the reverse 400 `InvalidToken` "Bad token scope", no token 401
  `AuthenticationRequired`, a wrong password 401 "Invalid identifier or password", lexicon
  violations 400 `InvalidRequest` (300 graphemes and 3,000 UTF-8 bytes of text, 4 images, strong
  refs in `reply`, valid `createdAt`, blobs that were uploaded), 400 `BlobTooLarge`, 400
  `RecordNotFound`, and 500 for a createRecord that reuses an rkey (atproto#3718).
- Tokens shaped like the PDS's JWTs (`sub` is the did, `scope` tells access from refresh, `exp`),
  so a client can read its expiry; the access JWT lasts `access_lifetime` seconds.
- `ratelimit-limit/remaining/reset/policy` on every answer, from one budget of `rate_limit`
  requests per `rate_window` seconds; over it, 429 `RateLimitExceeded`.
- Records kept with their uri and cid, so getRecord gives back what a reply needs.

Tokens it never issued are accepted (their `sub`, if any, is the repo; else the body's `repo`),
so `make dev` works with made-up credentials. The account `kairos.bsky.social` (password
`kairos-app-password`) exists from the start; tests add their own with `add_account`.

Fault operations for `fail_next`: "session" (createSession), "refresh" (refreshSession),
"get_session", "upload" (uploadBlob), "get_record" and "create" (createRecord).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import regex  # type: ignore[import-untyped]
from aiohttp import web

from kairos_fakes.base import FakeServer, Fault, Token, Tokens, bearer

POST = "app.bsky.feed.post"
IMAGES = "app.bsky.embed.images"
MAX_GRAPHEMES = 300
MAX_TEXT_BYTES = 3000
MAX_BLOB_BYTES = 1_000_000
MAX_IMAGES = 4
ACCESS_SCOPE = "com.atproto.access"
REFRESH_SCOPE = "com.atproto.refresh"
REFRESH_LIFETIME = 90 * 24 * 3600.0
#: The base32 alphabet of record keys (TIDs), which sorts like the timestamps it encodes.
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
GRAPHEME = regex.compile(r"\X")
#: RFC 3339 with a zone, as the lexicon's `datetime` format asks.
DATETIME = regex.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

Json = dict[str, Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: Json, kind: str) -> str:
    """A token shaped like the PDS's (header.claims.signature); the signature is random."""
    header = {"typ": kind, "alg": "HS256"}
    parts = [json.dumps(header).encode(), json.dumps(claims).encode(), secrets.token_bytes(32)]
    return ".".join(b64url(part) for part in parts)


def claims_of(token: str) -> Json:
    """The claims of a JWT-shaped token, or {} for any other string."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        found = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def content_id(data: bytes, prefix: str) -> str:
    """A CIDv1-looking string: `bafyrei…` for records (dag-cbor), `bafkrei…` for blobs (raw)."""
    digest = base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")
    return prefix + digest


@dataclass(frozen=True)
class Account:
    did: str
    handle: str
    password: str


class Sessions(Tokens):
    """Access and refresh JWTs per account; a refresh JWT is single use (it rotates)."""

    def open(self, did: str, lifetime: float) -> tuple[str, str]:
        """A new (accessJwt, refreshJwt) pair for `did`."""
        now = time.time()
        access = jwt(
            {"scope": ACCESS_SCOPE, "sub": did, "iat": int(now), "exp": int(now + lifetime)},
            "at+jwt",
        )
        refresh = jwt(
            {
                "scope": REFRESH_SCOPE,
                "sub": did,
                "jti": secrets.token_urlsafe(16),
                "iat": int(now),
                "exp": int(now + REFRESH_LIFETIME),
            },
            "refresh+jwt",
        )
        self.access[access] = Token(access, now + lifetime)
        self.refresh[refresh] = Token(refresh, now + REFRESH_LIFETIME)
        return access, refresh


class BlueskyFake(FakeServer):
    name: ClassVar[str] = "bluesky"
    default_port: ClassVar[int] = 9103

    def __init__(self) -> None:
        super().__init__()
        self.sessions = Sessions(prefix="bsky")
        self.accounts: dict[str, Account] = {}
        #: Every record created, in order: {"uri", "cid", "repo", "collection", "rkey", "record"}.
        self.posts: list[Json] = []
        self.records: dict[str, Json] = {}
        #: Uploaded blobs by CID: {"mimeType", "size", "content"}.
        self.blobs: dict[str, Json] = {}
        self.sessions_created = 0
        self.access_lifetime = 7200.0
        self.rate_limit = 3000
        self.rate_window = 300.0
        self._window_start = time.time()
        self._spent = 0
        self._last_tid = 0
        self.default_account = self.add_account("kairos.bsky.social", "kairos-app-password")

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/xrpc/com.atproto.server.createSession", self.create_session)
        router.add_post("/xrpc/com.atproto.server.refreshSession", self.refresh_session)
        router.add_get("/xrpc/com.atproto.server.getSession", self.get_session)
        router.add_post("/xrpc/com.atproto.repo.uploadBlob", self.upload_blob)
        router.add_post("/xrpc/com.atproto.repo.createRecord", self.create_record)
        router.add_get("/xrpc/com.atproto.repo.getRecord", self.get_record)

    def add_account(self, handle: str, password: str) -> Account:
        """An account that can log in with `password`; its did is `did:plc:<24 chars>`."""
        suffix = b64url(hashlib.sha256(handle.encode()).digest()).lower()
        did = "did:plc:" + "".join(c for c in suffix if c.isalnum())[:24]
        account = Account(did, handle, password)
        self.accounts[did] = account
        return account

    def account(self, identifier: str) -> Account | None:
        """The account with this did or (case-insensitive) handle."""
        if identifier in self.accounts:
            return self.accounts[identifier]
        wanted = identifier.lower().removeprefix("@")
        return next((a for a in self.accounts.values() if a.handle.lower() == wanted), None)

    def session_for(self, did: str) -> tuple[str, str]:
        """Log `did` in without a password (for tests that start from a session)."""
        return self.sessions.open(did, self.access_lifetime)

    # Answers

    def spend(self) -> tuple[dict[str, str], bool]:
        """Count one request against the budget: its rate-limit headers, and whether it is over."""
        now = time.time()
        if now >= self._window_start + self.rate_window:
            self._window_start, self._spent = now, 0
        self._spent += 1
        reset = self._window_start + self.rate_window
        return self.limit_headers(max(0, self.rate_limit - self._spent), reset), (
            self._spent > self.rate_limit
        )

    def limit_headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {
            "ratelimit-limit": str(self.rate_limit),
            "ratelimit-remaining": str(remaining),
            "ratelimit-reset": str(int(reset + 0.999)),
            "ratelimit-policy": f"{self.rate_limit};w={int(self.rate_window)}",
        }

    @staticmethod
    def ok(body: Json, headers: dict[str, str]) -> web.Response:
        return web.json_response(body, headers=headers)

    @staticmethod
    def error(status: int, name: str, message: str, headers: dict[str, str]) -> web.Response:
        return web.json_response(
            {"error": name, "message": message}, status=status, headers=headers
        )

    def invalid(self, message: str, headers: dict[str, str]) -> web.Response:
        return self.error(400, "InvalidRequest", message, headers)

    def fault_answer(
        self, fault: Fault | None, headers: dict[str, str], reject: tuple[int, str, str]
    ) -> web.Response | None:
        """The answer a queued rate_limit, server_error or reject fault gives, else None."""
        if fault is None:
            return None
        if fault.kind == "rate_limit":
            limited = self.limit_headers(0, time.time() + fault.seconds)
            return self.error(429, "RateLimitExceeded", "Rate Limit Exceeded", limited)
        if fault.kind == "server_error":
            return self.error(500, "InternalServerError", "Internal Server Error", headers)
        if fault.kind == "reject":
            status, name, message = reject
            return self.error(status, name, fault.message or message, headers)
        return None

    def begin(
        self, operation: str, reject: tuple[int, str, str]
    ) -> tuple[dict[str, str], Fault | None, web.Response | None]:
        """Budget and faults, common to every method: headers, the fault, or an early answer."""
        headers, over = self.spend()
        fault = self.fault(operation)
        early = self.fault_answer(fault, headers, reject)
        if early is None and over:
            reset = self._window_start + self.rate_window
            limited = self.limit_headers(0, reset)
            early = self.error(429, "RateLimitExceeded", "Rate Limit Exceeded", limited)
        return headers, fault, early

    def authorize(
        self, request: web.Request, headers: dict[str, str], fault: Fault | None
    ) -> str | web.Response:
        """The did an access JWT belongs to ("" for a foreign token without one), or the error.

        An `expire_token` fault expires the presented token for good, as time would."""
        token = bearer(request)
        if not token:
            return self.error(401, "AuthenticationRequired", "Authentication Required", headers)
        claims = claims_of(token)
        if token in self.sessions.refresh or claims.get("scope") == REFRESH_SCOPE:
            return self.error(400, "InvalidToken", "Bad token scope", headers)
        if fault is not None and fault.kind == "expire_token":
            self.sessions.expire(token)
        state = self.sessions.state(token)
        if state == "expired":
            return self.error(400, "ExpiredToken", "Token has expired", headers)
        if state == "revoked":
            return self.error(400, "ExpiredToken", "Token has been revoked", headers)
        return str(claims.get("sub", ""))

    async def body_json(self, request: web.Request) -> Json | None:
        try:
            data = json.loads(await request.read() or b"null")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def session_body(self, account: Account, access: str, refresh: str) -> Json:
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": account.handle,
            "did": account.did,
            "active": True,
        }

    # Methods

    async def create_session(self, request: web.Request) -> web.Response:
        headers, fault, early = self.begin(
            "session", (401, "AuthenticationRequired", "Invalid identifier or password")
        )
        if early is not None:
            return early
        body = await self.body_json(request)
        if body is None:
            return self.invalid("Input must be an object", headers)
        for key in ("identifier", "password"):
            if not isinstance(body.get(key), str):
                return self.invalid(f'Input must have the property "{key}"', headers)
        account = self.account(body["identifier"])
        if account is None or account.password != body["password"]:
            message = "Invalid identifier or password"
            return self.error(401, "AuthenticationRequired", message, headers)
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        self.sessions_created += 1
        access, refresh = self.sessions.open(account.did, self.access_lifetime)
        return self.ok(self.session_body(account, access, refresh), headers)

    async def refresh_session(self, request: web.Request) -> web.Response:
        headers, fault, early = self.begin(
            "refresh", (400, "ExpiredToken", "Token has been revoked")
        )
        if early is not None:
            return early
        if await request.read():
            message = "A request body was provided when none was expected"
            return self.invalid(message, headers)
        token = bearer(request)
        if not token:
            return self.error(401, "AuthenticationRequired", "Authentication Required", headers)
        claims = claims_of(token)
        if claims.get("scope") == ACCESS_SCOPE or token in self.sessions.access:
            return self.error(400, "InvalidToken", "Bad token scope", headers)
        known = self.sessions.refresh.get(token)
        if known is None:
            return self.error(400, "InvalidToken", "Token could not be verified", headers)
        if fault is not None and fault.kind == "expire_token":
            known.revoked = True
            return self.error(400, "ExpiredToken", "Token has expired", headers)
        if known.revoked:
            return self.error(400, "ExpiredToken", "Token has been revoked", headers)
        account = self.accounts.get(str(claims.get("sub", ""))) or self.default_account
        known.revoked = True
        self.sessions.refreshes += 1
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        access, refresh = self.sessions.open(account.did, self.access_lifetime)
        return self.ok(self.session_body(account, access, refresh), headers)

    async def get_session(self, request: web.Request) -> web.Response:
        headers, fault, early = self.begin(
            "get_session", (400, "InvalidToken", "Token could not be verified")
        )
        if early is not None:
            return early
        did = self.authorize(request, headers, fault)
        if isinstance(did, web.Response):
            return did
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        account = self.accounts.get(did) or self.default_account
        return self.ok({"handle": account.handle, "did": account.did, "active": True}, headers)

    async def upload_blob(self, request: web.Request) -> web.Response:
        headers, fault, early = self.begin(
            "upload", (400, "BlobTooLarge", "This file is too large")
        )
        if early is not None:
            return early
        did = self.authorize(request, headers, fault)
        if isinstance(did, web.Response):
            return did
        content = await request.read()
        if len(content) > MAX_BLOB_BYTES:
            message = (
                f"This file is too large. It is {len(content)} bytes but the maximum size is "
                f"{MAX_BLOB_BYTES} bytes."
            )
            return self.error(400, "BlobTooLarge", message, headers)
        mime = request.headers.get("content-type", "application/octet-stream")
        cid = content_id(content, "bafkrei")
        self.blobs[cid] = {"mimeType": mime, "size": len(content), "content": content}
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(content)}
        return self.ok({"blob": blob}, headers)

    async def get_record(self, request: web.Request) -> web.Response:
        headers, fault, early = self.begin(
            "get_record", (400, "RecordNotFound", "Could not locate record")
        )
        if early is not None:
            return early
        for key in ("repo", "collection", "rkey"):
            if not request.query.get(key):
                return self.invalid(f'Error: Params must have the property "{key}"', headers)
        account = self.account(request.query["repo"])
        repo = account.did if account else request.query["repo"]
        uri = f"at://{repo}/{request.query['collection']}/{request.query['rkey']}"
        found = self.records.get(uri)
        if found is None:
            return self.error(400, "RecordNotFound", f"Could not locate record: {uri}", headers)
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        return self.ok({"uri": uri, "cid": found["cid"], "value": found["record"]}, headers)

    async def create_record(self, request: web.Request) -> web.Response:
        headers, fault, early = self.begin(
            "create",
            (400, "InvalidRequest", f"Invalid {POST} record: Record/text is not acceptable"),
        )
        if early is not None:
            return early
        did = self.authorize(request, headers, fault)
        if isinstance(did, web.Response):
            return did
        body = await self.body_json(request)
        if body is None:
            return self.invalid("Input must be an object", headers)
        for key, kind in (("repo", str), ("collection", str), ("record", dict)):
            if not isinstance(body.get(key), kind):
                return self.invalid(f'Input must have the property "{key}"', headers)
        account = self.account(body["repo"])
        repo = account.did if account else body["repo"]
        if did and repo != did:
            return self.error(401, "AuthenticationRequired", "Authentication Required", headers)
        if not repo.startswith("did:"):
            return self.invalid(f"Could not find repo: {body['repo']}", headers)
        collection, record = body["collection"], body["record"]
        if collection == POST:
            problem = self.post_problem(record)
            if problem is not None:
                name, message = problem
                return self.error(400, name, message, headers)
        rkey = str(body.get("rkey") or self.tid())
        uri = f"at://{repo}/{collection}/{rkey}"
        if uri in self.records:  # what the PDS does today (atproto#3718)
            return self.error(500, "InternalServerError", "Internal Server Error", headers)
        cid = content_id(json.dumps(record, sort_keys=True).encode() + uri.encode(), "bafyrei")
        stored = {
            "uri": uri,
            "cid": cid,
            "repo": repo,
            "collection": collection,
            "rkey": rkey,
            "record": record,
        }
        self.records[uri] = stored
        self.posts.append(stored)
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        commit = {"cid": content_id(uri.encode(), "bafyrei"), "rev": self.tid()}
        answer = {"uri": uri, "cid": cid, "commit": commit, "validationStatus": "valid"}
        return self.ok(answer, headers)

    # Validation

    def post_problem(self, record: Json) -> tuple[str, str] | None:
        """The error (name, message) the PDS gives for an invalid app.bsky.feed.post, if any."""
        prefix = f"Invalid {POST} record: "
        kind = record.get("$type", POST)
        if kind != POST:
            return "InvalidRequest", f"Invalid $type: must be lex:{POST}, got {kind}"
        text = record.get("text")
        if not isinstance(text, str):
            return "InvalidRequest", prefix + 'Record must have the property "text"'
        if len(text.encode()) > MAX_TEXT_BYTES:
            return "InvalidRequest", (
                prefix + f"Record/text must not be longer than {MAX_TEXT_BYTES} characters"
            )
        if len(GRAPHEME.findall(text)) > MAX_GRAPHEMES:
            return "InvalidRequest", (
                prefix + f"Record/text must not be longer than {MAX_GRAPHEMES} graphemes"
            )
        created = record.get("createdAt")
        if not isinstance(created, str) or not valid_datetime(created):
            return "InvalidRequest", (
                prefix + "Record/createdAt must be an valid atproto datetime "
                "(both RFC-3339 and ISO-8601)"
            )
        for at, facet in enumerate(record.get("facets") or []):
            problem = facet_problem(facet, f"Record/facets/{at}")
            if problem:
                return "InvalidRequest", prefix + problem
        reply = record.get("reply")
        if reply is not None:
            for part in ("root", "parent"):
                ref = reply.get(part) if isinstance(reply, dict) else None
                for key in ("uri", "cid"):
                    if not isinstance(ref, dict) or not isinstance(ref.get(key), str):
                        return "InvalidRequest", (
                            prefix + f'Record/reply/{part} must have the property "{key}"'
                        )
        embed = record.get("embed")
        if isinstance(embed, dict) and embed.get("$type") == IMAGES:
            return self.images_problem(embed, prefix)
        return None

    def images_problem(self, embed: Json, prefix: str) -> tuple[str, str] | None:
        images = embed.get("images")
        if not isinstance(images, list):
            return "InvalidRequest", prefix + 'Record/embed must have the property "images"'
        if len(images) > MAX_IMAGES:
            return "InvalidRequest", (
                prefix + f"Record/embed/images must not have more than {MAX_IMAGES} elements"
            )
        for at, image in enumerate(images):
            where = f"Record/embed/images/{at}"
            if not isinstance(image, dict) or not isinstance(image.get("alt"), str):
                return "InvalidRequest", prefix + f'{where} must have the property "alt"'
            blob = image.get("image")
            ref = blob.get("ref") if isinstance(blob, dict) else None
            link = ref.get("$link") if isinstance(ref, dict) else None
            if not isinstance(blob, dict) or blob.get("$type") != "blob" or not link:
                return "InvalidRequest", prefix + f"{where}/image should be a blob ref"
            stored = self.blobs.get(str(link))
            if stored is None:
                return "InvalidRequest", f"Could not find blob: {link}"
            if not str(blob.get("mimeType", "")).startswith("image/"):
                return "InvalidRequest", prefix + f"{where}/image mimeType is not accepted"
            if stored["size"] > MAX_BLOB_BYTES:
                return "BlobTooLarge", f"{where}/image file too large"
        return None

    def tid(self) -> str:
        """A record key: microseconds since the epoch and a clock id, in sortable base32."""
        value = max(time.time_ns() // 1000, self._last_tid + 1)
        self._last_tid = value
        number = (value << 10) | secrets.randbelow(1024)
        chars = []
        for _ in range(13):
            chars.append(TID_ALPHABET[number & 31])
            number >>= 5
        return "".join(reversed(chars))


def valid_datetime(value: str) -> bool:
    if not DATETIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def facet_problem(facet: object, where: str) -> str:
    """What is wrong with one richtext facet ("" if nothing)."""
    if not isinstance(facet, dict):
        return f"{where} must be an object"
    index = facet.get("index")
    if not isinstance(index, dict):
        return f'{where} must have the property "index"'
    for key in ("byteStart", "byteEnd"):
        value = index.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{where}/index/{key} must be an integer of at least 0"
    features = facet.get("features")
    if not isinstance(features, list) or not features:
        return f'{where} must have the property "features"'
    for at, feature in enumerate(features):
        if not isinstance(feature, dict) or not isinstance(feature.get("$type"), str):
            return f'{where}/features/{at} must have the property "$type"'
        if feature["$type"] == "app.bsky.richtext.facet#link" and not str(
            feature.get("uri", "")
        ).startswith(("http://", "https://", "at://")):
            return f"{where}/features/{at}/uri must be a uri"
    return ""


Fake = BlueskyFake
