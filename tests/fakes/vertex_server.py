"""A fake of Vertex AI's publisher-model endpoints and of Google's OAuth token endpoint: a real
HTTP server on 127.0.0.1, scripted with the steps of ``fakes.gemini_server`` (the answers of
``generateContent`` are the same on both platforms).

    with vertex_server() as vertex:
        account = vertex.service_account()       # a key file's contents; token_uri -> the fake
        token = ServiceAccountToken(account)
        platform = VertexAi(project=vertex.project, base_url=vertex.base_url, token=token)

Served paths, as Vertex AI serves them:

    POST /token                         the JWT-bearer grant (RFC 7523): grant_type and an RS256
                                        assertion signed with the account's key; kid, iss, scope,
                                        aud (https://oauth2.googleapis.com/token), iat and exp are
                                        checked; answers access_token, expires_in, token_type
    POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}
         :generateContent               needs "Authorization: Bearer <a token it issued>" (or the
                                        API key); the project and location must be the fake's
    POST /v1/publishers/google/models/{model}:generateContent     express mode: the API key only
    GET  /v1beta1/publishers/google/models/{model}                the publisher model, or 404

``token_requests`` holds each decoded assertion's claims; ``requests`` and ``lookups`` are as in
the Gemini fake, and so are ``script``, ``retire`` and ``models``. Refusals use Google's error
bodies: 401 UNAUTHENTICATED for a missing or unknown token, 400 API_KEY_INVALID for a wrong key,
403 PERMISSION_DENIED for another project, 404 NOT_FOUND for a model not served.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from loopback import QuietHandler, serve_in_thread

from fakes.gemini_server import (
    Error,
    GeminiRequest,
    GeminiServer,
    Image,
    Step,
    _decode_inline,
    _error,
    _json_object,
    _shape_problem,
)

__all__ = ["GOOGLE_TOKEN_AUDIENCE", "VertexServer", "vertex_server"]

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_MODEL_PATH = re.compile(
    r"^/v1/(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"publishers/google/models/(?P<model>[^/:]+):generateContent$")
_LOOKUP_PATH = re.compile(r"^/v1beta1/publishers/google/models/(?P<model>[^/:]+)$")


@dataclass
class VertexServer(GeminiServer):
    project: str = "imagegate-test"
    location: str = "global"
    expires_in: int = 3600
    client_email: str = "imagegate@imagegate-test.iam.gserviceaccount.com"
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    _key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    _key_id: str = field(default_factory=lambda: secrets.token_hex(20))

    def service_account(self, **changes: str) -> dict[str, str]:
        """The contents of a service-account key file for this fake (``changes`` override)."""
        pem = self._key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": self.project,
                "private_key_id": self._key_id, "private_key": pem,
                "client_email": self.client_email, "client_id": "1234567890",
                "token_uri": f"{self.base_url}/token", **changes}

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()


@contextmanager
def vertex_server(*, api_key: str = "AQ.fake-vertex-express-key-0123",
                  project: str = "imagegate-test", location: str = "global",
                  models: Sequence[str] | None = None, retired: Sequence[str] = (),
                  expires_in: int = 3600, default: Step | None = None) -> Iterator[VertexServer]:
    state = VertexServer(api_key, frozenset(models) if models is not None else None,
                         default or Image(), retired=set(retired), project=project,
                         location=location, expires_in=expires_in)
    with serve_in_thread(_handler(state), poll_s=0.02) as base_url:
        state.base_url = base_url
        try:
            yield state
        finally:
            state._stopping.set()


def _handler(state: VertexServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            match = _LOOKUP_PATH.match(url.path)
            model = match["model"] if match else None
            with state._lock:
                state.lookups.append(model or url.path)
            refusal = _auth_refusal(state, self._headers(), None) or _model_refusal(state, model)
            if refusal is not None:
                self.send(*_error(refusal))
                return
            resource = {"name": f"publishers/google/models/{model}", "versionId": "001",
                        "launchStage": "GA", "openSourceCategory": "PROPRIETARY"}
            self.send(200, {"Content-Type": "application/json"}, json.dumps(resource).encode())

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if urlsplit(self.path).path == "/token":
                self.send(*_token(state, raw))
                return
            request, refusal = _check(state, self.path, self._headers(), raw)
            self.send(*state.respond(request, refusal))

        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}


    return Handler


# The token endpoint ---------------------------------------------------------------------------


def _token(state: VertexServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    try:
        if form.get("grant_type") != JWT_BEARER:
            raise ValueError(f"unsupported grant_type {form.get('grant_type')!r}")
        claims = _verify_assertion(state, form.get("assertion", ""))
    except ValueError as exc:
        body = {"error": "invalid_grant", "error_description": str(exc)}
        return 400, {"Content-Type": "application/json"}, json.dumps(body).encode()
    token = "ya29.fake-" + secrets.token_urlsafe(24)
    with state._lock:
        state.token_requests.append(claims)
        state.tokens.add(token)
    body = {"access_token": token, "expires_in": state.expires_in, "token_type": "Bearer"}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _verify_assertion(state: VertexServer, assertion: str) -> dict[str, Any]:
    """The claims of an RS256 JWT signed with the fake account's key; ``ValueError`` naming the
    first thing wrong with it."""
    try:
        head_b64, claims_b64, signature_b64 = assertion.split(".")
        header, claims = (json.loads(_unb64(part)) for part in (head_b64, claims_b64))
        signature = _unb64(signature_b64)
    except ValueError as exc:
        raise ValueError("the assertion is not a JWT") from exc
    if header.get("alg") != "RS256" or header.get("kid") != state._key_id:
        raise ValueError(f"unexpected JWT header {header}")
    try:
        state._key.public_key().verify(signature, f"{head_b64}.{claims_b64}".encode(),
                                       padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise ValueError("Invalid JWT Signature.") from exc
    now, iat, exp = time.time(), claims.get("iat", 0), claims.get("exp", 0)
    if claims.get("iss") != state.client_email:
        raise ValueError("Invalid JWT: iss is not the service account")
    if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
        raise ValueError("Invalid JWT: scope lacks cloud-platform")
    if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
        raise ValueError("Invalid JWT: aud is not Google's token endpoint")
    if iat > now + 60 or exp <= now or not 0 < exp - iat <= 3600:
        raise ValueError("Invalid JWT: iat and exp must span at most an hour around now")
    return dict(claims)


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# generateContent ------------------------------------------------------------------------------


def _check(state: VertexServer, target: str, headers: dict[str, str],
           raw: bytes) -> tuple[GeminiRequest, Error | None]:
    url = urlsplit(target)
    match = _MODEL_PATH.match(url.path)
    request = GeminiRequest(url.path, url.query, headers, match["model"] if match else None,
                            _json_object(raw))
    refusal = _auth_refusal(state, headers, match) or _model_refusal(state, request.model)
    if refusal is None:
        problem = _shape_problem(request)
        refusal = Error(400, "INVALID_ARGUMENT", problem) if problem else None
    if refusal is None:
        try:
            request.references = [_decode_inline(p) for p in request.inline_parts]
        except ValueError as exc:
            refusal = Error(400, "INVALID_ARGUMENT", f"Unable to process input image. ({exc})")
    request.refusal = refusal.message if refusal else None
    return request, refusal


def _auth_refusal(state: VertexServer, headers: dict[str, str],
                  match: re.Match[str] | None) -> Error | None:
    bearer = headers.get("authorization", "").removeprefix("Bearer ")
    key = headers.get("x-goog-api-key")
    project = match["project"] if match else None
    if key is not None:
        if key != state.api_key:
            return Error(400, "INVALID_ARGUMENT",
                         "API key not valid. Please pass a valid API key.")
    elif not bearer or bearer not in state.tokens:
        return Error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. "
                     "Expected OAuth 2 access token, login cookie or other valid authentication "
                     "credential.")
    elif match is not None and project is None:
        return Error(400, "INVALID_ARGUMENT", "A project is required with OAuth credentials.")
    if project is not None and (project != state.project or match["location"] != state.location):
        return Error(403, "PERMISSION_DENIED", f"Permission denied on resource project "
                     f"{project} (or it may not exist) in location {match['location']}.")
    return None


def _model_refusal(state: VertexServer, model: str | None) -> Error | None:
    if state.serves(model):
        return None
    return Error(404, "NOT_FOUND", f"Publisher Model `projects/{state.project}/locations/"
                 f"{state.location}/publishers/google/models/{model}` was not found or your "
                 "project does not have access to it.")
