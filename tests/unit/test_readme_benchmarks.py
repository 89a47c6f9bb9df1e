"""The README's benchmark tables are generated from benchmarks/results/*.json and must match them."""

import json
import shutil

from benchmarks.common import RESULTS_DIR
from benchmarks.readme_tables import BLOCK, README, RENDERERS, regenerate


def test_readme_tables_match_the_results_json():
    current = README.read_text()
    assert list(BLOCK.finditer(current)), "README.md has no generated benchmark blocks"
    assert regenerate(current) == current, (
        "README.md's benchmark tables differ from benchmarks/results: run python -m benchmarks.readme_tables"
    )


def test_every_results_file_has_a_readme_block():
    blocks = {match.group("name") for match in BLOCK.finditer(README.read_text())}
    results = {path.stem for path in RESULTS_DIR.glob("*.json")}
    assert results <= blocks, f"results without a README block: {sorted(results - blocks)}"
    assert blocks <= set(RENDERERS)


def test_a_changed_result_changes_the_table(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS_DIR, results)
    payload = json.loads((results / "cli_startup.json").read_text())
    payload["results"]["guanaco_over_hf_ratio"] = 7.25
    (results / "cli_startup.json").write_text(json.dumps(payload))
    regenerated = regenerate(README.read_text(), results)
    assert "7.25×" in regenerated and "7.25×" not in README.read_text()


def test_a_missing_result_says_so_instead_of_keeping_old_numbers(tmp_path):
    text = "<!-- bench:serving -->\n| old | numbers |\n<!-- /bench:serving -->"
    regenerated = regenerate(text, tmp_path)
    assert "old" not in regenerated and "No results yet" in regenerated
