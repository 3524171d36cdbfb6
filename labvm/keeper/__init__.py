"""The tunnel keeper (labvm.keeper.core): one small detached process per profile on the laptop that
holds the profile's URL for good and carries it to the VM.  What the rest of labvm may use of it:"""

from .core import Keeper
from .forward import ssh_command
from .protocol import (
    ACCEPT_TIMEOUT,
    CONNECT_TIMEOUT,
    GONE_STATUS,
    KEEPER_MODULE,
    OK,
    SLEEPING,
    URL_LINE,
    WAKE_WITHIN,
    Command,
    Record,
    State,
    forward_socket,
    log_path,
    own_proof,
    read_record,
    record_path,
    shared_connection,
    tell,
    write_record,
)
from .questions import port_holders, question_command, refusal
from .watch import autostop_stopped_it

__all__ = [
    "ACCEPT_TIMEOUT",
    "CONNECT_TIMEOUT",
    "GONE_STATUS",
    "KEEPER_MODULE",
    "OK",
    "SLEEPING",
    "URL_LINE",
    "WAKE_WITHIN",
    "Command",
    "Keeper",
    "Record",
    "State",
    "autostop_stopped_it",
    "forward_socket",
    "log_path",
    "own_proof",
    "port_holders",
    "question_command",
    "read_record",
    "record_path",
    "refusal",
    "shared_connection",
    "ssh_command",
    "tell",
    "write_record",
]
