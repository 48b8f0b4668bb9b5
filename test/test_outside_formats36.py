"""Scene inputs and outputs a user really has (session #36): what the CLI said or did wrong.

1. ``gs-mapping --bogus info BAG`` said "gs-mapping info: error: unrecognized arguments: --bogus"
   (and pointed at ``gs-mapping info --help``): an option given before the command is the top
   parser's, which names itself, as argparse does. After the command it stays the command's.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "argv, prog, extras",
    [
        (["--bogus", "info", "B"], "gs-mapping", "--bogus"),
        (["-v", "--bogus=3", "info", "B"], "gs-mapping", "--bogus=3"),
        (["--bogus", "info", "B", "--other"], "gs-mapping", "--bogus"),  # (the first, in argv's order)
        (["info", "--bogus", "B"], "gs-mapping info", "--bogus"),
        (["info", "B", "--bogus"], "gs-mapping info", "--bogus"),
        (["info", "B", "-v"], "gs-mapping info", "-v"),  # (-v is the top parser's, before the command)
    ],
)
def test_an_unknown_option_is_named_by_the_parser_it_was_given_to(argv, prog, extras, capsys):
    from gs_mapping.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{prog}: error: unrecognized arguments: {extras} (see {prog} --help)"]
