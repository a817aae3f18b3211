"""MkDocs hook: README.md and CHANGELOG.md live outside docs/, so MkDocs does not check their
links. This checks every relative link in them — the file or folder exists, a ``#anchor`` into
the same file names one of its headings — and warns otherwise (a failure under ``--strict``)."""

import logging
import os
import re

log = logging.getLogger("mkdocs.hooks.readme_links")
FILES = ("README.md", "CHANGELOG.md")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def heading_anchors(text):
    """GitHub's heading ids: lower case, punctuation dropped, spaces → hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", FENCE.sub("", text), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def broken_links(root, name):
    with open(os.path.join(root, name), encoding="utf-8") as f:
        text = f.read()
    anchors = heading_anchors(text)
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        if path and not os.path.exists(os.path.join(root, os.path.dirname(name), path)):
            yield target, "no such file"
        elif not path and anchor not in anchors:
            yield target, "no such heading"


def on_pre_build(config):
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    for name in FILES:
        for target, why in broken_links(root, name):
            log.warning("%s links to '%s': %s", name, target, why)
