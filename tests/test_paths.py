import pytest

from bot.paths import matches_any

DENY = [".git/**", ".github/workflows/**"]


@pytest.mark.parametrize(
    "path, expected",
    [
        (".git", ".git/**"),
        (".git/config", ".git/**"),
        (".git/hooks/pre-commit", ".git/**"),
        (".github/workflows/ci.yml", ".github/workflows/**"),
        (".github/workflows", ".github/workflows/**"),
        (".github/fixloop.yml", None),
        (".gitignore", None),
        ("src/.git_helper.py", None),
    ],
)
def test_deny_list_patterns(path, expected):
    assert matches_any(path, DENY) == expected


def test_single_star_stays_in_one_folder_and_double_star_crosses():
    assert matches_any("secrets/a.txt", ["secrets/*"]) == "secrets/*"
    assert matches_any("secrets/deep/a.txt", ["secrets/*"]) is None
    assert matches_any("a/b/c/key.pem", ["**/*.pem"]) == "**/*.pem"
    assert matches_any("key.pem", ["**/*.pem"]) == "**/*.pem"
