#!/usr/bin/env bash
# Milvus backend for CI (issue 7): sourced by .ci/run after the project venv exists, so that
# `make test` runs tests/test_milvus_index.py against a real server instead of skipping it.
#
# What it installs, from PyPI only (nothing else is downloaded: the server binary ships inside
# the `milvus` wheel):
#   * the client, pymilvus 2.3.8, into the project venv (deephash's extra `milvus`, pinned)
#     (pymilvus 2.3 imports pkg_resources, gone in setuptools 81, and its environs 9.5 breaks
#     with marshmallow 4: hence the caps, which only this extra brings in);
#   * the server, the PyPI package `milvus==2.3.5` (a standalone Milvus 2.3.5 for x86-64 Linux
#     with BIN_FLAT, BIN_IVF_FLAT and HAMMING), into a venv of its own, so the server's Python
#     and pins never touch the project's; the tests find it through DEEPHASH_MILVUS_PYTHON.
# DEEPHASH_MILVUS_REQUIRED=1 makes the tests fail, not skip, when the server cannot start, so a
# green CI means they really ran. Time: ~20 s of installs, ~15 s server start, ~35 s of tests.

PY="${PY:-.venv/bin/python}"                            # the project's venv
MILVUS_VENV="${MILVUS_VENV:-.venv-milvus-server}"     # ignored by git (.venv-*/)

"$PY" -m pip install -q "pymilvus==2.3.8" "setuptools<81" "marshmallow<4"  # the extra `milvus`, pinned to what CI tested

if ! "$MILVUS_VENV/bin/python" -c "import milvus" 2>/dev/null; then
    rm -rf "$MILVUS_VENV"
    python3 -m venv "$MILVUS_VENV"
    "$MILVUS_VENV/bin/python" -m pip install -q "milvus==2.3.5"
fi
export DEEPHASH_MILVUS_PYTHON="$PWD/$MILVUS_VENV/bin/python"
export DEEPHASH_MILVUS_REQUIRED=1
