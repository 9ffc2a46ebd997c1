"""The README and docs/ stay true to the code: the settings table is the settings class's, links
point at files that exist, and nothing cites a path outside the repository."""

import re
from pathlib import Path

from model.settings import markdown_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_settings_table_is_the_settings_class():
    block = re.search(r"<!-- settings:[^>]*-->\n(.*?)\n<!-- /settings -->", README, re.S)
    assert block, "the README lost its settings block"
    assert block.group(1) == markdown_table(), "run `smapx settings --markdown` into the README"


def test_links_point_at_files_of_the_repository():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_docs_cite_no_path_outside_the_repository():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text().replace("`../shared/data`", "")
        assert "../" not in text, f"{doc.name} cites a path outside the repository"
