"""A fake Bluesky PDS: the XRPC methods a poster uses, answering as bsky.social does.

Methods (all under `/xrpc/`): `com.atproto.server.createSession` (handle or did and app
password), `com.atproto.server.refreshSession` (the refresh JWT as bearer, no body; single use),
`com.atproto.server.getSession`, `com.atproto.repo.uploadBlob` (raw bytes, at most 1,000,000),
`com.atproto.repo.createRecord`, `com.atproto.repo.getRecord` and
`com.atproto.server.getServiceAuth`; and, as if it were video.bsky.app too, the video service's
`app.bsky.video.getUploadLimits`, `uploadVideo` and `getJobStatus`.

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
- Video as docs.bsky.app "Uploading Video" has it: a service token from getServiceAuth (the
  PDS's rules for `aud` and `exp`), getUploadLimits with a token for `did:web:video.bsky.app`,
  uploadVideo with a token for the account's PDS (lxm uploadBlob; 401s named as atproto's
  verifyJwt names them) answering the bare jobStatus, 409 `already_exists` for a video sent
  before, jobs that encode for `processing_polls` polls of getJobStatus and then complete with a
  blob in this repo or fail ("Failed to process video"), and `app.bsky.embed.video` checked
  against its lexicon in createRecord. `video_jobs` keeps each upload's bytes.

Tokens it never issued are accepted (their `sub`, if any, is the repo; else the body's `repo`),
so `make dev` works with made-up credentials. The account `kairos.bsky.social` (password
`kairos-app-password`) exists from the start; tests add their own with `add_account`.

Fault operations for `fail_next`: "session" (createSession), "refresh" (refreshSession),
"get_session", "upload" (uploadBlob), "get_record", "create" (createRecord), "service_auth"
(getServiceAuth); on the video service "upload_limits", "upload_video" and "job_status" take
`server_error`, `rate_limit` (answered 500 / 429) and, for the last two, `hang`; any fault queued
for "process" makes the next uploaded video's job fail.
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
VIDEO = "app.bsky.embed.video"
#: The video service's did, which a token for `getUploadLimits` must name as its audience
#: (social-app src/lib/constants.ts `VIDEO_SERVICE_DID`).
VIDEO_SERVICE_DID = "did:web:video.bsky.app"
UPLOAD_BLOB = "com.atproto.repo.uploadBlob"
UPLOAD_LIMITS = "app.bsky.video.getUploadLimits"
#: What the video service takes from an account: 100 MB (ISO megabytes) and 25 videos or 10 GB a
#: day (social-app #7916 "Bumped to 3 minutes / 100mb", its constants.ts "Backend uses ISO
#: megabytes"; Bluesky's video launch post of 2024-09-11 for the daily numbers). 300 MB and 10
#: minutes exist only behind feature gates (social-app #10497, #11388), which this fake does not
#: model.
MAX_VIDEO_BYTES = 100_000_000
DAILY_VIDEOS = 25
DAILY_VIDEO_BYTES = 10_000_000_000
#: The embed's blob `maxSize` in the lexicon (app.bsky.embed.video, raised to 300 MB by
#: atproto #5373 on 2026-08-11).
MAX_VIDEO_BLOB = 300_000_000
#: Job ids look like `d004n3qbh3us72spkh2g` (atproto-website #407): 20 characters of base32hex.
JOB_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
DONE_STATES = ("JOB_STATE_COMPLETED", "JOB_STATE_FAILED")
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

    def open(self, did: str, lifetime: float, aud: str = "") -> tuple[str, str]:
        """A new (accessJwt, refreshJwt) pair for `did`; `aud` is the PDS's did, which the PDS
        puts in its access tokens (atproto packages/pds account-manager/helpers/auth.ts,
        `setAudience(serviceDid)`), and which clients read to ask for service auth."""
        now = time.time()
        claims: Json = {
            "scope": ACCESS_SCOPE,
            "sub": did,
            "iat": int(now),
            "exp": int(now + lifetime),
        }
        if aud:
            claims["aud"] = aud
        access = jwt(claims, "at+jwt")
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
    #: uploadVideo takes a whole video (up to 100 MB) in one request.
    max_body: ClassVar[int] = MAX_VIDEO_BYTES + 1024 * 1024

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
        #: Service tokens issued by getServiceAuth, by token: their claims.
        self.service_tokens: dict[str, Json] = {}
        #: Video service jobs by id: {"jobId", "did", "state", "progress", "name", "mimeType",
        #: "content", "sha256", "polls_left", "failure", "blob"}.
        self.video_jobs: dict[str, Json] = {}
        #: How many getJobStatus polls a job stays in JOB_STATE_ENCODING before it completes.
        self.processing_polls = 2
        #: Videos (count, bytes) uploaded per (did, UTC day), for getUploadLimits.
        self.video_usage: dict[tuple[str, str], list[int]] = {}
        #: When set, getUploadLimits answers `canUpload: false` with this message and
        #: uploadVideo refuses with it (a message social-app knows, e.g. "User has exceeded
        #: daily upload videos limit").
        self.video_refusal = ""
        self.default_account = self.add_account("kairos.bsky.social", "kairos-app-password")

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/xrpc/com.atproto.server.createSession", self.create_session)
        router.add_post("/xrpc/com.atproto.server.refreshSession", self.refresh_session)
        router.add_get("/xrpc/com.atproto.server.getSession", self.get_session)
        router.add_post("/xrpc/com.atproto.repo.uploadBlob", self.upload_blob)
        router.add_post("/xrpc/com.atproto.repo.createRecord", self.create_record)
        router.add_get("/xrpc/com.atproto.repo.getRecord", self.get_record)
        router.add_get("/xrpc/com.atproto.server.getServiceAuth", self.get_service_auth)
        router.add_get("/xrpc/app.bsky.video.getUploadLimits", self.get_upload_limits)
        router.add_post("/xrpc/app.bsky.video.uploadVideo", self.upload_video)
        router.add_get("/xrpc/app.bsky.video.getJobStatus", self.get_job_status)

    @property
    def pds_did(self) -> str:
        """This PDS's own did, the audience of its access tokens and of service tokens for it."""
        return did_web(f"{self.host}:{self.port}")

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
        return self.sessions.open(did, self.access_lifetime, self.pds_did)

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
        access, refresh = self.sessions.open(account.did, self.access_lifetime, self.pds_did)
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
        access, refresh = self.sessions.open(account.did, self.access_lifetime, self.pds_did)
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

    # The video service (video.bsky.app), served by this same fake: docs.bsky.app "Uploading
    # Video" (bsky-docs docs/tutorials/video.mdx) and the lexicons app.bsky.video.*.

    async def get_service_auth(self, request: web.Request) -> web.Response:
        """A service token for the account, as the PDS makes it (atproto packages/pds
        api/com/atproto/server/getServiceAuth.ts: the audience must be a did; `exp` at most an
        hour ahead, a minute without `lxm`; claims iat, iss, aud, exp, lxm, jti)."""
        headers, fault, early = self.begin(
            "service_auth", (400, "InvalidRequest", "Bad token scope")
        )
        if early is not None:
            return early
        did = self.authorize(request, headers, fault)
        if isinstance(did, web.Response):
            return did
        aud = request.query.get("aud", "")
        lxm = request.query.get("lxm", "")
        if not aud:
            return self.invalid('Error: Params must have the property "aud"', headers)
        if not aud.startswith("did:"):
            return self.invalid(
                "aud must be a valid atproto DID or did#serviceId reference", headers
            )
        now = time.time()
        exp = now + 60
        if request.query.get("exp"):
            try:
                exp = float(request.query["exp"])
            except ValueError:
                return self.invalid("Error: exp must be an integer", headers)
            if exp < now:
                return self.error(400, "BadExpiration", "expiration is in past", headers)
            if exp - now > 3600:
                message = (
                    "cannot request a token with an expiration more than an hour in the future"
                )
                return self.error(400, "BadExpiration", message, headers)
            if not lxm and exp - now > 60:
                message = (
                    "cannot request a method-less token with an expiration more than a minute "
                    "in the future"
                )
                return self.error(400, "BadExpiration", message, headers)
        claims: Json = {
            "iat": int(now),
            "iss": did or self.default_account.did,
            "aud": aud,
            "exp": int(exp),
            "jti": secrets.token_hex(16),
        }
        if lxm:
            claims["lxm"] = lxm
        token = jwt(claims, "JWT")
        self.service_tokens[token] = claims
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        return self.ok({"token": token}, headers)

    def service_refusal(
        self, request: web.Request, audiences: tuple[str, ...], lxm: str
    ) -> tuple[Json, web.Response | None]:
        """The claims of the request's service token, or the 401 the token earns, named as
        atproto's `verifyJwt` names them (packages/xrpc-server src/auth.ts)."""
        claims = self.service_tokens.get(bearer(request), {})

        def refuse(name: str, message: str) -> tuple[Json, web.Response]:
            return claims, web.json_response({"error": name, "message": message}, status=401)

        if not bearer(request):
            return refuse("AuthMissing", "Authentication Required")
        if not claims:
            return refuse("BadJwtSignature", "jwt signature does not match jwt issuer")
        if time.time() > claims["exp"]:
            return refuse("JwtExpired", "jwt expired")
        if claims["aud"] not in audiences:
            return refuse("BadJwtAudience", "jwt audience does not match service did")
        if claims.get("lxm") != lxm:
            return refuse(
                "BadJwtLexiconMethod", f'bad jwt lexicon method ("lxm"). must match: {lxm}'
            )
        return claims, None

    def usage(self, did: str) -> list[int]:
        """[videos, bytes] the account uploaded today (UTC)."""
        day = time.strftime("%Y-%m-%d", time.gmtime())
        return self.video_usage.setdefault((did, day), [0, 0])

    def upload_limits(self, did: str, size: int = 0) -> Json:
        """What getUploadLimits says of `did`, counting an upload of `size` bytes."""
        videos, used = self.usage(did)
        limits: Json = {
            "canUpload": True,
            "remainingDailyVideos": max(0, DAILY_VIDEOS - videos),
            "remainingDailyBytes": max(0, DAILY_VIDEO_BYTES - used),
        }
        refusal = self.video_refusal
        if not refusal and videos >= DAILY_VIDEOS:
            refusal = "User has exceeded daily upload videos limit"
        elif not refusal and used + size > DAILY_VIDEO_BYTES:
            refusal = "User has exceeded daily upload bytes limit"
        if refusal:
            limits.update(canUpload=False, message=refusal, error=refusal)
        return limits

    async def get_upload_limits(self, request: web.Request) -> web.Response:
        """`{canUpload, remainingDailyVideos, remainingDailyBytes, message?, error?}` with a
        token for the video service (aud `did:web:video.bsky.app`, lxm getUploadLimits)."""
        fault = self.fault("upload_limits")
        if fault is not None and fault.kind in ("server_error", "rate_limit"):
            status = 500 if fault.kind == "server_error" else 429
            return web.json_response(
                {"error": "InternalServerError", "message": "Internal Server Error"}, status=status
            )
        claims, refused = self.service_refusal(request, (VIDEO_SERVICE_DID,), UPLOAD_LIMITS)
        if refused is not None:
            return refused
        return web.json_response(self.upload_limits(str(claims["iss"])))

    async def upload_video(self, request: web.Request) -> web.Response:
        """Take the raw video (`?did=&name=`, a token for the account's PDS with lxm uploadBlob)
        and start a job. The answer is the jobStatus itself, not wrapped in `jobStatus` as the
        lexicon has it (atproto #3026, #3097; social-app reads `jobId` at the top); a video this
        account already sent answers 409 with the earlier job (`already_exists`, "Video already
        processed": atproto #3097, MarshalX/atproto examples video_service_usage.py)."""
        fault = self.fault("upload_video")
        content = await request.read()
        if fault is not None and fault.kind in ("server_error", "rate_limit"):
            status = 500 if fault.kind == "server_error" else 429
            return web.json_response(
                {"error": "InternalServerError", "message": "Internal Server Error"}, status=status
            )
        did = request.query.get("did", "")
        audiences = (self.pds_did, did_web(request.host))
        claims, refused = self.service_refusal(request, audiences, UPLOAD_BLOB)
        if refused is not None:
            return refused
        if not did or claims["iss"] != did:
            return web.json_response(
                {"error": "InvalidRequest", "message": "did does not match the token's issuer"},
                status=400,
            )
        limits = self.upload_limits(did, len(content))
        if not limits["canUpload"]:
            # The shape of a refusal seen for an unconfirmed email (atproto #3097); its status
            # code is not recorded, 400 is this fake's choice.
            refusal = {"did": "", "error": limits["message"], "jobId": "", "state": ""}
            return web.json_response({"jobStatus": refusal}, status=400)
        if not request.headers.get("content-type", "").startswith("video/"):
            message = f"unsupported content type {request.headers.get('content-type', '')!r}"
            return web.json_response({"error": "InvalidRequest", "message": message}, status=400)
        if len(content) > MAX_VIDEO_BYTES:
            message = f"video is {len(content)} bytes, over the limit of {MAX_VIDEO_BYTES}"
            return web.json_response({"error": "InvalidRequest", "message": message}, status=400)
        digest = hashlib.sha256(content).hexdigest()
        for job in self.video_jobs.values():
            if job["did"] == did and job["sha256"] == digest and job["state"] != "JOB_STATE_FAILED":
                known = {
                    "did": did,
                    "error": "already_exists",
                    "jobId": job["jobId"],
                    "message": "Video already processed",
                    "state": job["state"],
                }
                return web.json_response(known, status=409)
        job_id = "".join(secrets.choice(JOB_ALPHABET) for _ in range(20))
        self.video_jobs[job_id] = {
            "jobId": job_id,
            "did": did,
            "state": "JOB_STATE_CREATED",
            "progress": 0,
            "name": request.query.get("name", ""),
            "mimeType": request.headers["content-type"],
            "content": content,
            "sha256": digest,
            "polls_left": self.processing_polls,
            # A "process" fault makes the encoding fail, as a real file the encoder cannot read.
            "failure": self.fault("process") is not None or not looks_like_video(content),
            "blob": None,
        }
        usage = self.usage(did)
        usage[0] += 1
        usage[1] += len(content)
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        return web.json_response({"did": did, "jobId": job_id, "state": "JOB_STATE_CREATED"})

    async def get_job_status(self, request: web.Request) -> web.Response:
        """`{"jobStatus": ...}` (wrapped, as the lexicon says and social-app reads it), no token
        needed (social-app polls with a tokenless client). Each poll moves a job on: it encodes
        for `processing_polls` polls, then completes with the blob the service stored in the
        account's repo, or fails as atproto-website #407 shows ("Failed to process video")."""
        fault = self.fault("job_status")
        if fault is not None and fault.kind in ("server_error", "rate_limit"):
            status = 500 if fault.kind == "server_error" else 429
            return web.json_response(
                {"error": "InternalServerError", "message": "Internal Server Error"}, status=status
            )
        job = self.video_jobs.get(request.query.get("jobId", ""))
        if job is None:
            # The wording is this fake's own: no recorded answer for an unknown job was found.
            return web.json_response({"error": "NotFound", "message": "job not found"}, status=404)
        if job["state"] not in DONE_STATES:
            self.advance(job)
        if fault is not None and fault.kind == "hang":
            return await self.hang()
        return web.json_response({"jobStatus": job_status(job)})

    def advance(self, job: Json) -> None:
        """One poll's worth of processing."""
        job["polls_left"] -= 1
        if job["polls_left"] > 0:
            job["state"] = "JOB_STATE_ENCODING"
            job["progress"] = min(99, job["progress"] + 40)
            return
        if job["failure"]:
            job["state"] = "JOB_STATE_FAILED"
            return
        content = job["content"]
        cid = content_id(content, "bafkrei")
        # The service keeps the encoded file in the account's repo; this fake keeps the bytes as
        # they came (it encodes nothing), typed as the service's output, MP4.
        self.blobs[cid] = {"mimeType": "video/mp4", "size": len(content), "content": content}
        job["blob"] = {
            "$type": "blob",
            "ref": {"$link": cid},
            "mimeType": "video/mp4",
            "size": len(content),
        }
        job["state"] = "JOB_STATE_COMPLETED"
        job["progress"] = 100

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
        if isinstance(embed, dict) and embed.get("$type") == VIDEO:
            return self.video_problem(embed, prefix)
        return None

    def video_problem(self, embed: Json, prefix: str) -> tuple[str, str] | None:
        """An app.bsky.embed.video against its lexicon: a blob of `video/mp4` within `maxSize`
        that this repo holds, and an aspectRatio of positive integers if any."""
        blob = embed.get("video")
        ref = blob.get("ref") if isinstance(blob, dict) else None
        link = ref.get("$link") if isinstance(ref, dict) else None
        if not isinstance(blob, dict) or blob.get("$type") != "blob" or not link:
            return "InvalidRequest", prefix + "Record/embed/video should be a blob ref"
        stored = self.blobs.get(str(link))
        if stored is None:
            return "InvalidRequest", f"Could not find blob: {link}"
        if blob.get("mimeType") != "video/mp4" or stored["mimeType"] != "video/mp4":
            return "InvalidRequest", prefix + "Record/embed/video mimeType is not accepted"
        if stored["size"] > MAX_VIDEO_BLOB:
            return "BlobTooLarge", "Record/embed/video file too large"
        ratio = embed.get("aspectRatio")
        if ratio is not None:
            for key in ("width", "height"):
                value = ratio.get(key) if isinstance(ratio, dict) else None
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    return "InvalidRequest", (
                        prefix + f"Record/embed/aspectRatio/{key} can not be less than 1"
                    )
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


def did_web(host: str) -> str:
    """The did:web of a host, its port's colon percent-encoded as the did:web method writes it."""
    return "did:web:" + host.replace(":", "%3A")


def looks_like_video(content: bytes) -> bool:
    """Whether the bytes open as a container the encoder reads: MP4 or QuickTime (an `ftyp` box
    first) or WebM (EBML)."""
    return content[4:8] == b"ftyp" or content.startswith(b"\x1a\x45\xdf\xa3")


def job_status(job: Json) -> Json:
    """A job as `app.bsky.video.defs#jobStatus`."""
    status: Json = {"jobId": job["jobId"], "did": job["did"], "state": job["state"]}
    if job["state"] == "JOB_STATE_COMPLETED":
        status.update(progress=100, blob=job["blob"], message="Video processed successfully")
    elif job["state"] == "JOB_STATE_FAILED":
        status.update(
            error=f"video processing error for job: {job['jobId']}",
            message="Failed to process video",
            failureCode="encoding_failure",
        )
    elif job["state"] == "JOB_STATE_ENCODING":
        status["progress"] = job["progress"]
    return status


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
