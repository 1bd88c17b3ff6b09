"""Users, login tokens and the admin check, shaped like the real server's security layer.

Tokens are HS256 JWTs signed with a random per-process secret (a restart
signs everyone out, as a restart of the real server with a new secret would).
Admin routes accept ``X-API-Key`` (checked first) or ``Authorization: Bearer``;
missing or invalid credentials are 401, a valid non-admin user is 403.
Nothing here ever puts a password, key or token in a message or repr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

API_KEY_ENV = "QILBEE_EMULATOR_API_KEY"  # the server's --api-key default: keeps the key out of process lists
ACCESS_TOKEN_SECONDS = 86400
REFRESH_TOKEN_SECONDS = 7 * 86400
DEFAULT_ADMIN_USER = "admin"
DEFAULT_ADMIN_PASSWORD = "Admin123!@#"  # the real server's bootstrap admin password
_USER_ID_NAMESPACE = uuid.UUID("6f1c55c2-3c1e-4b1e-9a55-51b2c9a0e001")


class AuthError(Exception):
    """Authentication or authorisation failed; ``status`` and ``body`` are what the client sees."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(error)
        self.status = status
        self.body = {"error": error, "message": message}


@dataclass(frozen=True)
class User:
    username: str
    roles: tuple[str, ...]
    user_id: str
    password_digest: bytes = field(repr=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def make_user(username: str, password: str, roles: tuple[str, ...]) -> User:
    return User(
        username=username,
        roles=roles,
        user_id=str(uuid.uuid5(_USER_ID_NAMESPACE, username)),
        password_digest=_digest(password),
    )


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class _Attempts:
    failures: int = 0
    locked_until: float = 0.0


class AuthService:
    """Checks passwords, issues and validates tokens, and guards admin routes."""

    def __init__(
        self,
        users: list[User],
        api_key: str | None = None,
        lockout_threshold: int = 5,
        lockout_seconds: float = 900.0,
    ) -> None:
        self._users = {user.username: user for user in users}
        self._api_key = api_key
        self._secret = secrets.token_bytes(32)
        self._lockout_threshold = lockout_threshold
        self._lockout_seconds = lockout_seconds
        self._attempts: dict[str, _Attempts] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AuthService(users={sorted(self._users)}, admin_api_protected={self.protects_admin})"

    @property
    def protects_admin(self) -> bool:
        """Admin routes need credentials only when the server was given an API key."""
        return self._api_key is not None

    # -- login

    def login(self, username: str, password: str) -> dict[str, object]:
        """The real server's login document; AuthError 401 (bad credentials) or 429 (locked)."""
        now = time.time()
        with self._lock:
            attempts = self._attempts.setdefault(username, _Attempts())
            if attempts.locked_until > now:
                raise AuthError(429, "Account locked", "Too many failed login attempts; try again later")
            user = self._users.get(username)
            if user is None or not hmac.compare_digest(user.password_digest, _digest(password)):
                attempts.failures += 1
                if attempts.failures >= self._lockout_threshold:
                    attempts.failures = 0
                    attempts.locked_until = now + self._lockout_seconds
                raise AuthError(401, "Invalid username or password: Invalid credentials", "Invalid credentials")
            self._attempts.pop(username, None)
        return {
            "access_token": self._token(user, "access", ACCESS_TOKEN_SECONDS, now),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "refresh_token": self._token(user, "refresh", REFRESH_TOKEN_SECONDS, now),
            "username": user.username,
            "user_id": user.user_id,
        }

    def _token(self, user: User, kind: str, lifetime: int, now: float) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        claims = {
            "sub": user.user_id,
            "username": user.username,
            "roles": list(user.roles),
            "type": kind,
            "iat": int(now),
            "exp": int(now) + lifetime,
            "jti": secrets.token_hex(8),
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    def user_for_token(self, token: str, kind: str = "access") -> User | None:
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(_unb64(signature), expected):
                return None
            claims = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if claims.get("type") != kind or claims.get("exp", 0) <= time.time():
            return None
        return self._users.get(claims.get("username", ""))

    # -- the admin guard

    def require_admin(self, headers: Mapping[str, str]) -> User | None:
        """Raise AuthError unless the request may use admin routes; the user, if any."""
        if not self.protects_admin:
            return None
        api_key = headers.get("x-api-key")
        if api_key is not None:
            if hmac.compare_digest(api_key.encode(), self._api_key.encode()):  # type: ignore[union-attr]
                return None  # the server's own key is an admin credential
            raise AuthError(401, "Invalid API key", "The X-API-Key header does not match a valid key")
        authorization = headers.get("authorization")
        if authorization is not None and authorization.startswith("Bearer "):
            user = self.user_for_token(authorization[len("Bearer ") :])
            if user is None:
                raise AuthError(401, "Invalid or expired token", "The bearer token is not valid")
            if not user.is_admin:
                raise AuthError(403, "Insufficient permissions", "Required permission: Admin")
            return user
        raise AuthError(401, "Authentication required", "Provide either Bearer token or X-API-Key header")
