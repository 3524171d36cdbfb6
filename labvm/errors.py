"""The one exception type a user ever sees from labvm: a message, never a traceback."""


class LabvmError(Exception):
    """A problem the user can fix; str(error) is the whole message, next step included."""


class Unsupported(LabvmError):
    """A verb this profile's provider cannot do (snapshot on `local`, resize on `ssh`, ...)."""
