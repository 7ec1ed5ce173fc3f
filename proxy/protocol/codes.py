"""Message type bytes and special request codes, named as in the PostgreSQL protocol docs.

Frontend and backend codes are separate namespaces because several letters
(`D`, `E`, `C`, `S`, `H`) mean different messages in each direction. Codes are ints
(the value of the type byte) because indexing `bytes` yields ints.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

PROTOCOL_3_0: Final = 196608  # 3 << 16
PROTOCOL_3_2: Final = (3 << 16) | 2
CANCEL_REQUEST_CODE: Final = 80877102
SSL_REQUEST_CODE: Final = 80877103
GSSENC_REQUEST_CODE: Final = 80877104

STARTUP_MIN_LENGTH: Final = 8
STARTUP_MAX_LENGTH: Final = 10_000
MESSAGE_MAX_LENGTH: Final = 0x3FFFFFFF + 4  # Postgres's MaxAllocSize plus the length word


class Frontend(IntEnum):
    BIND = ord("B")
    CLOSE = ord("C")
    COPY_DATA = ord("d")
    COPY_DONE = ord("c")
    COPY_FAIL = ord("f")
    DESCRIBE = ord("D")
    EXECUTE = ord("E")
    FLUSH = ord("H")
    FUNCTION_CALL = ord("F")
    PARSE = ord("P")
    PASSWORD = ord("p")  # also SASLInitialResponse, SASLResponse, GSSResponse
    QUERY = ord("Q")
    SYNC = ord("S")
    TERMINATE = ord("X")


class Backend(IntEnum):
    AUTHENTICATION = ord("R")
    BACKEND_KEY_DATA = ord("K")
    BIND_COMPLETE = ord("2")
    CLOSE_COMPLETE = ord("3")
    COMMAND_COMPLETE = ord("C")
    COPY_DATA = ord("d")
    COPY_DONE = ord("c")
    COPY_IN_RESPONSE = ord("G")
    COPY_OUT_RESPONSE = ord("H")
    COPY_BOTH_RESPONSE = ord("W")
    DATA_ROW = ord("D")
    EMPTY_QUERY_RESPONSE = ord("I")
    ERROR_RESPONSE = ord("E")
    FUNCTION_CALL_RESPONSE = ord("V")
    NEGOTIATE_PROTOCOL_VERSION = ord("v")
    NO_DATA = ord("n")
    NOTICE_RESPONSE = ord("N")
    NOTIFICATION_RESPONSE = ord("A")
    PARAMETER_DESCRIPTION = ord("t")
    PARAMETER_STATUS = ord("S")
    PARSE_COMPLETE = ord("1")
    PORTAL_SUSPENDED = ord("s")
    READY_FOR_QUERY = ord("Z")
    ROW_DESCRIPTION = ord("T")


class AuthRequest(IntEnum):
    """The int32 that follows an `Authentication*` message's type byte."""

    OK = 0
    KERBEROS_V5 = 2
    CLEARTEXT_PASSWORD = 3
    MD5_PASSWORD = 5
    GSS = 7
    GSS_CONTINUE = 8
    SSPI = 9
    SASL = 10
    SASL_CONTINUE = 11
    SASL_FINAL = 12


class TransactionStatus(IntEnum):
    """The status byte of `ReadyForQuery`."""

    IDLE = ord("I")
    IN_TRANSACTION = ord("T")
    FAILED = ord("E")


# ErrorResponse / NoticeResponse field codes.
FIELD_SEVERITY: Final = ord("S")
FIELD_SEVERITY_NONLOCALIZED: Final = ord("V")
FIELD_SQLSTATE: Final = ord("C")
FIELD_MESSAGE: Final = ord("M")
FIELD_DETAIL: Final = ord("D")
FIELD_HINT: Final = ord("H")
FIELD_POSITION: Final = ord("P")
FIELD_SCHEMA: Final = ord("s")
FIELD_TABLE: Final = ord("t")
FIELD_COLUMN: Final = ord("c")
