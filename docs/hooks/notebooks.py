"""MkDocs hook: the notebooks of ``notebooks/`` (beside ``docs/``, where users open them) become
pages at ``notebooks/<name>.ipynb`` in the site, read in place rather than copied into docs/.

mkdocs-jupyter renders them (not executed). A notebook the nav names but ``notebooks/`` lacks
fails ``mkdocs build --strict`` ("not found in the documentation files").
"""

import os

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    folder = os.path.join(root, "notebooks")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
        if name.endswith(".ipynb"):
            files.append(
                File(
                    f"notebooks/{name}",
                    src_dir=root,
                    dest_dir=config.site_dir,
                    use_directory_urls=config.use_directory_urls,
                )
            )
    return files
