"""Where one session's migration capture stands, between the statements of a transaction."""

from __future__ import annotations

from proxy.ddl import versions
from proxy.ddl.classify import Statement
from proxy.ddl.versions import VersionWrite
from proxy.protocol.codes import TransactionStatus


class MigrationState:
    """What the capture of the current transaction has done and still owes.

    - `in_migration`: this transaction already holds a capture call (a migration row);
    - `pending`: a version written before its migration ran (Prisma's row, golang-migrate's
      dirty mark), to label the next capture of this session;
    - `after_success`: statements that cannot run in a transaction block (CREATE INDEX
      CONCURRENTLY), recorded on their own once they have succeeded;
    - `deferred`: DDL run inside a transaction block, one Query each (`psql -1 -f`), whose
      capture waits for the next message of the client: one capture call for the whole run,
      always before anything that could end the transaction or roll back to a savepoint.
    """

    def __init__(self) -> None:
        self.in_migration = False
        self.pending: VersionWrite | None = None
        self.after_success: list[Statement] = []
        self.deferred: list[Statement] = []

    @property
    def settled(self) -> bool:
        return not (self.in_migration or self.after_success or self.deferred)

    def hold(self, write: VersionWrite) -> bool:
        """Whether a version write needs no call now: it writes no single version, or it was
        written before its migration and waits for that migration's capture."""
        if write.version == versions.ALL_VERSIONS:
            return True  # TRUNCATE or DELETE of every row: no version to record
        if (write.before_ddl or bool(write.dirty)) and not self.in_migration:
            self.pending = write
            return True
        return False

    def captured(self) -> VersionWrite | None:
        """A capture call was sent in this transaction; returns the version it must carry."""
        self.in_migration = True
        pending, self.pending = self.pending, None
        return pending

    def late(self, ddl_alongside: bool) -> bool:
        """A version written in a transaction without DDL of its own belongs to the migration
        that committed just before on this session (Django records an unapply after its
        transaction); one written with or after DDL belongs to that DDL's transaction."""
        return not (ddl_alongside or self.in_migration)

    def failed(self) -> None:
        self.after_success.clear()  # what failed is not recorded

    def ready(self, status: int) -> None:
        if status != TransactionStatus.IN_TRANSACTION:
            # Failed: the DDL will not commit. Idle: cannot follow a deferral (DDL does not end
            # a transaction block), and a stale run must not be recorded in the next one.
            self.deferred.clear()
        if status == TransactionStatus.IDLE:
            self.in_migration = False

    def take_after_success(self, status: int) -> list[Statement]:
        if status == TransactionStatus.FAILED:
            self.after_success.clear()
        statements, self.after_success = self.after_success, []
        return statements
