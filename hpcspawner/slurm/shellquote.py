"""argv -> one command line for a remote POSIX shell: the SSH driver's only quoting.

SSH carries a command as one string, which the login node's sshd hands to the
account's login shell as ``$SHELL -c STRING``. :func:`quote_argv` makes that string
so that a POSIX shell (sh, dash, bash, ksh, zsh) splits it back into exactly the
given argv: every word in single quotes, a single quote written as ``'"'"'``. No
expansion, globbing, redirection or command separator can survive it
(``tests/unit/test_shell_quote.py`` checks this with a real ``/bin/sh`` on
generated text). The login shell of the account the hub logs in as must be a
POSIX shell: csh and fish quote differently.
"""

from __future__ import annotations

from collections.abc import Sequence


def quote_word(word: str) -> str:
    """``word`` as one word for a POSIX shell, whatever it contains."""
    if not isinstance(word, str):
        raise TypeError(f"argv words are text, not {type(word).__name__}: {word!r:.60}")
    if "\0" in word:
        raise ValueError(f"argv words cannot hold a NUL character: {word!r:.60}")
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"argv words must be valid Unicode text: {word!r:.60}") from None
    return "'" + word.replace("'", "'\"'\"'") + "'"


def quote_argv(argv: Sequence[str]) -> str:
    """The command line that a remote POSIX shell runs as exactly ``argv``.

    Raises :class:`ValueError` for an empty argv and for words a command line
    cannot carry (a NUL character, text that is not valid Unicode).
    """
    if isinstance(argv, str):
        raise TypeError("quote_argv takes a list of words, not a string")
    if not argv:
        raise ValueError("quote_argv needs at least the command")
    return " ".join(quote_word(word) for word in argv)
