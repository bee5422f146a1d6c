"""Why a ticket command was refused: one exception class per reason, each with a stable ``code``.

The service maps codes to HTTP answers (``locked_by_other`` → 409 naming the holder, input
problems → 422, ``ticket_not_found`` → 404); the message is written for the agent.
"""

from __future__ import annotations

from typing import ClassVar


class TicketError(Exception):
    """A command the ticket's rules refuse. Nothing was decided, so nothing is appended."""

    code: ClassVar[str] = "ticket_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TicketNotFound(TicketError):
    code = "ticket_not_found"


class QueueNotPermitted(TicketError):
    """The ticket's queue is one the caller (the gateway, for an agent) did not permit."""

    code = "queue_not_permitted"

    def __init__(self, number: str, queue: str) -> None:
        super().__init__(f"ticket {number} is in queue {queue}, where this is not permitted")
        self.queue = queue


class TicketExists(TicketError):
    code = "ticket_exists"


class LockedByOther(TicketError):
    """The ticket is locked by another agent; ``holder`` names them (OTRS: only the owner acts)."""

    code = "locked_by_other"

    def __init__(self, number: str, holder: str) -> None:
        super().__init__(f"ticket {number} is locked by {holder}")
        self.holder = holder


class NotLockOwner(TicketError):
    code = "not_lock_owner"

    def __init__(self, number: str, holder: str, agent: str) -> None:
        super().__init__(f"ticket {number} is locked by {holder}, not by {agent}; only an admin may force it")
        self.holder = holder


class AlreadyLocked(TicketError):
    """The acting agent already holds the lock (the service may answer this as a success)."""

    code = "already_locked"


class NotLocked(TicketError):
    code = "not_locked"


class InvalidState(TicketError):
    code = "invalid_state"


class InvalidPriority(TicketError):
    code = "invalid_priority"


class UnknownQueue(TicketError):
    code = "unknown_queue"


class PendingTimeRequired(TicketError):
    code = "pending_time_required"


class PendingTimeInPast(TicketError):
    code = "pending_time_in_past"


class UnknownArticle(TicketError):
    code = "unknown_article"


class NoRecipient(TicketError):
    code = "no_recipient"


class InvalidInput(TicketError):
    """A command field is missing or malformed; ``field`` names it."""

    code = "invalid_input"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class AttachmentsTooLarge(InvalidInput):
    """An answer's attachments together exceed ``MAX_ANSWER_ATTACHMENT_BYTES`` (field ``attachments``)."""

    code = "attachments_too_large"


class CannotMergeIntoSelf(TicketError):
    code = "cannot_merge_into_self"


class TicketIsMerged(TicketError):
    """The ticket was merged; ``into_ticket_id``/``into_number`` say where its life continues."""

    code = "ticket_merged"

    def __init__(self, number: str, into_ticket_id: str, into_number: str) -> None:
        super().__init__(f"ticket {number} was merged into ticket {into_number}")
        self.into_ticket_id = into_ticket_id
        self.into_number = into_number


class TicketIsRemoved(TicketError):
    code = "ticket_removed"


class NotMerged(TicketError):
    code = "not_merged"


class FollowUpMakesNewTicket(TicketError):
    """A follow-up to a closed ticket whose queue's policy is ``new_ticket``."""

    code = "follow_up_makes_new_ticket"


class MailNotFound(TicketError):
    """No ticket has an article from this mail (yet)."""

    code = "mail_not_found"


class TemplateNotFound(TicketError):
    code = "template_not_found"


class EventNotFound(TicketError):
    code = "event_not_found"


class CustomerNotFound(TicketError):
    code = "customer_not_found"


class RebuildNotFound(TicketError):
    code = "rebuild_not_found"


class RebuildRunning(TicketError):
    code = "rebuild_running"
