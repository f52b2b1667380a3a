"""User-facing errors.

`InputError` is raised for anything a user supplied that wccsim refuses: a bad trace member, a bad YAML
field, a bad command-line value. Its message is one line naming the file, the member or field, what was
expected and what was found, e.g. ``edge_npu.yaml: mac.rows: expected a positive integer, got -4``.
The CLI prints it to stderr and exits with status 2; any other exception is an internal error (exit 1).
"""

__all__ = ["InputError", "UsageError"]


class InputError(ValueError):
    """Invalid user input; the message is a single line: ``<where>: <field>: expected ..., got ...``."""

    def __init__(self, where: str, field: str, expected: str, got: object = None):
        self.where, self.field, self.expected, self.got = where, field, expected, got
        parts = [str(where)]
        if field:
            parts.append(str(field))
        tail = f"expected {expected}" if got is None else f"expected {expected}, got {got!s}"
        parts.append(tail)
        super().__init__(": ".join(parts).replace("\n", " "))


class UsageError(InputError):
    """Bad command-line arguments, as argparse words them: ``wccsim run: argument --rate: expected ...``."""

    def __init__(self, prog: str, message: str):
        ValueError.__init__(self, f"{prog}: {message}".replace("\n", " "))
        self.where, self.field, self.expected, self.got = prog, "", message, None
