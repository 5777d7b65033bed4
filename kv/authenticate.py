"""A member's Authenticate (etcd 3.4's EtcdServer.Authenticate, v3_server.go).

Why this path: the password must be checked against an auth store at least as
new as any change acknowledged before the request arrived (a password just
changed must not still work), and the token must exist on every member (etcd's
clients may send it to any endpoint). So, as etcd does:

1. a ReadIndex round (the request waits in the read queue like a linearizable
   read, kv/read_index.py), then
2. the password is checked against the applied auth store (PBKDF2, on this
   member only: the password never enters the log), noting the auth revision;
3. an InternalAuthenticateRequest with a random token prefix from this member's
   ``Random`` and that revision goes through the log; applying it on every member
   registers the token ``<prefix>.<index>`` (kv/applier.py);
4. if the auth store changed between 2 and the apply (the revision moved), the
   apply refuses with ErrAuthOldRevision and this member starts again at 2.

These functions are Member's methods, bound in kv/member.py with a leading
underscore, like kv/read_index.py's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kv import api
from kv.errors import ErrAuthOldRevision, RaftKVError
from kv.simple_token import new_simple_token_prefix

if TYPE_CHECKING:
    from kv.member import Member


def check_passwords(self: Member) -> None:
    """Authenticate requests whose ReadIndex round is done (called from advance(), where
    the node takes proposals): check each password, propose its token."""
    checks, self.auth_checks = self.auth_checks, []
    for token, req in checks:
        try:
            revision = self.sm.auth.check_password(req.name, req.password)
            internal = api.InternalAuthenticateRequest(
                name=req.name, simple_token=new_simple_token_prefix(self.rng), auth_revision=revision
            )
            seq = self._propose(token, internal)
        except RaftKVError as e:
            self.responses.append((token, e))
            continue
        self.authenticating[seq] = req


def retry_if_stale(self: Member, prop: api.Proposal, outcome: Any) -> bool:
    """True if `prop` was this member's Authenticate refused because the auth store
    moved since the password check: it is queued to be checked again."""
    retry = self.authenticating.pop(prop.seq, None)
    if retry is None or not isinstance(outcome, ErrAuthOldRevision):
        return False
    token = self.pending.pop(prop.seq, None)
    if token is not None:
        self.auth_checks.append((token, retry))
    return True
