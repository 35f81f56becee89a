"""`kairos media`: upload, list, show and delete the tenant's media files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kairos.posts.v1 import media_pb2
from kairos_cli import render
from kairos_cli.runtime import (
    EXIT_USAGE,
    call_api,
    console,
    fail,
    message_dict,
    options,
    print_json,
    say,
)

app = typer.Typer(help="Upload, list, show and delete media files (images, GIFs, videos).")

MediaId = Annotated[str, typer.Argument(metavar="ID", help="The media id.")]
KINDS = ("image", "gif", "video")


@app.command("upload")
def upload(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The image or video to upload.")],
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="The name to keep (default: FILE's name)."),
    ] = None,
) -> None:
    """Upload a file; prints its media id. Its type is read from its bytes, not its name."""
    if not file.is_file():
        fail(EXIT_USAGE, f"{file}: no such file")
    opts = options(ctx)
    media = call_api(ctx, lambda client: client.upload_media(file, file_name=name))
    if opts.json:
        print_json(media)
    else:
        say(media.id)


@app.command("list")
def list_media(
    ctx: typer.Context,
    kind: Annotated[
        str | None,
        typer.Option("--kind", metavar="KIND", help="Only image, gif or video."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=200, help="At most this many, newest first.")
    ] = 50,
) -> None:
    """List the tenant's media, newest first."""
    if kind is not None and kind.lower() not in KINDS:
        fail(EXIT_USAGE, f"--kind takes one of {', '.join(KINDS)}, got {kind!r}")
    opts = options(ctx)
    request = media_pb2.ListMediaRequest(
        kind=(
            media_pb2.MediaKind.Value(f"MEDIA_KIND_{kind.upper()}")
            if kind
            else media_pb2.MEDIA_KIND_UNSPECIFIED
        ),
        page_size=limit,
    )
    found = call_api(ctx, lambda client: client.list_media(request))
    if opts.json:
        print_json({"media": [message_dict(m) for m in found.media]})
    else:
        console().print(render.media_table(found.media, opts.zone))


@app.command("show")
def show(ctx: typer.Context, media_id: MediaId) -> None:
    """Show one media file: type, size, pixels, duration, codecs."""
    opts = options(ctx)
    media = call_api(ctx, lambda client: client.get_media(media_id))
    if opts.json:
        print_json(media)
    else:
        console().print(render.media_detail(media, opts.zone))


@app.command("delete")
def delete(ctx: typer.Context, media_id: MediaId) -> None:
    """Delete a media file and its stored bytes."""
    call_api(ctx, lambda client: client.delete_media(media_id))
    say(f"media {media_id} deleted")
