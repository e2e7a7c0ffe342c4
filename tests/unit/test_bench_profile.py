"""bench/profile.py: the summary of py-spy's raw (collapsed) stacks."""

from bench.profile import frame_name, top_functions

RAW = """\
main (app.py:10);handle (ws.py:20);encode (codec.py:30) 6
main (app.py:10);handle (ws.py:20) 3
main (app.py:10);poll (kafka.py:40);poll (kafka.py:40) 1

"""


def test_frame_names_keep_the_function_and_its_file():
    assert frame_name("encode (/x/chat/codec.py:30)") == "encode codec.py"
    assert frame_name("<module>") == "<module>"


def test_inclusive_counts_a_function_once_per_stack_and_own_only_the_innermost():
    total, inclusive, own = top_functions(RAW, 10)
    assert total == 10
    assert dict(inclusive) == {"main app.py": 10, "handle ws.py": 9, "encode codec.py": 6, "poll kafka.py": 1}
    assert dict(own) == {"encode codec.py": 6, "handle ws.py": 3, "poll kafka.py": 1}
