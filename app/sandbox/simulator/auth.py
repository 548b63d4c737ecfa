"""Who is calling: App JWTs, installation tokens and user tokens."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from .errors import ApiError
from .state import Installation, Token, User, World

TOKEN_TTL = 3600
JWT_MAX_LIFETIME = 600
CLOCK_SKEW = 60


@dataclass
class Identity:
    """The authenticated caller of one request."""

    kind: str  # app | installation | user | anonymous
    user: User | None = None
    installation: Installation | None = None
    token: str | None = None

    @property
    def label(self) -> str:
        """Short text for request logs: ``app``, ``installation:42``, ``user:alice``."""
        if self.kind == "installation":
            return f"installation:{self.installation.id}"
        if self.kind == "user":
            return f"user:{self.user.login}"
        return self.kind


def bad_credentials() -> ApiError:
    """GitHub's 401."""
    return ApiError(401, "Bad credentials")


def verify_app_jwt(world: World, raw: str, public_key) -> Identity:
    """Check an App JWT: RS256 with the App key, ``iss`` = app id or client id, lifetime <= 10 min."""
    try:
        claims = jwt.decode(raw, public_key, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]},
                            leeway=CLOCK_SKEW)
    except jwt.PyJWTError:
        raise bad_credentials()
    app = world.app
    if str(claims["iss"]) not in (str(app.id), app.client_id):
        raise bad_credentials()
    if int(claims["exp"]) > time.time() + JWT_MAX_LIFETIME + CLOCK_SKEW:
        raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
    if int(claims["iat"]) > time.time() + CLOCK_SKEW:
        raise ApiError(401, "'Issued at' claim ('iat') must be an Integer representing a time in the past")
    return Identity("app", user=app.bot)


def issue_installation_token(world: World, inst: Installation) -> Token:
    """A fresh 1-hour installation token."""
    tok = Token("ghs_" + secrets.token_urlsafe(27), world.now() + TOKEN_TTL, installation_id=inst.id)
    world.tokens[tok.token] = tok
    return tok


def issue_user_token(world: World, user: User) -> Token:
    """A non-expiring user token (acts as ``user`` on REST calls)."""
    tok = Token("ghu_" + secrets.token_urlsafe(27), float("inf"), login=user.login)
    world.tokens[tok.token] = tok
    return tok


def identify(world: World, header: str | None, public_key, app_only: bool) -> Identity:
    """Resolve an Authorization header. JWTs are accepted only where ``app_only``."""
    if not header:
        return Identity("anonymous")
    scheme, _, cred = header.partition(" ")
    cred = cred.strip()
    if scheme.lower() not in ("bearer", "token") or not cred:
        raise bad_credentials()
    if cred.count(".") == 2 and not cred.startswith(("ghs_", "ghu_")):
        if not app_only:
            raise ApiError(401, "A JSON web token could not be decoded")
        return verify_app_jwt(world, cred, public_key)
    tok = world.tokens.get(cred)
    if tok is None or tok.expires_at <= world.now():
        raise bad_credentials()
    if tok.login:
        return Identity("user", user=world.users[tok.login.lower()], token=cred)
    inst = world.installations.get(tok.installation_id)
    if inst is None:
        raise bad_credentials()
    return Identity("installation", user=inst.app.bot, installation=inst, token=cred)
