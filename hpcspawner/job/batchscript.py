"""Render the batch script from its jinja2 template (pure).

The template sees only validated values. Two filters keep it safe:

- ``sh`` shell-quotes a value for a shell line;
- ``directive`` passes a value into an ``#SBATCH`` line only if it is a plain
  word (sbatch parses those lines itself, not through a shell, so quoting
  would not help; refusing is the safe choice).

Undefined names are errors (``StrictUndefined``), so a typo in an admin's
template fails the spawn loudly instead of rendering an empty option.
"""

from __future__ import annotations

import functools
import re
import shlex
from importlib import resources

import jinja2

#: What may appear in an ``#SBATCH`` value: no whitespace, quotes, ``$``,
#: backticks, ``;``, ``&``, ``|``, ``<``, ``>``, ``\`` or control characters.
DIRECTIVE_VALUE_RE = re.compile(r"[A-Za-z0-9_.,:=+/%@\[\]-]+")  # used with fullmatch

DEFAULT_TEMPLATE = "batch_script.sh.j2"


#: The job's default umask: what it creates (its output file, the server's files) is private.
DEFAULT_UMASK = "077"

_UMASK_RE = re.compile(r"0?[0-7]{3}")  # used with fullmatch


class UnsafeValueError(ValueError):
    """A value would not be inert in the batch script."""


def check_umask(value) -> str:
    """``value`` (three octal digits, or four with a leading 0) as four digits, e.g. "0077".

    The form both the batch script's ``umask`` line and Slurm's ``SLURM_UMASK`` take.
    Raises :class:`ValueError` naming the fix.
    """
    text = str(value)
    if not _UMASK_RE.fullmatch(text):
        raise ValueError(
            f"job_umask {text[:20]!r} is not a umask: give three octal digits (a leading 0 "
            'is allowed), e.g. "077" (only the user can read the files) or "027" (the '
            "user's group can read them too)"
        )
    return text.zfill(4)


def directive(value) -> str:
    text = str(value)
    if not DIRECTIVE_VALUE_RE.fullmatch(text):
        raise UnsafeValueError(f"refusing to put {text[:60]!r} into an #SBATCH line")
    return text


def shell_quote(value) -> str:
    return shlex.quote(str(value))


def default_template() -> str:
    return resources.files(__package__).joinpath("templates", DEFAULT_TEMPLATE).read_text()


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - a shell script, not HTML; values are quoted by filters
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["sh"] = shell_quote
    env.filters["directive"] = directive
    return env


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    """Compile a template's text once: every spawn renders the same one or two templates."""
    return make_environment().from_string(template)


def render(template: str, **context) -> str:
    """Render ``template`` (the template's text) with ``context``."""
    return _compile(template).render(**context)
