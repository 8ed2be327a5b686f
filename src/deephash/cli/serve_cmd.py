"""``deephash serve INDEX``: the HTTP service and its web page, over one index (a file, or
``milvus://HOST:PORT/COLLECTION``: then any number of replicas can serve it as one service)."""
from __future__ import annotations

import click

from deephash.data.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV
from deephash.service.config import DEFAULT_MAX_UPLOAD_BYTES


@click.command()
@click.argument("index_path", type=click.Path(), metavar="INDEX")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (loopback by default)")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--api-key", envvar="DEEPHASH_API_KEY", default=None, show_envvar=True,
              help="key for adding/removing images (at least 8 characters); without one, writes are disabled")
@click.option("--read-key-required", is_flag=True, help="searches, thumbnails and stats need the key too")
@click.option("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20, show_default=True)
@click.option("--max-pixels", type=click.IntRange(1, 2**31), default=None,
              help=f"images declaring more pixels are refused before decoding (image bombs); default: ${MAX_PIXELS_ENV} "
                   f"or {DEFAULT_MAX_PIXELS:,}, the limit of every deephash command")
@click.option("--max-k", type=int, default=1000, show_default=True)
@click.option("--milvus-token", default=None, help="milvus:// only: the server's token (or $DEEPHASH_MILVUS_TOKEN); never printed")
@click.option("--uploads", "uploads_dir", type=click.Path(file_okay=False), default=None,
              help="folder for added images (default: INDEX.uploads beside a file; ./COLLECTION.uploads for milvus://, "
                   "which replicas must share)")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
def serve(index_path, host, port, api_key, read_key_required, max_upload_mb, max_pixels, max_k, milvus_token, uploads_dir,
          log_level):
    """Serve INDEX (a file or milvus://HOST:PORT/COLLECTION) over HTTP: a web page at /, the API under
    /api, its description at /docs. Against Milvus the process holds no state: run several (other
    ports or machines) behind one address and they answer as one service."""
    from deephash.optional import require

    uvicorn = require("uvicorn", "deephash serve")
    from deephash.service import create_app
    from deephash.service.auth import install_log_redaction

    app = create_app(index_path, api_key=api_key, read_key_required=read_key_required,
                     max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels, max_k=max_k,
                     backend_options={} if milvus_token is None else {"token": milvus_token}, uploads_dir=uploads_dir)
    st = app.state.service
    click.echo(f"deephash serve: {st.location}: {len(st.index)} images, {st.index.n_bits} bits, model {st.model.hasher.name} on "
               f"{st.model.backbone.name}; writes {'enabled' if api_key else 'disabled (no --api-key)'}; "
               f"page at http://{host}:{port}/", err=True)
    install_log_redaction()  # a key someone put in a URL never reaches the access log
    # one process per index file (it lives in memory and every write goes through it); against
    # Milvus, one per replica
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)
