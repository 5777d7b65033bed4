"""Shape checks of client requests, as etcd's API layer does them before proposing.

etcd checks a request in its gRPC layer (etcdserver/api/v3rpc/key.go:
checkRangeRequest, checkPutRequest, checkDeleteRequest, checkTxnRequest and
checkIntervals) and answers a bad one at once with its error, before anything
reaches Raft. Here they are one function per request kind, raising etcd's
errors (kv/errors.py); the Member runs them on submit and the gRPC servicers
before calling the Backend, and the store runs ``check_intervals`` again on
apply (a txn must not put one key twice, nor put a key it also deletes).
"""

from __future__ import annotations

from kv.api import DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest
from kv.errors import (
    ErrDuplicateKey,
    ErrEmptyKey,
    ErrKeyNotFound,
    ErrLeaseProvided,
    ErrTooManyOps,
    ErrValueProvided,
)
from kv.keyrange import in_range

# etcd's --max-txn-ops default.
DEFAULT_MAX_TXN_OPS = 128


def check_range_request(req: RangeRequest) -> None:
    if not req.key:
        raise ErrEmptyKey()


def check_put_request(req: PutRequest) -> None:
    if not req.key:
        raise ErrEmptyKey()
    if req.ignore_value and req.value:
        raise ErrValueProvided()
    if req.ignore_lease and req.lease != 0:
        raise ErrLeaseProvided()


def check_delete_range_request(req: DeleteRangeRequest) -> None:
    if not req.key:
        raise ErrEmptyKey()


def check_txn_request(req: TxnRequest, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """etcd's checkTxnRequest, then its put/delete overlap check on each branch."""
    _check_txn_shape(req, max_txn_ops)
    # After the shape check, as etcd, so a huge txn is refused before the costlier overlap walk.
    check_intervals(req.success)
    check_intervals(req.failure)


def check_request(req: object, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """The shape check for any KV request (Compaction has none in etcd)."""
    if isinstance(req, RangeRequest):
        check_range_request(req)
    elif isinstance(req, PutRequest):
        check_put_request(req)
    elif isinstance(req, DeleteRangeRequest):
        check_delete_range_request(req)
    elif isinstance(req, TxnRequest):
        check_txn_request(req, max_txn_ops)


def is_read_only_txn(req: TxnRequest) -> bool:
    """Only ranges in every branch, nested txns included (etcd's isTxnReadonly)."""
    for op in (*req.success, *req.failure):
        if op.request_txn is not None:
            if not is_read_only_txn(op.request_txn):
                return False
        elif op.request_range is None:
            return False
    return True


def _check_txn_shape(req: TxnRequest, max_txn_ops: int) -> None:
    # The widest of compare/success/failure counts against the limit; a nested txn
    # gets what is left of it (etcd checkTxnRequest / checkRequestOp).
    opc = max(len(req.compare), len(req.success), len(req.failure))
    if opc > max_txn_ops:
        raise ErrTooManyOps()
    for c in req.compare:
        if not c.key:
            raise ErrEmptyKey()
    for op in (*req.success, *req.failure):
        _check_request_op(op, max_txn_ops - opc)


def _check_request_op(op: RequestOp, max_txn_ops: int) -> None:
    if op.request_range is not None:
        check_range_request(op.request_range)
    elif op.request_put is not None:
        check_put_request(op.request_put)
    elif op.request_delete_range is not None:
        check_delete_range_request(op.request_delete_range)
    elif op.request_txn is not None:
        _check_txn_shape(op.request_txn, max_txn_ops)
    else:
        raise ErrKeyNotFound()  # an empty RequestOp: etcd answers exactly this


class _Deletes:
    """Deleted intervals of one txn level, for the overlap check."""

    __slots__ = ("spans",)

    def __init__(self) -> None:
        self.spans: list[tuple[bytes, bytes]] = []  # (key, range_end) as requested

    def covers(self, k: bytes) -> bool:
        return any(in_range(k, key, end) for key, end in self.spans)


def check_intervals(ops: tuple[RequestOp, ...]) -> tuple[set[bytes], _Deletes]:
    """ErrDuplicateKey if one branch puts a key twice, or puts a key it also deletes,
    nested txns included. Same walk as etcd's checkIntervals (this level's deletes;
    then each nested txn's puts against the puts and deletes seen so far; then this
    level's puts); the then/else branches of one nested txn may put the same key,
    since only one of them runs.

    One deliberate difference: etcd misses a nested txn's put under a delete in a
    *later* sibling txn (its deletes join the set after the earlier puts were
    checked). That txn would change one key twice in one revision, which the
    store's history does not represent, so it is refused here too."""
    dels = _Deletes()
    for op in ops:
        d = op.request_delete_range
        if d is not None:
            dels.spans.append((d.key, d.range_end))
    puts: set[bytes] = set()
    nested: list[tuple[set[bytes], _Deletes]] = []
    for op in ops:
        t = op.request_txn
        if t is None:
            continue
        puts_then, dels_then = check_intervals(t.success)
        puts_else, dels_else = check_intervals(t.failure)
        for k in puts_then:
            if k in puts or dels.covers(k):
                raise ErrDuplicateKey()
        for k in puts_else:
            if (k in puts and k not in puts_then) or dels.covers(k):
                raise ErrDuplicateKey()
        both = puts_then | puts_else
        puts |= both
        child = _Deletes()
        child.spans = dels_then.spans + dels_else.spans
        dels.spans.extend(child.spans)
        nested.append((both, child))
    for j, (earlier_puts, _) in enumerate(nested):
        for _, later_dels in nested[j + 1 :]:
            if any(later_dels.covers(k) for k in earlier_puts):
                raise ErrDuplicateKey()
    for op in ops:
        p = op.request_put
        if p is None:
            continue
        if p.key in puts or dels.covers(p.key):
            raise ErrDuplicateKey()
        puts.add(p.key)
    return puts, dels
