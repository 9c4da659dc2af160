"""Unit tests of the examples runner's parsing and matching (examples.py): no server, no shell sessions."""

import unittest

from examples import (
    ANY,
    MARK,
    MARK_END,
    PatternError,
    Segment,
    blocks_of,
    check,
    json_documents,
    matches,
    parse_pattern,
    script_of,
    segments_of,
)


def pattern(text):
    value, _ = parse_pattern(text)
    return value


class Patterns(unittest.TestCase):
    def test_plain_json_is_json(self):
        self.assertEqual(pattern('{"a": [1, true, null, "x"]}'), {"a": [1, True, None, "x"]})

    def test_ellipses_stand_for_values_members_and_elements(self):
        self.assertEqual(pattern('{"a": ..., ...}'), {"a": ANY, ANY: ANY})
        self.assertEqual(pattern("[1, …]"), [1, ANY])
        self.assertIs(pattern("..."), ANY)

    def test_where_the_pattern_ends_leaves_a_note(self):
        value, end = parse_pattern('{"a": 1}: the rest is a note')
        self.assertEqual((value, end), ({"a": 1}, 8))

    def test_malformed_patterns_are_refused(self):
        for bad in ['{"a" 1}', '{"a": 1', "[1 2]", "{1: 2}", "nope"]:
            with self.assertRaises(PatternError, msg=bad):
                parse_pattern(bad)


class Matching(unittest.TestCase):
    def test_objects_have_exactly_the_keys_shown_unless_an_ellipsis_allows_more(self):
        self.assertTrue(matches(pattern('{"a": 1, "b": "..."}'), {"a": 1, "b": "x"}))
        self.assertFalse(matches(pattern('{"a": 1}'), {"a": 1, "b": 2}))
        self.assertTrue(matches(pattern('{"a": 1, ...}'), {"a": 1, "b": 2}))
        self.assertFalse(matches(pattern('{"a": 1, ...}'), {"b": 2}))
        self.assertFalse(matches(pattern('{"a": 1}'), {"a": 2}))

    def test_strings_with_ellipses_are_wildcards_and_only_match_strings(self):
        self.assertTrue(matches(pattern('"uploads/.../f.bin"'), "uploads/0a1b/f.bin"))
        self.assertFalse(matches(pattern('"uploads/.../f.bin"'), "uploads/0a1b/g.bin"))
        self.assertTrue(matches(pattern('"..."'), ""))
        self.assertFalse(matches(pattern('"..."'), None))
        self.assertTrue(matches(pattern("..."), None))
        self.assertFalse(matches(pattern('"a.b"'), "aXb"), "only the ellipsis is special")

    def test_numbers_booleans_and_null_are_exact(self):
        self.assertTrue(matches(1, 1))
        self.assertFalse(matches(1, True))
        self.assertFalse(matches(False, 0))
        self.assertFalse(matches(None, "null"))
        self.assertTrue(matches(None, None))

    def test_arrays_match_element_by_element_around_an_ellipsis(self):
        self.assertTrue(matches(pattern("[[1, 2]]"), [[1, 2]]))
        self.assertFalse(matches(pattern("[[1, 2]]"), [[1, 2], [4, 4]]))
        self.assertTrue(matches(pattern("[1, ...]"), [1, 2, 3]))
        self.assertTrue(matches(pattern("[..., 3]"), [1, 2, 3]))
        self.assertTrue(matches(pattern("[1, ..., 3]"), [1, 3]))
        self.assertFalse(matches(pattern("[1, ..., 3]"), [3]))
        self.assertTrue(matches(pattern("[...]"), []))
        self.assertFalse(matches(pattern("[1, ...]"), {"0": 1}))

    def test_json_documents_are_found_wherever_they_are_printed(self):
        text = 'x-upload-secret: ab\n{"a": 1}{"b": [2]}\nnot json {oops\n[3]'
        self.assertEqual(json_documents(text), [{"a": 1}, {"b": [2]}, [3]])


PAGE = """# A page

<!-- example: not run: needs AWS -->
```sh
sam deploy
```

```text
$ not a shell example
```

<!-- example: server CHUNKED_UPLOAD_REQUIRE_AUTH=false -->
```sh
curl -s http://127.0.0.1:8080/upload/x  # a note, not an expectation
# 404 {"detail": "Upload not found"}
curl -s \\
# {"not": "an expectation: the line continues a command"}
# {"uploads": [...],
#  "next_cursor": null}  newest first
# > Chunked upload API on ...
# an ordinary comment
echo done
```
"""


class Markdown(unittest.TestCase):
    def setUp(self):
        self.blocks = blocks_of("page.md", PAGE)

    def test_shell_blocks_and_their_directives(self):
        self.assertEqual(len(self.blocks), 2)
        skipped, run = self.blocks
        self.assertEqual((skipped.skip_reason, skipped.line), ("needs AWS", 4))
        self.assertIsNone(run.skip_reason)
        self.assertEqual(run.server_env, (("CHUNKED_UPLOAD_REQUIRE_AUTH", "false"),))

    def test_expectations_follow_commands(self):
        found = self.blocks[1].expectations
        by_line = {e.line: e for group in found.values() for e in group}
        self.assertEqual(sorted(by_line), [15, 18, 20])
        self.assertEqual((by_line[15].status, by_line[15].json), (404, {"detail": "Upload not found"}))
        self.assertEqual(by_line[18].json, {"uploads": [ANY], "next_cursor": None})
        self.assertEqual(by_line[20].text, "Chunked upload API on ...")
        # Keyed by the block line each group ends on: the two-line pattern and the text after it check one output.
        self.assertEqual({k: [e.line for e in group] for k, group in found.items()}, {1: [15], 6: [18, 20]})

    def test_directives_must_be_known_and_give_reasons(self):
        for directive in ["not run:", "server nope", "skip"]:
            with self.assertRaises(PatternError, msg=directive):
                blocks_of("p.md", f"<!-- example: {directive} -->\n```sh\ntrue\n```\n")

    def test_a_directive_away_from_its_fence_is_an_error_of_the_page(self):
        with self.assertRaises(PatternError):
            blocks_of("p.md", "<!-- example: not run: needs AWS -->\n\n```sh\nsam deploy\n```\n")

    def test_an_unbalanced_pattern_is_an_error_of_the_page(self):
        with self.assertRaises(PatternError):
            blocks_of("p.md", '```sh\ntrue\n# {"a": 1,\necho\n```\n')

    def test_the_script_marks_every_expectation_and_block_and_points_at_the_local_server(self):
        script, origin = script_of(self.blocks[1:], "http://127.0.0.1:5555")
        self.assertIn("curl -s http://127.0.0.1:5555/upload/x", script)
        lines = script.split("\n")
        self.assertEqual(lines.count("__doc_example_mark"), 3)
        first = lines.index("curl -s http://127.0.0.1:5555/upload/x  # a note, not an expectation") + 1
        self.assertEqual(origin[first], ("page.md", 14))


class Segments(unittest.TestCase):
    def test_output_and_statuses_are_split_at_the_marks(self):
        log = f'{{"a": 1}}\n{MARK}\n200\n404\ncurl: (7) refused\n{MARK_END}\nhello\n{MARK}\n{MARK_END}\n'
        first, second = segments_of(log)
        self.assertEqual((first.output, first.statuses, first.other), ('{"a": 1}', [200, 404], ["curl: (7) refused"]))
        self.assertEqual((second.output, second.statuses), ("hello", []))

    def test_statuses_are_checked(self):
        expect_404 = blocks_of("p.md", '```sh\ntrue\n# 404 {"detail": "..."}\n```\n')[0].expectations[1]
        self.assertEqual(check(expect_404, Segment('{"detail": "x"}', [200, 404], [])), [])
        wrong = check(expect_404, Segment('{"detail": "x"}', [404, 200], []))
        self.assertEqual(len(wrong), 2, wrong)  # the last is not 404, and a 404 nobody shows
        self.assertEqual(len(check([], Segment("", [200, 410], []))), 1)
        self.assertEqual(len(check([], Segment("", [0], ["curl: (7) refused"]))), 1)
        self.assertEqual(check([], Segment("", [201, 204], [])), [])

    def test_json_and_text_are_checked(self):
        block = blocks_of("p.md", '```sh\ntrue\n# {"a": "..."}\ntrue\n# > a ... line\n```\n')[0]
        json_expectation, text_expectation = block.expectations[1], block.expectations[3]
        self.assertEqual(check(json_expectation, Segment('noise {"a": "b"}', [], [])), [])
        self.assertEqual(len(check(json_expectation, Segment('{"a": 1}', [], []))), 1)
        self.assertEqual(check(text_expectation, Segment("first\n  a long line  \n", [], [])), [])
        self.assertEqual(len(check(text_expectation, Segment("a line too", [], []))), 1)

    def test_text_lines_may_space_their_columns_otherwise(self):
        block = blocks_of("p.md", "```sh\ntrue\n# > ...  complete  parallel  1/1  ...  t.bin\n```\n")[0]
        table_line = "81bb  complete  parallel    1/1  2026-12-06T15:52:03.105Z  t.bin"
        self.assertEqual(check(block.expectations[1], Segment(table_line, [], [])), [])
        self.assertEqual(len(check(block.expectations[1], Segment("81bb complete direct 1/1 x t.bin", [], []))), 1)


if __name__ == "__main__":
    unittest.main()
