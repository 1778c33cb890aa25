"""Named API tokens for apps: what a token is, what each role may do, and who sees which job.

Pure rules, no I/O (the store keeps `TokenRecord`s; receiver/auth.py resolves a bearer token to a
`Principal` through it). Besides the environment's RECEIVER_API_TOKEN (the built-in `admin`
principal, whose name no token may take), named tokens each have a role:

    role     may                                                   sees
    read     GET jobs, content, submissions, events, usage, wait   its own jobs only
    submit   read, and POST /jobs (submit, register)               its own jobs only
    admin    everything: deliveries, reprocess, DELETE, metrics    every job, webhook-only ones too

Another app's job answers as if it did not exist (404, not 403): a token cannot probe for job ids.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from base64 import b64encode
from dataclasses import dataclass
from typing import Literal, get_args

from .budget import Cap

Role = Literal["read", "submit", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
Permission = Literal["read", "submit", "admin"]
GRANTS: dict[Role, frozenset[Permission]] = {
    "read": frozenset({"read"}),
    "submit": frozenset({"read", "submit"}),
    "admin": frozenset({"read", "submit", "admin"}),
}
# What a refusal (403) says each permission is for.
DOING: dict[Permission, str] = {
    "read": "read jobs",
    "submit": "submit jobs (POST /jobs)",
    "admin": "use the admin API (deliveries, reprocess, DELETE, metrics)",
}

ADMIN_NAME = "admin"  # the environment's RECEIVER_API_TOKEN; reserved, no named token takes it
TOKEN_PREFIX = "orv_"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = "1 to 63 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
# A named token as issued: the prefix and 43 base64url characters (32 random bytes).
_TOKEN = re.compile(r"^orv_[A-Za-z0-9_-]{43}$")


def check_name(name: str) -> str:
    """The name as given, or ValueError with the rule (the built-in `admin` is refused too)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"token name {name[:80]!r} is not allowed: {NAME_RULE}")
    if name == ADMIN_NAME:
        raise ValueError(f"token name {ADMIN_NAME!r} is reserved for RECEIVER_API_TOKEN")
    return name


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role[:40]!r}")
    return role


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def looks_like_token(given: str) -> bool:
    """Only a string shaped like an issued token is looked up (garbage never reaches the store)."""
    return _TOKEN.fullmatch(given) is not None


def token_hash(token: str) -> str:
    """What the store keeps of a token. A plain SHA-256 is right here (no salt, no slow KDF): the
    token is 256 random bits, not a password, so nothing can be guessed faster than by brute force
    of the token itself; and a plain digest can be looked up by an index on each request."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_notify_secret() -> str:
    """A Standard Webhooks signing secret for the app's notifications (`whsec_` + base64 of 24 bytes)."""
    return "whsec_" + b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A named token as stored: never the token itself, only its hash."""

    name: str
    role: Role
    token_hash: str
    notify_secret: str
    created_at: float
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None  # when a request last presented it (to within auth.CACHE_SECONDS)

    @property
    def caps(self) -> tuple[Cap, ...]:
        """This token's own spending caps (besides the receiver-wide ones)."""
        pairs = (("day", self.budget_usd_per_day), ("month", self.budget_usd_per_month))
        return tuple(Cap(period, usd, owner=self.name) for period, usd in pairs if usd is not None)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the built-in admin (RECEIVER_API_TOKEN), or a named token."""

    name: str
    role: Role
    caps: tuple[Cap, ...] = ()
    builtin: bool = False  # the environment's token (its jobs and submissions have no owner)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def owner(self) -> str | None:
        """What records this principal's jobs and submissions as theirs (None: the built-in admin)."""
        return None if self.builtin else self.name

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def sees(self, owner: str | None) -> bool:
        """Whether a job or submission owned by `owner` (None: admin's or webhook-only) is visible."""
        return self.is_admin or (owner is not None and owner == self.name)

    @property
    def only_owner(self) -> str | None:
        """The owner a listing is narrowed to (None: every job, for an admin)."""
        return None if self.is_admin else self.name


BUILTIN_ADMIN = Principal(ADMIN_NAME, "admin", builtin=True)


def principal_for(record: TokenRecord) -> Principal:
    return Principal(record.name, record.role, record.caps)


def required_permission(method: str, path: str) -> Permission:
    """What a query API request needs: GETs of jobs, content, submissions, events and usage are
    reads; POST /jobs is a submit; anything else (deliveries, reprocess, DELETE, metrics) is admin."""
    reading = method in ("GET", "HEAD")
    if reading and path.startswith(("/jobs", "/submissions", "/events", "/usage")):
        return "read"
    if method == "POST" and path == "/jobs":
        return "submit"
    return "admin"
