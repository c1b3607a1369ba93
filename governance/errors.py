"""Errors shared by every governance app: role checks, separation of duties, status moves."""

from __future__ import annotations


class GovernanceError(Exception):
    """A governed action was refused; the message says why."""


class RoleRequired(GovernanceError):
    """The acting user lacks the role the action needs."""

    def __init__(self, user: object, role: str, action: str) -> None:
        self.role = role
        super().__init__(f"{action} needs the {role} role, which {user} does not hold")


class SelfApprovalForbidden(GovernanceError):
    """Separation of duties: nobody approves what they wrote, registered or requested."""


class InvalidTransition(GovernanceError):
    """A status change that the lifecycle does not allow from the current status."""

    def __init__(self, what: str, current: str, target: str) -> None:
        self.current = current
        self.target = target
        super().__init__(f"{what} is {current}; it cannot become {target}")
