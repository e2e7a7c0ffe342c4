"""Where the Java servers' jars are, and how to run a main class from them.

``infra/install.sh`` fetches each set from Maven Central once (its pom in ``infra/maven/NAME``)
into ``.cache/jars/NAME``; each set is a classpath of its own, since Kafka's log4j2 binding and
Cassandra's logback binding must not meet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from infra.services import ServiceError

REPO = Path(__file__).resolve().parent.parent
JARS_DIR = REPO / ".cache" / "jars"


def jar_dir(name: str) -> Path:
    """The folder of the ``name`` jars; a clear error when the installer has not fetched them."""
    folder = JARS_DIR / name
    if not (folder / "pom.xml").exists():
        flag = " --cassandra" if name == "cassandra" else ""
        raise ServiceError(f"{folder} is missing: run `bash infra/install.sh{flag}` (fetches the {name} jars)")
    return folder


def java() -> str:
    """The ``java`` executable (``JAVA_HOME`` is not consulted: the installer puts java on PATH)."""
    path = shutil.which("java")
    if path is None:
        raise ServiceError("java is not installed: run `bash infra/install.sh`")
    return path


def java_argv(name: str, main_class: str, *args: str, jvm: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``java <jvm options> -cp <jars>/* <main_class> <args>`` for the ``name`` jar set."""
    return [java(), *jvm, "-cp", str(jar_dir(name) / "*"), main_class, *args]
