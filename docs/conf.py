"""Sphinx configuration for the hpcspawner documentation.

Build (warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import re

from autodoc_traits import TraitDocumenter
from sphinx.ext.autodoc import AttributeDocumenter
from traitlets import TraitType

from hpcspawner._version import __version__

project = "hpcspawner"
author = "hpcspawner contributors"
copyright = "hpcspawner contributors"
version = release = __version__

extensions = [
    "myst_parser",
    "autodoc_traits",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_copybutton",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "**/README.md", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The configuration reference lists traits in the order the source declares them.
autodoc_member_order = "bysource"
autodoc_typehints = "none"

# Shell examples are written with a "$ " prompt; the copy button leaves it out.
copybutton_prompt_text = r"\$ "
copybutton_prompt_is_regexp = True
copybutton_line_continuation_character = "\\"

html_theme = "pydata_sphinx_theme"
html_title = f"hpcspawner {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "header_links_before_dropdown": 8,
}
# Every page is a top-level page, so the left "section navigation" would stay empty.
html_sidebars = {"**": []}


# ---------------------------------------------------------------- configuration reference
#
# Three adjustments to what autodoc_traits renders from the trait help texts:
#
# 1. Only traits that hpcspawner declares are listed. The options inherited from
#    JupyterHub's Spawner are summarised by hand in reference/configuration.md, because
#    several of them (mem_limit, cpu_limit, port, ...) do not apply to a Slurm job and
#    would read as if they did.
# 2. The default shown is the trait's real default: autodoc_traits shows ``Dict()`` for
#    ``default_options`` and ``List()`` for ``allowed_accounts``, whose default is None
#    (any account), not an empty list (no account). Defaults computed at start-up are
#    marked as such; the help text says how.
# 3. Help texts give their ``c.SlurmSpawner.x = ...`` examples as an indented block after
#    a blank line (STYLE.md, convention 2). In reStructuredText that is a block quote, and a
#    multi-line example becomes a definition list that -W rejects; render it as Python code.


def _is_hpcspawner_trait(obj) -> bool:
    owner = getattr(obj, "this_class", None)
    return isinstance(obj, TraitType) and getattr(owner, "__module__", "").startswith("hpcspawner")


def _skip_inherited_traits(app, what, name, obj, skip, options):
    if isinstance(obj, TraitType) and not _is_hpcspawner_trait(obj):
        return True
    return None


class ConfigTraitDocumenter(TraitDocumenter):
    """TraitDocumenter that shows the value a trait really defaults to."""

    priority = TraitDocumenter.priority + 1

    def add_directive_header(self, sig):
        trait = self.object
        kind = type(trait).__name__
        computed = any(
            trait.name in vars(cls).get("_trait_default_generators", {})
            for cls in self.parent.__mro__
        )
        if computed:
            shown = "computed at start-up"
        else:
            value = trait.default()
            is_class = isinstance(value, type)
            shown = f"{value.__module__}.{value.__qualname__}" if is_class else repr(value)
        prefix = f"c.{self.format_name()} = " if trait.metadata.get("config") else ""
        self.options.annotation = f"{prefix}{kind}({shown})"
        AttributeDocumenter.add_directive_header(self, sig)


_EXAMPLE_START = re.compile(r"^\s*c\.[A-Za-z_]+\.[A-Za-z_]+\s*=")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _examples_as_code(app, what, name, obj, options, lines):
    """Render each ``c.Class.trait = ...`` example of a help text as a Python code block.

    An example starts after a blank line and runs to the next blank line. It may be
    indented under the preceding paragraph or not (a one-line help text leaves it at the
    paragraph's level once the docstring is dedented). An example introduced by ``::`` is
    already a literal block and is left alone.
    """
    if not _is_hpcspawner_trait(obj):
        return
    out: list[str] = []
    i = 0
    while i < len(lines):
        previous = next((text for text in reversed(out) if text.strip()), "")
        after_blank = bool(out) and not out[-1].strip()
        if after_blank and _EXAMPLE_START.match(lines[i]) and not previous.rstrip().endswith("::"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            base = min(_indent(line) for line in block)
            directive = min(base, _indent(previous)) if previous else base
            out += [" " * directive + ".. code-block:: python", ""]
            out += [" " * (directive + 4) + line[base:] for line in block]
            out.append("")
            continue
        out.append(lines[i])
        i += 1
    lines[:] = out


def setup(app):
    app.add_autodocumenter(ConfigTraitDocumenter, override=True)
    app.connect("autodoc-skip-member", _skip_inherited_traits)
    app.connect("autodoc-process-docstring", _examples_as_code)
