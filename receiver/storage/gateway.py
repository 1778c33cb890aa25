"""What the gateway needs of a store (see storage/base.py for the seam as a whole): submits made
through the receiver (`Submissions`), the apps' named tokens (`Tokens`), and the outbox of signed
notifications to apps (`Notifications`). Every backend implements them; `Stores` carries them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..domain.model import Page, SubmissionRecord

if TYPE_CHECKING:
    from ..domain.budget import BudgetCheck, SpendFact
    from ..domain.notifications import NotificationRecord
    from ..domain.submissions import Outcome
    from ..domain.tokens import TokenRecord

__all__ = ["Notifications", "Submissions", "TokenExists", "Tokens"]


class Submissions(Protocol):
    async def begin(
        self, submission: SubmissionRecord, budget: BudgetCheck | None = None
    ) -> tuple[SubmissionRecord, bool]:
        """Record a new submission (`submitting`) under its idempotency key, committed before it
        returns; (the stored one, True) or, when the key is taken, (the one stored under it, False).

        With `budget`, a new key is first checked against the caps (`domain.budget.refusal` over the
        spend read in the same transaction, which no other capped begin runs beside): OverBudget,
        and nothing is stored, when it would cross one."""
        ...

    async def spend(self, since: float, until: float) -> list[SpendFact]:
        """The submissions recorded, and the jobs not submitted here created, in [since, until)."""
        ...

    async def get(
        self, ref: str, *, by_key: bool = False, owner: str | None = None
    ) -> SubmissionRecord | None:
        """By submission id (anyone's: the caller checks who may see it), else by idempotency key in
        `owner`'s namespace (None: the built-in admin's); `by_key`: by the key only. Keys are unique
        per owner: two apps using the same key have two submissions."""
        ...

    async def finish(
        self, submission_id: str, outcome: Outcome, *, first_poll_at: float
    ) -> SubmissionRecord | None:
        """Store what upstream answered (as `plan_outcome` decides); a job id also registers the job
        (polled from `first_poll_at`) in the same transaction. The stored record (None: no such one)."""
        ...

    async def forget(self, submission_id: str) -> None:
        """Drop a `submitting` submission whose request provably never left (the key is free again)."""
        ...

    async def abandon(self, older_than: float | None) -> int:
        """`submitting` ones created before `older_than` (None: all) become `outcome_unknown`; how many."""
        ...


class TokenExists(Exception):
    """A token of that name exists already (revoked ones too: a name is never reused)."""


class Tokens(Protocol):
    async def create(self, record: TokenRecord) -> None:
        """Store a new token (its hash); TokenExists when the name is taken."""
        ...

    async def by_hash(self, token_hash: str) -> TokenRecord | None:
        """The token with this hash, revoked or not (None: unknown)."""
        ...

    async def get(self, name: str) -> TokenRecord | None: ...

    async def list(self) -> list[TokenRecord]:
        """Every token, revoked ones too, by name."""
        ...

    async def revoke(self, name: str, at: float) -> bool:
        """Mark the token revoked (False: no such token, or revoked already)."""
        ...

    async def notify_secret(self, name: str) -> str | None:
        """The token's notification signing secret (None: no such token, or revoked)."""
        ...

    async def touch(self, name: str, at: float) -> None:
        """Record that the token was used at `at` (receiver/auth.py calls it at most once per cache
        period per token and process: `tokens list` shows when each app last came)."""


class Notifications(Protocol):
    lease: float  # seconds a claim lasts (longer than a send's timeout: never renewed)

    async def claim(self, now: float, limit: int) -> list[NotificationRecord]:
        """Due pending notifications (past their next attempt, under no live claim) for this worker,
        each attempt counted at the claim (a worker that dies mid-send used it up)."""
        ...

    async def delivered(self, notification_id: str, *, status: int) -> bool:
        """Record a 2xx; False (nothing recorded) when this worker no longer holds the claim."""
        ...

    async def failed(
        self, notification_id: str, *, status: int | None, error: str, next_at: float | None
    ) -> bool:
        """Record a failed attempt: pending again at `next_at`, or `dead` (None); False when this
        worker no longer holds the claim."""
        ...

    async def recover(self) -> int:
        """Claims known dead now (SQLite under the data-dir lock: every other worker's); else 0."""
        ...

    async def next_due(self) -> float | None:
        """When the next pending notification falls due (or its claim runs out)."""
        ...

    async def get(self, notification_id: str) -> NotificationRecord | None: ...

    async def page(self, *, state: str | None, job_id: str | None, cursor: str | None, limit: int) -> Page:
        """Newest first (created_at, id), keyset paginated; a Page of NotificationRecord. ValueError
        for a cursor it did not issue."""
        ...

    async def retry(self, notification_ids: list[str] | None) -> list[str]:
        """Send notifications back to pending, due now, attempts reset (the same `webhook-id`): those
        ids (any state but one being sent right now), or None: every dead one. The ids sent back."""
        ...

    async def counts(self) -> dict[str, int]:
        """Notifications by state."""
        ...
